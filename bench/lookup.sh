#!/usr/bin/env bash
# lookup.sh: speculative decoding with prompt lookup (`nuri run --draft-lookup K`) against plain
# decoding, same model, same prompt, same greedy output (checked), runs alternating.
#
#   bench/lookup.sh [MODEL] [TOKENS] [RUNS] [THREADS]
#
# Default model: the Llama-3.2-1B-shape Q4_0 random-weight file bench/kv_snapshot.sh writes
# (build/bench/llama-1b-qwen2vocab-Q4_0.gguf; written here if missing). The prompt is a short
# program whose lines repeat with small changes, where drafts from earlier text can hold; a random
# model's continuation is what it is, so the acceptance here says little about a real model's.
set -eu
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
MODEL=${1:-build/bench/llama-1b-qwen2vocab-Q4_0.gguf}
N=${2:-96}
RUNS=${3:-3}
THREADS=${4:-2}
if [ ! -f "$MODEL" ]; then
    mkdir -p "$(dirname "$MODEL")"
    "$NURI" mkmodel --arch llama --shape llama-3.2-1b --type Q4_0 \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$MODEL.tmp" >/dev/null && mv "$MODEL.tmp" "$MODEL"
fi
prompt=$(printf 'def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n    return a * b\n\ndef div(a, b):\n    return a / b\n\ndef')
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $THREADS threads; model $MODEL; $N tokens, greedy"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for run in $(seq 1 "$RUNS"); do
    for k in 0 8; do
        s=$(date +%s.%N)
        "$NURI" run -m "$MODEL" -p "$prompt" -n "$N" -t "$THREADS" --draft-lookup "$k" -v >"$tmp/out.$k" 2>"$tmp/err.$k"
        e=$(date +%s.%N)
        t[$k]=$(python3 -c "print(f'{$e - $s:.2f}')")
    done
    cmp -s "$tmp/out.0" "$tmp/out.8" && same="same output" || same="DIFFERENT OUTPUT"
    echo "run $run: plain ${t[0]} s, --draft-lookup 8 ${t[8]} s ($(python3 -c "print(f'{${t[0]} / ${t[8]}:.2f}x')")); $(sed -n 's/^nuri: run: //p' "$tmp/err.8"); $same"
done
