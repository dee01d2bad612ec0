#!/bin/bash
# Fuzzing smoke test: what CI runs (tests/run-all.sh), and a quick check before sending a
# change that touches the MSI core, the parsers, the objects or Sim.
#   1. the harnesses' own tests on stable (`cargo test` in fuzz/: seeds, regressions);
#   2. one AddressSanitizer build of every target (cargo-fuzz's default sanitizer);
#   3. per target: its seed corpus and committed regression inputs, each run once, then
#      FUZZ_SECS seconds (default 40) of fuzzing from them on one core.
# Exit status non-zero on any crash, leak, timeout or broken invariant; the crashing input
# is in fuzz/artifacts/<target>/. Installs nightly and cargo-fuzz if missing. About 5-6
# minutes on 2 cores with a cold build (see fuzz/README.md for longer runs).
#   env: FUZZ_SECS (per target), FUZZ_TARGETS (space-separated subset)
set -euo pipefail
cd "$(dirname "$0")"
SECS=${FUZZ_SECS:-40}
TARGETS=${FUZZ_TARGETS:-"trap firmware kernel_answers sim_faults kernel_verbs"}
say() { printf 'fuzz: %s\n' "$*" >&2; }

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  say "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

t0=$(date +%s)
say "harness tests (stable)"
cargo test --locked -q -p vmsi-fuzz-common 2>&1 | grep -E '^test result|FAILED|panicked' >&2

say "building every target with AddressSanitizer"
cargo +nightly fuzz build -s address >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
for t in $TARGETS; do
  # The build must really be instrumented: the ASan runtime is linked in.
  grep -q AddressSanitizer "$bin/$t" || { say "$t is not an ASan build"; exit 1; }
done
say "built in $(( $(date +%s) - t0 )) s"

# Seeds are rewritten every run; what libFuzzer adds to corpus/<t> stays (gitignored).
cargo run --locked -q -p vmsi-fuzz-common --bin write-corpus -- corpus >&2
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
total=0 crashed=0
for t in $TARGETS; do
  inputs=("corpus/$t")
  [ -d "regressions/$t" ] && inputs+=("regressions/$t")
  # Regression first: every seed and committed crash input once, no mutation.
  if ! "$bin/$t" -runs=0 "${inputs[@]}" >"$LOGS/$t.regress" 2>&1; then
    tail -40 "$LOGS/$t.regress"
    say "$t: a seed or regression input fails"; crashed=$((crashed + 1)); continue
  fi
  rc=0
  mkdir -p "artifacts/$t"
  "$bin/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" "${inputs[@]}" >"$LOGS/$t.log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$LOGS/$t.log" | tail -1 | cut -d' ' -f2)
  corp=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" != 0 ]; then
    grep -E 'panicked at|ERROR: |SUMMARY|Test unit written' -A2 "$LOGS/$t.log" | head -30
    say "$t: CRASH (exit $rc) after ${execs:-?} executions"
    crashed=$((crashed + 1))
  fi
  total=$((total + ${execs:-0}))
  printf 'fuzz %-15s %10s execs in %ss (%s/s), coverage %s, corpus %s\n' \
    "$t" "${execs:-0}" "$SECS" "$(( ${execs:-0} / SECS ))" "${cov:-?}" "$corp"
done
n=$(wc -w <<<"$TARGETS")
echo "fuzz smoke: $n targets, $total executions, $crashed crashed ($(( $(date +%s) - t0 )) s)"
[ "$crashed" = 0 ]
