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
#
# usage: bench/shield.sh [--no-build]
# env:   PARTS=overhead,refuse  NO_BUILD=1  HOLDFAST_BIN (default ${CARGO_TARGET_DIR:-target}/release/holdfast)
#        DURATION=10 (s per measured overhead run)  REPEAT=3  WARMUP=2  CONNS=64
#        REFUSE_DURATION=10  REFUSE_REQUESTS=100 (the refusing limit: requests per 1s = burst)
#        ACCESS_LOG=0 (1: Holdfast writes a JSON access log)  WRK_TIMEOUT=2s
#        PORT_BASE=18390 (origin, nginx, holdfast, holdfast-limit1, holdfast-limit10, refuse,
#                         then the admin ports of the four Holdfasts: +0..+9)
#        SHARED_BENCH  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,22p' "$0"; exit 0 ;; esac
SHARED_BENCH="${SHARED_BENCH:-$HERE/../../shared/bench}"
# a git worktree elsewhere (e.g. /tmp/x): fall back to the main checkout's neighbour
[ -f "$SHARED_BENCH/lib.sh" ] || [ ! -f /work/shared/bench/lib.sh ] || SHARED_BENCH=/work/shared/bench
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "shield: no shared harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
SHARED_BENCH="$(cd "$SHARED_BENCH" && pwd)"
export BENCH_STATE="${BENCH_STATE:-/tmp/bench-state}"
# shellcheck source=/dev/null
source "$SHARED_BENCH/lib.sh"   # log, die, launch, stop_tree, tree_pids, pid_alive, port_listening, nginx_*

NO_BUILD=${NO_BUILD:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) NO_BUILD=1; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

PARTS=${PARTS:-overhead,refuse}
DURATION=${DURATION:-10}; REPEAT=${REPEAT:-3}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-64}
REFUSE_DURATION=${REFUSE_DURATION:-10}; REFUSE_REQUESTS=${REFUSE_REQUESTS:-100}
ACCESS_LOG=${ACCESS_LOG:-0}; WRK_TIMEOUT=${WRK_TIMEOUT:-2s}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
PORT_BASE=${PORT_BASE:-18390}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
PATH_=/1k
# What wrk (and every curl of ours) sends, so that the header: and cookie: limits find a key
API_KEY="bench-key-0001"; SID="bench-sid-0001"
REQ_H=("X-Api-Key: $API_KEY" "Cookie: sid=$SID")
WRK_H=(); CURL_H=()
for h in "${REQ_H[@]}"; do WRK_H+=(-H "$h"); CURL_H+=(-H "$h"); done

O_PORT=$PORT_BASE
declare -A PORT=([nginx]=$((PORT_BASE + 1)) [holdfast]=$((PORT_BASE + 2)) [holdfast-limit1]=$((PORT_BASE + 3))
                 [holdfast-limit10]=$((PORT_BASE + 4)) [refuse]=$((PORT_BASE + 5)))
declare -A ADMIN=([holdfast]=$((PORT_BASE + 6)) [holdfast-limit1]=$((PORT_BASE + 7))
                  [holdfast-limit10]=$((PORT_BASE + 8)) [refuse]=$((PORT_BASE + 9)))

for part in ${PARTS//,/ }; do case "$part" in overhead|refuse) ;; *) die "unknown part '$part' in PARTS (overhead, refuse)" ;; esac; done
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$REFUSE_DURATION" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[0-9]+$ \
   && "$REPEAT" =~ ^[1-9][0-9]*$ && "$CONNS" =~ ^[1-9][0-9]*$ ]] \
  || die "DURATION, REFUSE_DURATION, WARMUP, REPEAT, CONNS: whole numbers (durations and counts >= 1)"
[[ "$REFUSE_REQUESTS" =~ ^[1-9][0-9]*$ && "$REFUSE_REQUESTS" -le 1000000 ]] || die "REFUSE_REQUESTS: 1 to 1000000"
[ "$(nproc)" -ge 2 ] || log "WARNING: $(nproc) CPU(s); expected 2 (wrk + origin on CPU $LOADGEN_CPU, proxy on CPU $TARGET_CPU)"

D="$STATE/shield"
mkdir -p "$D"

# ---- cleanup: everything this script started, by PID --------------------------------
pids=()            # "pid signal" of every long-running process started here
cleanup() {
  local rc=$? e
  trap - EXIT INT TERM
  for e in "${pids[@]:-}"; do
    [ -n "$e" ] || continue
    set -- $e
    stop_tree "$1" "$2" 5
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
track()   { pids+=("$1 $2"); }
untrack() { local e n=(); for e in "${pids[@]:-}"; do [ -n "$e" ] && [ "${e%% *}" != "$1" ] && n+=("$e"); done; pids=("${n[@]:-}"); }
stop()    { stop_tree "$1" "${2:-TERM}" 10; untrack "$1"; }

# ---- build --------------------------------------------------------------------------
if [ "$NO_BUILD" != 1 ]; then
  log "building holdfast (cargo build --release -p holdfast)"
  (cd "$ROOT" && cargo build --release -p holdfast)
fi
[ -x "$HOLDFAST_BIN" ] || die "no $HOLDFAST_BIN (build it or set HOLDFAST_BIN)"
"$SHARED_BENCH/setup.sh" >/dev/null
for port in "$O_PORT" "${PORT[@]}" "${ADMIN[@]}"; do
  port_listening "$port" && die "port $port already in use (set PORT_BASE)"
done

# ---- origin: one nginx worker on LOADGEN_CPU serving /1k -----------------------------
start_origin() { # sets ORIGIN_PID (not in a subshell: it must track the PID here)
  local d="$D/origin" pid
  mkdir -p "$d/html" "$d/tmp"
  head -c 1024 /dev/zero | tr '\0' 'x' > "$d/html/1k"
  {
    nginx_common "$d"
    echo "http {"
    nginx_http_common "$d"
    echo "  server { listen $HOST:$O_PORT backlog=4096; root $d/html; location / { } }"
    echo "}"
  } > "$d/nginx.conf"
  nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad origin config ($d/nginx.conf)"
  pid=$(launch "$d/pid" "$d/stdout.log" "$LOADGEN_CPU" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log")
  track "$pid" QUIT
  wait_port "$O_PORT" 10 || die "origin did not listen on :$O_PORT"
  ORIGIN_PID=$pid
}

# ---- the proxies, pinned to TARGET_CPU ----------------------------------------------
# one non-refusing limit: requests = 1000000 per 1s (burst the same) is never reached here
limit() { # NAME KEY PER [ROUTES]
  printf '\n[[limits]]\nname = "%s"\nkey = "%s"\nrequests = %s\nper = "%s"\n' "$1" "$2" "${REQS:-1000000}" "$3"
  [ -z "${4:-}" ] || printf 'routes = %s\n' "$4"
}

write_holdfast() { # NAME DIR
  local name=$1 d=$2
  cat <<EOC
[edge]
listen = ["$HOST:${PORT[$name]}"]
threads = 1
access_log = "$([ "$ACCESS_LOG" = 1 ] && echo "$d/access.log" || echo off)"

[admin]
listen = "$HOST:${ADMIN[$name]}"

[[pools]]
name = "origin"
servers = ["$HOST:$O_PORT"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
EOC
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
  esac
  return 0
}

# nginx in front of the origin, as the shared harness's "nginx" peer (peers.sh)
write_nginx() { # DIR
  local d=$1
  nginx_common "$d"
  echo "http {"
  nginx_http_common "$d"
  cat <<EOC
  upstream origin {
    server $HOST:$O_PORT;
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen $HOST:${PORT[nginx]} backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 16 16k;
      proxy_busy_buffers_size 32k;
    }
  }
}
EOC
}

wait_200() { # NAME PID PORT LOGFILE
  local name=$1 pid=$2 port=$3 logf=$4 i code
  for (( i = 0; i < STARTUP_TIMEOUT * 10; i++ )); do
    pid_alive "$pid" || { log "$name exited during start-up; log:"; tail -20 "$logf" >&2; die "$name did not start"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "${CURL_H[@]}" "http://$HOST:$port$PATH_" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  log "$name did not answer 200 on :$port within ${STARTUP_TIMEOUT}s; log:"; tail -20 "$logf" >&2
  die "$name did not start"
}

start_proxy() { # NAME (nginx | holdfast | holdfast-limit1 | holdfast-limit10 | refuse); sets PROXY_PID
  local name=$1 d="$D/$1" pid
  mkdir -p "$d/tmp"
  case "$name" in
    nginx)
      write_nginx "$d" > "$d/nginx.conf"
      nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad nginx config ($d/nginx.conf)"
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log")
      track "$pid" QUIT ;;
    *)
      rm -f "$d/access.log"
      write_holdfast "$name" "$d" > "$d/holdfast.toml"
      "$HOLDFAST_BIN" check "$d/holdfast.toml" > "$d/check.txt" 2>&1 \
        || { cat "$d/check.txt" >&2; die "holdfast check rejects $d/holdfast.toml"; }
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" "$HOLDFAST_BIN" run --config "$d/holdfast.toml")
      track "$pid" TERM ;;
  esac
  wait_200 "$name" "$pid" "${PORT[$name]}" "$d/stdout.log"
  PROXY_PID=$pid
}

scrape() { # ADMIN_PORT PREFIX
  curl -s --max-time 2 "http://$HOST:$1/metrics" > "$2.metrics.txt" || true
  curl -s --max-time 2 "http://$HOST:$1/status" > "$2.status.json" || true
}

# busy % of all CPUs over 1 s (other work on the machine: sampled before anything of ours
# starts and after everything stopped)
machine_busy() {
  local a b
  a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  sleep 1
  b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

# ---- results folder -------------------------------------------------------------------
out="$D/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out/raw"
ln -sfn "$out" "$D/results/latest"
{
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) CPUs; proxies on CPU $TARGET_CPU, wrk + origin on CPU $LOADGEN_CPU"
  echo "holdfast: $HOLDFAST_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "PARTS=$PARTS REPEAT=$REPEAT DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS"
  echo "REFUSE_DURATION=$REFUSE_DURATION REFUSE_REQUESTS=$REFUSE_REQUESTS ACCESS_LOG=$ACCESS_LOG WRK_TIMEOUT=$WRK_TIMEOUT PORT_BASE=$PORT_BASE"
  echo "request headers (every wrk and curl request): ${REQ_H[*]}"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); machine busy at start: $(machine_busy)% of $(nproc) CPUs"
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

  # The shared run.sh calls `wrk` from PATH: a wrapper first in PATH adds the two headers, so
  # that all four targets get the same requests and the header/cookie limits find their key.
  mkdir -p "$D/bin"
  { echo '#!/usr/bin/env bash'
    printf 'case " $* " in *" -v "*) exec %q "$@" ;; esac\n' "$(command -v wrk)"
    printf 'exec %q' "$(command -v wrk)"; printf ' %q' "${WRK_H[@]}"; echo ' "$@"'
  } > "$D/bin/wrk"
  chmod +x "$D/bin/wrk"
  # CPU per 1,000 requests of each tree, req/s, p99; order rotated on every repeat. Its
  # BENCH_STATE is ours, so its results/latest link does not move run.sh's.
  PATH="$D/bin:$PATH" BENCH_STATE="$D" ORIGIN_PORT=$O_PORT PATHS=$PATH_ DURATION=$DURATION \
    WARMUP=$WARMUP REPEAT=$REPEAT CONNS=$CONNS THREADS=1 BASELINE=nginx \
    "$SHARED_BENCH/run.sh" --no-peers --out "$o" \
      --label nginx --port "${PORT[nginx]}" --pid "$px_n" \
      --label holdfast --port "${PORT[holdfast]}" --pid "$px_h" \
      --label holdfast-limit1 --port "${PORT[holdfast-limit1]}" --pid "$px_1" \
      --label holdfast-limit10 --port "${PORT[holdfast-limit10]}" --pid "$px_10" > /dev/null &
  local bench=$!; track "$bench" TERM
  wait "$bench" || die "the shared run.sh failed (see $o)"
  untrack "$bench"
  ln -sfn "$out" "$D/results/latest"

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
  timeout $(( REFUSE_DURATION + 15 )) taskset -c "$LOADGEN_CPU" \
    wrk -t1 -c"$CONNS" -d"${REFUSE_DURATION}s" --timeout "$WRK_TIMEOUT" --latency -s "$HERE/shield.lua" \
    "${WRK_H[@]}" "http://$HOST:${PORT[refuse]}$PATH_" > "$raw/refuse.main.txt" 2>&1 || true
  scrape "${ADMIN[refuse]}" "$raw/refuse.after"
  stop "$px"; cp "$D/refuse/stdout.log" "$raw/refuse.log" 2>/dev/null || true
  stop "$ORIGIN_PID" QUIT
}

for part in ${PARTS//,/ }; do
  case "$part" in
    overhead) part_overhead ;;
    refuse)   part_refuse ;;
  esac
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); machine busy at end: $(machine_busy)% of $(nproc) CPUs" >> "$out/env.txt"

rc=0
python3 "$HERE/shield_report.py" "$out" > /dev/null || rc=$?
echo
echo "results: $out  (results.md, env.txt, overhead/, raw/)"
echo
cat "$out/results.md"
exit "$rc"
