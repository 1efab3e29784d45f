# Shared code of the scenario benchmarks bench/failover.sh, bot.sh and shield.sh. Sourced,
# not executed, by each of them once it has set HERE (bench/) and ROOT (the checkout) and
# handled --help. (bench/run.sh has its own set-up and does not use it.)
#
# Sourcing it finds the shared harness (SHARED_BENCH; from a git worktree elsewhere, the main
# checkout's /work/shared/bench), sources its lib.sh (log, die, launch, stop_tree, tree_pids,
# pid_alive, port_listening, wait_port, nginx_common, nginx_http_common; STATE, HOST,
# TARGET_CPU, LOADGEN_CPU), sets BENCH_STATE (default /tmp/bench-state) and installs the
# clean-up of every process tracked below. The functions read these of the sourcing script:
#   D (its folder under STATE)  HOLDFAST_BIN  NO_BUILD  PATH_ (the request path)
#   WRK_TIMEOUT  STARTUP_TIMEOUT  ACCESS_LOG  O_PORT (the origin, for one-origin configs)
#   WARMUP REPEAT CONNS (shared_run)  out (the results folder, set by new_results_dir)
#   WRK_H, CURL_H: -H arguments for every wrk / curl request of the benchmark (default none)
# shellcheck shell=bash

# ---- the shared harness -----------------------------------------------------------------
SHARED_BENCH="${SHARED_BENCH:-$HERE/../../shared/bench}"
# a git worktree elsewhere (e.g. /tmp/x): fall back to the main checkout's neighbour
[ -f "$SHARED_BENCH/lib.sh" ] || [ ! -f /work/shared/bench/lib.sh ] || SHARED_BENCH=/work/shared/bench
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "$(basename "$0" .sh): no shared harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
SHARED_BENCH="$(cd "$SHARED_BENCH" && pwd)"
export BENCH_STATE="${BENCH_STATE:-/tmp/bench-state}"
# shellcheck source=/dev/null
source "$SHARED_BENCH/lib.sh"

WRK_H=(); CURL_H=()

# The command line: only --no-build (the same as NO_BUILD=1).
parse_args() { # "$@"
  NO_BUILD=${NO_BUILD:-0}
  while [ $# -gt 0 ]; do
    case "$1" in
      --no-build) NO_BUILD=1; shift ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
  done
}

# ---- clean-up: everything the script started, by PID --------------------------------------
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
track()   { pids+=("$1 $2"); }     # PID SIGNAL: stop it (with SIGNAL) on exit
untrack() { local e n=(); for e in "${pids[@]:-}"; do [ -n "$e" ] && [ "${e%% *}" != "$1" ] && n+=("$e"); done; pids=("${n[@]:-}"); }
stop()    { stop_tree "$1" "${2:-TERM}" 10; untrack "$1"; }   # PID [SIGNAL]: stop it now

# ---- before anything runs ----------------------------------------------------------------
# Unless NO_BUILD=1, cargo build --release -p holdfast; then HOLDFAST_BIN must exist.
build_holdfast() { # HINT (the error's advice when it does not)
  if [ "$NO_BUILD" != 1 ]; then
    log "building holdfast (cargo build --release -p holdfast)"
    (cd "$ROOT" && cargo build --release -p holdfast)
  fi
  [ -x "$HOLDFAST_BIN" ] || die "no $HOLDFAST_BIN ($1)"
}

# The shared harness's setup.sh, then: none of PORTs may be taken.
setup_ports() { # PORT...
  local port
  "$SHARED_BENCH/setup.sh" >/dev/null
  for port in "$@"; do
    if port_listening "$port"; then die "port $port already in use (set PORT_BASE)"; fi
  done
}

# The per-connection pause (ms) that makes CONNS connections offer RATE requests/s (for
# failover.lua's FO_DELAY_MS); 0 for RATE 0 (as fast as possible).
delay_ms() { # CONNS RATE
  if [ "$2" = 0 ]; then echo 0; else awk -v c="$1" -v r="$2" 'BEGIN { printf "%.3f", c * 1000 / r }'; fi
}

# ---- starting processes (call these directly, not in $(...): the PID is tracked here) ------
# launch (lib.sh) CMD with DIR/pid and DIR/stdout.log, pinned to CPU, tracked with SIGNAL.
spawn() { # DIR CPU SIGNAL CMD...; sets STARTED_PID
  local d=$1 cpu=$2 sig=$3; shift 3
  STARTED_PID=$(launch "$d/pid" "$d/stdout.log" "$cpu" "$@")
  track "$STARTED_PID" "$sig"
}

# nginx with DIR/nginx.conf (checked first; WHAT names it in the error).
start_nginx() { # DIR CPU SIGNAL WHAT; sets STARTED_PID
  local d=$1
  nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad $4 config ($d/nginx.conf)"
  spawn "$d" "$2" "$3" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
}

# Holdfast with DIR/holdfast.toml, on TARGET_CPU.
start_holdfast() { # DIR; sets STARTED_PID
  spawn "$1" "$TARGET_CPU" TERM "$HOLDFAST_BIN" run --config "$1/holdfast.toml"
}

# An nginx config for an instance living in DIR: lib.sh's common part, then the http block:
# lib.sh's common lines and the lines read from stdin.
nginx_conf() { # DIR < HTTP_LINES
  nginx_common "$1"
  echo "http {"
  nginx_http_common "$1"
  cat
  echo "}"
}

# An nginx origin in DIR serving DIR/html/1k (1,024 bytes) on HOST:PORT, on LOADGEN_CPU,
# stopped with SIGNAL; returns once PORT listens. HTTP_LINES go in the http block before the
# server, LOCATION_BODY in its "location / { }". ORIGIN_SINGLE=1: one process, no master
# (so that a SIGKILL to ORIGIN_PID takes all of it). WHAT names it in the error.
start_origin_nginx() { # DIR PORT SIGNAL WHAT [HTTP_LINES [LOCATION_BODY]]; sets ORIGIN_PID
  local d=$1 port=$2 http=${5:-} loc=${6:-} master=on
  [ "${ORIGIN_SINGLE:-0}" != 1 ] || master=off
  mkdir -p "$d/html" "$d/tmp"
  head -c 1024 /dev/zero | tr '\0' 'x' > "$d/html/1k"
  {
    [ -z "$http" ] || echo "$http"
    echo "  server { listen $HOST:$port backlog=4096; root $d/html; location / { ${loc:+$loc }} }"
  } | nginx_conf "$d" | sed "s/^master_process on;/master_process $master;/" > "$d/nginx.conf"
  start_nginx "$d" "$LOADGEN_CPU" "$3" origin
  wait_port "$port" 10 || die "$4 did not listen on :$port"
  # shellcheck disable=SC2034  # for the sourcing script
  ORIGIN_PID=$STARTED_PID
}

# Wait until HOST:PORT answers PATH_ (with CURL_H) with 200; die if PID exits first or after
# STARTUP_TIMEOUT s, with the end of LOGFILE.
wait_200() { # NAME PID PORT LOGFILE
  local name=$1 pid=$2 port=$3 logf=$4 i code
  for (( i = 0; i < STARTUP_TIMEOUT * 10; i++ )); do
    pid_alive "$pid" || { log "$name exited during start-up; log:"; tail -20 "$logf" >&2; die "$name did not start"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "${CURL_H[@]}" "http://$HOST:$port$PATH_" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  log "$name did not answer 200 on :$port within ${STARTUP_TIMEOUT}s; log:"; tail -20 "$logf" >&2
  die "$name did not start"
}

# ---- configs of the one-origin benchmarks (bot.sh, shield.sh) -----------------------------
# Holdfast, one thread, in front of the origin on O_PORT: pool "origin", route "all";
# EDGE_LINE is added to [edge]; ACCESS_LOG=1: a JSON access log DIR/access.log.
holdfast_conf() { # PORT ADMIN_PORT DIR [EDGE_LINE]
  cat <<EOC
[edge]
listen = ["$HOST:$1"]
threads = 1
access_log = "$([ "$ACCESS_LOG" = 1 ] && echo "$3/access.log" || echo off)"
EOC
  [ -z "${4:-}" ] || echo "$4"
  cat <<EOC

[admin]
listen = "$HOST:$2"

[[pools]]
name = "origin"
servers = ["$HOST:$O_PORT"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
EOC
}

# nginx in front of the origin on O_PORT, as the shared harness's "nginx" peer (peers.sh).
nginx_proxy_conf() { # DIR PORT
  nginx_conf "$1" <<EOC
  upstream origin {
    server $HOST:$O_PORT;
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen $HOST:$2 backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 16k;
      proxy_buffers 16 16k;
      proxy_busy_buffers_size 32k;
    }
  }
EOC
}

# ---- measuring ---------------------------------------------------------------------------
# wrk -t1 with the script bench/LUA for SECONDS on HOST:PORT PATH_ (with WRK_H), pinned to
# LOADGEN_CPU, output to OUTFILE; killed if it runs 15 s over.
wrk_lua() { # LUA SECONDS CONNS PORT OUTFILE
  timeout $(( $2 + 15 )) taskset -c "$LOADGEN_CPU" \
    wrk -t1 -c"$3" -d"$2s" --timeout "$WRK_TIMEOUT" --latency -s "$HERE/$1" \
    "${WRK_H[@]}" "http://$HOST:$4$PATH_" > "$5" 2>&1
}

# The shared harness's run.sh over TARGETS (--label L --port P --pid PID, ...; nginx the
# baseline), results in OUT_DIR: CPU per 1,000 requests of each process tree, req/s, p99;
# REPEAT runs of WARMUP + SECONDS, CONNS connections, the order rotated on every repeat. It
# calls `wrk` from PATH: with WRK_H, a wrapper first in PATH adds those headers. Its
# BENCH_STATE is D, and results/latest is pointed back at $out afterwards.
shared_run() { # OUT_DIR SECONDS TARGETS...
  local o=$1 secs=$2 path_env=$PATH bench; shift 2
  if [ ${#WRK_H[@]} -gt 0 ]; then
    mkdir -p "$D/bin"
    { echo '#!/usr/bin/env bash'
      printf 'case " $* " in *" -v "*) exec %q "$@" ;; esac\n' "$(command -v wrk)"
      printf 'exec %q' "$(command -v wrk)"; printf ' %q' "${WRK_H[@]}"; echo ' "$@"'
    } > "$D/bin/wrk"
    chmod +x "$D/bin/wrk"
    path_env="$D/bin:$PATH"
  fi
  # in the background, so that a TERM to this script is handled now, not after the whole run
  PATH=$path_env BENCH_STATE="$D" ORIGIN_PORT=$O_PORT PATHS=$PATH_ DURATION=$secs \
    WARMUP=$WARMUP REPEAT=$REPEAT CONNS=$CONNS THREADS=1 BASELINE=nginx \
    "$SHARED_BENCH/run.sh" --no-peers --out "$o" "$@" > /dev/null &
  bench=$!; track "$bench" TERM
  wait "$bench" || die "the shared run.sh failed (see $o)"
  untrack "$bench"
  ln -sfn "$out" "$D/results/latest"
}

# /metrics and /status of the Holdfast whose admin listens on ADMIN_PORT, to
# PREFIX.metrics.txt and PREFIX.status.json.
scrape() { # ADMIN_PORT PREFIX
  curl -s --max-time 2 "http://$HOST:$1/metrics" > "$2.metrics.txt" || true
  curl -s --max-time 2 "http://$HOST:$1/status" > "$2.status.json" || true
}

# ---- results -----------------------------------------------------------------------------
# A new $D/results/<date-time>/ with raw/, linked as $D/results/latest.
new_results_dir() { # sets out
  out="$D/results/$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$out/raw"
  ln -sfn "$out" "$D/results/latest"
}

# The first lines of env.txt: date, host and CPUs (PLACEMENT: what runs where), the holdfast
# binary and the commit of this checkout.
env_head() { # PLACEMENT
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) CPUs; $1"
  echo "holdfast: $HOLDFAST_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
}

# busy % of all CPUs over 1 s (other work on the machine: sampled before anything of ours
# starts and after everything stopped)
machine_busy() {
  local a b
  a=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  sleep 1
  b=$(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}

# The env.txt line on other work on the machine, at WHEN (start or end).
machine_load() { # WHEN
  echo "load average at $1: $(cut -d' ' -f1-3 /proc/loadavg); machine busy at $1: $(machine_busy)% of $(nproc) CPUs"
}

# The closing lines of every benchmark: where the results are (FILES: what is there), then
# results.md.
print_results() { # DIR FILES
  echo
  echo "results: $1  ($2)"
  echo
  cat "$1/results.md"
}

# The end of a benchmark whose report checks invariants: bench/REPORT renders $out/results.md,
# which is printed (print_results); exits with the report's status (1: an invariant failed).
report_and_exit() { # REPORT FILES
  local rc=0
  python3 "$HERE/$1" "$out" > /dev/null || rc=$?
  print_results "$out" "$2"
  exit "$rc"
}
