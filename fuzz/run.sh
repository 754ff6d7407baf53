#!/usr/bin/env bash
# fuzz/run.sh: runs every libFuzzer target for a bounded time, on a working copy of its saved
# corpus, and fails if any of them finds a crash, a leak or a timeout.
#
#   fuzz/run.sh [SECONDS] [NAME...]     (after `make fuzz`; SECONDS per target, default 60)
#
# Targets are found, not listed: every fuzz/fuzz_<name>.c is one target, built as
# build-fuzz/fuzz_<name>, with its saved corpus in fuzz/corpus/<name>/ (created if missing) and an
# optional dictionary fuzz/<name>.dict. CI runs it for a short time; the same script runs a longer
# campaign (e.g. `nice -n 19 fuzz/run.sh 1800 gguf`).
#
# What it leaves in the work directory ($FUZZ_WORK, default fuzz/corpus-work/, gitignored):
#   <name>/          the live corpus: the saved corpus plus every input the fuzzer found (kept
#                    between runs, so a campaign can be resumed)
#   <name>.new/      after the run, the new inputs that add coverage over the saved corpus
#                    (libFuzzer -merge=1); copy them to fuzz/corpus/<name>/ to keep them
#   <name>.crashes/  crash-*, leak-*, timeout-*, oom-* inputs (the crashing input is also printed)
#   logs/<name>.log  libFuzzer's output ($FUZZ_LOGS to put the logs elsewhere)
#
# Environment: FUZZ_BUILD (default build-fuzz), FUZZ_WORK, FUZZ_LOGS, FUZZ_PARALLEL (targets run
# at once, default 1), FUZZ_TIMEOUT (seconds one input may take, default 30).
set -u
cd "$(dirname "$0")/.." || exit 2
secs=${1:-60}
[ $# -gt 0 ] && shift
case $secs in
'' | *[!0-9]*)
    echo "usage: fuzz/run.sh [SECONDS] [NAME...]" >&2
    exit 2
    ;;
esac
build=${FUZZ_BUILD:-build-fuzz}
work=${FUZZ_WORK:-fuzz/corpus-work}
logs=${FUZZ_LOGS:-$work/logs}
parallel=${FUZZ_PARALLEL:-1}
per_input=${FUZZ_TIMEOUT:-30}

# Largest input per target: big enough for what the parser is for (a GGUF header with its
# metadata and tensor table; a chat template; a request body), small enough to keep runs fast.
max_len_of() {
    case $1 in
    gguf) echo 65536 ;;
    template | tokenizer) echo 8192 ;;
    request) echo 16384 ;;
    *) echo 16384 ;;
    esac
}

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for src in fuzz/fuzz_*.c; do
        n=${src#fuzz/fuzz_}
        names+=("${n%.c}")
    done
fi
mkdir -p "$work" "$logs"

# One target: fuzz, then merge. Writes its one-line summary to $logs/<name>.summary; returns
# non-zero on a finding or a missing build.
run_target() {
    local name=$1 bin=$build/fuzz_$1 saved=fuzz/corpus/$1
    local live=$work/$1 new=$work/$1.new crashes=$work/$1.crashes log=$logs/$1.log
    local sum=$logs/$1.summary max_len
    max_len=$(max_len_of "$name")
    if [ ! -x "$bin" ]; then
        echo "$name: $bin is missing (run make fuzz)" >"$sum"
        return 1
    fi
    mkdir -p "$saved" "$live" "$crashes"
    local f
    for f in "$saved"/*; do # what the live corpus lacks (names are content hashes)
        [ -f "$f" ] && [ ! -e "$live/${f##*/}" ] && cp "$f" "$live/"
    done
    local before
    before=$(find "$live" -maxdepth 1 -type f | wc -l)
    local opts=(-max_len="$max_len" -timeout="$per_input" -rss_limit_mb=2048)
    [ -f "fuzz/$name.dict" ] && opts+=(-dict="fuzz/$name.dict")

    local t0=$SECONDS rc=0
    "$bin" "${opts[@]}" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$live" >"$log" 2>&1 || rc=$?
    local after stats
    after=$(find "$live" -maxdepth 1 -type f | wc -l)
    stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
    local execs
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
    if [ "$rc" -ne 0 ]; then
        {
            echo "$name: FAILED (exit $rc) after $((SECONDS - t0)) s; log: $log"
            grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|ALARM|Test unit written)' "$log" |
                head -n 8 | sed 's/^/    /'
            f=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
            if [ -n "$f" ] && [ -f "$f" ]; then
                echo "    input $f ($(wc -c <"$f") bytes; replay: $bin $f):"
                od -A x -t x1z -v "$f" | head -n 32 | sed 's/^/    /'
            fi
        } >"$sum"
        return 1
    fi

    # new inputs that add coverage over the saved corpus, for a developer to copy back
    local merged=$work/$name.merged
    rm -rf "$merged" "$new"
    mkdir -p "$merged" "$new"
    find "$saved" -maxdepth 1 -type f -exec cp -t "$merged" {} +
    "$bin" "${opts[@]}" -merge=1 "$merged" "$live" >>"$log" 2>&1 || rc=$?
    local n_new=0 bytes=0
    for f in "$merged"/*; do
        [ -f "$f" ] || continue
        [ -e "$saved/${f##*/}" ] && continue
        mv "$f" "$new/"
        n_new=$((n_new + 1))
        bytes=$((bytes + $(wc -c <"$new/${f##*/}")))
    done
    rm -rf "$merged"
    if [ "$rc" -ne 0 ]; then
        echo "$name: FAILED in the merge (exit $rc); log: $log" >"$sum"
        return 1
    fi
    echo "$name: ok, $((SECONDS - t0)) s, ${execs:-?} execs, ${stats:-cov ?}," \
        "corpus $before -> $after, $n_new new over fuzz/corpus/$name ($bytes bytes) in $new" >"$sum"
}

failed=0
running=0
for name in "${names[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_target "$name" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
for name in "${names[@]}"; do cat "$logs/$name.summary"; done
if [ "$failed" -ne 0 ]; then
    echo "fuzz: a target failed; its input is kept in $work/<name>.crashes/"
    exit 1
fi
