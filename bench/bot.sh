#!/usr/bin/env bash
# Bot-scoring benchmark, two parts (see bench/README.md, "Bot scoring"):
#   overhead  Holdfast without [modules.bot] vs Holdfast with it (examples/bot-features.json,
#             fail_policy "open") vs nginx, same load as run.sh (wrk -t1 -c64, /1k), measured
#             by the shared harness's run.sh (CPU per 1,000 requests, req/s, p99), REPEAT runs
#             with the order rotated; reports bot / no-bot for CPU per request (goal <= 1.10).
#   replay    the 18 Nov 2025 outage under load: wrk through Holdfast (bot module, state_dir)
#             while a writer replaces the feature file every 0.3-0.5 s (good 120 entries /
#             doubled 240 entries, each with a newer version; plus a truncated, an empty, a
#             not-UTF-8 and a 100 MiB file); reports errors, p99, rejections by reason, the
#             active version, the score header the origin saw, and a restart onto the LKG.
#
# usage: bench/bot.sh [--no-build]
# env:   PARTS=overhead,replay  NO_BUILD=1  HOLDFAST_BIN (default ${CARGO_TARGET_DIR:-target}/release/holdfast)
#        DURATION (s per measured run; default 10 for overhead, 20 for replay)  REPEAT=3 (overhead)
#        OVERHEAD_DURATION  REPLAY_DURATION (override DURATION per part)  WARMUP=2  CONNS=64
#        RATE=0 (replay: req/s offered by CONNS connections; 0 = as fast as possible)
#        HEADERS=none (browser: every wrk request carries 11 browser headers, all targets)
#        STEADY=1 (0: no steady run before the replay)  RESTART=1 (0: no restart check)
#        ACCESS_LOG=0 (1: Holdfast writes a JSON access log)  WRK_TIMEOUT=2s
#        PORT_BASE=18290 (origin, holdfast, holdfast-bot, nginx, replay, 3 admin ports: +0..+7)
#        SHARED_BENCH  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,22p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"   # the shared harness (lib.sh), clean-up by PID, the helpers used below
parse_args "$@"

PARTS=${PARTS:-overhead,replay}
REPEAT=${REPEAT:-3}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-64}; RATE=${RATE:-0}
OVERHEAD_DURATION=${OVERHEAD_DURATION:-${DURATION:-10}}
REPLAY_DURATION=${REPLAY_DURATION:-${DURATION:-20}}
HEADERS=${HEADERS:-none}; STEADY=${STEADY:-1}; RESTART=${RESTART:-1}
ACCESS_LOG=${ACCESS_LOG:-0}; WRK_TIMEOUT=${WRK_TIMEOUT:-2s}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
PORT_BASE=${PORT_BASE:-18290}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
FEATURES_EXAMPLE="$ROOT/examples/bot-features.json"
GENERATOR="$ROOT/examples/generate-bot-features.py"
PATH_=/1k

O_PORT=$PORT_BASE
declare -A PORT=([holdfast]=$((PORT_BASE + 1)) [holdfast-bot]=$((PORT_BASE + 2)) [nginx]=$((PORT_BASE + 3)) [replay]=$((PORT_BASE + 4)))
declare -A ADMIN=([holdfast]=$((PORT_BASE + 5)) [holdfast-bot]=$((PORT_BASE + 6)) [replay]=$((PORT_BASE + 7)))

for part in ${PARTS//,/ }; do case "$part" in overhead|replay) ;; *) die "unknown part '$part' in PARTS (overhead, replay)" ;; esac; done
[[ "$OVERHEAD_DURATION" =~ ^[1-9][0-9]*$ && "$REPLAY_DURATION" =~ ^[0-9]+$ && "$REPLAY_DURATION" -ge 8 ]] \
  || die "DURATION: whole seconds (replay: at least 8)"
[[ "$WARMUP" =~ ^[0-9]+$ && "$REPEAT" =~ ^[1-9][0-9]*$ && "$CONNS" =~ ^[1-9][0-9]*$ && "$RATE" =~ ^[0-9]+$ ]] \
  || die "WARMUP, REPEAT, CONNS, RATE: whole numbers"
case "$HEADERS" in none|browser) ;; *) die "HEADERS must be none or browser" ;; esac
[ "$(nproc)" -ge 2 ] || log "WARNING: $(nproc) CPU(s); expected 2 (wrk + origin on CPU $LOADGEN_CPU, proxy on CPU $TARGET_CPU)"
[ -f "$FEATURES_EXAMPLE" ] && [ -f "$GENERATOR" ] || die "no $FEATURES_EXAMPLE or $GENERATOR"
DELAY_MS=$(delay_ms "$CONNS" "$RATE")

# Browser-like request headers (HEADERS=browser): the bot module's feature extraction does
# more work on these (user-agent classes and tokens, Accept-*, Sec-Fetch-*, cookie, referer)
# than on wrk's bare "Host" request.
BROWSER_HEADERS=(
  "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
  "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
  "Accept-Language: en-US,en;q=0.9"
  "Accept-Encoding: gzip, deflate, br"
  "Sec-Ch-Ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""
  "Sec-Fetch-Dest: document"
  "Sec-Fetch-Mode: navigate"
  "Sec-Fetch-Site: none"
  "Upgrade-Insecure-Requests: 1"
  "Referer: http://127.0.0.1/"
  "Cookie: session=4f2a9c1e; theme=dark"
)
if [ "$HEADERS" = browser ]; then for h in "${BROWSER_HEADERS[@]}"; do WRK_H+=(-H "$h"); done; fi

D="$STATE/bot"
mkdir -p "$D"

# ---- build --------------------------------------------------------------------------
build_holdfast "build it or set HOLDFAST_BIN"
setup_ports "$O_PORT" "${PORT[@]}" "${ADMIN[@]}"

# ---- origin: one nginx worker on LOADGEN_CPU serving /1k; SCORE_LOG: log the score header --
start_origin() { # [SCORE_LOG]; sets ORIGIN_PID
  if [ -n "${1:-}" ]; then
    # one line per request: the x-holdfast-bot-score the edge sent ("-" when absent)
    start_origin_nginx "$D/origin" "$O_PORT" QUIT origin \
      "  log_format score '\$http_x_holdfast_bot_score';" "access_log $1 score buffer=256k flush=1s;"
  else
    start_origin_nginx "$D/origin" "$O_PORT" QUIT origin
  fi
}

# ---- the proxies, pinned to TARGET_CPU ----------------------------------------------
write_holdfast() { # NAME DIR BOT(0|1)
  local name=$1 d=$2 bot=$3
  holdfast_conf "${PORT[$name]}" "${ADMIN[$name]}" "$d" "state_dir = \"$d/state\""
  [ "$bot" = 1 ] && cat <<EOC

[modules.bot]
enabled = true
features = "bot-features.json"       # relative to this file's folder
fail_policy = "open"
EOC
  return 0
}

# NAME: holdfast | holdfast-bot | replay | nginx. Holdfast's folder (config, feature file,
# state_dir) is $D/NAME; it is reset unless KEEP=1 (the restart keeps state_dir and features).
start_proxy() { # NAME [KEEP]; sets PROXY_PID
  local name=$1 keep=${2:-0} d="$D/$1"
  mkdir -p "$d/tmp"
  case "$name" in
    nginx)
      nginx_proxy_conf "$d" "${PORT[nginx]}" > "$d/nginx.conf"
      start_nginx "$d" "$TARGET_CPU" QUIT nginx ;;
    *)
      if [ "$keep" != 1 ]; then
        rm -rf "$d/state" "$d/access.log" "$d/bot-features.json"
        mkdir -p "$d/state"
        [ "$name" = holdfast ] || cp "$FEATURES_EXAMPLE" "$d/bot-features.json"
        write_holdfast "$name" "$d" "$([ "$name" = holdfast ] && echo 0 || echo 1)" > "$d/holdfast.toml"
      fi
      start_holdfast "$d" ;;
  esac
  wait_200 "$name" "$STARTED_PID" "${PORT[$name]}" "$d/stdout.log"
  PROXY_PID=$STARTED_PID
}

# wrk, 1 thread, pinned to LOADGEN_CPU; the FAILOVER line (counts, percentiles) comes from
# failover.lua, which also paces the connections when RATE > 0
run_wrk() { # SECONDS PORT OUTFILE
  FO_DELAY_MS=$DELAY_MS wrk_lua failover.lua "$1" "$CONNS" "$2" "$3"
}

# ---- results folder -------------------------------------------------------------------
new_results_dir
{
  env_head "proxies on CPU $TARGET_CPU, wrk + origin + writer on CPU $LOADGEN_CPU"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "PARTS=$PARTS REPEAT=$REPEAT OVERHEAD_DURATION=$OVERHEAD_DURATION REPLAY_DURATION=$REPLAY_DURATION WARMUP=$WARMUP CONNS=$CONNS RATE=$RATE"
  echo "HEADERS=$HEADERS STEADY=$STEADY RESTART=$RESTART ACCESS_LOG=$ACCESS_LOG WRK_TIMEOUT=$WRK_TIMEOUT PORT_BASE=$PORT_BASE"
  machine_load start
} > "$out/env.txt"

# ---- part 1: overhead -----------------------------------------------------------------
part_overhead() {
  local o="$out/overhead" px_n px_h px_b
  mkdir -p "$o"
  start_origin
  start_proxy nginx;        px_n=$PROXY_PID
  start_proxy holdfast;     px_h=$PROXY_PID
  start_proxy holdfast-bot; px_b=$PROXY_PID
  log "overhead: nginx $px_n :${PORT[nginx]}, holdfast $px_h :${PORT[holdfast]}, holdfast-bot $px_b :${PORT[holdfast-bot]};" \
      "$REPEAT x ${WARMUP}s + ${OVERHEAD_DURATION}s each, about $(( 3 * REPEAT * (WARMUP + OVERHEAD_DURATION + 2) ))s"

  # CPU per 1,000 requests, req/s, p99 (the shared run.sh); HEADERS=browser: its wrk sends them
  shared_run "$o" "$OVERHEAD_DURATION" \
    --label nginx --port "${PORT[nginx]}" --pid "$px_n" \
    --label holdfast --port "${PORT[holdfast]}" --pid "$px_h" \
    --label holdfast-bot --port "${PORT[holdfast-bot]}" --pid "$px_b"

  # what the bot module did: its state and the artifact it runs on
  scrape "${ADMIN[holdfast-bot]}" "$out/raw/overhead-holdfast-bot"
  scrape "${ADMIN[holdfast]}" "$out/raw/overhead-holdfast"
  for n in holdfast holdfast-bot; do cp "$D/$n/stdout.log" "$out/raw/overhead-$n.log" 2>/dev/null || true; done
  stop "$px_b"; stop "$px_h"; stop "$px_n" QUIT; stop "$ORIGIN_PID" QUIT
}

# ---- part 2: the 18 Nov 2025 replay ---------------------------------------------------
# Feature-file templates from the example generator: good = 120 entries (--fill 120),
# double = every entry twice (--fill 120 --double: 240 > MAX_FEATURES = 200, rejected for
# capacity). The generator stamps the version with the current second; the writer needs a
# new version 2-3 times a second, so it rewrites the "version" line of a template.
make_templates() { # DIR
  local t=$1
  mkdir -p "$t"
  python3 "$GENERATOR" "$t/good.json" --fill 120 2>>"$t/generate.log"
  python3 "$GENERATOR" "$t/double.json" --fill 120 --double 2>>"$t/generate.log"
  grep -q '^ "version": [0-9]*,$' "$t/good.json" || die "unexpected generator output ($t/good.json)"
  "$HOLDFAST_BIN" check --kind bot-features "$t/good.json" > "$t/check-good.txt" 2>&1 \
    || { cat "$t/check-good.txt" >&2; die "the generated good file does not pass holdfast check"; }
  if "$HOLDFAST_BIN" check --kind bot-features "$t/double.json" > "$t/check-double.txt" 2>&1; then
    die "the doubled file passes holdfast check (it must be rejected for capacity)"
  fi
}

# The writer: replaces FILE (write FILE.tmp, then mv) every 0.3-0.5 s for SECONDS, alternating
# good and double, each with the next version; at 40/55/70/85 % of the time one special bad
# file instead: truncated (first half of a good file), empty, not UTF-8 (a good file with a
# 0xFF byte in a name), too large (100 MiB, sparse). Logs "t_ms kind version bytes" to LOG.
writer() { # FILE TEMPLATES SECONDS FIRST_VERSION LOG
  local f=$1 t=$2 secs=$3 v=$4 wlog=$5 start now el i=0 kind special=0
  local -a specials=(truncated empty not_utf8 too_large) at=(40 55 70 85)
  taskset -cp "$LOADGEN_CPU" "$BASHPID" > /dev/null   # with wrk and the origin, not the edge
  start=${EPOCHREALTIME/./}
  while :; do
    now=${EPOCHREALTIME/./}; el=$(( (now - start) / 1000 ))          # ms
    [ "$el" -lt $(( secs * 1000 )) ] || break
    if [ "$special" -lt ${#specials[@]} ] && [ "$el" -ge $(( secs * 10 * ${at[$special]} )) ]; then
      kind=${specials[$special]}; special=$(( special + 1 ))
    elif (( i++ % 2 == 0 )); then kind=good
    else kind=double
    fi
    v=$(( v + 1 ))
    case "$kind" in
      good|double) sed "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" "$t/$kind.json" > "$f.tmp" ;;
      truncated)   sed "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" "$t/good.json" | head -c $(( $(stat -c %s "$t/good.json") / 2 )) > "$f.tmp" ;;
      empty)       : > "$f.tmp" ;;
      not_utf8)    sed -e "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" -e 's/"header:x-fill-100"/"header:x-fill-1\xff00"/' "$t/good.json" > "$f.tmp" ;;
      too_large)   rm -f "$f.tmp"; truncate -s 100M "$f.tmp" ;;
    esac
    mv -f "$f.tmp" "$f"
    echo "$el $kind $v $(stat -c %s "$f")" >> "$wlog"
    sleep "0.$(printf '%03d' $(( 300 + RANDOM % 201 )))"
  done
}

rotate_score_log() { # DEST: move the origin's score log aside; nginx reopens (and flushes) it
  mv "$D/origin/score.log" "$1"; kill -USR1 "$ORIGIN_PID"; sleep 0.5
}

part_replay() {
  local r="$D/replay" raw="$out/raw" px tpl="$D/replay-templates" v0 wpid
  rm -rf "$tpl"; make_templates "$tpl"
  cp "$tpl"/check-*.txt "$tpl"/good.json "$raw/" 2>/dev/null || true
  mkdir -p "$D/origin"; rm -f "$D/origin/score.log"
  start_origin "$D/origin/score.log"
  start_proxy replay; px=$PROXY_PID
  log "replay: holdfast $px :${PORT[replay]} (admin :${ADMIN[replay]}), state_dir $r/state;" \
      "$([ "$STEADY" = 1 ] && echo "steady ${REPLAY_DURATION}s, then ")replay ${REPLAY_DURATION}s," \
      "$CONNS conns at $([ "$RATE" = 0 ] && echo 'full speed' || echo "~$RATE req/s")"
  [ "$WARMUP" -gt 0 ] && run_wrk "$WARMUP" "${PORT[replay]}" "$raw/replay-warmup.txt"
  rotate_score_log "$raw/warmup.score.log"
  if [ "$STEADY" = 1 ]; then         # the same edge and load, no writer: the p99 to compare with
    run_wrk "$REPLAY_DURATION" "${PORT[replay]}" "$raw/steady.main.txt"
    scrape "${ADMIN[replay]}" "$raw/steady"
    rotate_score_log "$raw/steady.score.log"
  fi

  # versions: newer than the example's (1) and than anything the generator stamped
  v0=$(( $(date +%s) + 1000 ))
  : > "$raw/writes.txt"
  ( writer "$r/bot-features.json" "$tpl" "$REPLAY_DURATION" "$v0" "$raw/writes.txt" ) &
  wpid=$!; track "$wpid" TERM
  run_wrk "$REPLAY_DURATION" "${PORT[replay]}" "$raw/replay.main.txt"
  wait "$wpid" || log "WARNING: the writer exited with $?"; untrack "$wpid"
  sleep 2.5                     # a change is picked up within 2 s (issue 6)
  rotate_score_log "$raw/replay.score.log"
  scrape "${ADMIN[replay]}" "$raw/replay"

  if [ "$RESTART" = 1 ]; then
    # leave a bad file on disk (doubled, newest version) and restart: it must come up on the LKG
    local v=$(( $(tail -1 "$raw/writes.txt" | awk '{print $3}') + 1 ))
    sed "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" "$tpl/double.json" > "$r/bot-features.json.tmp"
    mv -f "$r/bot-features.json.tmp" "$r/bot-features.json"
    echo "restart double $v $(stat -c %s "$r/bot-features.json")" >> "$raw/restart.txt"
    stop "$px"; cp "$r/stdout.log" "$raw/replay.log" 2>/dev/null || true
    start_proxy replay 1; px=$PROXY_PID
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 "http://$HOST:${PORT[replay]}$PATH_" >> "$raw/restart.txt" || true
    sleep 0.5
    scrape "${ADMIN[replay]}" "$raw/restart"
    rotate_score_log "$raw/restart.score.log"
    stop "$px"; cp "$r/stdout.log" "$raw/restart.log" 2>/dev/null || true
  else
    stop "$px"; cp "$r/stdout.log" "$raw/replay.log" 2>/dev/null || true
  fi
  stop "$ORIGIN_PID" QUIT
}

for part in ${PARTS//,/ }; do
  case "$part" in
    overhead) part_overhead ;;
    replay)   part_replay ;;
  esac
done
machine_load end >> "$out/env.txt"
report_and_exit bot_report.py "results.md, env.txt, overhead/, raw/"
