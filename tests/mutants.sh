#!/usr/bin/env bash
# Mutation testing of the protocol core (src/proto): cargo-mutants changes
# the code one small way at a time (a `>=` made `>`, a function made to
# return a default, ...) and runs the fast tests that cover the core. A
# mutant the tests still pass is a behaviour nobody checks: kill it with a
# test, or explain in the README why it cannot matter.
#
#   tests/mutants.sh                 # every mutant of src/proto
#   tests/mutants.sh -F 'frame.rs'   # extra arguments go to cargo mutants
#
# Tests run: the library's unit tests (`--lib`), the frame codec's
# property tests (`--test frame_props`) and the fuzz targets' checks on
# their seed corpus (`--test fuzz_seeds`), each a fraction of a second;
# plus the simulation tests of the core (`--test simulation`) when
# tests/simulation.rs exists. The daemon-level suites are left out: they
# take a minute per mutant and more.
#
# A second run with `--iterate` tries only the mutants that survived (or
# were not tried) last time.
#
# Results go to target/mutants/mutants.out (caught.txt, missed.txt,
# timeout.txt, unviable.txt, outcomes.json). Not run by CI: on 2 cores a
# full run takes about an hour (the README's Tests section has the last
# figures). The crate under test is built without optimisation
# (CARGO_PROFILE_TEST_OPT_LEVEL=0): each mutant rebuilds it, and the
# unit tests need no speed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null 2>&1; then
    echo "== installing cargo-mutants (crates.io)"
    cargo install --locked cargo-mutants
fi

# Given as --cargo-arg (every cargo command), so that each mutant's build
# (`cargo test --no-run`) compiles only these test targets, not every suite.
targets=(--lib --test=frame_props --test=fuzz_seeds)
if [ -f tests/simulation.rs ]; then
    targets+=(--test=simulation)
fi
args=()
for t in "${targets[@]}"; do
    args+=("--cargo-arg=$t")
done

mkdir -p target/mutants
echo "== cargo mutants --file 'src/proto/**' ${args[*]} $*"
CARGO_PROFILE_TEST_OPT_LEVEL=0 exec cargo mutants \
    --file 'src/proto/**' \
    --output target/mutants \
    --timeout 20 \
    --build-timeout 600 \
    "${args[@]}" \
    "$@"
