#!/usr/bin/env bash
# grammar.sh: the per-token cost of constrained decoding (bench/grammar.c) on a real 152k-token
# vocabulary with the JSON grammar, then the same grammar's overhead in a generation loop for
# nuri and, when node-llama-cpp is installed (tests/oracle/node_modules), for llama.cpp
# (bench/grammar_llamacpp.mjs), on the same random-weight model with the Qwen2 vocabulary.
#
#   bench/grammar.sh [TOKENS]     (default 128 generated tokens per run)
#
# Needs `make` first (build/libnuri.a, build/nuri).
set -eu
cd "$(dirname "$0")/.."
N=${1:-128}
mkdir -p build/bench
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Isrc -o build/bench/grammar_bench bench/grammar.c \
    build/libnuri.a -ljansson -lpcre2-8 -lm -lpthread
cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Isrc -o build/bench/grammar_gen bench/grammar_gen.c \
    build/libnuri.a -ljansson -lpcre2-8 -lm -lpthread
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; one thread"
build/bench/grammar_bench tests/data/vocab/ggml-vocab-qwen2.gguf grammars/json.gbnf 152064
MODEL=build/tests/chat-qwen2-tiny.gguf
if [ ! -f "$MODEL" ]; then
    build/nuri mkmodel --arch qwen2 --shape tiny --type Q8_0 \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$MODEL.tmp" >/dev/null && mv "$MODEL.tmp" "$MODEL"
fi
printf 'root ::= [^"\\\\\\x00-\\x1F]*\n' >build/bench/string.gbnf
echo
echo "generation loop on $MODEL (random weights, Qwen2 vocabulary), $N tokens, temperature 1:"
for gr in none build/bench/string.gbnf grammars/json.gbnf; do
    build/bench/grammar_gen "$MODEL" "$gr" "$N"
done
if [ -d tests/oracle/node_modules/node-llama-cpp ]; then
    for gr in none build/bench/string.gbnf grammars/json.gbnf; do
        node bench/grammar_llamacpp.mjs "$MODEL" "$gr" "$N" 2>/dev/null | grep -v '^\[node'
    done
fi
