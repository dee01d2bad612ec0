#!/bin/sh
# The performance record in one command: criterion benchmarks, the ratio table
# (target/vmsi-bench/results.md) and the scaling plots (docs/bench/*.png).
# VMSI_BENCH_QUICK=1 shortens the measurements (about 45 s instead of 90 s on 2 cores).
set -eu
cd "$(dirname "$0")/.."
cargo bench --features kvm --bench kvm_routes "$@"
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib
python3 benches/plot.py "${CARGO_TARGET_DIR:-target}/vmsi-bench/results.json" docs/bench
