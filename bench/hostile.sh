#!/usr/bin/env bash
# Slow and hostile clients against a release build of Holdfast, and against nginx configured
# with the same timeouts (see bench/README.md, "Hostile clients"). Each scenario is bounded
# and prints what bounded it (bench/hostile.py does the clients):
#   slowloris-headers   a request head sent one byte a second   (edge.client_header_timeout)
#   slowloris-body-stall  a head, 10 bytes of a 1 MB body, then nothing   (routes.timeouts.read)
#   slowloris-body-drip   the same, then a byte a second   (not cut while it moves, by design)
#   never-read          GET of 64 MiB, the response never read   (the 60 s send timeout)
#   idle                IDLE (10,000) connections that send nothing: RSS per connection,
#                       then the time until they are closed   (edge.client_header_timeout)
#   tls-flood           new TLS handshakes as fast as TLS_LOOPS loops can make them (Holdfast)
#   tls-stall           half a ClientHello, then nothing   (the 10 s TLS handshake limit)
# The timeouts are set short (TIMEOUT, default 5 s; the defaults are 30 s and 60 s) so that the
# run takes ~5 min; the limits and their defaults are in docs/security.md, "Resource limits".
#
# usage: bench/hostile.sh [--no-build]
# env:   NO_BUILD=1  HOLDFAST_BIN  TARGETS=holdfast,nginx  SCENARIOS=all  TIMEOUT=5  N=50
#        IDLE=10000  TLS_SECONDS=10  TLS_LOOPS=32  SEND_BOUND=75  PORT_BASE=18790  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,21p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
parse_args "$@"

TARGETS=${TARGETS:-holdfast,nginx}
SCENARIOS=${SCENARIOS:-headers,body-stall,body-drip,never-read,idle,tls-flood,tls-stall}
TIMEOUT=${TIMEOUT:-5}; N=${N:-50}; IDLE=${IDLE:-10000}; TLS_SECONDS=${TLS_SECONDS:-10}; TLS_LOOPS=${TLS_LOOPS:-32}
SEND_BOUND=${SEND_BOUND:-75}   # Holdfast's send timeout is 60 s, not configurable
PORT_BASE=${PORT_BASE:-18790}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}; ACCESS_LOG=0
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
for v in TIMEOUT N IDLE TLS_SECONDS TLS_LOOPS; do [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v: a whole number above 0"; done
# 10,000 connections on each side need the descriptors (the hard limit is the ceiling)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) > IDLE + 200 )) || die "ulimit -n is $(ulimit -n): too low for IDLE=$IDLE (raise the hard limit or lower IDLE)"

O_PORT=$PORT_BASE; P_HF=$((PORT_BASE + 1)); P_TLS=$((PORT_BASE + 2)); P_ADMIN=$((PORT_BASE + 3)); P_NGINX=$((PORT_BASE + 4))
D="$STATE/hostile"
rm -rf "$D"; mkdir -p "$D/origin" "$D/holdfast" "$D/nginx/tmp" "$D/tls"
build_holdfast "build it (cargo build --release -p holdfast) or set HOLDFAST_BIN"
setup_ports "$O_PORT" "$P_HF" "$P_TLS" "$P_ADMIN" "$P_NGINX"
new_results_dir
{ env_head "not pinned"; echo "TIMEOUT=${TIMEOUT}s N=$N IDLE=$IDLE TLS_SECONDS=$TLS_SECONDS TLS_LOOPS=$TLS_LOOPS ulimit -n $(ulimit -n)"; machine_load start; } > "$out/env.txt"

spawn "$D/origin" "$LOADGEN_CPU" TERM python3 "$HERE/hostile.py" origin "$O_PORT"
wait_port "$O_PORT" 10 || die "the origin did not listen on :$O_PORT"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=hostile.test \
  -keyout "$D/tls/key.pem" -out "$D/tls/cert.pem" 2>"$D/tls/openssl.log" || die "openssl failed ($D/tls/openssl.log)"
cat > "$D/holdfast/holdfast.toml" <<EOC
[edge]
listen = ["$HOST:$P_HF"]
tls_listen = ["$HOST:$P_TLS"]
threads = 1
access_log = "off"
client_header_timeout = "${TIMEOUT}s"

[[edge.tls]]
cert = "$D/tls/cert.pem"
key = "$D/tls/key.pem"

[admin]
listen = "$HOST:$P_ADMIN"

[[pools]]
name = "origin"
servers = ["$HOST:$O_PORT"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
timeouts = { read = "${TIMEOUT}s" }
EOC
"$HOLDFAST_BIN" check "$D/holdfast/holdfast.toml" > "$D/holdfast/check.txt" 2>&1 \
  || { cat "$D/holdfast/check.txt" >&2; die "holdfast check rejects $D/holdfast/holdfast.toml"; }
PATH_=/1k
spawn "$D/holdfast" "$TARGET_CPU" TERM "$HOLDFAST_BIN" run --config "$D/holdfast/holdfast.toml"
HF_PID=$STARTED_PID
wait_200 holdfast "$HF_PID" "$P_HF" "$D/holdfast/stdout.log"

NG_PID=""
if [[ ",$TARGETS," == *",nginx,"* ]]; then
  nginx_conf "$D/nginx" <<EOC | sed -e 's/worker_connections [0-9]*/worker_connections 20000/' \
      -e "s/keepalive_timeout 300s/keepalive_timeout ${TIMEOUT}s/" > "$D/nginx/nginx.conf"
  client_header_timeout ${TIMEOUT}s;
  client_body_timeout ${TIMEOUT}s;
  send_timeout 60s;                 # as Holdfast's (not configurable there)
  upstream origin { server $HOST:$O_PORT; keepalive 64; }
  server {
    listen $HOST:$P_NGINX backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout ${TIMEOUT}s;
    }
  }
EOC
  start_nginx "$D/nginx" "$TARGET_CPU" QUIT nginx
  NG_PID=$STARTED_PID
  wait_200 nginx "$NG_PID" "$P_NGINX" "$D/nginx/error.log"
fi

# nginx's worker is the child of its master: measure the worker
worker_of() { local c; c=$(pgrep -P "$1" | head -1); echo "${c:-$1}"; }
run() { # LABEL PORT PID SCENARIO
  local label=$1 port=$2 pid=$3 sc=$4 line b=$(( TIMEOUT * 3 + 10 ))
  case "$sc" in
    headers)    line=$(timeout $(( b + 30 )) python3 "$HERE/hostile.py" headers "$port" "$N" "$b") ;;
    body-stall) line=$(timeout $(( b + 30 )) python3 "$HERE/hostile.py" body-stall "$port" "$N" "$b") ;;
    body-drip)  line=$(timeout $(( b + 30 )) python3 "$HERE/hostile.py" body-drip "$port" "$N" "$b") ;;
    never-read) line=$(timeout $(( SEND_BOUND + 30 )) python3 "$HERE/hostile.py" never-read "$port" "$N" "$SEND_BOUND" "$pid" "$O_PORT") ;;
    idle)       line=$(timeout $(( b + 90 )) python3 "$HERE/hostile.py" idle "$port" "$IDLE" "$(( b + 30 ))" "$pid") ;;
    tls-flood)  line=$(timeout $(( TLS_SECONDS + 30 )) python3 "$HERE/hostile.py" tls-flood "$port" "$TLS_SECONDS" "$TLS_LOOPS") ;;
    tls-stall)  line=$(timeout $(( b + 30 )) python3 "$HERE/hostile.py" tls-stall "$port" "$N" "$b") ;;
  esac
  echo "$label $line" | tee -a "$out/hostile.txt"
}
: > "$out/hostile.txt"
for sc in ${SCENARIOS//,/ }; do
  case "$sc" in
    tls-*)
      log "$sc: holdfast (TLS)"
      cpu0=$(awk '{ print $14 + $15 }' "/proc/$HF_PID/stat")
      run holdfast-tls "$P_TLS" "$HF_PID" "$sc"
      echo "holdfast-tls $sc cpu_ms=$(( ($(awk '{ print $14 + $15 }' "/proc/$HF_PID/stat") - cpu0) * 1000 / $(getconf CLK_TCK) )) rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$HF_PID/status")" | tee -a "$out/hostile.txt"
      ;;
    *)
      log "$sc: holdfast"; run holdfast "$P_HF" "$HF_PID" "$sc"
      if [ -n "$NG_PID" ]; then log "$sc: nginx"; run nginx "$P_NGINX" "$(worker_of "$NG_PID")" "$sc"; fi
      ;;
  esac
  pid_alive "$HF_PID" || die "holdfast exited during $sc (log: $D/holdfast/stdout.log)"
done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$P_HF/1k" || true)
echo "holdfast after everything: GET /1k -> $code; rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$HF_PID/status") fds=$(find "/proc/$HF_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)" | tee -a "$out/hostile.txt"
scrape "$P_ADMIN" "$out/holdfast"
cp "$D/holdfast/stdout.log" "$out/holdfast.log"
machine_load end >> "$out/env.txt"
{ echo "## Hostile clients (timeouts ${TIMEOUT}s; every line: target scenario figures)"; echo; echo '```'; cat "$out/hostile.txt"; echo '```'; } > "$out/results.md"
print_results "$out" "results.md, hostile.txt, env.txt, holdfast.log"
[ "$code" = 200 ] || die "holdfast no longer answers after the hostile clients"
