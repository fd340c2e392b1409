#!/usr/bin/env bash
# Regenerates the PNG charts of docs/observability.md from a real run: the Prometheus test
# (tests/prometheus.rs) runs longer in chart mode and writes a range query of every
# dashboard panel, then tools/charts renders one PNG per panel into docs/observability/.
#
#   bash scripts/charts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data="$PWD/target/chart-data.json"
rm -f "$data"
DBMANAGER_CHART_DATA="$data" bash scripts/test.sh -- \
  cargo test -p dbmanager --all-features --test integration -- prometheus:: --nocapture
[ -s "$data" ] || { echo "error: the Prometheus test wrote no chart data" >&2; exit 1; }
cargo run -q -p dbmanager-charts -- "$data" docs/observability
