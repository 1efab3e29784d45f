#!/usr/bin/env bash
# Benchmark Holdfast and a bare hyper proxy (bench/minimal-proxy) against nginx, HAProxy
# and Varnish, with the shared harness (../../shared/bench, or $SHARED_BENCH).
#
# usage: bench/run.sh [--only holdfast|minimal] [--no-build] [-- ARGS for the shared run.sh]
#   --only minimal   measure only the minimal proxy (no Holdfast build needed); same as ONLY=minimal
#   --only holdfast  measure only Holdfast; same as ONLY=holdfast
#   --no-holdfast    same as --only minimal
#   --no-build       use the binaries already in target/release; same as NO_BUILD=1
#   -- ARGS          passed on, e.g. `-- --no-peers` or `-- --out DIR`
# env (this script): ONLY  NO_BUILD  SHARED_BENCH  BENCH_STATE=/tmp/bench-state
#      HOLDFAST_PORT=18090  MINIMAL_PORT=18091  ADMIN_PORT=18990  ACCESS_LOG=1 (0: no access log)
#      HOLDFAST_CONFIG (use this file instead of the generated one)  ORIGIN_SIZES (from PATHS)
#      HOLDFAST_BIN, MINIMAL_BIN (default target/release/{holdfast,minimal-proxy})
#      PEERS (peers to start; default: the peers named in TARGETS, else all)  STARTUP_TIMEOUT=30
# env (shared run.sh, passed through): DURATION=10 WARMUP=2 CONNS=64 THREADS=1 PATHS=/1k,/100k
#      REPEAT=3 TARGETS BASELINE=nginx MAX_SECONDS ORIGIN_PORT=18080 TARGET_CPU=1 LOADGEN_CPU=0
# Quick check of the harness: ONLY=minimal DURATION=3 WARMUP=1 REPEAT=1 TARGETS=nginx bench/run.sh
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED_BENCH="${SHARED_BENCH:-$HERE/../../shared/bench}"
[ -x "$SHARED_BENCH/run.sh" ] || { echo "bench: no shared harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
SHARED_BENCH="$(cd "$SHARED_BENCH" && pwd)"
export BENCH_STATE="${BENCH_STATE:-/tmp/bench-state}"
# shellcheck source=/dev/null
source "$SHARED_BENCH/lib.sh"   # log, die, launch, stop_tree, port_listening; STATE, HOST, *_CPU
export ORIGIN_PORT TARGET_CPU LOADGEN_CPU

ONLY=${ONLY:-}; NO_BUILD=${NO_BUILD:-0}
HOLDFAST_PORT=${HOLDFAST_PORT:-18090}; MINIMAL_PORT=${MINIMAL_PORT:-18091}; ADMIN_PORT=${ADMIN_PORT:-18990}
ACCESS_LOG=${ACCESS_LOG:-1}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
PATHS=${PATHS:-/1k,/100k}; export PATHS
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY=${2:-}; shift 2 ;;
    --no-holdfast) ONLY=minimal; shift ;;
    --no-build) NO_BUILD=1; shift ;;
    --) shift; pass=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
case "$ONLY" in
  "") run_holdfast=1; run_minimal=1 ;;
  holdfast) run_holdfast=1; run_minimal=0 ;;
  minimal|hyper-minimal) run_holdfast=0; run_minimal=1 ;;
  *) die "ONLY must be holdfast or minimal, not '$ONLY'" ;;
esac
[ "$(nproc)" -ge 2 ] || log "WARNING: $(nproc) CPU(s); the harness expects 2 (load on CPU $LOADGEN_CPU, target on CPU $TARGET_CPU)"

HOLDFAST_BIN=${HOLDFAST_BIN:-$ROOT/target/release/holdfast}
MINIMAL_BIN=${MINIMAL_BIN:-$ROOT/target/release/minimal-proxy}

# ---- cleanup: only what this script started, by PID --------------------------------
started_origin=0; started_peers=0; holdfast_pid=""; minimal_pid=""; bench_pid=""
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ]; then     # interrupted mid-run: stop the harness and its wrk
    for p in $(tree_pids "$bench_pid"); do kill -TERM "$p" 2>/dev/null || true; done
    stop_tree "$bench_pid" TERM 5
  fi
  [ -n "$holdfast_pid" ] && { stop_tree "$holdfast_pid" TERM 10; rm -f "$STATE/holdfast.pid"; log "holdfast (pid $holdfast_pid) stopped"; }
  [ -n "$minimal_pid" ] && { stop_tree "$minimal_pid" TERM 10; rm -f "$STATE/minimal-proxy.pid"; log "minimal-proxy (pid $minimal_pid) stopped"; }
  [ "$started_peers" = 1 ] && { "$SHARED_BENCH/peers.sh" stop || true; }
  [ "$started_origin" = 1 ] && { "$SHARED_BENCH/origin.sh" stop "$ORIGIN_PORT" || true; }
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build (before anything runs: never compile while measuring) -------------------
if [ "$NO_BUILD" != 1 ]; then
  if [ "$run_holdfast" = 1 ]; then
    log "building holdfast and minimal-proxy (cargo build --release -p holdfast -p minimal-proxy)"
    (cd "$ROOT" && cargo build --release -p holdfast -p minimal-proxy)
  else
    log "building minimal-proxy only (cargo build --release -p minimal-proxy)"
    (cd "$ROOT" && cargo build --release -p minimal-proxy)
  fi
fi
[ "$run_holdfast" = 0 ] || [ -x "$HOLDFAST_BIN" ] || die "no $HOLDFAST_BIN (build failed? or use ONLY=minimal)"
[ "$run_minimal" = 0 ] || [ -x "$MINIMAL_BIN" ] || die "no $MINIMAL_BIN"

# ---- origin and peers (reused, and then left alone, if already running) -------------
"$SHARED_BENCH/setup.sh"
mkdir -p "$STATE"
if "$SHARED_BENCH/origin.sh" status "$ORIGIN_PORT" >/dev/null 2>&1; then
  log "origin already running on :$ORIGIN_PORT; using it (and leaving it running)"
else
  sizes=${ORIGIN_SIZES:-$(tr -d / <<< "$PATHS")}      # /1k,/100k -> 1k,100k
  "$SHARED_BENCH/origin.sh" start "$ORIGIN_PORT" "$sizes"
  started_origin=1
fi
if [ -z "${PEERS:-}" ] && [ -n "${TARGETS:-}" ]; then     # start only the peers to be measured
  PEERS=""
  for t in ${TARGETS//,/ }; do
    case "$t" in nginx|haproxy|varnish-pass|varnish-hit|nginx-cache) PEERS="$PEERS,$t" ;; esac
  done
  PEERS=${PEERS#,}
fi
if "$SHARED_BENCH/peers.sh" status >/dev/null 2>&1; then
  log "peers already running; using them (and leaving them running)"
elif [[ " ${pass[*]:-} " == *" --no-peers "* ]] || { [ -n "${TARGETS:-}" ] && [ -z "${PEERS:-}" ]; }; then
  log "no peers to start"
else
  [ -n "${PEERS:-}" ] && export PEERS
  started_peers=1        # set first: a failed start still leaves pid files to clean up
  "$SHARED_BENCH/peers.sh" start
fi

# ---- the targets under test, pinned to TARGET_CPU ------------------------------------
# Wait until PORT answers HTTP (any status), failing early if PID dies. Bounded.
wait_http() { # NAME PID PORT LOGFILE
  local name=$1 pid=$2 port=$3 logf=$4 i code first=${PATHS%%,*}
  for (( i = 0; i < STARTUP_TIMEOUT * 10; i++ )); do
    pid_alive "$pid" || { log "$name exited during start-up; log:"; tail -20 "$logf" >&2 || true; return 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$port$first" || true)
    [ "${code:-000}" != 000 ] && return 0
    sleep 0.1
  done
  log "$name did not answer on :$port within ${STARTUP_TIMEOUT}s; log:"; tail -20 "$logf" >&2 || true
  return 1
}

targets=()
if [ "$run_holdfast" = 1 ]; then
  port_listening "$HOLDFAST_PORT" && die "port $HOLDFAST_PORT already in use (set HOLDFAST_PORT)"
  config=${HOLDFAST_CONFIG:-$STATE/holdfast.toml}
  access_log="$STATE/holdfast-access.log"
  rm -f "$access_log"            # one run's lines only (it grows by ~100 MB per minute)
  if [ -z "${HOLDFAST_CONFIG:-}" ]; then
    {
      echo "[edge]"
      echo "listen = [\"$HOST:$HOLDFAST_PORT\"]"
      echo "threads = 1"
      [ "$ACCESS_LOG" = 1 ] && echo "access_log = \"$access_log\"   # JSON access log on, as a user would run it"
      echo
      echo "[admin]"
      echo "listen = \"$HOST:$ADMIN_PORT\""
      echo
      echo "[[pools]]"
      echo "name = \"origin\""
      echo "servers = [\"$HOST:$ORIGIN_PORT\"]"
      echo
      echo "[[routes]]"
      echo "name = \"all\""
      echo "match = { path_prefix = \"/\" }"
      echo "pool = \"origin\""
    } > "$config"
  fi
  holdfast_pid=$(launch "$STATE/holdfast.pid" "$STATE/holdfast.log" "$TARGET_CPU" \
                 "$HOLDFAST_BIN" run --config "$config")
  wait_http holdfast "$holdfast_pid" "$HOLDFAST_PORT" "$STATE/holdfast.log" || die "holdfast did not start (config: $config)"
  log "holdfast up on :$HOLDFAST_PORT (pid $holdfast_pid, CPU $TARGET_CPU, config $config)"
  targets+=(--label holdfast --port "$HOLDFAST_PORT" --pid "$holdfast_pid")
fi
if [ "$run_minimal" = 1 ]; then
  port_listening "$MINIMAL_PORT" && die "port $MINIMAL_PORT already in use (set MINIMAL_PORT)"
  minimal_pid=$(launch "$STATE/minimal-proxy.pid" "$STATE/minimal-proxy.log" "$TARGET_CPU" \
                "$MINIMAL_BIN" --listen "$HOST:$MINIMAL_PORT" --upstream "$HOST:$ORIGIN_PORT")
  wait_http minimal-proxy "$minimal_pid" "$MINIMAL_PORT" "$STATE/minimal-proxy.log" || die "minimal-proxy did not start"
  log "minimal-proxy up on :$MINIMAL_PORT (pid $minimal_pid, CPU $TARGET_CPU)"
  targets+=(--label hyper-minimal --port "$MINIMAL_PORT" --pid "$minimal_pid")
fi

# ---- measure ---------------------------------------------------------------------------
out="$STATE/results/$(date +%Y%m%d-%H%M%S)"
has_out=0
for a in "${pass[@]:-}"; do [ "$a" = --out ] && has_out=1; done
[ "$has_out" = 1 ] || pass+=(--out "$out")
for (( i = 0; i < ${#pass[@]}; i++ )); do [ "${pass[$i]}" = --out ] && out=${pass[$((i + 1))]:-$out}; done

# Its tables go to stdout; they are printed once, below, after env.txt is completed. Run in
# the background so that a TERM to this script is handled now, not after the whole run.
"$SHARED_BENCH/run.sh" "${targets[@]}" "${pass[@]}" > /dev/null &
bench_pid=$!
wait "$bench_pid"
bench_pid=""

{
  rev=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "no commit")
  echo "holdfast tree: $rev ($ROOT)"
  echo "rustc: $(cd "$ROOT" && rustc --version 2>/dev/null || echo '?')"
  echo "bench/run.sh: ONLY=${ONLY:-all} ACCESS_LOG=$ACCESS_LOG HOLDFAST_CONFIG=${HOLDFAST_CONFIG:-generated}"
} >> "$out/env.txt"
python3 "$SHARED_BENCH/report.py" "$out" --baseline "${BASELINE:-nginx}" > /dev/null   # re-render with it
if [ "$run_holdfast" = 1 ] && [ -f "$access_log" ]; then
  log "holdfast access log: $(wc -l < "$access_log") lines, $(du -h "$access_log" | cut -f1) ($access_log)"
elif [ "$run_holdfast" = 1 ] && [ "$ACCESS_LOG" = 1 ] && [ -z "${HOLDFAST_CONFIG:-}" ]; then
  log "WARNING: holdfast wrote no access log at $access_log although the config asks for one"
fi

echo
echo "results: $out  (results.md, results.tsv, runs.tsv, env.txt, raw/)"
echo
cat "$out/results.md"
# The number this folder exists for: what Holdfast's features cost over the bare library.
awk -F'\t' 'NR > 1 { c[$1, $2] = $9; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
  END { for (i = 1; i <= n; i++) { p = order[i]
          if (c[p, "holdfast"] > 0 && c[p, "hyper-minimal"] > 0)
            printf "%s: holdfast / hyper-minimal CPU per request = %.2f\n", p, c[p, "holdfast"] / c[p, "hyper-minimal"] } }' \
  "$out/results.tsv"
