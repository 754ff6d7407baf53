#!/usr/bin/env bash
# spec.test.sh: speculative decoding as a user runs it: nuri run and nuri chat with --draft FILE
# (a harder-quantized copy of the model, and an unrelated model) and --draft-lookup K give the
# plain output greedy, and with --draft-greedy or lookup also sampled (same seed); a sampling
# draft model gives valid output and counts; a draft of another vocabulary and options that
# mean nothing are refused by name. (The distribution at temperature > 0 is tests/test_spec.c's.)
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The checks run SPEC_JOBS at a time (default: one per CPU; most of their time is one nuri
# process loading a 128k-token model and decoding on one thread), each with a scratch directory
# of its own ($s); their verdicts are printed in order at the end.
# shellcheck source=tests/checks.sh
. tests/checks.sh
checks_jobs "${SPEC_JOBS:-$(nproc)}"

# the target: random weights with a real (llama-bpe) vocabulary; drafts: the same weights at 8
# bits (most drafts hold), and another random model of the same vocabulary (few do)
V=tests/data/vocab/ggml-vocab-llama-bpe.gguf
M=$tmp/target.gguf
D=$tmp/draft-q8.gguf
O=$tmp/other.gguf
Q35=$tmp/q35.gguf # a recurrent model, for the refusals
"$NURI" mkmodel --arch llama --shape tiny --type F32 --seed 3 --vocab $V "$M" >/dev/null &&
    "$NURI" quantize "$M" "$D" Q8_0 >/dev/null &&
    "$NURI" mkmodel --arch llama --shape tiny --type Q8_0 --seed 8 --vocab $V "$O" >/dev/null &&
    "$NURI" mkmodel --arch qwen35 --shape qwen35-tiny --type Q8_0 "$Q35" >/dev/null ||
    { echo "FAIL making the models"; echo "0 passed, 1 failed"; exit 1; }

accepted() { sed -n 's/.* \([0-9]*\) accepted\]*$/\1/p' "$1" | tail -n 1; }

run_greedy_same() {
    local p a b d
    for p in "the cat sat on the mat" "Once upon a time" "def add(a, b): return a + b"; do
        a=$("$NURI" run -m "$M" -p "$p" -n 40 2>/dev/null) || return 1
        for d in "--draft $D" "--draft $O --draft-max 4" "--draft-lookup 6" \
            "--draft $D --draft-lookup 3 --draft-min 2" "--draft $D --draft-max 1"; do
            # shellcheck disable=SC2086
            b=$("$NURI" run -m "$M" -p "$p" -n 40 $d 2>/dev/null) || return 1
            [ "$a" = "$b" ] || { echo "$p / $d: [$a] vs [$b]"; return 1; }
        done
    done
}
check_bg "run --draft (good, unrelated, with lookup) gives the plain greedy output" run_greedy_same

run_counts() {
    "$NURI" run -m "$M" -p "the cat sat on the mat" -n 40 --draft "$D" -v 2>"$s/good" >/dev/null &&
        "$NURI" run -m "$M" -p "the cat sat on the mat" -n 40 --draft "$O" -v 2>"$s/other" >/dev/null ||
        return 1
    grep -q "acceptance" "$s/good" || return 1
    local g o
    g=$(accepted "$s/good")
    o=$(accepted "$s/other")
    # the 8-bit copy drafts well, the unrelated model badly
    [ "${g:-0}" -ge 20 ] && [ "${o:-99}" -lt 10 ] || { echo "accepted: good $g, other $o"; return 1; }
}
check_bg "run -v counts drafts; a harder-quantized copy is accepted, an unrelated model rarely" run_counts

run_sampled_same_seed() {
    local s="--temp 0.9 --seed 4 --repeat-penalty 1.1" a b d
    # shellcheck disable=SC2086
    a=$("$NURI" run -m "$M" -p "the cat sat" -n 30 $s 2>/dev/null) || return 1
    for d in "--draft $D --draft-greedy" "--draft-lookup 4"; do
        # shellcheck disable=SC2086
        b=$("$NURI" run -m "$M" -p "the cat sat" -n 30 $s $d 2>/dev/null) || return 1
        [ "$a" = "$b" ] || { echo "$d: [$a] vs [$b]"; return 1; }
    done
}
check_bg "run at --temp 0.9 with a deterministic draft (--draft-greedy, lookup) keeps the seed's output" \
    run_sampled_same_seed

run_sampled_draft() {
    # a sampling draft model: rejection sampling; another sample of the same distribution
    "$NURI" run -m "$M" --tokens 1,450,6211,7731 -n 30 --temp 0.9 --seed 4 --draft "$D" -v \
        >"$s/ids" 2>"$s/err" || return 1
    [ "$(tr ' ' '\n' <"$s/ids" | grep -c .)" -eq 30 ] || return 1
    [ "$(accepted "$s/err")" -gt 0 ]
}
check_bg "run --draft at --temp 0.9 samples by rejection: 30 tokens, drafts accepted" run_sampled_draft

chat_same() {
    local d a b
    a=$(printf 'hello there\nthe cat sat on the mat\nand again\n' |
        "$NURI" chat -m "$M" --no-store --temp 0 -n 30 2>/dev/null) || return 1
    for d in "--draft $D" "--draft-lookup 4" "--draft $D --draft-lookup 3"; do
        # shellcheck disable=SC2086
        b=$(printf 'hello there\nthe cat sat on the mat\nand again\n' |
            "$NURI" chat -m "$M" --no-store --temp 0 -n 30 $d -v 2>"$s/err") || return 1
        [ "$a" = "$b" ] || { echo "$d: [$a] vs [$b]"; return 1; }
        grep -q "^\[speculation: .* accepted\]$" "$s/err" || return 1
    done
}
check_bg "chat --draft / --draft-lookup: the plain greedy answers over three turns, counts with -v" \
    chat_same

refusals() {
    local out
    out=$("$NURI" run -m "$M" -p hi --draft tests/data/models/llama-tiny-Q8_0.gguf 2>&1) &&
        return 1
    echo "$out" | grep -q "draft model's .*vocabulary\|draft model's token" || return 1
    out=$("$NURI" chat -m "$M" --no-store --draft tests/data/models/qwen2-tiny-Q8_0.gguf </dev/null 2>&1) &&
        return 1
    echo "$out" | grep -q "draft model's" || return 1
    out=$("$NURI" run -m "$M" -p hi --draft "$tmp/missing.gguf" 2>&1) && return 1
    echo "$out" | grep -q "missing.gguf" || return 1
    out=$("$NURI" run -m "$M" -p hi --draft-max 4 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-max needs" || return 1
    out=$("$NURI" run -m "$M" -p hi --draft-lookup 4 --draft-greedy 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-greedy need" || return 1
    out=$("$NURI" run -m "$M" -p hi --draft "$D" --draft-max 3 --draft-min 5 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-min 5" || return 1
    out=$("$NURI" chat -m "$M" --draft "$D" --draft-max 40 </dev/null 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-max" || return 1
    out=$("$NURI" run -m "$M" -p hi --draft "$D" --draft-p-min 1.5 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-p-min"
}
check_bg "a draft of another vocabulary, a missing draft and meaningless options are refused by name" \
    refusals

# a recurrent model (qwen35) cannot take back a rejected draft: run, chat and serve refuse to speculate
recurrent() {
    local q=$Q35 out
    out=$("$NURI" run -m "$q" -p hi -n 2 --draft-lookup 4 2>&1) && return 1
    echo "$out" | grep -q "not supported for qwen35: its recurrent state" || return 1
    out=$("$NURI" chat -m "$q" --no-store --draft-lookup 4 </dev/null 2>&1) && return 1
    echo "$out" | grep -q "not supported for qwen35" || return 1
    out=$(timeout 30 "$NURI" serve -m "$q" --port 0 --no-store --draft-lookup 4 2>&1) && return 1
    echo "$out" | grep -q -- "--draft-lookup is not supported for qwen35"
}
check_bg "speculation is refused by name for a recurrent model (run, chat, serve)" recurrent

# nuri serve --draft-lookup / --draft: per sequence inside continuous batching, through the openai
# client, against a plain server on the same model; $1: the speculation options
serve_same() {
    [ -d tests/serve/node_modules/openai ] || { echo "the openai npm package is not installed"; return 1; }
    local pids=() name port spec_opts=$1
    for name in plain spec; do
        local extra=""
        [ $name = spec ] && extra=$spec_opts
        # shellcheck disable=SC2086
        "$NURI" serve --port 0 --no-store -m "$M" --max-seqs 4 --ctx 2048 $extra \
            >"$s/$name.out" 2>"$s/$name.err" &
        pids+=($!)
    done
    local urls=()
    for name in plain spec; do
        port=""
        for _ in $(seq 1 200); do
            port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$s/$name.out")
            [ -n "$port" ] && break
            sleep 0.05
        done
        urls+=("http://127.0.0.1:$port")
    done
    node -e '
const deadline = Date.now() + 30000;
(async () => {
    for (const u of process.argv.slice(1))
        while (Date.now() < deadline) {
            if (await fetch(u + "/health").then((r) => r.status === 200, () => false)) break;
            await new Promise((r) => setTimeout(r, 50));
        }
})();' "${urls[@]}"
    NURI_URL_PLAIN=${urls[0]} NURI_URL_SPEC=${urls[1]} NURI_MODEL_ID=target \
        NURI_SPEC_OPTS=$spec_opts timeout 300 node --test --test-concurrency=1 tests/serve/spec.test.mjs
    local rc=$?
    grep -q "draft model" "$s/spec.err" || [[ $spec_opts != *--draft\ * ]] ||
        { echo "the server did not say it loaded the draft model"; rc=1; }
    kill "${pids[@]}" 2>/dev/null
    wait "${pids[@]}" 2>/dev/null
    return $rc
}
check_bg "serve --draft-lookup: the plain greedy and seeded outputs, batched; /metrics counts drafts" \
    serve_same "--draft-lookup 6"
check_bg "serve --draft (an 8-bit copy): the plain greedy and seeded outputs, batched; drafts counted" \
    serve_same "--draft $D --draft-max 6"
check_bg "serve --draft and --draft-lookup together: the plain outputs" \
    serve_same "--draft $O --draft-lookup 3 --draft-max 4"

serve_refuses() {
    local out q=$Q35
    out=$(timeout 30 "$NURI" serve -m "$M" --port 0 --no-store \
        --draft tests/data/models/qwen2-tiny-Q8_0.gguf 2>&1) && return 1
    echo "$out" | grep -q "draft model's" || { echo "$out"; return 1; }
    out=$(timeout 30 "$NURI" serve -m "$M" --port 0 --no-store --draft-max 4 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-max needs" || { echo "$out"; return 1; }
    out=$(timeout 30 "$NURI" serve -m "$M" --port 0 --no-store --draft "$D" --draft-max 16 2>&1)
    [ $? -eq 2 ] && echo "$out" | grep -q -- "--draft-max" || { echo "$out"; return 1; }
    out=$(timeout 30 "$NURI" serve -m "$M" --port 0 --no-store --draft "$tmp/missing.gguf" 2>&1) &&
        return 1
    echo "$out" | grep -q "missing.gguf" || { echo "$out"; return 1; }
    out=$(timeout 30 "$NURI" serve -m "$q" --port 0 --no-store --draft "$q" 2>&1) && return 1
    echo "$out" | grep -q -- "--draft is not supported for qwen35" || { echo "$out"; return 1; }
}
check_bg "serve --draft of another vocabulary, a missing draft, a recurrent model and a bad --draft-max are refused by name" \
    serve_refuses

checks_collect
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
