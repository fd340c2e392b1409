#!/usr/bin/env bash
# The benchmark suite, one command: builds the benchmarks (release), starts the servers
# (scripts/test.sh does), runs every benchmark, and writes
#   target/bench/report.md                 the printed tables
#   target/bench/{hotpath,tail,tpcb,mongo,users,memory,recovery,get}.json
#   docs/benchmarks/hotpath-*.png          throughput and p99 against concurrency
# The run itself takes about 4 minutes on 2 cores; the first release build adds about 6.
#
#   bash scripts/bench.sh
#
# HOTPATH_CELL_MS (default 700 here) and HOTPATH_ROUNDS (3) set the hot path's length.
# Nothing is asserted: the figures are read against the goals in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export HOTPATH_CELL_MS="${HOTPATH_CELL_MS:-700}"
say() { printf '==> %s\n' "$*"; }
say "building the benchmarks (release)"
cargo bench -q -p dbmanager --all-features --no-run
cargo build -q --release -p dbmanager-charts
mkdir -p target/bench
run_all() {
  local started=$SECONDS
  for b in hotpath tail tpcb mongo users memory recovery get; do
    cargo bench -q -p dbmanager --all-features --bench "$b"
  done
  printf '\nsuite run time: %d s\n' $((SECONDS - started))
}
export -f run_all
bash scripts/test.sh -- bash -c 'set -euo pipefail; run_all' 2>&1 | tee target/bench/report.md
target/release/dbmanager-charts --bench target/bench/hotpath.json docs/benchmarks
