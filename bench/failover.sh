#!/usr/bin/env bash
# Failover benchmark: Holdfast vs nginx vs HAProxy, each in front of the same two origins
# A and B (one pool / upstream / backend), with the primary origin A killed (SIGKILL) in the
# middle of a wrk run. Reports the errors the client saw and the latency around the switch.
#
# usage: bench/failover.sh [--no-build]        (see bench/README.md, "Failover")
# env:   PROXIES=holdfast,nginx,haproxy  PHASES=switch,dead (also: base)  REPEAT=1
#        DURATION=10 (s per measured run; A dies at DURATION/2 in "switch")  WARMUP=1
#        CONNS=32  RATE=8000 (req/s offered by the CONNS connections; 0 = as fast as possible)
#        PROBE_CONNS=8 (second wrk, 1 s before to 2 s after the kill: the "switch window")
#        SETTLE=3 (s between the kill and the run in "dead")  CONNECT_TIMEOUT=200ms
#        WRK_TIMEOUT=2s  PORT_BASE=18190 (A, B, holdfast, nginx, haproxy, holdfast admin)
#        HOLDFAST_BIN (default ${CARGO_TARGET_DIR:-target}/release/holdfast)  NO_BUILD=1
#        HAPROXY_RETRY_ON="conn-failure empty-response response-timeout" ("" = HAProxy's default)
#        ACCESS_LOG=0 (1: Holdfast writes a JSON access log)  SHARED_BENCH  BENCH_STATE
#        HOLDFAST_HEALTH=1 (0: no [pools.health] in Holdfast's config, passive checks only)
#        HOLDFAST_BACKOFF (e.g. 1ms: [pools.retry] backoff; default: not set, Holdfast's 25ms)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,16p' "$0"; exit 0 ;; esac
SHARED_BENCH="${SHARED_BENCH:-$HERE/../../shared/bench}"
# a git worktree elsewhere (e.g. /tmp/x): fall back to the main checkout's neighbour
[ -f "$SHARED_BENCH/lib.sh" ] || [ ! -f /work/shared/bench/lib.sh ] || SHARED_BENCH=/work/shared/bench
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "failover: no shared harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
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

PROXIES=${PROXIES:-holdfast,nginx,haproxy}
PHASES=${PHASES:-switch,dead}
REPEAT=${REPEAT:-1}; DURATION=${DURATION:-10}; WARMUP=${WARMUP:-1}
CONNS=${CONNS:-32}; RATE=${RATE:-8000}; PROBE_CONNS=${PROBE_CONNS:-8}
SETTLE=${SETTLE:-3}; CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-200ms}; WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
PORT_BASE=${PORT_BASE:-18190}; ACCESS_LOG=${ACCESS_LOG:-0}; HOLDFAST_HEALTH=${HOLDFAST_HEALTH:-1}; HOLDFAST_BACKOFF=${HOLDFAST_BACKOFF:-}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
HAPROXY_RETRY_ON=${HAPROXY_RETRY_ON-conn-failure empty-response response-timeout}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
PATH_=/1k

A_PORT=$PORT_BASE; B_PORT=$((PORT_BASE + 1))
declare -A PORT=([holdfast]=$((PORT_BASE + 2)) [nginx]=$((PORT_BASE + 3)) [haproxy]=$((PORT_BASE + 4)))
ADMIN_PORT=$((PORT_BASE + 5))

[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 4 ] || die "DURATION must be whole seconds, at least 4"
[[ "$WARMUP" =~ ^[0-9]+$ && "$SETTLE" =~ ^[0-9]+$ && "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "WARMUP, SETTLE, REPEAT: whole numbers"
for p in ${PROXIES//,/ }; do [ -n "${PORT[$p]:-}" ] || die "unknown proxy '$p' in PROXIES (holdfast, nginx, haproxy)"; done
for ph in ${PHASES//,/ }; do case "$ph" in base|switch|dead) ;; *) die "unknown phase '$ph' in PHASES (base, switch, dead)" ;; esac; done
[ "$(nproc)" -ge 2 ] || log "WARNING: $(nproc) CPU(s); expected 2 (load + origins on CPU $LOADGEN_CPU, proxy on CPU $TARGET_CPU)"
# Per-connection pause (ms) that makes CONNS connections offer RATE requests/s.
DELAY_MS=0
[ "$RATE" != 0 ] && DELAY_MS=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN { printf "%.3f", c * 1000 / r }')

D="$STATE/failover"
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
case ",$PROXIES," in
  *,holdfast,*)
    if [ "$NO_BUILD" != 1 ]; then
      log "building holdfast (cargo build --release -p holdfast)"
      (cd "$ROOT" && cargo build --release -p holdfast)
    fi
    [ -x "$HOLDFAST_BIN" ] || die "no $HOLDFAST_BIN (build it, set HOLDFAST_BIN, or leave holdfast out of PROXIES)" ;;
esac
"$SHARED_BENCH/setup.sh" >/dev/null
for port in "$A_PORT" "$B_PORT" "${PORT[@]}" "$ADMIN_PORT"; do
  port_listening "$port" && die "port $port already in use (set PORT_BASE)"
done

# ---- origins: one nginx process each (no master, so SIGKILL takes all of it) ---------
start_origin() { # NAME PORT; sets ORIGIN_PID (not in a subshell: it must track the PID here)
  local name=$1 port=$2 d="$D/origin-$1" pid
  mkdir -p "$d/html" "$d/tmp"
  head -c 1024 /dev/zero | tr '\0' 'x' > "$d/html/1k"
  {
    nginx_common "$d" | sed 's/^master_process on;/master_process off;/'
    echo "http {"
    nginx_http_common "$d"
    echo "  server { listen $HOST:$port backlog=4096; root $d/html; location / { } }"
    echo "}"
  } > "$d/nginx.conf"
  nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad origin config ($d/nginx.conf)"
  pid=$(launch "$d/pid" "$d/stdout.log" "$LOADGEN_CPU" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log")
  track "$pid" KILL
  wait_port "$port" 10 || die "origin $name did not listen on :$port"
  ORIGIN_PID=$pid
}

# ---- the proxies, pinned to TARGET_CPU ----------------------------------------------
write_holdfast() { # DIR
  local d=$1
  cat <<EOC
[edge]
listen = ["$HOST:${PORT[holdfast]}"]
threads = 1
access_log = "$([ "$ACCESS_LOG" = 1 ] && echo "$d/access.log" || echo off)"

[admin]
listen = "$HOST:$ADMIN_PORT"

[[pools]]
name = "origin"
servers = ["$HOST:$A_PORT", "$HOST:$B_PORT"]

[pools.retry]                 # the default, written out: one retry, on another server
attempts = 1
on = ["connect", "reset"]
$([ -n "$HOLDFAST_BACKOFF" ] && echo "backoff = \"$HOLDFAST_BACKOFF\"")

$([ "$HOLDFAST_HEALTH" = 1 ] && cat <<EOH
[pools.health]                # active checks; [pools.outlier] left at its defaults
kind = "http"
path = "$PATH_"
interval = "1s"
unhealthy_after = 2
healthy_after = 2
EOH
)

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
timeouts = { connect = "$CONNECT_TIMEOUT" }
EOC
}

write_nginx() { # DIR
  local d=$1
  nginx_common "$d"
  echo "http {"
  nginx_http_common "$d"
  cat <<EOC
  upstream origin {
    server $HOST:$A_PORT max_fails=1 fail_timeout=10s;
    server $HOST:$B_PORT;
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
      proxy_connect_timeout $CONNECT_TIMEOUT;
      proxy_next_upstream error timeout http_502 http_503 http_504;
    }
  }
}
EOC
}

write_haproxy() {
  cat <<EOC
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect $CONNECT_TIMEOUT
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s
  timeout check 1s
  option http-keep-alive
  http-reuse always
  retries 3
  option redispatch
frontend fe
  bind $HOST:${PORT[haproxy]}
  default_backend be
backend be
  option httpchk GET $PATH_
$([ -n "$HAPROXY_RETRY_ON" ] && echo "  retry-on $HAPROXY_RETRY_ON")
  default-server check inter 1s fall 2 rise 2
  server a $HOST:$A_PORT
  server b $HOST:$B_PORT
EOC
}

start_proxy() { # NAME; sets PROXY_PID
  local name=$1 d="$D/$1" pid
  mkdir -p "$d/tmp"
  case "$name" in
    holdfast)
      write_holdfast "$d" > "$d/holdfast.toml"
      rm -f "$d/access.log"
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" "$HOLDFAST_BIN" run --config "$d/holdfast.toml")
      track "$pid" TERM ;;
    nginx)
      write_nginx "$d" > "$d/nginx.conf"
      nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad nginx config ($d/nginx.conf)"
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log")
      track "$pid" QUIT ;;
    haproxy)
      write_haproxy > "$d/haproxy.cfg"
      haproxy -c -q -f "$d/haproxy.cfg" || die "bad haproxy config ($d/haproxy.cfg)"
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" haproxy -db -f "$d/haproxy.cfg")
      track "$pid" TERM ;;
  esac
  local i code
  for (( i = 0; i < STARTUP_TIMEOUT * 10; i++ )); do
    pid_alive "$pid" || { log "$name exited during start-up; log:"; tail -20 "$d/stdout.log" >&2; die "$name did not start"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:${PORT[$name]}$PATH_" || true)
    [ "$code" = 200 ] && { PROXY_PID=$pid; return 0; }
    sleep 0.1
  done
  log "$name did not answer 200 on :${PORT[$name]} within ${STARTUP_TIMEOUT}s; log:"; tail -20 "$d/stdout.log" >&2
  die "$name did not start"
}

# wrk, 1 thread, pinned to LOADGEN_CPU; the FAILOVER line comes from failover.lua
run_wrk() { # SECONDS CONNS PORT OUTFILE
  FO_DELAY_MS=$DELAY_MS timeout $(( $1 + 15 )) taskset -c "$LOADGEN_CPU" \
    wrk -t1 -c"$2" -d"$1s" --timeout "$WRK_TIMEOUT" --latency -s "$HERE/failover.lua" \
    "http://$HOST:$3$PATH_" > "$4" 2>&1
}

kill_origin() { # PID: SIGKILL, the whole tree at once
  local p
  p=$(tree_pids "$1" | tr '\n' ' ')
  [ -n "$p" ] && kill -KILL $p 2>/dev/null || true
  untrack "$1"
}

# ---- measure -----------------------------------------------------------------------------
out="$STATE/failover/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out/raw"
ln -sfn "$out" "$STATE/failover/results/latest"
nprox=$(tr ',' '\n' <<< "$PROXIES" | grep -c .); nph=$(tr ',' '\n' <<< "$PHASES" | grep -c .)
log "failover: proxies $PROXIES, phases $PHASES, $REPEAT repeat(s), ${DURATION}s runs," \
    "$CONNS conns at $([ "$RATE" = 0 ] && echo 'full speed' || echo "~$RATE req/s") (+$PROBE_CONNS probe conns in the switch window);" \
    "about $(( nprox * nph * REPEAT * (DURATION + WARMUP + SETTLE + 3) ))s"
{
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) CPUs; proxy on CPU $TARGET_CPU, wrk + origins on CPU $LOADGEN_CPU"
  echo "holdfast: $HOLDFAST_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); haproxy: $(haproxy -v | head -1 | awk '{print $3}'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "PROXIES=$PROXIES PHASES=$PHASES REPEAT=$REPEAT DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS RATE=$RATE"
  echo "PROBE_CONNS=$PROBE_CONNS SETTLE=$SETTLE CONNECT_TIMEOUT=$CONNECT_TIMEOUT WRK_TIMEOUT=$WRK_TIMEOUT HAPROXY_RETRY_ON='$HAPROXY_RETRY_ON' HOLDFAST_HEALTH=$HOLDFAST_HEALTH HOLDFAST_BACKOFF=${HOLDFAST_BACKOFF:-default} ACCESS_LOG=$ACCESS_LOG"
} > "$out/env.txt"

kill_at=$(( DURATION / 2 ))
for (( rep = 1; rep <= REPEAT; rep++ )); do
  for phase in ${PHASES//,/ }; do
    for name in ${PROXIES//,/ }; do
      tag="$name-$phase-$rep"
      start_origin a "$A_PORT"; a=$ORIGIN_PID
      start_origin b "$B_PORT"; b=$ORIGIN_PID
      start_proxy "$name"; px=$PROXY_PID
      [ "$WARMUP" -gt 0 ] && run_wrk "$WARMUP" "$CONNS" "${PORT[$name]}" "$out/raw/$tag.warmup.txt"
      log "$tag: proxy pid $px, origins A $a (:$A_PORT) B $b (:$B_PORT)"
      case "$phase" in
        base)
          run_wrk "$DURATION" "$CONNS" "${PORT[$name]}" "$out/raw/$tag.main.txt" ;;
        dead)
          kill_origin "$a"; sleep "$SETTLE"
          run_wrk "$DURATION" "$CONNS" "${PORT[$name]}" "$out/raw/$tag.main.txt" ;;
        switch)
          run_wrk "$DURATION" "$CONNS" "${PORT[$name]}" "$out/raw/$tag.main.txt" & w1=$!; track "$w1" TERM
          sleep $(( kill_at - 1 ))
          run_wrk 3 "$PROBE_CONNS" "${PORT[$name]}" "$out/raw/$tag.probe.txt" & w2=$!; track "$w2" TERM
          sleep 1
          kill_origin "$a"; log "$tag: origin A killed (SIGKILL) at ${kill_at}s"
          wait "$w1" || log "WARNING: wrk exited with $?"; untrack "$w1"
          wait "$w2" || log "WARNING: probe wrk exited with $?"; untrack "$w2" ;;
      esac
      if [ "$name" = holdfast ]; then
        curl -s --max-time 2 "http://$HOST:$ADMIN_PORT/metrics" > "$out/raw/$tag.metrics.txt" || true
        curl -s --max-time 2 "http://$HOST:$ADMIN_PORT/status" > "$out/raw/$tag.status.json" || true
      fi
      stop "$px" "$([ "$name" = nginx ] && echo QUIT || echo TERM)"
      cp "$D/$name/stdout.log" "$out/raw/$tag.log" 2>/dev/null || true
      [ "$name" = nginx ] && { cp "$D/nginx/error.log" "$out/raw/$tag.error.log" 2>/dev/null || true; : > "$D/nginx/error.log"; }
      pid_alive "$a" && kill_origin "$a"
      kill_origin "$b"
      grep -h '^FAILOVER' "$out/raw/$tag.main.txt" > /dev/null || { log "no result from wrk:"; tail -5 "$out/raw/$tag.main.txt" >&2; }
    done
  done
done

python3 "$HERE/failover_report.py" "$out" > /dev/null
echo
echo "results: $out  (results.md, runs.tsv, env.txt, raw/)"
echo
cat "$out/results.md"
