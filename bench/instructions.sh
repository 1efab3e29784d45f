#!/usr/bin/env bash
# Instructions per proxied request, Holdfast against the bare hyper proxy (bench/minimal-proxy),
# under `valgrind --tool=callgrind`: deterministic where timings on a shared machine are not.
# Each proxy runs alone under callgrind (one worker thread; Holdfast with the config of
# bench/run.sh: JSON access log, metrics and request ids on, one route, one pool, keep-alive
# both sides) in front of the shared harness's nginx origin; h2load sends WARMUP_REQUESTS
# (not counted: pools, buffers and caches fill), the counters are zeroed, h2load sends
# exactly REQUESTS more over CONNS keep-alive HTTP/1.1 connections, and the counters are
# dumped. Instructions per request = every thread's instructions in that interval / REQUESTS.
#
# usage: bench/instructions.sh [--no-build] [--update-budget]
#   --no-build        use target/release/{holdfast,minimal-proxy} as they are (NO_BUILD=1)
#   --update-budget   write today's figure + BUDGET_SLACK into the budget file instead of checking
# env: REQUESTS=5000 WARMUP_REQUESTS=1000 CONNS=8 REQ_PATH=/1k  PORT_BASE=18480 (origin,
#      holdfast, minimal-proxy, holdfast admin: PORT_BASE … +3)  BUDGET_FILE=bench/instructions.budget
#      BUDGET_SLACK=2 (percent, for --update-budget)  STARTUP_TIMEOUT=180  BENCH_STATE=/tmp/bench-state
#      HOLDFAST_BIN MINIMAL_BIN  SHARED_BENCH (the harness: origin.sh, lib.sh)
#      Attribution (what a feature costs per request; no budget check when set):
#      EDGE_EXTRA / POOL_EXTRA / ROUTE_EXTRA  TOML lines added to [edge] / the pool / the route (e.g.
#      EDGE_EXTRA='idle_release_after = "0s"', POOL_EXTRA=$'[pools.retry]\nattempts = 0')
#      ROUTE_EXTRA=$'cache = { enabled = true }\nresponse_headers = { set = { "Cache-Control" = "max-age=600" } }'
#      for cache hits)  NO_ACCESS_LOG=1 (access_log = "off")  ONLY_HOLDFAST=1 (skip minimal-proxy)
# Exit status: 0 within budget, 1 over it (or a failed run), 2 on bad usage.
# Output: $BENCH_STATE/instructions/<timestamp>/ — result.tsv, the callgrind dumps
# (`callgrind_annotate FILE` shows where the instructions go), logs.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$HERE/../../shared/bench}"
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "instructions: no shared harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
SHARED_BENCH="$(cd "$SHARED_BENCH" && pwd)"
export BENCH_STATE="${BENCH_STATE:-/tmp/bench-state}"
# shellcheck source=/dev/null
source "$SHARED_BENCH/lib.sh"   # log, die, launch, stop_tree, pid_alive, port_listening; STATE, HOST

NO_BUILD=${NO_BUILD:-0}; UPDATE=0
REQUESTS=${REQUESTS:-5000}; WARMUP_REQUESTS=${WARMUP_REQUESTS:-1000}; CONNS=${CONNS:-8}
REQ_PATH=${REQ_PATH:-/1k}; PORT_BASE=${PORT_BASE:-18480}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-180}
BUDGET_FILE=${BUDGET_FILE:-$HERE/instructions.budget}; BUDGET_SLACK=${BUDGET_SLACK:-2}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) NO_BUILD=1; shift ;;
    --update-budget) UPDATE=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "instructions: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
ORIGIN_PORT=$PORT_BASE; HOLDFAST_PORT=$((PORT_BASE + 1)); MINIMAL_PORT=$((PORT_BASE + 2))
ADMIN_PORT=$((PORT_BASE + 3))
HOLDFAST_BIN=${HOLDFAST_BIN:-$ROOT/target/release/holdfast}
MINIMAL_BIN=${MINIMAL_BIN:-$ROOT/target/release/minimal-proxy}

for tool in valgrind callgrind_control h2load curl nginx; do
  command -v "$tool" >/dev/null || die "$tool not installed (Debian: valgrind, nghttp2-client, curl, nginx; scripts/test installs them)"
done

# ---- cleanup: only what this script started, by PID -----------------------------------
started_origin=0; pids=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${pids[@]:-}"; do [ -n "$p" ] && stop_tree "$p" TERM 20; done
  [ "$started_origin" = 1 ] && { "$SHARED_BENCH/origin.sh" stop "$ORIGIN_PORT" || true; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$NO_BUILD" != 1 ]; then
  log "building holdfast and minimal-proxy (cargo build --release)"
  (cd "$ROOT" && cargo build --release -p holdfast -p minimal-proxy)
fi
[ -x "$HOLDFAST_BIN" ] || die "no $HOLDFAST_BIN (build it, or set HOLDFAST_BIN)"
[ -x "$MINIMAL_BIN" ] || die "no $MINIMAL_BIN (build it, or set MINIMAL_BIN)"

out="$STATE/instructions/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
if "$SHARED_BENCH/origin.sh" status "$ORIGIN_PORT" >/dev/null 2>&1; then
  log "origin already running on :$ORIGIN_PORT; using it"
else
  "$SHARED_BENCH/origin.sh" start "$ORIGIN_PORT" "${REQ_PATH#/}"
  started_origin=1
fi

# The bench/run.sh configuration, on this script's ports.
access_log="$out/holdfast-access.log"
[ "${NO_ACCESS_LOG:-0}" = 1 ] && access_log=off
attribution=0
[ -n "${EDGE_EXTRA:-}${POOL_EXTRA:-}${ROUTE_EXTRA:-}" ] || [ "${NO_ACCESS_LOG:-0}" = 1 ] && attribution=1
config="$out/holdfast.toml"
cat > "$config" <<EOF
[edge]
listen = ["$HOST:$HOLDFAST_PORT"]
threads = 1
access_log = "$access_log"
${EDGE_EXTRA:-}

[admin]
listen = "$HOST:$ADMIN_PORT"

[[pools]]
name = "origin"
servers = ["$HOST:$ORIGIN_PORT"]
${POOL_EXTRA:-}

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
${ROUTE_EXTRA:-}
EOF

# h2load with a fixed count; fails unless every request got a 2xx.
load() { # PORT COUNT LOGFILE
  local port=$1 n=$2 logf=$3
  timeout 600 h2load --h1 -n "$n" -c "$CONNS" "http://$HOST:$port$REQ_PATH" > "$logf" 2>&1 \
    || { tail -5 "$logf" >&2; return 1; }
  grep -q "requests: $n total, $n started, $n done, $n succeeded, 0 failed, 0 errored" "$logf" \
    && grep -q "status codes: $n 2xx" "$logf" \
    || { log "h2load did not get $n 2xx answers:"; grep -E 'requests:|status codes:' "$logf" >&2; return 1; }
}

# Run one proxy under callgrind; sets PER_REQUEST to its instructions per request. (Not in
# a subshell: the EXIT trap must see the PID to stop it when something fails.)
PER_REQUEST=""
measure() { # LABEL PORT cmd...
  local label=$1 port=$2; shift 2
  local pid i code dump ir
  pid=$(launch "$out/$label.pid" "$out/$label.log" "${TARGET_CPU:-1}" \
        valgrind --tool=callgrind --callgrind-out-file="$out/$label.callgrind" "$@")
  pids+=("$pid")
  for (( i = 0; i < STARTUP_TIMEOUT * 5; i++ )); do
    pid_alive "$pid" || { tail -20 "$out/$label.log" >&2; die "$label exited during start-up"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST:$port$REQ_PATH" || true)
    [ "${code:-000}" = 200 ] && break
    sleep 0.2
  done
  [ "${code:-000}" = 200 ] || { tail -20 "$out/$label.log" >&2; die "$label did not answer 200 within ${STARTUP_TIMEOUT}s"; }
  load "$port" "$WARMUP_REQUESTS" "$out/$label.warmup.txt" || die "$label: warm-up failed"
  callgrind_control --zero "$pid" > /dev/null || die "callgrind_control --zero $pid failed"
  load "$port" "$REQUESTS" "$out/$label.h2load.txt" || die "$label: measured run failed"
  callgrind_control --dump=measured "$pid" > /dev/null || die "callgrind_control --dump $pid failed"
  dump=$(grep -l '^desc: Trigger: .*measured' "$out/$label.callgrind".* 2>/dev/null | head -1 || true)
  [ -n "$dump" ] || die "$label: no callgrind dump in $out"
  mv "$dump" "$out/$label.measured.callgrind"
  ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$label.measured.callgrind")
  [ -n "$ir" ] || die "$label: no instruction total in the dump"
  stop_tree "$pid" TERM 20
  PER_REQUEST=$(( ir / REQUESTS ))
}

log "callgrind: $WARMUP_REQUESTS warm-up + $REQUESTS measured requests of $REQ_PATH over $CONNS connections, each proxy alone"
measure holdfast "$HOLDFAST_PORT" "$HOLDFAST_BIN" run --config "$config"
hf=$PER_REQUEST
log "holdfast: $hf instructions per request"
if [ "${ONLY_HOLDFAST:-0}" = 1 ]; then
  bare=""
else
  measure hyper-minimal "$MINIMAL_PORT" "$MINIMAL_BIN" --listen "$HOST:$MINIMAL_PORT" --upstream "$HOST:$ORIGIN_PORT"
  bare=$PER_REQUEST
  log "hyper-minimal: $bare instructions per request"
fi
printf 'target\tinstructions_per_request\n' > "$out/result.tsv"
printf 'holdfast\t%s\n' "$hf" >> "$out/result.tsv"
[ -n "$bare" ] && printf 'hyper-minimal\t%s\n' "$bare" >> "$out/result.tsv"
ln -sfn "$out" "$STATE/instructions/latest"

echo "instructions per request ($REQUESTS requests of $REQ_PATH, $CONNS connections; $(valgrind --version))"
echo "  holdfast        $hf"
if [ -n "$bare" ]; then
  echo "  hyper-minimal   $bare"
  echo "  holdfast / hyper-minimal = $(awk -v a="$hf" -v b="$bare" 'BEGIN { printf "%.2f", a / b }')"
fi
echo "  dumps: $out/*.measured.callgrind (callgrind_annotate FILE)"
if [ "$attribution" = 1 ]; then
  echo "  (attribution run: EDGE_EXTRA/POOL_EXTRA/ROUTE_EXTRA/NO_ACCESS_LOG set; the budget applies to the default config only)"
  exit 0
fi

if [ "$UPDATE" = 1 ]; then
  budget=$(( hf + hf * BUDGET_SLACK / 100 ))
  sed -i -E "s/^holdfast_instructions_per_request [0-9]+/holdfast_instructions_per_request $budget/" "$BUDGET_FILE"
  echo "budget set to $budget in $BUDGET_FILE"
  exit 0
fi
budget=$(awk '$1 == "holdfast_instructions_per_request" { print $2 }' "$BUDGET_FILE" 2>/dev/null || true)
[ -n "$budget" ] || die "no holdfast_instructions_per_request line in $BUDGET_FILE"
if [ "$hf" -gt "$budget" ]; then
  echo "FAIL: holdfast runs $hf instructions per request, over the budget of $budget ($BUDGET_FILE)."
  echo "      Find what grew with callgrind_annotate $out/holdfast.measured.callgrind"
  exit 1
fi
echo "ok: within the budget of $budget ($BUDGET_FILE)"
