#!/usr/bin/env bash
# Rate-limit benchmark, two parts (see bench/README.md, "Rate limits"):
#   overhead  CPU per request of Holdfast without [[limits]], with one non-refusing limit
#             (client_ip, 1000000 per 1s) and with ten non-refusing limits (client_ip,
#             client_prefix, route, header:x-api-key, cookie:sid, each twice), and nginx as the
#             baseline column; same load and method as bot.sh's overhead part (the shared
#             harness's run.sh: wrk -t1 -c64 /1k, CPU-ms per 1,000 requests, REPEAT runs with the
#             order rotated). Every wrk request carries X-Api-Key and Cookie: sid=..., for all
#             four targets. Reports limits / no limits for CPU per request, p99 and req/s.
#   refuse    one refusing limit (key "route", REFUSE_REQUESTS per 1s, burst the same): wrk at
#             full speed for REFUSE_DURATION s; the 2xx must match burst + rate x duration, the
#             rest must be 429 (with Retry-After and RateLimit), no 5xx, no socket errors.
#   rules     issue 7's goal: CPU per request of Holdfast with 100 rules (25 each of
#             path.startsWith, header ==, method && path, path.matches; none matches the
#             traffic, so every request runs all 100) plus one non-refusing limit, vs the same
#             Holdfast with neither; same method as overhead (nginx the harness's baseline).
#   replay    the 2 Jul 2019 pattern (its `{}` written `\{\}`: the regex crate rejects an empty
#             repetition) in one rule over the query and an X-Payload header of every request,
#             whose digits without a later `=` make a backtracking engine explode, vs the same
#             traffic without the rule (wrk sends /1k?x=<REPLAY_QUERY digits> and
#             X-Payload: x=<REPLAY_HEADER digits> to every target).
#
# usage: bench/shield.sh [--no-build]
# env:   PARTS=overhead,refuse,rules,replay  NO_BUILD=1  HOLDFAST_BIN (default ${CARGO_TARGET_DIR:-target}/release/holdfast)
#        DURATION=10 (s per measured overhead run)  REPEAT=3  WARMUP=2  CONNS=64
#        REFUSE_DURATION=10  REFUSE_REQUESTS=100 (the refusing limit: requests per 1s = burst)
#        ACCESS_LOG=0 (1: Holdfast writes a JSON access log)  WRK_TIMEOUT=2s
#        REPLAY_QUERY=180 REPLAY_HEADER=4000 (digits in the replay's query and X-Payload)
#        PORT_BASE=18390 (origin, nginx, holdfast, holdfast-limit1, holdfast-limit10, refuse,
#                         then the admin ports of the four Holdfasts: +0..+9; holdfast-rules
#                         and holdfast-replay +10, +11, their admin ports +12, +13)
#        SHARED_BENCH  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,33p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"   # the shared harness (lib.sh), clean-up by PID, the helpers used below
parse_args "$@"

PARTS=${PARTS:-overhead,refuse,rules,replay}
REPLAY_QUERY=${REPLAY_QUERY:-180}; REPLAY_HEADER=${REPLAY_HEADER:-4000}
DURATION=${DURATION:-10}; REPEAT=${REPEAT:-3}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-64}
REFUSE_DURATION=${REFUSE_DURATION:-10}; REFUSE_REQUESTS=${REFUSE_REQUESTS:-100}
ACCESS_LOG=${ACCESS_LOG:-0}; WRK_TIMEOUT=${WRK_TIMEOUT:-2s}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
PORT_BASE=${PORT_BASE:-18390}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
PATH_=/1k
# What wrk (and every curl of ours) sends, so that the header: and cookie: limits find a key
API_KEY="bench-key-0001"; SID="bench-sid-0001"
REQ_H=("X-Api-Key: $API_KEY" "Cookie: sid=$SID")
for h in "${REQ_H[@]}"; do WRK_H+=(-H "$h"); CURL_H+=(-H "$h"); done

O_PORT=$PORT_BASE
declare -A PORT=([nginx]=$((PORT_BASE + 1)) [holdfast]=$((PORT_BASE + 2)) [holdfast-limit1]=$((PORT_BASE + 3))
                 [holdfast-limit10]=$((PORT_BASE + 4)) [refuse]=$((PORT_BASE + 5))
                 [holdfast-rules]=$((PORT_BASE + 10)) [holdfast-replay]=$((PORT_BASE + 11)))
declare -A ADMIN=([holdfast]=$((PORT_BASE + 6)) [holdfast-limit1]=$((PORT_BASE + 7))
                  [holdfast-limit10]=$((PORT_BASE + 8)) [refuse]=$((PORT_BASE + 9))
                  [holdfast-rules]=$((PORT_BASE + 12)) [holdfast-replay]=$((PORT_BASE + 13)))

for part in ${PARTS//,/ }; do case "$part" in overhead|refuse|rules|replay) ;; *) die "unknown part '$part' in PARTS (overhead, refuse, rules, replay)" ;; esac; done
[[ "$REPLAY_QUERY" =~ ^[1-9][0-9]*$ && "$REPLAY_QUERY" -le 200 && "$REPLAY_HEADER" =~ ^[1-9][0-9]*$ && "$REPLAY_HEADER" -le 6000 ]] \
  || die "REPLAY_QUERY: 1 to 200 (it is in the harness's file names), REPLAY_HEADER: 1 to 6000"
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$REFUSE_DURATION" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[0-9]+$ \
   && "$REPEAT" =~ ^[1-9][0-9]*$ && "$CONNS" =~ ^[1-9][0-9]*$ ]] \
  || die "DURATION, REFUSE_DURATION, WARMUP, REPEAT, CONNS: whole numbers (durations and counts >= 1)"
[[ "$REFUSE_REQUESTS" =~ ^[1-9][0-9]*$ && "$REFUSE_REQUESTS" -le 1000000 ]] || die "REFUSE_REQUESTS: 1 to 1000000"
[ "$(nproc)" -ge 2 ] || log "WARNING: $(nproc) CPU(s); expected 2 (wrk + origin on CPU $LOADGEN_CPU, proxy on CPU $TARGET_CPU)"

D="$STATE/shield"
mkdir -p "$D"

# ---- build --------------------------------------------------------------------------
build_holdfast "build it or set HOLDFAST_BIN"
setup_ports "$O_PORT" "${PORT[@]}" "${ADMIN[@]}"

# ---- origin: one nginx worker on LOADGEN_CPU serving /1k -----------------------------
start_origin() { # sets ORIGIN_PID
  start_origin_nginx "$D/origin" "$O_PORT" QUIT origin
}

# ---- the proxies, pinned to TARGET_CPU ----------------------------------------------
# one non-refusing limit: requests = 1000000 per 1s (burst the same) is never reached here
limit() { # NAME KEY PER [ROUTES]
  printf '\n[[limits]]\nname = "%s"\nkey = "%s"\nrequests = %s\nper = "%s"\n' "$1" "$2" "${REQS:-1000000}" "$3"
  [ -z "${4:-}" ] || printf 'routes = %s\n' "$4"
}

rule() { # ID EXPR: one blocking rule, EXPR in a TOML multi-line literal string (verbatim)
  printf '\n[[rules]]\nid = "%s"\nexpr = '"'''"'%s'"'''"'\naction = "block"\n' "$1" "$2"
}

# 25 each of path.startsWith, header ==, method && path, path.matches; none matches wrk's
# GET /1k with X-Api-Key: bench-key-0001, so every request runs all 100
hundred_rules() {
  local i
  for i in $(seq -w 1 25); do
    rule "prefix-$i" "request.path.startsWith(\"/blocked-$i/\")"
    rule "key-$i" "request.headers[\"x-api-key\"] == \"stolen-key-$i\""
    rule "method-$i" "request.method == \"DELETE\" && request.path == \"/admin-$i\""
    rule "probe-$i" "request.path.matches(r\"^/probe-$i/[a-z]+\\.php\$\")"
  done
}

# The 2 Jul 2019 pattern, its literal {} written \{\} (the regex crate rejects an empty
# repetition); it goes into a CEL raw string r"""...""" as it is
PATTERN_2019=$(cat <<'EOP'
(?:(?:\"|'|\]|\}|\\|\d|(?:nan|infinity|true|false|null|undefined|symbol|math)|\`|\-|\+)+[)]*;?((?:\s|-|~|!|\{\}|\|\||\+)*.*(?:.*=.*)))
EOP
)

write_holdfast() { # NAME DIR
  local name=$1 d=$2
  holdfast_conf "${PORT[$name]}" "${ADMIN[$name]}" "$d"
  case "$name" in
    holdfast) ;;
    holdfast-limit1)   # the cost of checking one limit
      limit per-ip client_ip 1s ;;
    holdfast-limit10)  # every key kind, twice: default routes and per 1s, then routes = ["all"] and per 2s
      limit ip-1s client_ip 1s;          limit prefix-1s client_prefix 1s
      limit route-1s route 1s;           limit apikey-1s header:x-api-key 1s
      limit sid-1s cookie:sid 1s
      limit ip-2s client_ip 2s '["all"]';          limit prefix-2s client_prefix 2s '["all"]'
      limit route-2s route 2s '["all"]';           limit apikey-2s header:x-api-key 2s '["all"]'
      limit sid-2s cookie:sid 2s '["all"]' ;;
    refuse)            # refuses: REFUSE_REQUESTS per second for the whole route, burst the same
      REQS=$REFUSE_REQUESTS limit per-route route 1s ;;
    holdfast-rules)    # issue 7's goal: 100 rules and a rate limit
      limit per-ip client_ip 1s
      hundred_rules ;;
    holdfast-replay)   # the 2 Jul 2019 pattern on every request's query and X-Payload
      rule waf-2019 "request.query.matches(r\"\"\"$PATTERN_2019\"\"\") || (\"x-payload\" in request.headers && request.headers[\"x-payload\"].matches(r\"\"\"$PATTERN_2019\"\"\"))" ;;
  esac
  return 0
}

start_proxy() { # NAME (nginx | holdfast | holdfast-limit1 | holdfast-limit10 | refuse | holdfast-rules | holdfast-replay); sets PROXY_PID
  local name=$1 d="$D/$1"
  mkdir -p "$d/tmp"
  case "$name" in
    nginx)
      nginx_proxy_conf "$d" "${PORT[nginx]}" > "$d/nginx.conf"
      start_nginx "$d" "$TARGET_CPU" QUIT nginx ;;
    *)
      rm -f "$d/access.log"
      write_holdfast "$name" "$d" > "$d/holdfast.toml"
      "$HOLDFAST_BIN" check "$d/holdfast.toml" > "$d/check.txt" 2>&1 \
        || { cat "$d/check.txt" >&2; die "holdfast check rejects $d/holdfast.toml"; }
      start_holdfast "$d" ;;
  esac
  wait_200 "$name" "$STARTED_PID" "${PORT[$name]}" "$d/stdout.log"
  PROXY_PID=$STARTED_PID
}

# ---- results folder -------------------------------------------------------------------
new_results_dir
{
  env_head "proxies on CPU $TARGET_CPU, wrk + origin on CPU $LOADGEN_CPU"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "PARTS=$PARTS REPEAT=$REPEAT DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS"
  echo "REFUSE_DURATION=$REFUSE_DURATION REFUSE_REQUESTS=$REFUSE_REQUESTS ACCESS_LOG=$ACCESS_LOG WRK_TIMEOUT=$WRK_TIMEOUT PORT_BASE=$PORT_BASE"
  echo "REPLAY_QUERY=$REPLAY_QUERY REPLAY_HEADER=$REPLAY_HEADER"
  echo "request headers (every wrk and curl request): ${REQ_H[*]}"
  machine_load start
} > "$out/env.txt"

# ---- part 1: overhead -----------------------------------------------------------------
part_overhead() {
  local o="$out/overhead" n px_n px_h px_1 px_10
  mkdir -p "$o"
  start_origin
  start_proxy nginx;            px_n=$PROXY_PID
  start_proxy holdfast;         px_h=$PROXY_PID
  start_proxy holdfast-limit1;  px_1=$PROXY_PID
  start_proxy holdfast-limit10; px_10=$PROXY_PID
  for n in holdfast holdfast-limit1 holdfast-limit10; do cp "$D/$n/holdfast.toml" "$out/raw/$n.toml"; done
  log "overhead: nginx $px_n :${PORT[nginx]}, holdfast $px_h :${PORT[holdfast]}," \
      "holdfast-limit1 $px_1 :${PORT[holdfast-limit1]}, holdfast-limit10 $px_10 :${PORT[holdfast-limit10]};" \
      "$REPEAT x ${WARMUP}s + ${DURATION}s each, about $(( 4 * REPEAT * (WARMUP + DURATION + 2) ))s"

  # CPU per 1,000 requests, req/s, p99 (the shared run.sh); its wrk sends the two headers too,
  # so that all four targets get the same requests and the header/cookie limits find their key
  shared_run "$o" "$DURATION" \
    --label nginx --port "${PORT[nginx]}" --pid "$px_n" \
    --label holdfast --port "${PORT[holdfast]}" --pid "$px_h" \
    --label holdfast-limit1 --port "${PORT[holdfast-limit1]}" --pid "$px_1" \
    --label holdfast-limit10 --port "${PORT[holdfast-limit10]}" --pid "$px_10"

  # what the limits did: every decision by limit and result (limited must be 0)
  for n in holdfast holdfast-limit1 holdfast-limit10; do
    scrape "${ADMIN[$n]}" "$out/raw/overhead-$n"
    cp "$D/$n/stdout.log" "$out/raw/overhead-$n.log" 2>/dev/null || true
  done
  stop "$px_10"; stop "$px_1"; stop "$px_h"; stop "$px_n" QUIT; stop "$ORIGIN_PID" QUIT
}

# ---- part 2: a refusing limit ---------------------------------------------------------
part_refuse() {
  local raw="$out/raw" px
  start_origin
  start_proxy refuse; px=$PROXY_PID
  cp "$D/refuse/holdfast.toml" "$raw/refuse.toml"
  log "refuse: holdfast $px :${PORT[refuse]}, limit key \"route\" $REFUSE_REQUESTS per 1s (burst $REFUSE_REQUESTS);" \
      "wrk -t1 -c$CONNS ${REFUSE_DURATION}s at full speed"
  sleep 1.5                              # the probe's token comes back: the full burst is available
  scrape "${ADMIN[refuse]}" "$raw/refuse.before"
  wrk_lua shield.lua "$REFUSE_DURATION" "$CONNS" "${PORT[refuse]}" "$raw/refuse.main.txt" || true
  scrape "${ADMIN[refuse]}" "$raw/refuse.after"
  stop "$px"; cp "$D/refuse/stdout.log" "$raw/refuse.log" 2>/dev/null || true
  stop "$ORIGIN_PID" QUIT
}

# ---- parts 3 and 4: 100 rules + a limit, and the 2 Jul 2019 pattern, vs neither --------
# PART (rules | replay): nginx (the harness's baseline), holdfast and holdfast-PART measured
# together as overhead is; PART/ holds the harness's results
part_versus() { # PART
  local part=$1 o="$out/$1" px_n px_h px_x
  mkdir -p "$o"
  start_origin
  start_proxy nginx;            px_n=$PROXY_PID
  start_proxy holdfast;         px_h=$PROXY_PID
  start_proxy "holdfast-$part"; px_x=$PROXY_PID
  cp "$D/holdfast-$part/holdfast.toml" "$out/raw/holdfast-$part.toml"
  log "$part: nginx $px_n, holdfast $px_h, holdfast-$part $px_x; $REPEAT x ${WARMUP}s + ${DURATION}s each," \
      "about $(( 3 * REPEAT * (WARMUP + DURATION + 2) ))s"
  shared_run "$o" "$DURATION" \
    --label nginx --port "${PORT[nginx]}" --pid "$px_n" \
    --label holdfast --port "${PORT[holdfast]}" --pid "$px_h" \
    --label "holdfast-$part" --port "${PORT[holdfast-$part]}" --pid "$px_x"
  scrape "${ADMIN[holdfast-$part]}" "$out/raw/$part-holdfast-$part"
  stop "$px_x"; stop "$px_h"; stop "$px_n" QUIT; stop "$ORIGIN_PID" QUIT
}

# wrk sends every target /1k?x=<digits> and X-Payload: x=<digits> (the query is short: the
# harness puts the path in its file names)
part_replay() {
  local saved_path=$PATH_ saved_h=("${WRK_H[@]}")
  PATH_="/1k?x=$(printf '1%.0s' $(seq "$REPLAY_QUERY"))"
  WRK_H+=(-H "X-Payload: x=$(printf '1%.0s' $(seq "$REPLAY_HEADER"))")
  part_versus replay
  PATH_=$saved_path; WRK_H=("${saved_h[@]}")
}

for part in ${PARTS//,/ }; do
  case "$part" in
    overhead) part_overhead ;;
    refuse)   part_refuse ;;
    rules)    part_versus rules ;;
    replay)   part_replay ;;
  esac
done
machine_load end >> "$out/env.txt"
report_and_exit shield_report.py "results.md, env.txt, overhead/, raw/"
