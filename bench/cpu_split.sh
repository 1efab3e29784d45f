#!/usr/bin/env bash
# Where a proxied request's CPU goes: user space (the proxy's own code and its libraries)
# against the kernel (sockets, epoll), for nginx, Holdfast and minimal-proxy in the same run.
# Each target is started alone pinned to TARGET_CPU (1) in front of one nginx origin serving
# PATH_ (/1k), gets WARMUP s of wrk (-t1 -c CONNS, on LOADGEN_CPU) and then DURATION s; its
# process tree's utime and stime (/proc/PID/stat, every thread) over that interval, divided
# by the requests wrk completed, are its user and kernel µs per request. REPEAT runs with the
# order rotated; medians. It answers what run.sh's CPU ratio cannot: whether a gap to nginx is
# the proxy's own code (user) or the system calls it makes (kernel).
#
# usage: bench/cpu_split.sh [--no-build]
# env:   NO_BUILD=1  HOLDFAST_BIN  MINIMAL_BIN  PATH_=/1k (or /100k)  DURATION=8  WARMUP=2
#        REPEAT=3  CONNS=64  ACCESS_LOG=1  TARGETS="nginx holdfast minimal"  PORT_BASE=18700
#        SHARED_BENCH  BENCH_STATE
# needs: apt-get install nginx wrk
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,16p' "$0"; exit 0 ;; esac
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
parse_args "$@"

HOLDFAST_BIN=${HOLDFAST_BIN:-$ROOT/target/release/holdfast}
MINIMAL_BIN=${MINIMAL_BIN:-$ROOT/target/release/minimal-proxy}
PATH_=${PATH_:-/1k}; DURATION=${DURATION:-8}; WARMUP=${WARMUP:-2}; REPEAT=${REPEAT:-3}
CONNS=${CONNS:-64}; ACCESS_LOG=${ACCESS_LOG:-1}; TARGETS=${TARGETS:-nginx holdfast minimal}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}; PORT_BASE=${PORT_BASE:-18700}
O_PORT=$PORT_BASE; ADMIN_PORT=$((PORT_BASE + 9))
declare -A PORT=([nginx]=$((PORT_BASE + 1)) [holdfast]=$((PORT_BASE + 2)) [minimal]=$((PORT_BASE + 3)))
D="$STATE/cpu_split"
for t in $TARGETS; do case $t in nginx|holdfast|minimal) ;; *) die "unknown target $t" ;; esac; done
for c in wrk nginx curl; do command -v "$c" >/dev/null || die "$c not installed"; done
build_holdfast "build it or set HOLDFAST_BIN"
[ -x "$MINIMAL_BIN" ] || die "no $MINIMAL_BIN (cargo build --release -p minimal-proxy)"
for p in "$O_PORT" "${PORT[@]}" "$ADMIN_PORT"; do
  if port_listening "$p"; then die "port $p already in use (set PORT_BASE)"; fi
done
rm -rf "$D"; mkdir -p "$D"

start_origin_nginx "$D/origin" "$O_PORT" TERM origin
# The origin serves 1k; a 100k file beside it for PATH_=/100k.
head -c 102400 /dev/zero | tr '\0' 'x' > "$D/origin/html/100k"

start_target() { # NAME; sets STARTED_PID
  local d="$D/$1"; mkdir -p "$d/tmp"
  case $1 in
    nginx)
      nginx_proxy_conf "$d" "${PORT[nginx]}" > "$d/nginx.conf"
      [ "$ACCESS_LOG" = 1 ] && sed -i "s|^  server {|  access_log $d/access.log combined buffer=64k flush=1s;\n  server {|" "$d/nginx.conf"
      start_nginx "$d" "$TARGET_CPU" QUIT nginx ;;
    holdfast)
      holdfast_conf "${PORT[holdfast]}" "$ADMIN_PORT" "$d" > "$d/holdfast.toml"
      start_holdfast "$d" ;;
    minimal)
      spawn "$d" "$TARGET_CPU" TERM "$MINIMAL_BIN" --listen "$HOST:${PORT[minimal]}" --upstream "$HOST:$O_PORT" ;;
  esac
  wait_200 "$1" "$STARTED_PID" "${PORT[$1]}" "$d/stdout.log"
}

# utime and stime (clock ticks) of PID's whole tree
ticks() { # PID
  local p u=0 s=0 f
  for p in $(tree_pids "$1"); do
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f
    u=$((u + ${12})); s=$((s + ${13}))
  done
  echo "$u $s"
}

HZ=$(getconf CLK_TCK)
runs="$D/runs.tsv"; printf 'run\ttarget\trequests\tuser_us\tsys_us\n' > "$runs"
read -r -a order <<< "$TARGETS"
for (( r = 0; r < REPEAT; r++ )); do
  for (( i = 0; i < ${#order[@]}; i++ )); do
    t=${order[$(( (i + r) % ${#order[@]} ))]}
    start_target "$t"; pid=$STARTED_PID
    url="http://$HOST:${PORT[$t]}$PATH_"
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" > /dev/null
    read -r u0 s0 <<< "$(ticks "$pid")"
    timeout $((DURATION + 15)) taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" > "$D/$t.$r.wrk"
    read -r u1 s1 <<< "$(ticks "$pid")"
    n=$(awk '/requests in/ { print $1 }' "$D/$t.$r.wrk")
    grep -q "Non-2xx\|Socket errors" "$D/$t.$r.wrk" && die "$t: errors in $D/$t.$r.wrk"
    awk -v r="$r" -v t="$t" -v n="$n" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v hz="$HZ" \
      'BEGIN { printf "%d\t%s\t%d\t%.2f\t%.2f\n", r, t, n, du / hz * 1e6 / n, ds / hz * 1e6 / n }' >> "$runs"
    stop "$pid" "$([ "$t" = nginx ] && echo QUIT || echo TERM)"
  done
done

report="$D/report.txt"
python3 - "$runs" "$PATH_" "$(uptime)" > "$report" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {}
for t in dict.fromkeys(r["target"] for r in rows):
    mine = [r for r in rows if r["target"] == t]
    u = statistics.median(float(r["user_us"]) for r in mine)
    s = statistics.median(float(r["sys_us"]) for r in mine)
    med[t] = (u, s)
print(f"CPU per request of {sys.argv[2]}, medians of {len(rows) // len(med)} runs (load: {sys.argv[3].split('load average:')[-1].strip()})")
print()
print("| target | user µs / req | kernel µs / req | total µs / req | total vs nginx | user vs nginx |")
print("|---|---:|---:|---:|---:|---:|")
base = med.get("nginx")
for t, (u, s) in med.items():
    tot = f"{(u + s) / sum(base):.2f}" if base else "n/a"
    usr = f"{u / base[0]:.2f}" if base else "n/a"
    print(f"| {t} | {u:.2f} | {s:.2f} | {u + s:.2f} | {tot} | {usr} |")
EOF
cat "$report"
log "runs: $runs"
