#!/usr/bin/env bash
# tokenizer.sh: tokenizer throughput (MB/s) on Korean + English text for every test vocabulary.
#
#   bench/tokenizer.sh [MB]            (default 4 MB of text per vocabulary)
#
# The text is the Korean and English vimtutor excerpts in tests/data/tokenizer/ (Hangul mixed with
# English commands, then English prose), repeated. If NLC_DIR points to a directory where
# node-llama-cpp is installed (npm i -E --omit=optional node-llama-cpp@3.21.1
# @node-llama-cpp/linux-x64@3.21.1), llama.cpp's own tokenizer is timed on the same text too.
# Needs `make` first (build/libnuri.a).
set -eu
cd "$(dirname "$0")/.."
MB=${1:-4}
mkdir -p build/bench
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Isrc -o build/bench/tokenizer_bench bench/tokenizer_bench.c \
    build/libnuri.a -ljansson -lpcre2-8 -lm -lpthread
text=build/bench/ko-en.txt
cat tests/data/tokenizer/vimtutor-ko.txt tests/data/tokenizer/vimtutor-en.txt >"$text"
echo "text: $(wc -c <"$text") bytes of Korean + English, repeated to $MB MB; $(nproc) CPUs, one thread"
for v in llama-bpe qwen2 gpt-2 deepseek-llm llama-spm phi-3; do
    build/bench/tokenizer_bench "tests/data/vocab/ggml-vocab-$v.gguf" "$text" "$MB"
    if [ -n "${NLC_DIR:-}" ]; then
        (cd "$NLC_DIR" && cp "$OLDPWD/bench/tokenizer_llamacpp.mjs" . &&
            node tokenizer_llamacpp.mjs "$OLDPWD/tests/data/vocab/ggml-vocab-$v.gguf" "$OLDPWD/$text" "$MB" 2>/dev/null |
            grep -v '^\[node')
    fi
done
