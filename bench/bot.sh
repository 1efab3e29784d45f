#!/usr/bin/env bash
# Bot-scoring benchmark, two parts (see bench/README.md, "Bot scoring"):
#   overhead  Holdfast without [modules.bot] vs Holdfast with it (examples/bot-features.json,
#             fail_policy "open") vs nginx, same load as run.sh (wrk -t1 -c64, /1k), measured
#             by the shared harness's run.sh (CPU per 1,000 requests, req/s, p99), REPEAT runs
#             with the order rotated; reports bot / no-bot for CPU per request (goal <= 1.10).
#   replay    the 18 Nov 2025 outage under load: wrk through Holdfast (bot module, state_dir)
#             while a writer replaces the feature file every 0.3-0.5 s (good 120 entries /
#             doubled 240 entries, each with a newer version; plus a truncated, an empty, a
#             not-UTF-8 and a 100 MiB file); reports errors, p99, rejections by reason, the
#             active version, the score header the origin saw, and a restart onto the LKG.
#
# usage: bench/bot.sh [--no-build]
# env:   PARTS=overhead,replay  NO_BUILD=1  HOLDFAST_BIN (default ${CARGO_TARGET_DIR:-target}/release/holdfast)
#        DURATION (s per measured run; default 10 for overhead, 20 for replay)  REPEAT=3 (overhead)
#        OVERHEAD_DURATION  REPLAY_DURATION (override DURATION per part)  WARMUP=2  CONNS=64
#        RATE=0 (replay: req/s offered by CONNS connections; 0 = as fast as possible)
#        HEADERS=none (browser: every wrk request carries 11 browser headers, all targets)
#        STEADY=1 (0: no steady run before the replay)  RESTART=1 (0: no restart check)
#        ACCESS_LOG=0 (1: Holdfast writes a JSON access log)  WRK_TIMEOUT=2s
#        PORT_BASE=18290 (origin, holdfast, holdfast-bot, nginx, replay, 3 admin ports: +0..+7)
#        SHARED_BENCH  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,22p' "$0"; exit 0 ;; esac
SHARED_BENCH="${SHARED_BENCH:-$HERE/../../shared/bench}"
# a git worktree elsewhere (e.g. /tmp/x): fall back to the main checkout's neighbour
[ -f "$SHARED_BENCH/lib.sh" ] || [ ! -f /work/shared/bench/lib.sh ] || SHARED_BENCH=/work/shared/bench
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "bot: no shared harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
SHARED_BENCH="$(cd "$SHARED_BENCH" && pwd)"
export BENCH_STATE="${BENCH_STATE:-/tmp/bench-state}"
# shellcheck source=/dev/null
source "$SHARED_BENCH/lib.sh"   # log, die, launch, stop_tree, tree_pids, pid_alive, port_listening, nginx_*

NO_BUILD=${NO_BUILD:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) NO_BUILD=1; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

PARTS=${PARTS:-overhead,replay}
REPEAT=${REPEAT:-3}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-64}; RATE=${RATE:-0}
OVERHEAD_DURATION=${OVERHEAD_DURATION:-${DURATION:-10}}
REPLAY_DURATION=${REPLAY_DURATION:-${DURATION:-20}}
HEADERS=${HEADERS:-none}; STEADY=${STEADY:-1}; RESTART=${RESTART:-1}
ACCESS_LOG=${ACCESS_LOG:-0}; WRK_TIMEOUT=${WRK_TIMEOUT:-2s}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
PORT_BASE=${PORT_BASE:-18290}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
FEATURES_EXAMPLE="$ROOT/examples/bot-features.json"
GENERATOR="$ROOT/examples/generate-bot-features.py"
PATH_=/1k

O_PORT=$PORT_BASE
declare -A PORT=([holdfast]=$((PORT_BASE + 1)) [holdfast-bot]=$((PORT_BASE + 2)) [nginx]=$((PORT_BASE + 3)) [replay]=$((PORT_BASE + 4)))
declare -A ADMIN=([holdfast]=$((PORT_BASE + 5)) [holdfast-bot]=$((PORT_BASE + 6)) [replay]=$((PORT_BASE + 7)))

for part in ${PARTS//,/ }; do case "$part" in overhead|replay) ;; *) die "unknown part '$part' in PARTS (overhead, replay)" ;; esac; done
[[ "$OVERHEAD_DURATION" =~ ^[1-9][0-9]*$ && "$REPLAY_DURATION" =~ ^[0-9]+$ && "$REPLAY_DURATION" -ge 8 ]] \
  || die "DURATION: whole seconds (replay: at least 8)"
[[ "$WARMUP" =~ ^[0-9]+$ && "$REPEAT" =~ ^[1-9][0-9]*$ && "$CONNS" =~ ^[1-9][0-9]*$ && "$RATE" =~ ^[0-9]+$ ]] \
  || die "WARMUP, REPEAT, CONNS, RATE: whole numbers"
case "$HEADERS" in none|browser) ;; *) die "HEADERS must be none or browser" ;; esac
[ "$(nproc)" -ge 2 ] || log "WARNING: $(nproc) CPU(s); expected 2 (wrk + origin on CPU $LOADGEN_CPU, proxy on CPU $TARGET_CPU)"
[ -f "$FEATURES_EXAMPLE" ] && [ -f "$GENERATOR" ] || die "no $FEATURES_EXAMPLE or $GENERATOR"
DELAY_MS=0
[ "$RATE" != 0 ] && DELAY_MS=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN { printf "%.3f", c * 1000 / r }')

# Browser-like request headers (HEADERS=browser): the bot module's feature extraction does
# more work on these (user-agent classes and tokens, Accept-*, Sec-Fetch-*, cookie, referer)
# than on wrk's bare "Host" request.
BROWSER_HEADERS=(
  "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
  "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
  "Accept-Language: en-US,en;q=0.9"
  "Accept-Encoding: gzip, deflate, br"
  "Sec-Ch-Ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\""
  "Sec-Fetch-Dest: document"
  "Sec-Fetch-Mode: navigate"
  "Sec-Fetch-Site: none"
  "Upgrade-Insecure-Requests: 1"
  "Referer: http://127.0.0.1/"
  "Cookie: session=4f2a9c1e; theme=dark"
)
WRK_H=()
if [ "$HEADERS" = browser ]; then for h in "${BROWSER_HEADERS[@]}"; do WRK_H+=(-H "$h"); done; fi

D="$STATE/bot"
mkdir -p "$D"

# ---- cleanup: everything this script started, by PID --------------------------------
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
track()   { pids+=("$1 $2"); }
untrack() { local e n=(); for e in "${pids[@]:-}"; do [ -n "$e" ] && [ "${e%% *}" != "$1" ] && n+=("$e"); done; pids=("${n[@]:-}"); }
stop()    { stop_tree "$1" "${2:-TERM}" 10; untrack "$1"; }

# ---- build --------------------------------------------------------------------------
if [ "$NO_BUILD" != 1 ]; then
  log "building holdfast (cargo build --release -p holdfast)"
  (cd "$ROOT" && cargo build --release -p holdfast)
fi
[ -x "$HOLDFAST_BIN" ] || die "no $HOLDFAST_BIN (build it or set HOLDFAST_BIN)"
"$SHARED_BENCH/setup.sh" >/dev/null
for port in "$O_PORT" "${PORT[@]}" "${ADMIN[@]}"; do
  port_listening "$port" && die "port $port already in use (set PORT_BASE)"
done

# ---- origin: one nginx worker on LOADGEN_CPU serving /1k; SCORE_LOG: log the score header --
start_origin() { # [SCORE_LOG]; sets ORIGIN_PID (not in a subshell: it must track the PID here)
  local score_log=${1:-} d="$D/origin" pid
  mkdir -p "$d/html" "$d/tmp"
  head -c 1024 /dev/zero | tr '\0' 'x' > "$d/html/1k"
  {
    nginx_common "$d"
    echo "http {"
    nginx_http_common "$d"
    if [ -n "$score_log" ]; then
      # one line per request: the x-holdfast-bot-score the edge sent ("-" when absent)
      echo "  log_format score '\$http_x_holdfast_bot_score';"
      echo "  server { listen $HOST:$O_PORT backlog=4096; root $d/html; location / { access_log $score_log score buffer=256k flush=1s; } }"
    else
      echo "  server { listen $HOST:$O_PORT backlog=4096; root $d/html; location / { } }"
    fi
    echo "}"
  } > "$d/nginx.conf"
  nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad origin config ($d/nginx.conf)"
  pid=$(launch "$d/pid" "$d/stdout.log" "$LOADGEN_CPU" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log")
  track "$pid" QUIT
  wait_port "$O_PORT" 10 || die "origin did not listen on :$O_PORT"
  ORIGIN_PID=$pid
}

# ---- the proxies, pinned to TARGET_CPU ----------------------------------------------
write_holdfast() { # NAME DIR BOT(0|1)
  local name=$1 d=$2 bot=$3
  cat <<EOC
[edge]
listen = ["$HOST:${PORT[$name]}"]
threads = 1
access_log = "$([ "$ACCESS_LOG" = 1 ] && echo "$d/access.log" || echo off)"
state_dir = "$d/state"

[admin]
listen = "$HOST:${ADMIN[$name]}"

[[pools]]
name = "origin"
servers = ["$HOST:$O_PORT"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
EOC
  [ "$bot" = 1 ] && cat <<EOC

[modules.bot]
enabled = true
features = "bot-features.json"       # relative to this file's folder
fail_policy = "open"
EOC
  return 0
}

# nginx in front of the origin, as the shared harness's "nginx" peer (peers.sh)
write_nginx() { # DIR
  local d=$1
  nginx_common "$d"
  echo "http {"
  nginx_http_common "$d"
  cat <<EOC
  upstream origin {
    server $HOST:$O_PORT;
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
      proxy_buffer_size 16k;
      proxy_buffers 16 16k;
      proxy_busy_buffers_size 32k;
    }
  }
}
EOC
}

wait_200() { # NAME PID PORT LOGFILE
  local name=$1 pid=$2 port=$3 logf=$4 i code
  for (( i = 0; i < STARTUP_TIMEOUT * 10; i++ )); do
    pid_alive "$pid" || { log "$name exited during start-up; log:"; tail -20 "$logf" >&2; die "$name did not start"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$HOST:$port$PATH_" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  log "$name did not answer 200 on :$port within ${STARTUP_TIMEOUT}s; log:"; tail -20 "$logf" >&2
  die "$name did not start"
}

# NAME: holdfast | holdfast-bot | replay | nginx. Holdfast's folder (config, feature file,
# state_dir) is $D/NAME; it is reset unless KEEP=1 (the restart keeps state_dir and features).
start_proxy() { # NAME [KEEP]; sets PROXY_PID
  local name=$1 keep=${2:-0} d="$D/$1" pid
  mkdir -p "$d/tmp"
  case "$name" in
    nginx)
      write_nginx "$d" > "$d/nginx.conf"
      nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" || die "bad nginx config ($d/nginx.conf)"
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log")
      track "$pid" QUIT ;;
    *)
      if [ "$keep" != 1 ]; then
        rm -rf "$d/state" "$d/access.log" "$d/bot-features.json"
        mkdir -p "$d/state"
        [ "$name" = holdfast ] || cp "$FEATURES_EXAMPLE" "$d/bot-features.json"
        write_holdfast "$name" "$d" "$([ "$name" = holdfast ] && echo 0 || echo 1)" > "$d/holdfast.toml"
      fi
      pid=$(launch "$d/pid" "$d/stdout.log" "$TARGET_CPU" "$HOLDFAST_BIN" run --config "$d/holdfast.toml")
      track "$pid" TERM ;;
  esac
  wait_200 "$name" "$pid" "${PORT[$name]}" "$d/stdout.log"
  PROXY_PID=$pid
}

# wrk, 1 thread, pinned to LOADGEN_CPU; the FAILOVER line (counts, percentiles) comes from
# failover.lua, which also paces the connections when RATE > 0
run_wrk() { # SECONDS PORT OUTFILE
  FO_DELAY_MS=$DELAY_MS timeout $(( $1 + 15 )) taskset -c "$LOADGEN_CPU" \
    wrk -t1 -c"$CONNS" -d"$1s" --timeout "$WRK_TIMEOUT" --latency -s "$HERE/failover.lua" \
    "${WRK_H[@]}" "http://$HOST:$2$PATH_" > "$3" 2>&1
}

scrape() { # ADMIN_PORT PREFIX
  curl -s --max-time 2 "http://$HOST:$1/metrics" > "$2.metrics.txt" || true
  curl -s --max-time 2 "http://$HOST:$1/status" > "$2.status.json" || true
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

# ---- results folder -------------------------------------------------------------------
out="$D/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out/raw"
ln -sfn "$out" "$D/results/latest"
{
  echo "date: $(date -Is)"
  echo "host: $(uname -srm), $(nproc) CPUs; proxies on CPU $TARGET_CPU, wrk + origin + writer on CPU $LOADGEN_CPU"
  echo "holdfast: $HOLDFAST_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'))"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "PARTS=$PARTS REPEAT=$REPEAT OVERHEAD_DURATION=$OVERHEAD_DURATION REPLAY_DURATION=$REPLAY_DURATION WARMUP=$WARMUP CONNS=$CONNS RATE=$RATE"
  echo "HEADERS=$HEADERS STEADY=$STEADY RESTART=$RESTART ACCESS_LOG=$ACCESS_LOG WRK_TIMEOUT=$WRK_TIMEOUT PORT_BASE=$PORT_BASE"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); machine busy at start: $(machine_busy)% of $(nproc) CPUs"
} > "$out/env.txt"

# ---- part 1: overhead -----------------------------------------------------------------
part_overhead() {
  local o="$out/overhead" px_n px_h px_b
  mkdir -p "$o"
  start_origin
  start_proxy nginx;        px_n=$PROXY_PID
  start_proxy holdfast;     px_h=$PROXY_PID
  start_proxy holdfast-bot; px_b=$PROXY_PID
  log "overhead: nginx $px_n :${PORT[nginx]}, holdfast $px_h :${PORT[holdfast]}, holdfast-bot $px_b :${PORT[holdfast-bot]};" \
      "$REPEAT x ${WARMUP}s + ${OVERHEAD_DURATION}s each, about $(( 3 * REPEAT * (WARMUP + OVERHEAD_DURATION + 2) ))s"

  # HEADERS=browser: the shared run.sh calls `wrk` from PATH; put a wrapper first that adds them
  local path_env=$PATH
  if [ "$HEADERS" = browser ]; then
    mkdir -p "$D/bin"
    { echo '#!/usr/bin/env bash'
      printf 'case " $* " in *" -v "*) exec %q "$@" ;; esac\n' "$(command -v wrk)"
      printf 'exec %q' "$(command -v wrk)"; printf ' %q' "${WRK_H[@]}"; echo ' "$@"'
    } > "$D/bin/wrk"
    chmod +x "$D/bin/wrk"
    path_env="$D/bin:$PATH"
  fi
  # The shared run.sh: CPU per 1,000 requests of each tree, req/s, p99; order rotated on every
  # repeat. Its BENCH_STATE is ours, so its results/latest link does not move run.sh's.
  PATH=$path_env BENCH_STATE="$D" ORIGIN_PORT=$O_PORT PATHS=$PATH_ DURATION=$OVERHEAD_DURATION \
    WARMUP=$WARMUP REPEAT=$REPEAT CONNS=$CONNS THREADS=1 BASELINE=nginx \
    "$SHARED_BENCH/run.sh" --no-peers --out "$o" \
      --label nginx --port "${PORT[nginx]}" --pid "$px_n" \
      --label holdfast --port "${PORT[holdfast]}" --pid "$px_h" \
      --label holdfast-bot --port "${PORT[holdfast-bot]}" --pid "$px_b" > /dev/null &
  local bench=$!; track "$bench" TERM
  wait "$bench" || die "the shared run.sh failed (see $o)"
  untrack "$bench"
  ln -sfn "$out" "$D/results/latest"

  # what the bot module did: its state and the artifact it runs on
  scrape "${ADMIN[holdfast-bot]}" "$out/raw/overhead-holdfast-bot"
  scrape "${ADMIN[holdfast]}" "$out/raw/overhead-holdfast"
  for n in holdfast holdfast-bot; do cp "$D/$n/stdout.log" "$out/raw/overhead-$n.log" 2>/dev/null || true; done
  stop "$px_b"; stop "$px_h"; stop "$px_n" QUIT; stop "$ORIGIN_PID" QUIT
}

# ---- part 2: the 18 Nov 2025 replay ---------------------------------------------------
# Feature-file templates from the example generator: good = 120 entries (--fill 120),
# double = every entry twice (--fill 120 --double: 240 > MAX_FEATURES = 200, rejected for
# capacity). The generator stamps the version with the current second; the writer needs a
# new version 2-3 times a second, so it rewrites the "version" line of a template.
make_templates() { # DIR
  local t=$1
  mkdir -p "$t"
  python3 "$GENERATOR" "$t/good.json" --fill 120 2>>"$t/generate.log"
  python3 "$GENERATOR" "$t/double.json" --fill 120 --double 2>>"$t/generate.log"
  grep -q '^ "version": [0-9]*,$' "$t/good.json" || die "unexpected generator output ($t/good.json)"
  "$HOLDFAST_BIN" check --kind bot-features "$t/good.json" > "$t/check-good.txt" 2>&1 \
    || { cat "$t/check-good.txt" >&2; die "the generated good file does not pass holdfast check"; }
  if "$HOLDFAST_BIN" check --kind bot-features "$t/double.json" > "$t/check-double.txt" 2>&1; then
    die "the doubled file passes holdfast check (it must be rejected for capacity)"
  fi
}

# The writer: replaces FILE (write FILE.tmp, then mv) every 0.3-0.5 s for SECONDS, alternating
# good and double, each with the next version; at 40/55/70/85 % of the time one special bad
# file instead: truncated (first half of a good file), empty, not UTF-8 (a good file with a
# 0xFF byte in a name), too large (100 MiB, sparse). Logs "t_ms kind version bytes" to LOG.
writer() { # FILE TEMPLATES SECONDS FIRST_VERSION LOG
  local f=$1 t=$2 secs=$3 v=$4 wlog=$5 start now el i=0 kind special=0
  local -a specials=(truncated empty not_utf8 too_large) at=(40 55 70 85)
  taskset -cp "$LOADGEN_CPU" "$BASHPID" > /dev/null   # with wrk and the origin, not the edge
  start=${EPOCHREALTIME/./}
  while :; do
    now=${EPOCHREALTIME/./}; el=$(( (now - start) / 1000 ))          # ms
    [ "$el" -lt $(( secs * 1000 )) ] || break
    if [ "$special" -lt ${#specials[@]} ] && [ "$el" -ge $(( secs * 10 * ${at[$special]} )) ]; then
      kind=${specials[$special]}; special=$(( special + 1 ))
    elif (( i++ % 2 == 0 )); then kind=good
    else kind=double
    fi
    v=$(( v + 1 ))
    case "$kind" in
      good|double) sed "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" "$t/$kind.json" > "$f.tmp" ;;
      truncated)   sed "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" "$t/good.json" | head -c $(( $(stat -c %s "$t/good.json") / 2 )) > "$f.tmp" ;;
      empty)       : > "$f.tmp" ;;
      not_utf8)    sed -e "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" -e 's/"header:x-fill-100"/"header:x-fill-1\xff00"/' "$t/good.json" > "$f.tmp" ;;
      too_large)   rm -f "$f.tmp"; truncate -s 100M "$f.tmp" ;;
    esac
    mv -f "$f.tmp" "$f"
    echo "$el $kind $v $(stat -c %s "$f")" >> "$wlog"
    sleep "0.$(printf '%03d' $(( 300 + RANDOM % 201 )))"
  done
}

rotate_score_log() { # DEST: move the origin's score log aside; nginx reopens (and flushes) it
  mv "$D/origin/score.log" "$1"; kill -USR1 "$ORIGIN_PID"; sleep 0.5
}

part_replay() {
  local r="$D/replay" raw="$out/raw" px tpl="$D/replay-templates" v0 wpid
  rm -rf "$tpl"; make_templates "$tpl"
  cp "$tpl"/check-*.txt "$tpl"/good.json "$raw/" 2>/dev/null || true
  mkdir -p "$D/origin"; rm -f "$D/origin/score.log"
  start_origin "$D/origin/score.log"
  start_proxy replay; px=$PROXY_PID
  log "replay: holdfast $px :${PORT[replay]} (admin :${ADMIN[replay]}), state_dir $r/state;" \
      "$([ "$STEADY" = 1 ] && echo "steady ${REPLAY_DURATION}s, then ")replay ${REPLAY_DURATION}s," \
      "$CONNS conns at $([ "$RATE" = 0 ] && echo 'full speed' || echo "~$RATE req/s")"
  [ "$WARMUP" -gt 0 ] && run_wrk "$WARMUP" "${PORT[replay]}" "$raw/replay-warmup.txt"
  rotate_score_log "$raw/warmup.score.log"
  if [ "$STEADY" = 1 ]; then         # the same edge and load, no writer: the p99 to compare with
    run_wrk "$REPLAY_DURATION" "${PORT[replay]}" "$raw/steady.main.txt"
    scrape "${ADMIN[replay]}" "$raw/steady"
    rotate_score_log "$raw/steady.score.log"
  fi

  # versions: newer than the example's (1) and than anything the generator stamped
  v0=$(( $(date +%s) + 1000 ))
  : > "$raw/writes.txt"
  ( writer "$r/bot-features.json" "$tpl" "$REPLAY_DURATION" "$v0" "$raw/writes.txt" ) &
  wpid=$!; track "$wpid" TERM
  run_wrk "$REPLAY_DURATION" "${PORT[replay]}" "$raw/replay.main.txt"
  wait "$wpid" || log "WARNING: the writer exited with $?"; untrack "$wpid"
  sleep 2.5                     # a change is picked up within 2 s (issue 6)
  rotate_score_log "$raw/replay.score.log"
  scrape "${ADMIN[replay]}" "$raw/replay"

  if [ "$RESTART" = 1 ]; then
    # leave a bad file on disk (doubled, newest version) and restart: it must come up on the LKG
    local v=$(( $(tail -1 "$raw/writes.txt" | awk '{print $3}') + 1 ))
    sed "s/^ \"version\": [0-9]*,$/ \"version\": $v,/" "$tpl/double.json" > "$r/bot-features.json.tmp"
    mv -f "$r/bot-features.json.tmp" "$r/bot-features.json"
    echo "restart double $v $(stat -c %s "$r/bot-features.json")" >> "$raw/restart.txt"
    stop "$px"; cp "$r/stdout.log" "$raw/replay.log" 2>/dev/null || true
    start_proxy replay 1; px=$PROXY_PID
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 "http://$HOST:${PORT[replay]}$PATH_" >> "$raw/restart.txt" || true
    sleep 0.5
    scrape "${ADMIN[replay]}" "$raw/restart"
    rotate_score_log "$raw/restart.score.log"
    stop "$px"; cp "$r/stdout.log" "$raw/restart.log" 2>/dev/null || true
  else
    stop "$px"; cp "$r/stdout.log" "$raw/replay.log" 2>/dev/null || true
  fi
  stop "$ORIGIN_PID" QUIT
}

for part in ${PARTS//,/ }; do
  case "$part" in
    overhead) part_overhead ;;
    replay)   part_replay ;;
  esac
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); machine busy at end: $(machine_busy)% of $(nproc) CPUs" >> "$out/env.txt"

rc=0
python3 "$HERE/bot_report.py" "$out" > /dev/null || rc=$?
echo
echo "results: $out  (results.md, env.txt, overhead/, raw/)"
echo
cat "$out/results.md"
exit "$rc"
