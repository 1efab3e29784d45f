#!/usr/bin/env bash
# Runs every cargo-fuzz target in turn for SECONDS each (default 600) and prints a table:
# target, runs, seconds, result. Seeds are read from corpus/<target>/ (committed, never
# written); what libFuzzer finds is kept in target/corpus/<target>/ between runs, crashes in
# artifacts/<target>/. Exit status 1 if any target failed to build or found something.
#
#   fuzz/run.sh            # 600 s per target
#   fuzz/run.sh 5          # the CI's smoke run: each target builds and runs
#   TARGETS="path_normalise front_door" fuzz/run.sh 120
#   SANITIZER=none fuzz/run.sh 60   # no AddressSanitizer (faster build and runs)
#   DEV=1 SANITIZER=none fuzz/run.sh 5   # unoptimised: builds in about half the time, runs
#                                        # slower (the CI's smoke run: does each target build
#                                        # and run at all)
#
# The toolchain is the repository's stable one (rust-toolchain.toml); cargo-fuzz needs
# nightly-only flags (-Z sanitizer, -C passes=sancov), which stable accepts with
# RUSTC_BOOTSTRAP=1. cargo-fuzz is installed (`cargo install cargo-fuzz --locked`) when
# missing.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-600}"
SANITIZER="${SANITIZER:-address}"
FLAGS=(-s "$SANITIZER")
if [ "${DEV:-0}" = 1 ]; then FLAGS+=(--dev); fi
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz (a few minutes)"
  cargo install cargo-fuzz --locked
fi

ALL=$(cargo fuzz list)
TARGETS="${TARGETS:-$ALL}"

start=$(date +%s)
echo "== fuzz build (${FLAGS[*]})"
mkdir -p target
cargo fuzz build "${FLAGS[@]}" >target/build.log 2>&1 || {
  tail -40 target/build.log
  echo "fuzz/run.sh: the fuzz targets do not build (log: fuzz/target/build.log)" >&2
  exit 1
}
echo "built in $(( $(date +%s) - start )) s"

failed=0
rows=()
for t in $TARGETS; do
  work="target/corpus/$t"
  mkdir -p "$work" "artifacts/$t" "corpus/$t"
  log="target/fuzz-$t.log"
  t0=$(date +%s)
  if cargo fuzz run "${FLAGS[@]}" "$t" "$work" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    result="clean"
  else
    result="FOUND (see fuzz/$log, fuzz/artifacts/$t/)"
    failed=1
  fi
  took=$(( $(date +%s) - t0 ))
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  rows+=("$(printf '%-18s %12s %8s  %s' "$t" "${runs:-?}" "$took" "$result")")
  echo "${rows[-1]}"
done

echo
echo "== fuzz summary ($SECONDS_EACH s per target, sanitizer $SANITIZER)"
printf '%-18s %12s %8s  %s\n' target runs seconds result
printf '%s\n' "${rows[@]}"
exit "$failed"
