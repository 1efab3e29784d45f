#!/usr/bin/env bash
# DNS benchmark (see bench/README.md, "DNS"): Holdfast's authoritative server against NSD,
# Knot and PowerDNS (bind backend) serving the same zone, one at a time in the same run, each
# pinned to TARGET_CPU (one core); dnsperf on LOADGEN_CPU sends the same query mix (answers,
# a CNAME, NODATA, NXDOMAIN, the steered name for Holdfast only as an extra row) for
# DURATION s, REPEAT times with the order rotated. Reports queries/s, CPU ms per 1,000
# queries (utime+stime of the server's process from /proc) and the ratios to Holdfast.
#
# usage: bench/dns.sh [--no-build]
# env:   NO_BUILD=1  HOLDFAST_BIN (default ${CARGO_TARGET_DIR:-target}/release/holdfast)
#        DURATION=10  REPEAT=3  CLIENTS=16 (dnsperf -c)  OUTSTANDING=200 (dnsperf -q)
#        TARGETS="holdfast nsd knot pdns"  PORT_BASE=18400  SHARED_BENCH  BENCH_STATE
#        REPIN=1 (0: leave threads that set their own CPU affinity where they went)
# needs: apt-get install dnsperf nsd knot pdns-server pdns-backend-bind
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,14p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
parse_args "$@"

DURATION=${DURATION:-10}; REPEAT=${REPEAT:-3}; CLIENTS=${CLIENTS:-16}; OUTSTANDING=${OUTSTANDING:-200}
REPIN=${REPIN:-1}
TARGETS=${TARGETS:-"holdfast nsd knot pdns"}
PORT_BASE=${PORT_BASE:-18400}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
D="$BENCH_STATE/dns"
declare -A PORT=([holdfast]=$PORT_BASE [nsd]=$((PORT_BASE + 1)) [knot]=$((PORT_BASE + 2)) [pdns]=$((PORT_BASE + 3)))
HF_HTTP=$((PORT_BASE + 10)); HF_ADMIN=$((PORT_BASE + 11)); ORIGIN=$((PORT_BASE + 12))

for t in $TARGETS; do
  case $t in
    holdfast) ;;
    nsd) command -v nsd >/dev/null || die "no nsd (apt-get install nsd)" ;;
    knot) command -v knotd >/dev/null || die "no knotd (apt-get install knot)" ;;
    pdns) command -v pdns_server >/dev/null || die "no pdns_server (apt-get install pdns-server pdns-backend-bind)" ;;
    *) die "unknown target $t" ;;
  esac
done
command -v dnsperf >/dev/null || die "no dnsperf (apt-get install dnsperf)"
build_holdfast "build it or set HOLDFAST_BIN"
for p in "${PORT[@]}" $HF_HTTP $HF_ADMIN $ORIGIN; do
  if port_listening "$p"; then die "port $p already in use (set PORT_BASE)"; fi
done
rm -rf "$D"; mkdir -p "$D"
new_results_dir

# ---- the zone and the queries -------------------------------------------------------------
ZONE="$D/example.test.zone"
{
  echo '$TTL 300'
  echo '@        IN SOA ns1.example.test. hostmaster.example.test. 2025102001 7200 900 1209600 60'
  echo '@        IN NS  ns1.example.test.'
  echo 'ns1      IN A   192.0.2.1'
  echo '@        IN MX  10 mail.example.test.'
  echo 'mail     IN A   192.0.2.25'
  echo 'mail     IN AAAA 2001:db8::25'
  echo 'txt      IN TXT "v=spf1 -all"'
  echo 'alias    IN CNAME mail.example.test.'
  for i in $(seq 1 1000); do echo "h$i IN A 10.0.$((i / 256)).$((i % 256))"; done
} > "$ZONE"
QUERIES="$D/queries.txt"
{
  for i in $(seq 1 1000); do echo "h$i.example.test A"; done
  for _ in $(seq 1 50); do
    echo "mail.example.test AAAA"; echo "example.test MX"; echo "txt.example.test TXT"
    echo "alias.example.test A"; echo "mail.example.test TXT"; echo "nope$RANDOM.example.test A"
  done
} | shuf --random-source=<(yes) > "$QUERIES"
STEERED_Q="$D/steered.txt"; echo "www.example.test A" > "$STEERED_Q"

# ---- configs -------------------------------------------------------------------------------
conf_holdfast() {
  mkdir -p "$D/holdfast"
  cp "$ZONE" "$D/holdfast/example.test.zone"
  cat > "$D/holdfast/holdfast.toml" <<EOC
[edge]
listen = ["$HOST:$HF_HTTP"]
threads = 1
access_log = "off"

[admin]
listen = "$HOST:$HF_ADMIN"

[[pools]]
name = "origin"
servers = ["$HOST:$ORIGIN"]
[pools.health]
kind = "tcp"
interval = "1s"

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"

[dns]
listen = "$HOST:${PORT[holdfast]}"

[[dns.zones]]
origin = "example.test."
file = "example.test.zone"

[[dns.steered]]
name = "www.example.test."
pools = ["origin"]
ttl = 30
EOC
}
conf_nsd() {
  mkdir -p "$D/nsd"
  cat > "$D/nsd/nsd.conf" <<EOC
server:
  ip-address: $HOST@${PORT[nsd]}
  server-count: 1
  rrl-ratelimit: 0
  username: ""
  zonesdir: "$D"
  pidfile: "$D/nsd/nsd.pid"
  database: ""
  zonelistfile: "$D/nsd/zone.list"
  xfrdfile: "$D/nsd/xfrd.state"
  xfrdir: "$D/nsd"
  logfile: "$D/nsd/nsd.log"
remote-control:
  control-enable: no
zone:
  name: example.test
  zonefile: "$ZONE"
EOC
}
conf_knot() {
  mkdir -p "$D/knot/db"
  cat > "$D/knot/knot.conf" <<EOC
server:
  rundir: "$D/knot"
  listen: $HOST@${PORT[knot]}
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$D/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$D"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: example.test
    file: "$ZONE"
EOC
}
conf_pdns() {
  mkdir -p "$D/pdns"
  echo "zone \"example.test\" { type master; file \"$ZONE\"; };" > "$D/pdns/named.conf"
  cat > "$D/pdns/pdns.conf" <<EOC
launch=bind
bind-config=$D/pdns/named.conf
local-address=$HOST
local-port=${PORT[pdns]}
socket-dir=$D/pdns
daemon=no
guardian=no
disable-syslog=yes
receiver-threads=1
distributor-threads=1
cache-ttl=20
query-cache-ttl=20
webserver=no
EOC
}

# A server may set its own threads' CPU affinity: Knot pins its UDP worker to CPU 0 (worker i
# on CPU i), which put it on LOADGEN_CPU beside dnsperf, out of the one core the others get
# (and with dnsperf's wake-ups local, no cross-CPU interrupt). Once the server answers, every
# thread of its tree is put back on TARGET_CPU; REPIN=0 leaves them where they went.
repin() { # NAME PID
  [ "$REPIN" = 1 ] || return 0
  local p t moved=0
  for p in $(tree_pids "$2"); do
    for t in /proc/"$p"/task/*; do
      grep -q "^Cpus_allowed_list:[[:space:]]*$TARGET_CPU\$" "$t/status" 2>/dev/null && continue
      if taskset -p -c "$TARGET_CPU" "${t##*/}" > /dev/null 2>&1; then moved=$(( moved + 1 )); fi
    done
  done
  if [ "$moved" -gt 0 ]; then log "$1: $moved thread(s) had left CPU $TARGET_CPU, put back"; fi
}

start_target() { # NAME; sets STARTED_PID
  local d="$D/$1"
  case $1 in
    holdfast) conf_holdfast; spawn "$d" "$TARGET_CPU" TERM "$HOLDFAST_BIN" run --config "$d/holdfast.toml" ;;
    nsd) conf_nsd; spawn "$d" "$TARGET_CPU" TERM nsd -d -c "$d/nsd.conf" ;;
    knot) conf_knot; spawn "$d" "$TARGET_CPU" TERM knotd -c "$d/knot.conf" ;;
    pdns) conf_pdns; spawn "$d" "$TARGET_CPU" TERM pdns_server --config-dir="$d" ;;
  esac
  local i
  for (( i = 0; i < 100; i++ )); do
    if dig +short +time=1 +tries=1 -p "${PORT[$1]}" @"$HOST" mail.example.test A 2>/dev/null | grep -q 192.0.2.25; then repin "$1" "$STARTED_PID"; return 0; fi
    pid_alive "$STARTED_PID" || { tail -20 "$d/stdout.log" >&2; die "$1 exited during start-up"; }
    sleep 0.1
  done
  tail -20 "$d/stdout.log" >&2; die "$1 did not answer on :${PORT[$1]}"
}

# utime + stime of PID's process tree (all threads; NSD serves from a forked child), in ticks.
cpu_ticks() {
  local p sum=0 t
  for p in $(tree_pids "$1"); do
    t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
    sum=$(( sum + t ))
  done
  echo "$sum"
}

# One dnsperf run against NAME with QUERYFILE; appends "name qps cpu_ms_per_1k" to $out/runs.txt.
measure() { # NAME PID QUERYFILE LABEL
  local name=$1 pid=$2 qf=$3 label=$4 raw="$out/raw/$4-$RANDOM.txt" t0 t1 qps completed
  t0=$(cpu_ticks "$pid")
  taskset -c "$LOADGEN_CPU" dnsperf -s "$HOST" -p "${PORT[$name]}" -d "$qf" -l "$DURATION" \
    -c "$CLIENTS" -q "$OUTSTANDING" > "$raw" 2>&1 || true
  t1=$(cpu_ticks "$pid")
  qps=$(awk '/Queries per second:/ { print $4 }' "$raw")
  completed=$(awk '/Queries completed:/ { print $3 }' "$raw")
  [ -n "$qps" ] && [ -n "$completed" ] && [ "$completed" -gt 0 ] || { tail -5 "$raw" >&2; die "dnsperf against $name failed ($raw)"; }
  awk -v n="$label" -v q="$qps" -v c="$completed" -v t=$(( t1 - t0 )) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%s %.0f %.4f\n", n, q, (t / hz) * 1000 / c * 1000 }' >> "$out/runs.txt"
  log "$label: $qps q/s"
}

# ---- the origin for Holdfast's steered name (a TCP listener is enough for its check) -------
spawn "$D" "$LOADGEN_CPU" TERM python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$HOST', $ORIGIN)); s.listen(128)
while True:
    c, _ = s.accept(); c.close()
"
{
  env_head "targets on CPU $TARGET_CPU (one at a time), dnsperf on CPU $LOADGEN_CPU"
  echo "dnsperf: -l $DURATION -c $CLIENTS -q $OUTSTANDING; $(wc -l < "$QUERIES") queries in the mix; repeat $REPEAT; REPIN=$REPIN"
  for t in $TARGETS; do
    case $t in
      holdfast) echo "holdfast: $("$HOLDFAST_BIN" --version 2>/dev/null || echo "$HOLDFAST_BIN")" ;;
      nsd) echo "nsd: $(nsd -v 2>&1 | head -1)" ;;
      knot) echo "knot: $(knotd --version 2>&1 | head -1)" ;;
      pdns) echo "pdns: $(dpkg-query -W -f='${Version}' pdns-server 2>/dev/null)" ;;
    esac
  done
} > "$out/env.txt"

read -r -a order <<< "$TARGETS"
for (( r = 0; r < REPEAT; r++ )); do
  for (( k = 0; k < ${#order[@]}; k++ )); do
    t=${order[$(( (k + r) % ${#order[@]} ))]}
    start_target "$t"; pid=$STARTED_PID
    measure "$t" "$pid" "$QUERIES" "$t"
    if [ "$t" = holdfast ]; then measure "$t" "$pid" "$STEERED_Q" holdfast-steered; fi
    stop "$pid"
  done
done

# ---- report: medians per target, ratios to holdfast ----------------------------------------
python3 - "$out/runs.txt" <<'EOP' | tee "$out/report.txt"
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, qps, cpu = line.split()
    runs.setdefault(name, []).append((float(qps), float(cpu)))
med = {n: (statistics.median(q for q, _ in v), statistics.median(c for _, c in v), len(v)) for n, v in runs.items()}
hf = med.get("holdfast")
print(f"{'server':<18}{'queries/s':>12}{'CPU ms/1k q':>14}{'q/s vs holdfast':>18}{'CPU vs holdfast':>17}  runs")
for n, (q, c, k) in med.items():
    rq = f"{q / hf[0]:.2f}" if hf else "-"
    rc = f"{c / hf[1]:.2f}" if hf else "-"
    print(f"{n:<18}{q:>12.0f}{c:>14.3f}{rq:>18}{rc:>17}  {k}")
print("(medians; ratios are the server's value divided by Holdfast's: q/s above 1 = faster than Holdfast, CPU above 1 = costlier)")
EOP
log "results in $out"
