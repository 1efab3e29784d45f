#!/usr/bin/env bash
# Instructions per DNS query under callgrind (deterministic, unlike timings on a shared
# machine; see bench/README.md, "DNS"): Holdfast, NSD and Knot with the zone, configs and
# query mix of the last bench/dns.sh run (its folder $BENCH_STATE/dns; run dns.sh with the three
# targets first). Each server runs under valgrind --tool=callgrind (all threads and forked
# children), gets one warm-up pass of the query file, its counters are zeroed, then PASSES
# passes at RATE q/s (dnsperf on loopback), and the dumped instructions are divided by the
# queries dnsperf saw answered. Holdfast is measured twice: plain queries (the pre-encoded
# path) and the same queries with an EDNS cookie option (hickory's path).
#
# usage: bench/dns_instructions.sh [HOLDFAST_BIN|-]      (-: NSD and Knot only)
# env:   BENCH_STATE=/tmp/bench-state  PASSES=4  RATE=1500  SKIP_NSD=1  SKIP_KNOT=1
# needs: apt-get install valgrind dnsperf nsd knot bind9-dnsutils
set -euo pipefail
case " $* " in *" -h "*|*" --help "*) sed -n '2,12p' "$0"; exit 0 ;; esac
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN=${1:-${CARGO_TARGET_DIR:-$HERE/../target}/release/holdfast}
S="${BENCH_STATE:-/tmp/bench-state}/dns"; OUT="$S/callgrind"; PASSES=${PASSES:-4}; RATE=${RATE:-1500}
[ -f "$S/queries.txt" ] || { echo "no $S/queries.txt: run bench/dns.sh first" >&2; exit 1; }
for c in valgrind callgrind_control dnsperf dig; do command -v "$c" >/dev/null || { echo "no $c" >&2; exit 1; }; done
mkdir -p "$OUT" "$S/knot/db"; rm -f "$OUT"/cg.*
Q="$S/queries.txt"; EXTRA=()
desc() { local c; for c in $(pgrep -P "$1"); do echo "$c"; desc "$c"; done; }
run() { # NAME PORT CMD...
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$OUT/cg.$name.%p" "$@" > "$OUT/$name.log" 2>&1 &
  local vpid=$! i
  for (( i = 0; i < 600; i++ )); do
    dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 mail.example.test A 2>/dev/null | grep -q 192.0.2.25 && break
    sleep 0.5
  done
  [ "$i" -lt 600 ] || { echo "$name did not answer under valgrind ($OUT/$name.log)" >&2; return 1; }
  # warm-up pass, then zero, then the measured passes
  dnsperf "${EXTRA[@]}" -s 127.0.0.1 -p "$port" -d "$Q" -n 1 -Q "$RATE" > /dev/null 2>&1 || true
  local p; for p in $vpid $(desc $vpid); do callgrind_control -z $p > /dev/null 2>&1 || true; done
  dnsperf "${EXTRA[@]}" -s 127.0.0.1 -p "$port" -d "$Q" -n "$PASSES" -Q "$RATE" > "$OUT/$name.dnsperf" 2>&1 || true
  for p in $vpid $(desc $vpid); do callgrind_control -d $p > /dev/null 2>&1 || true; done
  sleep 1
  local done_q ir
  done_q=$(awk '/Queries completed:/ { print $3 }' "$OUT/$name.dnsperf")
  # the dump taken after the zeroing: the highest-numbered part file of each process
  ir=0
  for f in $(ls "$OUT"/cg."$name".*.[0-9]* 2>/dev/null); do
    v=$(awk '/^summary:/ { print $2 }' "$f"); ir=$(( ir + ${v:-0} ))
  done
  for p in $(desc $vpid); do kill -TERM $p 2>/dev/null || true; done; kill -TERM $vpid 2>/dev/null || true; wait $vpid 2>/dev/null || true
  echo "$name queries=$done_q instructions=$ir per_query=$(( ir / (done_q > 0 ? done_q : 1) ))"
}
if [ "$BIN" != - ] && [ -f "$S/holdfast/holdfast.toml" ]; then
  run holdfast 18400 "$BIN" run --config "$S/holdfast/holdfast.toml"
  # The same queries with an EDNS cookie option, which the pre-encoded path leaves to hickory.
  EXTRA=(-E 10:0707070707070707)
  run holdfast-hickory-path 18400 "$BIN" run --config "$S/holdfast/holdfast.toml"
  EXTRA=()
fi
[ "${SKIP_NSD:-0}" = 1 ] || run nsd 18401 nsd -d -c "$S/nsd/nsd.conf"
[ "${SKIP_KNOT:-0}" = 1 ] || run knot 18402 knotd -c "$S/knot/knot.conf"
