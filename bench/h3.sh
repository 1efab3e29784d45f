#!/usr/bin/env bash
# HTTP/3 against HTTP/2 on the same Holdfast edge, in the same run: h2load (nghttp2-client,
# built with QUIC in Debian) drives `--npn-list h2` over TLS/TCP and `--npn-list h3` over
# QUIC to one edge in front of one nginx origin. Reports requests/s and the edge's CPU
# time per request (utime+stime from /proc, so the load generator's own CPU is not counted),
# and their HTTP/3 ÷ HTTP/2 ratios.
#
#   bench/h3.sh [--no-build]
#
# Env: HOLDFAST_BIN (default target/release/holdfast, built unless --no-build), REQUESTS
# (default 20000), CLIENTS (default 10), STREAMS (default 10), REPEAT (default 3).
# Traffic stays on 127.0.0.1. Say the load (`uptime`, printed) with any figure.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
[ "${1:-}" = "--help" ] && { sed -n '2,13p' "$0"; exit 0; }
NO_BUILD=0; [ "${1:-}" = "--no-build" ] && NO_BUILD=1
REQUESTS=${REQUESTS:-20000}; CLIENTS=${CLIENTS:-10}; STREAMS=${STREAMS:-10}; REPEAT=${REPEAT:-3}
HOLDFAST_BIN=${HOLDFAST_BIN:-$ROOT/target/release/holdfast}
for tool in h2load nginx openssl; do
  command -v "$tool" >/dev/null || { echo "h3.sh: $tool missing (scripts/test installs it)" >&2; exit 1; }
done
if [ "$NO_BUILD" = 0 ]; then (cd "$ROOT" && cargo build --release -p holdfast); fi
[ -x "$HOLDFAST_BIN" ] || { echo "h3.sh: no binary at $HOLDFAST_BIN" >&2; exit 1; }

D=$(mktemp -d /tmp/holdfast-h3-bench.XXXXXX)
chmod 755 "$D"   # nginx workers run as another user
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
O_PORT=$(free_port); TLS_PORT=$(free_port); ADMIN_PORT=$(free_port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench.test -keyout "$D/site.key" -out "$D/site.pem" 2>/dev/null

printf 'hello from the origin\n' > "$D/index.html"
cat > "$D/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $D/nginx.pid; error_log $D/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$O_PORT; root $D; keepalive_requests 100000; } }
EOF
nginx -c "$D/nginx.conf" -p "$D" & pids+=($!)

cat > "$D/edge.toml" <<EOF
[edge]
listen = []
tls_listen = ["127.0.0.1:$TLS_PORT"]
h3_listen = ["127.0.0.1:$TLS_PORT"]
h3 = { max_streams = 256 }
threads = 1
access_log = "off"

[[edge.tls]]
cert = "site.pem"
key = "site.key"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[pools]]
name = "o"
servers = ["127.0.0.1:$O_PORT"]
max_idle_per_server = 256

[[routes]]
name = "all"
match = {}
pool = "o"
EOF
HOLDFAST_LOG=warn "$HOLDFAST_BIN" run --config "$D/edge.toml" & EDGE=$!; pids+=($EDGE)
for _ in $(seq 100); do curl -skf "https://127.0.0.1:$TLS_PORT/index.html" >/dev/null 2>&1 && break; sleep 0.1; done

cpu_ticks() { awk '{print $14+$15}' "/proc/$EDGE/stat"; }
HZ=$(getconf CLK_TCK)

run() { # proto -> "rps cpu_us_per_request"
  local proto=$1 before after out rps done
  before=$(cpu_ticks)
  out=$(h2load --npn-list "$proto" -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" \
    "https://127.0.0.1:$TLS_PORT/index.html" 2>&1)
  after=$(cpu_ticks)
  rps=$(grep -oE 'finished in [0-9.]+[a-z]+, [0-9.]+ req/s' <<<"$out" | grep -oE '[0-9.]+ req/s' | cut -d' ' -f1)
  done=$(grep -oE '[0-9]+ succeeded' <<<"$out" | head -1 | cut -d' ' -f1)
  [ -n "$rps" ] && [ "${done:-0}" -gt 0 ] || { echo "h2load ($proto) failed:" >&2; echo "$out" >&2; exit 1; }
  awk -v r="$rps" -v t=$((after - before)) -v hz="$HZ" -v n="$done" \
    'BEGIN { printf "%s %.1f %d\n", r, t * 1e6 / hz / n, n }'
}

echo "uptime: $(uptime)"
echo "edge: $HOLDFAST_BIN, 1 worker thread (+ the HTTP/3 thread); $REQUESTS requests, $CLIENTS clients x $STREAMS streams"
run h2 >/dev/null; run h3 >/dev/null   # warm-up
printf '%-6s %-4s %12s %16s\n' proto run req/s cpu_us/request
sum_h2r=0; sum_h2c=0; sum_h3r=0; sum_h3c=0
for i in $(seq "$REPEAT"); do
  read -r r2 c2 _ < <(run h2); printf '%-6s %-4s %12s %16s\n' h2 "$i" "$r2" "$c2"
  read -r r3 c3 _ < <(run h3); printf '%-6s %-4s %12s %16s\n' h3 "$i" "$r3" "$c3"
  sum_h2r=$(awk -v a="$sum_h2r" -v b="$r2" 'BEGIN{print a+b}'); sum_h2c=$(awk -v a="$sum_h2c" -v b="$c2" 'BEGIN{print a+b}')
  sum_h3r=$(awk -v a="$sum_h3r" -v b="$r3" 'BEGIN{print a+b}'); sum_h3c=$(awk -v a="$sum_h3c" -v b="$c3" 'BEGIN{print a+b}')
done
awk -v a="$sum_h3r" -v b="$sum_h2r" -v c="$sum_h3c" -v d="$sum_h2c" -v n="$REPEAT" 'BEGIN {
  printf "mean  h2: %.0f req/s, %.1f us CPU/request;  h3: %.0f req/s, %.1f us CPU/request\n", b/n, d/n, a/n, c/n
  printf "ratio h3/h2: req/s %.2f, CPU per request %.2f\n", a/b, c/d }'
echo "uptime: $(uptime)"
