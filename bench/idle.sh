#!/usr/bin/env bash
# Memory per idle client connection (issue 16, goal 5; see bench/README.md, "Idle
# connections"): Holdfast against nginx in the same run, each server started afresh for every
# measurement, pinned to TARGET_CPU, in front of the same nginx origin. bench/idle.py opens
# IDLE connections (after one warm-up connection and a second of quiet) and reads the growth
# of the server's resident memory (Holdfast's process; nginx's worker) IDLE_SETTLE (5) s after the
# last one opened. Modes:
#   keepalive   HTTP/1.1, one GET /1k read to its end, then idle (a keep-alive client)
#   half-head   HTTP/1.1, half a request head, then nothing (slowloris)
#   h2          HTTP/2 over TLS 1.3, one GET /1k, then idle (a browser between clicks)
# Both servers keep such connections for 10 minutes (keepalive and header timeouts), so none
# is closed while it is measured. REPEAT times, medians, ratio Holdfast / nginx.
# Both keep at most POOL_IDLE (64) idle connections to the origin (nginx `keepalive`,
# Holdfast `max_idle_per_server`): a burst of openings leaves that many behind, a cost of the
# origin side that is fixed, not per client connection, and counted in the growth measured.
#
# usage: bench/idle.sh [--no-build]
# env:   NO_BUILD=1  HOLDFAST_BIN  IDLE=10000  REPEAT=3  IDLE_SETTLE=5  MODES="keepalive half-head h2"
#        POOL_IDLE=64
#        TARGETS="holdfast nginx"  PORT_BASE=18650  SHARED_BENCH  BENCH_STATE
# needs: apt-get install nginx openssl python3
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,21p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
parse_args "$@"

IDLE=${IDLE:-10000}; REPEAT=${REPEAT:-3}; MODES=${MODES:-"keepalive half-head h2"}
TARGETS=${TARGETS:-"holdfast nginx"}; PORT_BASE=${PORT_BASE:-18650}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
PATH_=/1k
POOL_IDLE=${POOL_IDLE:-64}
for v in IDLE REPEAT POOL_IDLE; do [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v: a whole number above 0"; done
for m in $MODES; do case $m in keepalive|half-head|h2) ;; *) die "unknown mode $m" ;; esac; done
for t in $TARGETS; do case $t in holdfast|nginx) ;; *) die "unknown target $t" ;; esac; done
for c in nginx openssl python3 curl; do command -v "$c" >/dev/null || die "no $c (apt-get install nginx openssl python3 curl)"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) > IDLE + 200 )) || die "ulimit -n is $(ulimit -n): too low for IDLE=$IDLE"

O_PORT=$PORT_BASE
declare -A PORT=([holdfast]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 2)))
declare -A TLS_PORT=([holdfast]=$((PORT_BASE + 3)) [nginx]=$((PORT_BASE + 4)))
HF_ADMIN=$((PORT_BASE + 5))
D="$BENCH_STATE/idle"
build_holdfast "build it (cargo build --release -p holdfast) or set HOLDFAST_BIN"
setup_ports "$O_PORT" "${PORT[@]}" "${TLS_PORT[@]}" "$HF_ADMIN"
rm -rf "$D"; mkdir -p "$D"
new_results_dir
{ env_head "servers on CPU $TARGET_CPU, clients and origin on CPU $LOADGEN_CPU"
  echo "IDLE=$IDLE REPEAT=$REPEAT MODES=$MODES; nginx: $(nginx -v 2>&1); ulimit -n $(ulimit -n)"
  machine_load start; } > "$out/env.txt"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=idle.test -addext "subjectAltName=DNS:idle.test" \
  -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null || die "openssl could not make the certificate"
start_origin_nginx "$D/origin" "$O_PORT" TERM origin

conf_holdfast() {
  local d="$D/holdfast"; mkdir -p "$d"
  ACCESS_LOG=1 holdfast_conf "${PORT[holdfast]}" "$HF_ADMIN" "$d" "tls_listen = [\"$HOST:${TLS_PORT[holdfast]}\"]
client_header_timeout = \"10m\"

[[edge.tls]]
cert = \"$D/cert.pem\"
key = \"$D/key.pem\"" | sed "/^servers = /a max_idle_per_server = $POOL_IDLE" > "$d/holdfast.toml"
  "$HOLDFAST_BIN" check "$d/holdfast.toml" > "$d/check.txt" 2>&1 \
    || { cat "$d/check.txt" >&2; die "holdfast check rejects $d/holdfast.toml"; }
}
conf_nginx() {
  local d="$D/nginx"; mkdir -p "$d/tmp"
  nginx_conf "$d" <<EOC | sed -e 's/worker_connections [0-9]*/worker_connections 40000/' \
      -e 's/keepalive_timeout 300s/keepalive_timeout 10m/' > "$d/nginx.conf"
  client_header_timeout 10m;
  upstream origin { server $HOST:$O_PORT; keepalive $POOL_IDLE; }
  server {
    listen $HOST:${PORT[nginx]} backlog=4096;
    listen $HOST:${TLS_PORT[nginx]} ssl http2 backlog=4096;
    ssl_certificate $D/cert.pem;
    ssl_certificate_key $D/key.pem;
    ssl_protocols TLSv1.3;
    access_log $d/access.log combined buffer=64k flush=1s;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOC
}

# nginx's worker is the child of its master: measure the worker
worker_of() { local c; c=$(pgrep -P "$1" | head -1); echo "${c:-$1}"; }

measure() { # TARGET MODE RUN
  local t=$1 m=$2 r=$3 d="$D/$1" pid port line
  case $t in
    holdfast) conf_holdfast; start_holdfast "$d" ;;
    nginx) conf_nginx; start_nginx "$d" "$TARGET_CPU" TERM nginx ;;
  esac
  pid=$STARTED_PID
  wait_200 "$t" "$pid" "${PORT[$t]}" "$d/stdout.log"
  port=${PORT[$t]}; [ "$m" = h2 ] && port=${TLS_PORT[$t]}
  line=$(timeout $(( IDLE / 100 + 120 )) taskset -c "$LOADGEN_CPU" \
           python3 "$HERE/idle.py" "$m" "$HOST" "$port" "$IDLE" "$(worker_of "$pid")") \
    || { log "$t $m: idle.py failed: $line"; stop "$pid"; return 1; }
  echo "target=$t run=$r $line" | tee -a "$out/runs.txt" >&2
  stop "$pid"
}

for (( r = 1; r <= REPEAT; r++ )); do
  for m in $MODES; do
    for t in $TARGETS; do measure "$t" "$m" "$r"; done
  done
done
machine_load end >> "$out/env.txt"

python3 - "$out/runs.txt" > "$out/results.md" <<'PY'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in open(sys.argv[1])]
per = {}
for r in rows:
    per.setdefault((r["mode"], r["target"]), []).append(float(r["per_conn_kib"]))
print("| mode | target | KiB per idle connection (median) | runs | Holdfast / nginx |")
print("|---|---|---:|---|---:|")
for mode in dict.fromkeys(r["mode"] for r in rows):
    ng = per.get((mode, "nginx"))
    for t in dict.fromkeys(r["target"] for r in rows):
        v = per.get((mode, t))
        if not v:
            continue
        ratio = f"{statistics.median(v) / statistics.median(ng):.1f}×" if t == "holdfast" and ng and statistics.median(ng) > 0 else ""
        print(f"| {mode} | {t} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} | {ratio} |")
PY
print_results "$out" "runs.txt: one line per measurement; env.txt"
