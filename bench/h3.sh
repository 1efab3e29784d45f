#!/usr/bin/env bash
# HTTP/3 against HTTP/2 on the same Holdfast edge, in the same run (issue 19, "Measured").
# One edge (one worker thread, + its QUIC thread; the whole process pinned to EDGE_CPU with
# taskset) in front of one nginx origin; the clients and the origin on LOADGEN_CPU.
#   warm        HTTP/2: h2load --npn-list h2 -n REQUESTS -c CLIENTS -m STREAMS over TLS 1.3;
#               HTTP/3: h3-load (bench/h3-load: Debian's h2load has no HTTP/3) with the same
#               -n -c -m over QUIC.
#   handshakes  one request per new connection, HS_REQUESTS in all, HS_CLIENTS at a time:
#               h2load -n HS_CLIENTS -c HS_CLIENTS -m 1 in a loop (h2load has no
#               connection-per-request flag; it offers no session, so every handshake is full)
#               vs h3-load --new-connections -c HS_CLIENTS (resumption off: full handshakes).
# Per phase: req/s (handshakes/s), the edge's CPU ms per 1,000 requests (utime+stime of the
# edge from /proc/PID/stat before/after, so the clients' CPU is not counted), p99 latency,
# failed requests; medians of REPEAT runs (order h2/h3 alternating); ratios h3/h2.
#
#   bench/h3.sh [--no-build]
#
# Env: HOLDFAST_BIN (target/release/holdfast), H3LOAD_BIN (target/release/h3-load); both
# built (cargo build --release -p holdfast -p h3-load) unless --no-build. REQUESTS=100000
# CLIENTS=10 STREAMS=10 HS_REQUESTS=6000 HS_CLIENTS=50 REPEAT=3 EDGE_CPU=1 LOADGEN_CPU=0
# BENCH_STATE=/tmp/bench-state (results in $BENCH_STATE/h3/results/<date>/).
# Traffic stays on 127.0.0.1. The load (`uptime`) is printed before and after.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,23p' "$0"; exit 0 ;; esac
NO_BUILD=${NO_BUILD:-0}; [ "${1:-}" = "--no-build" ] && NO_BUILD=1
REQUESTS=${REQUESTS:-100000}; CLIENTS=${CLIENTS:-10}; STREAMS=${STREAMS:-10}; REPEAT=${REPEAT:-3}
HS_REQUESTS=${HS_REQUESTS:-6000}; HS_CLIENTS=${HS_CLIENTS:-50}
EDGE_CPU=${EDGE_CPU:-1}; LOADGEN_CPU=${LOADGEN_CPU:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HOLDFAST_BIN=${HOLDFAST_BIN:-$TARGET_DIR/release/holdfast}
H3LOAD_BIN=${H3LOAD_BIN:-$TARGET_DIR/release/h3-load}
BENCH_STATE=${BENCH_STATE:-/tmp/bench-state}
SUITE=TLS_AES_128_GCM_SHA256
die() { echo "h3.sh: $*" >&2; exit 1; }
for tool in h2load nginx openssl taskset python3 curl; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/test installs it)"
done
[ "$HS_REQUESTS" -ge "$HS_CLIENTS" ] || die "HS_REQUESTS must be at least HS_CLIENTS"
if [ "$NO_BUILD" = 0 ]; then (cd "$ROOT" && cargo build --release -p holdfast -p h3-load); fi
[ -x "$HOLDFAST_BIN" ] || die "no binary at $HOLDFAST_BIN"
[ -x "$H3LOAD_BIN" ] || die "no binary at $H3LOAD_BIN (cargo build --release -p h3-load)"

D=$(mktemp -d /tmp/holdfast-h3-bench.XXXXXX)
chmod 755 "$D"   # nginx workers run as another user
out="$BENCH_STATE/h3/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out/raw"; ln -sfn "$out" "$BENCH_STATE/h3/results/latest"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
O_PORT=$(free_port); TLS_PORT=$(free_port); ADMIN_PORT=$(free_port)

# A CA and a leaf for bench.test (rustls, in h3-load, verifies: it wants a SAN, and a leaf
# that is not a CA); the edge serves the leaf to both clients.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench-ca -keyout "$D/ca.key" -out "$D/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.test \
  -keyout "$D/site.key" -out "$D/site.csr" 2>/dev/null
printf 'subjectAltName=DNS:bench.test\nbasicConstraints=critical,CA:FALSE\n' > "$D/leaf.ext"
openssl x509 -req -in "$D/site.csr" -CA "$D/ca.pem" -CAkey "$D/ca.key" -CAcreateserial \
  -days 2 -extfile "$D/leaf.ext" -out "$D/site.pem" 2>/dev/null || die "openssl could not sign the leaf"

printf 'hello from the origin\n' > "$D/index.html"
cat > "$D/nginx.conf" <<EOF
daemon off; worker_processes 1; pid $D/nginx.pid; error_log $D/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$O_PORT; root $D; keepalive_requests 100000; } }
EOF
taskset -c "$LOADGEN_CPU" nginx -c "$D/nginx.conf" -p "$D" & pids+=($!)

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
HOLDFAST_LOG=warn taskset -c "$EDGE_CPU" "$HOLDFAST_BIN" run --config "$D/edge.toml" 2> "$out/edge.log" & EDGE=$!; pids+=($EDGE)
for _ in $(seq 100); do curl -skf "https://127.0.0.1:$TLS_PORT/index.html" >/dev/null 2>&1 && break; sleep 0.1; done
curl -skf "https://127.0.0.1:$TLS_PORT/index.html" >/dev/null || { tail -20 "$out/edge.log" >&2; die "the edge does not answer"; }

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$EDGE/stat"; }
URL2="https://bench.test:$TLS_PORT/index.html"   # h2load: SNI bench.test, connected to 127.0.0.1
URL3="https://127.0.0.1:$TLS_PORT/index.html"    # h3-load: --server-name bench.test
h2() { timeout 300 taskset -c "$LOADGEN_CPU" h2load --npn-list h2 --tls13-ciphers="$SUITE" \
  --connect-to "127.0.0.1:$TLS_PORT" "$@" "$URL2"; }
h3() { timeout 300 taskset -c "$LOADGEN_CPU" "$H3LOAD_BIN" --ca "$D/ca.pem" --server-name bench.test \
  --timeout 240 "$@" "$URL3"; }
h2_field() { # FILE WHAT: succeeded | failed | rps | secs from h2load's summary
  case $2 in
    succeeded) awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^succeeded/) print $i }' "$1" | head -1 ;;
    failed) awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^(failed|errored|timeout)/) s += $i; print s + 0 }' "$1" | head -1 ;;
    rps) awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$1" ;;
    secs) awk '/^finished in/ { v = $3; gsub(",", "", v); if (v ~ /ms$/) { sub("ms", "", v); v /= 1000 } else if (v ~ /us$/) { sub("us", "", v); v /= 1e6 } else sub("s", "", v); print v }' "$1" ;;
  esac
}
h3_field() { grep -oE "(^| )$2=[^ ]+" <(grep '^h3-load:' "$1") | cut -d= -f2; }
p99_of_logs() { # h2load --log-file files -> p99 ms of "microseconds until end of response"
  cat "$@" | awk -F'\t' 'NF >= 3 && $2 != -1 { print $3 }' | sort -n | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit } i = int(NR * 0.99 + 0.999999); if (i < 1) i = 1; printf "%.3f\n", a[i] / 1000 }'
}
# One measurement: appends "phase proto run req/s cpu_ms_per_1k p99_ms succeeded failed" to runs.tsv.
record() { # PHASE PROTO RUN T0 T1 RPS OK FAILED P99
  awk -v ph="$1" -v pr="$2" -v run="$3" -v t="$(( $5 - $4 ))" -v hz="$HZ" -v r="$6" -v ok="$7" -v f="$8" -v p="$9" \
    'BEGIN { printf "%s\t%s\t%s\t%.1f\t%.2f\t%s\t%d\t%d\n", ph, pr, run, r, (ok > 0 ? t / hz * 1e6 / ok : 0), p, ok, f }' \
    | tee -a "$out/runs.tsv" >&2
}
warm_h2() { # RUN
  local raw="$out/raw/warm-h2-$1.txt" log="$out/raw/warm-h2-$1.log" t0 t1 ok
  t0=$(cpu_ticks); h2 -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" --log-file="$log" > "$raw" 2>&1 || true; t1=$(cpu_ticks)
  ok=$(h2_field "$raw" succeeded); [ "${ok:-0}" -gt 0 ] || { tail -5 "$raw" >&2; die "h2load failed ($raw)"; }
  grep -q "Application protocol: h2" "$raw" || die "h2load did not negotiate h2 ($raw)"
  record warm h2 "$1" "$t0" "$t1" "$(h2_field "$raw" rps)" "$ok" "$(h2_field "$raw" failed)" "$(p99_of_logs "$log")"
}
warm_h3() { # RUN
  local raw="$out/raw/warm-h3-$1.txt" t0 t1 ok
  t0=$(cpu_ticks); h3 -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" > "$raw" 2>&1 || true; t1=$(cpu_ticks)
  ok=$(h3_field "$raw" succeeded); [ "${ok:-0}" -gt 0 ] || { tail -5 "$raw" >&2; die "h3-load failed ($raw)"; }
  record warm h3 "$1" "$t0" "$t1" "$(h3_field "$raw" req_per_s)" "$ok" "$(h3_field "$raw" failed)" "$(h3_field "$raw" p99_ms)"
}
hs_h2() { # RUN: batches of HS_CLIENTS new connections, one request each
  local raw logs=() t0 t1 ok total=0 failed=0 secs=0 b batches=$(( HS_REQUESTS / HS_CLIENTS ))
  t0=$(cpu_ticks)
  for b in $(seq "$batches"); do
    raw="$out/raw/hs-h2-$1-$b.txt"; logs+=("$out/raw/hs-h2-$1-$b.log")
    h2 -n "$HS_CLIENTS" -c "$HS_CLIENTS" -m 1 --log-file="${logs[-1]}" > "$raw" 2>&1 || true
    ok=$(h2_field "$raw" succeeded); [ "${ok:-0}" -gt 0 ] || { tail -5 "$raw" >&2; die "h2load (new connections) failed ($raw)"; }
    total=$(( total + ok )); failed=$(( failed + $(h2_field "$raw" failed) ))
    secs=$(awk -v a="$secs" -v b="$(h2_field "$raw" secs)" 'BEGIN { print a + b }')
  done
  t1=$(cpu_ticks)
  # req/s over the time h2load itself measured (its process start between batches left out)
  record handshake h2 "$1" "$t0" "$t1" "$(awk -v n="$total" -v s="$secs" 'BEGIN { print n / s }')" "$total" "$failed" "$(p99_of_logs "${logs[@]}")"
  rm -f "${logs[@]}"
}
hs_h3() { # RUN
  local raw="$out/raw/hs-h3-$1.txt" t0 t1 ok
  t0=$(cpu_ticks); h3 -n "$(( HS_REQUESTS / HS_CLIENTS * HS_CLIENTS ))" -c "$HS_CLIENTS" --new-connections > "$raw" 2>&1 || true; t1=$(cpu_ticks)
  ok=$(h3_field "$raw" succeeded); [ "${ok:-0}" -gt 0 ] || { tail -5 "$raw" >&2; die "h3-load (new connections) failed ($raw)"; }
  record handshake h3 "$1" "$t0" "$t1" "$(h3_field "$raw" req_per_s)" "$ok" "$(h3_field "$raw" failed)" "$(h3_field "$raw" req_p99_ms)"
}

{
  echo "uptime before: $(uptime)"
  echo "edge: $HOLDFAST_BIN ($(stat -c '%y' "$HOLDFAST_BIN" | cut -d. -f1)), 1 worker thread + its QUIC thread, pinned to CPU $EDGE_CPU; clients and origin nginx on CPU $LOADGEN_CPU; $(nproc) CPUs"
  echo "warm: $REQUESTS requests, $CLIENTS clients x $STREAMS streams; handshakes: $HS_REQUESTS requests, one per new connection, $HS_CLIENTS at a time; repeat $REPEAT"
  echo "TLS 1.3 $SUITE, X25519, ECDSA P-256; h2load $(h2load --version | awk '{print $2}'), h3-load $("$H3LOAD_BIN" --version | awk '{print $2}')"
} | tee "$out/env.txt"
printf 'phase\tproto\trun\treq_per_s\tedge_cpu_us_per_req\tp99_ms\tsucceeded\tfailed\n' > "$out/runs.tsv"
echo "warm-up (not counted)" >&2
h2 -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" > /dev/null 2>&1 || true
h3 -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" > /dev/null 2>&1 || true
for i in $(seq "$REPEAT"); do
  if [ $(( i % 2 )) = 1 ]; then warm_h2 "$i"; warm_h3 "$i"; hs_h2 "$i"; hs_h3 "$i"
  else warm_h3 "$i"; warm_h2 "$i"; hs_h3 "$i"; hs_h2 "$i"; fi
done
kill -0 "$EDGE" 2>/dev/null || die "the edge exited during the run (see $out/edge.log)"
curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" > "$out/metrics.txt" || true
grep -E '^holdfast_quic_(handshakes|handshake_errors|retries|refused|lost_packets)_total' "$out/metrics.txt" | tee -a "$out/env.txt" || true
echo "uptime after: $(uptime)" | tee -a "$out/env.txt"

python3 - "$out/runs.tsv" > "$out/report.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(phase, proto, key):
    v = [float(r[key]) for r in rows if r["phase"] == phase and r["proto"] == proto and r[key] not in ("", "nan")]
    return statistics.median(v) if v else float("nan")
def tot(phase, proto, key):
    return sum(int(r[key]) for r in rows if r["phase"] == phase and r["proto"] == proto)
client = {"h2": "h2load", "h3": "h3-load"}
print("| phase | protocol | client | req/s | edge CPU ms / 1,000 req | p99 ms | succeeded | failed |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for phase in ("warm", "handshake"):
    m = {}
    for proto in ("h2", "h3"):
        m[proto] = [med(phase, proto, k) for k in ("req_per_s", "edge_cpu_us_per_req", "p99_ms")]
        r, c, p = m[proto]
        name = "HTTP/2 (TLS 1.3)" if proto == "h2" else "HTTP/3 (QUIC)"
        extra = " --new-connections" if phase == "handshake" and proto == "h3" else ""
        print(f"| {phase} | {name} | {client[proto]}{extra} | {r:,.0f} | {c:.1f} | {p:.2f} | {tot(phase, proto, 'succeeded')} | {tot(phase, proto, 'failed')} |")
    (r2, c2, p2), (r3, c3, p3) = m["h2"], m["h3"]
    print(f"| {phase} | **h3 / h2** | | **{r3 / r2:.2f}** | **{c3 / c2:.2f}** | {p3 / p2:.2f} | | |")
n = len({r["run"] for r in rows})
print()
print(f"Medians of {n} runs. Edge CPU = utime+stime of the edge process from /proc/PID/stat before and")
print("after each client run (the clients' CPU is not counted; 1 ms per 1,000 requests = 1 µs per")
print("request). The two clients differ (h2load, C, nghttp2 + OpenSSL; h3-load, Rust, quinn + h3 +")
print("rustls), so the req/s and p99 ratios reflect the clients as well as the edge; edge CPU per")
print("request does not. Handshake rows: one request per new connection, every TLS 1.3 handshake")
print("full (no resumption), CPU and req/s per handshake+request; p99 there is the request after")
print("the handshake for both (h2load --log-file; h3-load req_p99_ms).")
PY
cat "$out/report.md"
echo "results: $out"
