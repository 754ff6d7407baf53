#!/usr/bin/env bash
# Runs every test program in $BUILD/tests (default build/) from the repository root, and every
# tests/*.test.sh script (which get NURI=$BUILD/nuri), then prints one closing line:
# "N passed, N failed". A program that dies without printing its own count counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export NURI="$BUILD/nuri"
# nuri chat and nuri serve keep a conversation store under XDG_DATA_HOME by default: the tests'
# stores go to a directory of their own, never the user's
XDG_DATA_HOME=$(mktemp -d /tmp/nuri-test-data.XXXXXX)
export XDG_DATA_HOME
trap 'rm -rf "$XDG_DATA_HOME"' EXIT
passed=0
failed=0
failed_names=()
run_one() {
    local name=$1
    shift
    local out t0=$SECONDS
    out=$("$@" 2>&1)
    local rc=$?
    echo "-- $name: $((SECONDS - t0)) s" # where the suite's time goes (CI must stay under 30 min)
    printf '%s\n' "$out" | grep -v '^ok ' || true
    local line
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -n "$line" ]; then
        local p f
        p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
        f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
        passed=$((passed + p))
        failed=$((failed + f))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
        if [ "$rc" -ne 0 ]; then failed_names+=("$name"); fi
    else
        echo "$name: exited with status $rc without a count"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $(basename "$t")"
    run_one "$(basename "$t")" "$t"
done
for s in tests/*.test.sh; do
    [ -f "$s" ] || continue
    echo "== $(basename "$s")"
    run_one "$(basename "$s")" bash "$s"
done
if [ ${#failed_names[@]} -gt 0 ]; then echo "failing: ${failed_names[*]}"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
