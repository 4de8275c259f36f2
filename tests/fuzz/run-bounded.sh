#!/usr/bin/env bash
# Runs every cargo-fuzz target in tests/fuzz for SECONDS each (default 60),
# installing cargo-fuzz first if it is missing. Exits non-zero on the first
# target that finds a crash (the input is left in tests/fuzz/artifacts/).
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets stable rustc take
# the -Z flags (sanitizer, coverage) that cargo-fuzz passes.
set -euo pipefail

secs="${1:-60}"
case "$secs" in
    '' | *[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run-bounded: installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
targets="$(cargo fuzz list --fuzz-dir tests/fuzz)"
if [ -z "$targets" ]; then
    echo "run-bounded: no fuzz targets found" >&2
    exit 1
fi

for t in $targets; do
    echo "run-bounded: fuzzing $t for ${secs}s" >&2
    cargo fuzz run --fuzz-dir tests/fuzz "$t" -- -max_total_time="$secs"
    echo "run-bounded: $t ran ${secs}s clean" >&2
done
