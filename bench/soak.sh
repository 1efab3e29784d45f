#!/usr/bin/env bash
# Soak: a release build of Holdfast under a paced mixed load for DURATION seconds (default
# 3600), with a config reload every RELOAD_EVERY s, an artifact update (bot feature file and an
# IP list) every ARTIFACT_EVERY s and an origin that flaps (SIGKILL, then back FLAP_EVERY/2 s
# later). Every SAMPLE s it records Holdfast's RSS, open fds, threads and connections; at the
# end it prints the table and a verdict, and exits 1 when the verdict fails (see
# bench/README.md, "Soak"):
#   RSS and fds flat  the mean of the last sixth of the run within 10 % (fds: 10 % or 8) of
#                     the mean from 1/6 to 1/3 of it (minutes 50-60 vs 10-20 of an hour)
#   no edge-made 5xx  a 5xx carrying the edge's own error page; /oops is the origin's own 503
#   no panics         in Holdfast's log;  and Holdfast still running, every reload applied
# Load: wrk over HTTP/1.1 (bench/soak.lua: pass-through, cache hits and misses, the shielded
# route, the challenge route, origin 503s), h2load over TLS with ALPN h2, a new TLS connection
# by curl every second, WebSocket echo sessions (bench/soak_ws.py). Everything on 127.0.0.1;
# every process stops by DURATION + 30 s.
#
# usage: bench/soak.sh [--no-build] [DURATION]
# env:   NO_BUILD=1  HOLDFAST_BIN  RATE=400 (wrk req/s)  CONNS=16  H2_RATE=100  H2_CONNS=4
#        WS_SESSIONS=4  RELOAD_EVERY=30  ARTIFACT_EVERY=60 (under 600 s: DURATION/6 and /4)
#        FLAP_EVERY=20  SAMPLE (10, or DURATION/12 when shorter)  CACHE_MEMORY=4MiB  THREADS=2
#        LOADS=wrk,h2,tls,ws (which clients run)  PORT_BASE=18690  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,22p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
DURATION=${DURATION:-3600}
args=()
for a in "$@"; do
  if [[ "$a" =~ ^[0-9]+$ ]]; then DURATION=$a; else args+=("$a"); fi
done
parse_args ${args[@]+"${args[@]}"}

RATE=${RATE:-400}; CONNS=${CONNS:-16}; H2_RATE=${H2_RATE:-100}; H2_CONNS=${H2_CONNS:-4}
WS_SESSIONS=${WS_SESSIONS:-4}; # short runs (under 10 min) change things more often, so that a 60 s run still has several
RELOAD_EVERY=${RELOAD_EVERY:-$(( DURATION < 600 ? (DURATION / 6 > 5 ? DURATION / 6 : 5) : 30 ))}
ARTIFACT_EVERY=${ARTIFACT_EVERY:-$(( DURATION < 600 ? (DURATION / 4 > 5 ? DURATION / 4 : 5) : 60 ))}
FLAP_EVERY=${FLAP_EVERY:-20}; CACHE_MEMORY=${CACHE_MEMORY:-4MiB}; THREADS=${THREADS:-2}
LOADS=${LOADS:-wrk,h2,tls,ws}
PORT_BASE=${PORT_BASE:-18690}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}; ACCESS_LOG=0
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$DURATION" -ge 30 ]] || die "DURATION: whole seconds, at least 30"
for v in RATE CONNS H2_RATE H2_CONNS WS_SESSIONS RELOAD_EVERY ARTIFACT_EVERY FLAP_EVERY THREADS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v: a whole number above 0"
done
if [ -z "${SAMPLE:-}" ]; then SAMPLE=$(( DURATION / 12 )); (( SAMPLE > 10 )) && SAMPLE=10; (( SAMPLE < 1 )) && SAMPLE=1; fi
for t in wrk h2load openssl curl python3 nginx; do command -v "$t" >/dev/null || die "$t not installed (the shared setup.sh installs it)"; done

P_HTTP=$PORT_BASE; P_TLS=$((PORT_BASE + 1)); P_ADMIN=$((PORT_BASE + 2))
P_STABLE=$((PORT_BASE + 3)); P_FLAP=$((PORT_BASE + 4)); P_WS=$((PORT_BASE + 5))
D="$STATE/soak"
PATH_=/pass/1k
rm -rf "$D/stable" "$D/flap" "$D/holdfast" "$D/ws" "$D/tls"
mkdir -p "$D/holdfast" "$D/ws" "$D/tls"
build_holdfast "build it (cargo build --release -p holdfast) or set HOLDFAST_BIN"
setup_ports "$P_HTTP" "$P_TLS" "$P_ADMIN" "$P_STABLE" "$P_FLAP" "$P_WS"

# The flapping origin is restarted by a background loop, outside this shell's tracking: stop
# it from its pid file too.
soak_exit() {
  local rc=$?
  set +e                         # a failing verdict (rc 1) must not stop the clean-up
  [ ! -s "$D/flap/pid" ] || stop_tree "$(cat "$D/flap/pid")" KILL 2
  (exit "$rc"); cleanup
}
trap soak_exit EXIT

new_results_dir
{
  env_head "not pinned (the soak measures resources, not speed); THREADS=$THREADS"
  echo "DURATION=$DURATION RATE=$RATE CONNS=$CONNS H2_RATE=$H2_RATE H2_CONNS=$H2_CONNS WS_SESSIONS=$WS_SESSIONS"
  echo "RELOAD_EVERY=$RELOAD_EVERY ARTIFACT_EVERY=$ARTIFACT_EVERY FLAP_EVERY=$FLAP_EVERY SAMPLE=$SAMPLE CACHE_MEMORY=$CACHE_MEMORY"
  machine_load start
} > "$out/env.txt"

# ---- origins -------------------------------------------------------------------------------
# nginx serving /pass/, /cache/, /api/, /protected/ (1k and 100k each) and /oops (its own 503)
origin_files() { # DIR
  local p
  for p in pass cache api protected; do
    mkdir -p "$1/html/$p"
    head -c 1024 /dev/zero | tr '\0' 'x' > "$1/html/$p/1k"
    head -c 102400 /dev/zero | tr '\0' 'y' > "$1/html/$p/100k"
  done
}
OOPS='location = /oops { return 503 "origin: busy\n"; }'
mkdir -p "$D/stable/html" "$D/flap/html"; origin_files "$D/stable"; origin_files "$D/flap"
start_origin_nginx "$D/stable" "$P_STABLE" QUIT "stable origin" "" "$OOPS"
ORIGIN_SINGLE=1 start_origin_nginx "$D/flap" "$P_FLAP" KILL "flapping origin" "" "$OOPS"
untrack "$ORIGIN_PID"          # soak_exit stops it from its pid file
spawn "$D/ws" "$LOADGEN_CPU" TERM python3 "$HERE/soak_ws.py" origin "$P_WS"
wait_port "$P_WS" 10 || die "the WebSocket origin did not listen on :$P_WS"

# ---- TLS certificate (made now, never committed) and artifacts -------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=soak.test \
  -addext "subjectAltName=DNS:soak.test,IP:127.0.0.1" \
  -keyout "$D/tls/key.pem" -out "$D/tls/cert.pem" 2>"$D/tls/openssl.log" || die "openssl failed ($D/tls/openssl.log)"
# Atomic replacement (a rename), as a deployment would do it.
write_artifacts() { # VERSION
  python3 - "$ROOT/examples/bot-features.json" "$D/holdfast/bot-features.json" "$1" <<'EOP'
import json, sys
src, dst, version = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src) as f:
    doc = json.load(f)
doc["version"] = version
doc["bias"] = -2.0 + (version % 5) * 0.01
with open(dst + ".tmp", "w") as f:
    json.dump(doc, f)
EOP
  mv "$D/holdfast/bot-features.json.tmp" "$D/holdfast/bot-features.json"
  { echo "# version: $1"; echo "127.0.0.$(( 1 + $1 % 2 ))/32"; echo "10.$(( $1 % 250 )).0.0/16"; } > "$D/holdfast/partners.txt.tmp"
  mv "$D/holdfast/partners.txt.tmp" "$D/holdfast/partners.txt"
}
write_artifacts 1

write_config() { # GENERATION
  cat > "$D/holdfast/holdfast.toml.tmp" <<EOC
# bench/soak.sh, generation $1
[edge]
listen = ["$HOST:$P_HTTP"]
tls_listen = ["$HOST:$P_TLS"]
threads = $THREADS
access_log = "off"

[[edge.tls]]
cert = "$D/tls/cert.pem"
key = "$D/tls/key.pem"

[admin]
listen = "$HOST:$P_ADMIN"

[[pools]]
name = "mixed"                 # the stable origin and the flapping one
servers = ["$HOST:$P_STABLE", "$HOST:$P_FLAP"]

[pools.retry]
attempts = 1
on = ["connect", "reset"]

[pools.health]
path = "/pass/1k"
interval = "1s"
unhealthy_after = 2
healthy_after = 2

[[pools]]
name = "stable"
servers = ["$HOST:$P_STABLE"]

[[pools]]
name = "ws"
servers = ["$HOST:$P_WS"]

[[routes]]
name = "pass"
match = { path_prefix = "/pass/" }
pool = "mixed"
timeouts = { connect = "1s", read = "10s" }
response_headers = { set = { "X-Soak-Generation" = "$1" } }

[[routes]]
name = "cache"
match = { path_prefix = "/cache/" }
pool = "stable"
response_headers = { set = { "Cache-Control" = "max-age=$(( 20 + $1 % 2 * 10 ))" } }
cache = { enabled = true, memory = "$CACHE_MEMORY", max_object_size = "64KiB" }

[[routes]]
name = "shield"
match = { path_prefix = "/api/" }
pool = "stable"

[[routes]]
name = "protected"
match = { path_prefix = "/protected/" }
pool = "stable"

[[routes]]
name = "ws"
match = { path_prefix = "/ws/" }
pool = "ws"

[[routes]]
name = "rest"
match = { path_prefix = "/" }
pool = "stable"

[modules.bot]
enabled = true
features = "bot-features.json"

[[limits]]
name = "per-user"
key = "header:x-user"
requests = $(( 4 + $1 % 2 ))
per = "1s"
burst = 8
routes = ["shield"]

[[rules]]
id = "block-probe"
expr = 'request.path.startsWith("/api/wp-admin")'
action = "block"

[[rules]]
id = "guard-protected"
expr = 'request.path.startsWith("/protected/")'
action = "challenge"

[[rules]]
id = "partner-tag"
expr = 'ip_in_list(client.ip, "partners")'
action = "set_header"
header = "x-partner"
value = "yes"

[[ip_lists]]
name = "partners"
file = "partners.txt"

[challenge]
difficulty = 8
EOC
  mv "$D/holdfast/holdfast.toml.tmp" "$D/holdfast/holdfast.toml"
}
write_config 1
"$HOLDFAST_BIN" check "$D/holdfast/holdfast.toml" > "$D/holdfast/check.txt" 2>&1 \
  || { cat "$D/holdfast/check.txt" >&2; die "holdfast check rejects $D/holdfast/holdfast.toml"; }
spawn "$D/holdfast" "0-$(( $(nproc) - 1 ))" TERM "$HOLDFAST_BIN" run --config "$D/holdfast/holdfast.toml"
HF_PID=$STARTED_PID
wait_200 holdfast "$HF_PID" "$P_HTTP" "$D/holdfast/stdout.log"
log "holdfast up (pid $HF_PID): http :$P_HTTP, https :$P_TLS, admin :$P_ADMIN; soak ${DURATION}s, a sample every ${SAMPLE}s"

# ---- warm-up: fill the cache to its bound (until the first eviction, at most 60 s), so that
# the cache filling up is not read as a leak -------------------------------------------------
metric_sum() { # NAME < metrics text
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 } END { if (f) printf "%d", s; else printf "-" }'
}
SOAK_WARM=1 timeout 70 wrk -t1 -c8 -d60s -s "$HERE/soak.lua" "http://$HOST:$P_HTTP/" > "$out/warmup.txt" 2>&1 &
warm_pid=$!; track "$warm_pid" TERM
for (( i = 0; i < 60; i++ )); do
  sleep 1
  ev=$(curl -s --max-time 2 "http://$HOST:$P_ADMIN/metrics" | metric_sum holdfast_cache_evictions_total || true)
  [[ "$ev" =~ ^[0-9]+$ ]] && (( ev > 0 )) && break
done
stop "$warm_pid"
log "warm-up: the cache holds $(curl -s --max-time 2 "http://$HOST:$P_ADMIN/metrics" | metric_sum holdfast_cache_objects) objects after ${i}s (first eviction: ${ev:-none})"

# ---- load (each bounded by timeout) ------------------------------------------------------------
START=$(date +%s); END=$(( START + DURATION ))
on() { [[ ",$LOADS," == *",$1,"* ]]; }
on wrk && SOAK_DELAY_MS=$(( CONNS * 1000 / RATE )) timeout $(( DURATION + 20 )) \
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$HERE/soak.lua" "http://$HOST:$P_HTTP/" \
  > "$out/wrk.txt" 2>&1 &
on wrk && track $! TERM
on h2 && timeout $(( DURATION + 20 )) h2load -c"$H2_CONNS" -m4 --rps=$(( H2_RATE / H2_CONNS > 0 ? H2_RATE / H2_CONNS : 1 )) \
  -D "$DURATION" -H "user-agent: Mozilla/5.0 soak-h2" \
  "https://$HOST:$P_TLS/pass/1k" "https://$HOST:$P_TLS/cache/1k?k=7" "https://$HOST:$P_TLS/cache/1k?k=8" \
  > "$out/h2load.txt" 2>&1 &
on h2 && track $! TERM
on ws && timeout $(( DURATION + 20 )) python3 "$HERE/soak_ws.py" client "$P_HTTP" "$DURATION" "$WS_SESSIONS" \
  > "$out/ws.txt" 2>&1 &
on ws && track $! TERM
# a new TLS connection (handshake) every second, alternately HTTP/1.1 and h2
on tls && ( i=0
  while [ "$(date +%s)" -lt "$END" ]; do
    v=--http1.1; (( i++ % 2 )) && v=--http2
    code=$(curl -sk "$v" -o /dev/null -w '%{http_code}' --max-time 5 "https://$HOST:$P_TLS/pass/1k" || true)
    echo "$(( $(date +%s) - START ))	$v	$code"
    sleep 1
  done ) > "$out/tls.tsv" &
on tls && track $! TERM

# ---- changes: reloads, artifacts, the flapping origin ---------------------------------------
( gen=1
  while sleep "$RELOAD_EVERY" && [ "$(date +%s)" -lt "$END" ]; do
    gen=$(( gen + 1 )); write_config "$gen"
    code=$(curl -s -o "$D/holdfast/reload.json" -w '%{http_code}' --max-time 10 -X POST "http://$HOST:$P_ADMIN/reload" || true)
    echo "$(( $(date +%s) - START ))	$gen	$code	$(tr -d '\n' < "$D/holdfast/reload.json" | head -c 200)"
  done ) > "$out/reloads.tsv" &
track $! TERM
( v=1
  while sleep "$ARTIFACT_EVERY" && [ "$(date +%s)" -lt "$END" ]; do
    v=$(( v + 1 )); write_artifacts "$v"
    echo "$(( $(date +%s) - START ))	$v"
  done ) > "$out/artifacts.tsv" &
track $! TERM
( half=$(( FLAP_EVERY / 2 > 0 ? FLAP_EVERY / 2 : 1 ))
  while sleep "$half" && [ "$(date +%s)" -lt "$END" ]; do
    pid=$(cat "$D/flap/pid" 2>/dev/null || true)
    [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    echo "$(( $(date +%s) - START ))	down"
    sleep "$half"
    [ "$(date +%s)" -lt "$END" ] || break
    launch "$D/flap/pid" "$D/flap/stdout.log" "$LOADGEN_CPU" nginx -p "$D/flap" -c "$D/flap/nginx.conf" -e "$D/flap/error.log" > /dev/null
    echo "$(( $(date +%s) - START ))	up"
  done ) > "$out/flaps.tsv" 2> "$out/flaps.err" &
track $! TERM

# ---- samples ---------------------------------------------------------------------------------
echo "t_s	rss_kib	hwm_kib	fds	threads	conns_active	conns_total	tcp_estab	cache_objects" > "$out/samples.tsv"
next=$START
while :; do
  now=$(date +%s)
  if ! pid_alive "$HF_PID"; then log "holdfast exited during the soak"; echo "holdfast exited at $(( now - START )) s" > "$out/died.txt"; break; fi
  m=$(curl -s --max-time 2 "http://$HOST:$P_ADMIN/metrics" || true)
  read -r rss hwm thr < <(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } /^Threads:/ { t = $2 } END { print r, h, t }' "/proc/$HF_PID/status")
  fds=$(find "/proc/$HF_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  estab=$(ss -Htn state established "( sport = :$P_HTTP or sport = :$P_TLS )" 2>/dev/null | wc -l)
  printf '%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $(( now - START )) "$rss" "$hwm" "$fds" "$thr" \
    "$(metric_sum holdfast_http_connections_active <<< "$m")" "$(metric_sum holdfast_http_connections_total <<< "$m")" \
    "$estab" "$(metric_sum holdfast_cache_objects <<< "$m")" >> "$out/samples.tsv"
  [ "$now" -lt "$END" ] || break
  next=$(( next + SAMPLE )); (( next > END )) && next=$END
  while [ "$(date +%s)" -lt "$next" ]; do sleep 1; done
done
scrape "$P_ADMIN" "$out/holdfast"
log "load ends; waiting for the clients (at most 30 s)"
for (( i = 0; i < 30; i++ )); do
  grep -q '^SOAK requests' "$out/wrk.txt" 2>/dev/null && grep -q '^WS ' "$out/ws.txt" 2>/dev/null \
    && grep -q 'status codes' "$out/h2load.txt" 2>/dev/null && break
  sleep 1
done
cp "$D/holdfast/stdout.log" "$out/holdfast.log"
machine_load end >> "$out/env.txt"
LOADS=$LOADS SOAK_RSS_TOLERANCE=${SOAK_RSS_TOLERANCE:-0.10} SOAK_FD_SLACK=${SOAK_FD_SLACK:-8} python3 "$HERE/soak_report.py" "$out" "$DURATION" > /dev/null || rc=$?
print_results "$out" "results.md, samples.tsv, env.txt, wrk.txt, h2load.txt, ws.txt, tls.tsv, reloads.tsv, artifacts.tsv, flaps.tsv, holdfast.log"
exit "${rc:-0}"
