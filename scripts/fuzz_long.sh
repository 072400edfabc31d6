#!/usr/bin/env bash
# Long fuzz campaigns (issue #9): every target for RUNS inputs (default 1,000,000) from the
# seeds and the regression inputs; one line per target (runs, exit status, seconds) in
# OUT/summary.txt, crashing inputs as OUT/<target>-crash-*. Run it niced, in the background:
#   nice -n 19 scripts/fuzz_long.sh [RUNS] [OUT] > fuzz-long.log 2>&1 &
# TARGETS="engine" limits it to some of fuzz_reply fuzz_segment fuzz_state fuzz_clock engine.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
OUT=$(realpath -m "${2:-build/fuzz-long}")
mkdir -p "$OUT"
make -s -C tests/fuzz BUILD="$OUT/bin"
.venv/bin/python -m tests.fuzz.seeds "$OUT/seeds"
for target in ${TARGETS:-fuzz_reply fuzz_segment fuzz_state fuzz_clock engine}; do
    corpora=("$OUT/corpus/$target")
    mkdir -p "${corpora[0]}" "$OUT/seeds/$target"
    corpora+=("$OUT/seeds/$target")
    [ -d "tests/fuzz/regressions/$target" ] && corpora+=("tests/fuzz/regressions/$target")
    # the engine's inputs are scripts of frames: 1 kB (~20 frames) keeps it near 400 inputs/s
    if [ "$target" = engine ]; then command=(.venv/bin/python tests/fuzz/fuzz_engine.py); max_len=1024
    else command=("$OUT/bin/$target"); max_len=8192; fi
    started=$(date +%s)
    status=0
    "${command[@]}" -runs="$RUNS" -timeout=20 -max_len=$max_len -artifact_prefix="$OUT/$target-" "${corpora[@]}" \
        > "$OUT/$target.log" 2>&1 || status=$?
    done_line=$(grep -a "^Done" "$OUT/$target.log" | tail -1 || true)
    echo "$target exit=$status ${done_line:-no Done line} ($(( $(date +%s) - started )) s)" | tee -a "$OUT/summary.txt"
done
