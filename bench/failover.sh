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
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"   # the shared harness (lib.sh), clean-up by PID, the helpers used below
parse_args "$@"

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
DELAY_MS=$(delay_ms "$CONNS" "$RATE")

D="$STATE/failover"
mkdir -p "$D"

# ---- build --------------------------------------------------------------------------
case ",$PROXIES," in
  *,holdfast,*) build_holdfast "build it, set HOLDFAST_BIN, or leave holdfast out of PROXIES" ;;
esac
setup_ports "$A_PORT" "$B_PORT" "${PORT[@]}" "$ADMIN_PORT"

# ---- origins: one nginx process each (no master, so SIGKILL takes all of it) ---------
start_origin() { # NAME PORT; sets ORIGIN_PID
  ORIGIN_SINGLE=1 start_origin_nginx "$D/origin-$1" "$2" KILL "origin $1"
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
  nginx_conf "$1" <<EOC
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
  local name=$1 d="$D/$1"
  mkdir -p "$d/tmp"
  case "$name" in
    holdfast)
      write_holdfast "$d" > "$d/holdfast.toml"
      rm -f "$d/access.log"
      start_holdfast "$d" ;;
    nginx)
      write_nginx "$d" > "$d/nginx.conf"
      start_nginx "$d" "$TARGET_CPU" QUIT nginx ;;
    haproxy)
      write_haproxy > "$d/haproxy.cfg"
      haproxy -c -q -f "$d/haproxy.cfg" || die "bad haproxy config ($d/haproxy.cfg)"
      spawn "$d" "$TARGET_CPU" TERM haproxy -db -f "$d/haproxy.cfg" ;;
  esac
  wait_200 "$name" "$STARTED_PID" "${PORT[$name]}" "$d/stdout.log"
  PROXY_PID=$STARTED_PID
}

# wrk, 1 thread, pinned to LOADGEN_CPU; the FAILOVER line comes from failover.lua
run_wrk() { # SECONDS CONNS PORT OUTFILE
  FO_DELAY_MS=$DELAY_MS wrk_lua failover.lua "$@"
}

kill_origin() { # PID: SIGKILL, the whole tree at once
  local p
  p=$(tree_pids "$1" | tr '\n' ' ')
  [ -n "$p" ] && kill -KILL $p 2>/dev/null || true
  untrack "$1"
}

# ---- measure -----------------------------------------------------------------------------
new_results_dir
nprox=$(tr ',' '\n' <<< "$PROXIES" | grep -c .); nph=$(tr ',' '\n' <<< "$PHASES" | grep -c .)
log "failover: proxies $PROXIES, phases $PHASES, $REPEAT repeat(s), ${DURATION}s runs," \
    "$CONNS conns at $([ "$RATE" = 0 ] && echo 'full speed' || echo "~$RATE req/s") (+$PROBE_CONNS probe conns in the switch window);" \
    "about $(( nprox * nph * REPEAT * (DURATION + WARMUP + SETTLE + 3) ))s"
{
  env_head "proxy on CPU $TARGET_CPU, wrk + origins on CPU $LOADGEN_CPU"
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
      [ "$name" != holdfast ] || scrape "$ADMIN_PORT" "$out/raw/$tag"
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
print_results "$out" "results.md, runs.tsv, env.txt, raw/"
