#!/usr/bin/env bash
# TLS 1.3 + HTTP/2 benchmark (see bench/README.md, "TLS and HTTP/2"): Holdfast's HTTPS edge
# against nginx (`listen ... ssl http2`, the same ECDSA P-256 certificate, TLS 1.3 only, X25519),
# both proxying /1k to the same origin, one at a time, each pinned to TARGET_CPU; h2load on
# LOADGEN_CPU forces the one TLS 1.3 suite (TLS_AES_128_GCM_SHA256) for both. Two parts:
#   warm        h2load -c CONNS -m STREAMS for DURATION s over connections opened once: CPU ms
#               per 1,000 requests of the server's process tree, requests/s.
#   handshakes  one request per connection (h2load -n BATCH -c BATCH, again and again for
#               HS_DURATION s): each is a full TLS 1.3 handshake (no resumption: h2load offers
#               no session); CPU per handshake, and full handshakes/s per core (= handshakes
#               per CPU-second of the server).
# REPEAT times with the target order rotated; medians; ratios Holdfast / nginx.
#
# usage: bench/tls.sh [--no-build]
# env:   NO_BUILD=1  HOLDFAST_BIN  DURATION=10  WARMUP=2  REPEAT=3  CONNS=16  STREAMS=10
#        HS_DURATION=10  BATCH=200  ACCESS_LOG=1 (both log every request; 0: neither)
#        TARGETS="holdfast nginx"  PORT_BASE=18600  SHARED_BENCH  BENCH_STATE
# needs: apt-get install nghttp2-client nginx openssl
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,19p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
parse_args "$@"

DURATION=${DURATION:-10}; WARMUP=${WARMUP:-2}; REPEAT=${REPEAT:-3}; CONNS=${CONNS:-16}; STREAMS=${STREAMS:-10}
HS_DURATION=${HS_DURATION:-10}; BATCH=${BATCH:-200}; ACCESS_LOG=${ACCESS_LOG:-1}
TARGETS=${TARGETS:-"holdfast nginx"}
PORT_BASE=${PORT_BASE:-18600}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
SUITE=TLS_AES_128_GCM_SHA256
D="$BENCH_STATE/tls"
O_PORT=$PORT_BASE
declare -A PORT=([holdfast]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 2)))
HF_ADMIN=$((PORT_BASE + 3))

for c in h2load nginx openssl; do command -v "$c" >/dev/null || die "no $c (apt-get install nghttp2-client nginx openssl)"; done
for t in $TARGETS; do case $t in holdfast|nginx) ;; *) die "unknown target $t" ;; esac; done
build_holdfast "build it or set HOLDFAST_BIN"
for p in "$O_PORT" "${PORT[@]}" "$HF_ADMIN"; do
  if port_listening "$p"; then die "port $p already in use (set PORT_BASE)"; fi
done
rm -rf "$D"; mkdir -p "$D"
new_results_dir

# ---- one certificate for both --------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:$HOST" \
  -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null || die "openssl could not make the certificate"

start_origin_nginx "$D/origin" "$O_PORT" TERM origin

conf_holdfast() {
  local d="$D/holdfast"; mkdir -p "$d"
  cat > "$d/holdfast.toml" <<EOC
[edge]
listen = []
tls_listen = ["$HOST:${PORT[holdfast]}"]
threads = 1
access_log = "$([ "$ACCESS_LOG" = 1 ] && echo "$d/access.log" || echo off)"

[[edge.tls]]
cert = "$D/cert.pem"
key = "$D/key.pem"

[admin]
listen = "$HOST:$HF_ADMIN"

[[pools]]
name = "origin"
servers = ["$HOST:$O_PORT"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
EOC
}
conf_nginx() {
  local d="$D/nginx"; mkdir -p "$d/tmp"
  nginx_conf "$d" <<EOC > "$d/nginx.conf"
  upstream origin {
    server $HOST:$O_PORT;
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen $HOST:${PORT[nginx]} ssl http2 backlog=4096;
    ssl_certificate $D/cert.pem;
    ssl_certificate_key $D/key.pem;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_tickets off;
    http2_max_concurrent_streams 128;
    $([ "$ACCESS_LOG" = 1 ] && echo "access_log $d/access.log combined buffer=64k flush=1s;" || true)
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOC
}

start_target() { # NAME; sets STARTED_PID
  local d="$D/$1" i
  case $1 in
    holdfast) conf_holdfast; start_holdfast "$d" ;;
    nginx) conf_nginx; start_nginx "$d" "$TARGET_CPU" TERM nginx ;;
  esac
  for (( i = 0; i < 100; i++ )); do
    if curl -sk --http2 --max-time 1 -o /dev/null -w '%{http_code}' "https://$HOST:${PORT[$1]}/1k" 2>/dev/null | grep -q 200; then return 0; fi
    pid_alive "$STARTED_PID" || { tail -20 "$d/stdout.log" >&2; die "$1 exited during start-up"; }
    sleep 0.1
  done
  tail -20 "$d/stdout.log" >&2; die "$1 did not answer 200 over HTTPS on :${PORT[$1]}"
}

# utime + stime of PID's process tree, in ticks.
cpu_ticks() {
  local p sum=0 t
  for p in $(tree_pids "$1"); do
    t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
    sum=$(( sum + t ))
  done
  echo "$sum"
}

h2() { # PORT ARGS...: h2load on LOADGEN_CPU with the one suite
  local port=$1; shift
  timeout $(( DURATION + HS_DURATION + 60 )) taskset -c "$LOADGEN_CPU" h2load --tls13-ciphers="$SUITE" "$@" "https://$HOST:$port/1k"
}
succeeded() { awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^succeeded/) print $i }' "$1" | head -1; }

# Warm connections: appends "warm NAME req/s cpu_ms_per_1k" to runs.txt.
measure_warm() { # NAME PID
  local name=$1 pid=$2 raw="$out/raw/warm-$1-$RANDOM.txt" t0 t1 ok rps
  h2 "${PORT[$name]}" -c "$CONNS" -m "$STREAMS" -D "$WARMUP" > /dev/null 2>&1 || true
  t0=$(cpu_ticks "$pid")
  h2 "${PORT[$name]}" -c "$CONNS" -m "$STREAMS" -D "$DURATION" > "$raw" 2>&1 || true
  t1=$(cpu_ticks "$pid")
  ok=$(succeeded "$raw"); rps=$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$raw")
  [ -n "$ok" ] && [ "$ok" -gt 0 ] || { tail -5 "$raw" >&2; die "h2load against $name failed ($raw)"; }
  grep -q "Cipher: $SUITE" "$raw" || die "$name did not negotiate $SUITE ($raw)"
  grep -q "Application protocol: h2" "$raw" || die "$name did not negotiate h2 ($raw)"
  awk -v n="$name" -v r="$rps" -v c="$ok" -v t=$(( t1 - t0 )) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "warm %s %.0f %.4f\n", n, r, (t / hz) * 1000 / c * 1000 }' >> "$out/runs.txt"
  log "warm $name: $rps req/s"
}

# New connection per request: appends "hs NAME handshakes/s cpu_us_per_handshake" to runs.txt.
measure_handshakes() { # NAME PID
  local name=$1 pid=$2 raw="$out/raw/hs-$1-$RANDOM.txt" t0 t1 ok total=0 start end n=0
  t0=$(cpu_ticks "$pid"); start=$(date +%s.%N)
  end=$(( $(date +%s) + HS_DURATION ))
  while [ "$(date +%s)" -lt "$end" ] && [ "$n" -lt 100000 ]; do
    h2 "${PORT[$name]}" -n "$BATCH" -c "$BATCH" -m 1 > "$raw" 2>&1 || true
    ok=$(succeeded "$raw"); ok=${ok:-0}
    [ "$ok" -gt 0 ] || { tail -5 "$raw" >&2; die "h2load (new connections) against $name failed ($raw)"; }
    total=$(( total + ok )); n=$(( n + 1 ))
  done
  t1=$(cpu_ticks "$pid")
  awk -v n="$name" -v c="$total" -v t=$(( t1 - t0 )) -v hz="$(getconf CLK_TCK)" -v s="$start" -v e="$(date +%s.%N)" \
    'BEGIN { printf "hs %s %.0f %.1f\n", n, c / (e - s), (t / hz) * 1e6 / c }' >> "$out/runs.txt"
  log "handshakes $name: $total in ${HS_DURATION}s"
}

{
  env_head "targets on CPU $TARGET_CPU (one at a time), h2load and the origin on CPU $LOADGEN_CPU"
  machine_load start
  echo "warm: h2load -c $CONNS -m $STREAMS -D $DURATION (warm-up $WARMUP s); handshakes: h2load -n $BATCH -c $BATCH -m 1 in a loop for $HS_DURATION s"
  echo "TLS 1.3, $SUITE, X25519, ECDSA P-256 certificate; access log $([ "$ACCESS_LOG" = 1 ] && echo on || echo off) for both; repeat $REPEAT"
  echo "nginx: $(nginx -v 2>&1); h2load: $(h2load --version | head -1); $(openssl version)"
} > "$out/env.txt"

read -r -a order <<< "$TARGETS"
for (( r = 0; r < REPEAT; r++ )); do
  for (( k = 0; k < ${#order[@]}; k++ )); do
    t=${order[$(( (k + r) % ${#order[@]} ))]}
    start_target "$t"; pid=$STARTED_PID
    measure_warm "$t" "$pid"
    measure_handshakes "$t" "$pid"
    stop "$pid"
  done
done
machine_load end >> "$out/env.txt"

# ---- report: medians per target, ratios to nginx -------------------------------------------
python3 - "$out/runs.txt" <<'EOP' | tee "$out/report.txt"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    part, name, a, b = line.split()
    runs.setdefault((part, name), []).append((float(a), float(b)))
med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v), len(v)) for k, v in runs.items()}
names = sorted({n for _, n in med}, key=lambda n: n != "holdfast")
def ratio(x, base):
    return f"{x / base:.2f}" if base else "-"
print("warm connections (TLS 1.3 + h2, /1k proxied)")
print(f"{'server':<10}{'req/s':>10}{'CPU ms/1k req':>15}{'CPU vs nginx':>14}  runs")
nb = med.get(("warm", "nginx"))
for n in names:
    if ("warm", n) in med:
        q, c, k = med[("warm", n)]
        print(f"{n:<10}{q:>10.0f}{c:>15.3f}{ratio(c, nb[1] if nb else 0):>14}  {k}")
print()
print("full handshakes (new connection per request)")
print(f"{'server':<10}{'hs/s seen':>10}{'CPU us/hs':>11}{'hs/s per core':>15}{'vs nginx':>10}  runs")
nb = med.get(("hs", "nginx"))
for n in names:
    if ("hs", n) in med:
        q, c, k = med[("hs", n)]
        per_core = 1e6 / c if c else 0
        base = 1e6 / nb[1] if nb and nb[1] else 0
        print(f"{n:<10}{q:>10.0f}{c:>11.1f}{per_core:>15.0f}{ratio(per_core, base):>10}  {k}")
print("(medians; CPU is utime+stime of the server's process tree; 'vs nginx' = Holdfast / nginx:"
      " CPU below 1 = cheaper, handshakes/s per core above 1 = more)")
EOP
log "results in $out"
