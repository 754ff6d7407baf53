#!/usr/bin/env bash
# spec.sh: speculative decoding, single user, greedy: nuri run plain, with prompt lookup
# (--draft-lookup 8) and with draft models (--draft, 8 tokens per draft), tokens/s after the first
# token and acceptance (nuri run -v); then the same through llama.cpp's token predictors
# (node-llama-cpp's InputLookupTokenPredictor and DraftSequenceTokenPredictor,
# bench/spec_llama_cpp.mjs) when node-llama-cpp is installed. Every nuri output is checked against
# the plain one.
#
#   bench/spec.sh [TOKENS] [RUNS] [THREADS]      (SETS="1b tiny" by default: which targets)
#
# Models (written to build/bench/ when missing): the target is the Llama-3.2-1B shape at Q4_K_M
# with the Qwen2 vocabulary, random weights of seed 1; the drafts are that file requantized to
# Q4_0 and Q2_K (nuri quantize --allow-requantize): cheaper to read, and close to the target
# where quantization noise does not flip the choice, which is what makes a real draft model's acceptance realistic (a family's
# smaller sibling agrees with it where the text is easy). A random model's distributions are
# nearly flat, so noise flips its argmax more often than a trained model's: these acceptance rates
# are a floor. The prompt asks to edit a given text, the input-grounded case lookup is for; a
# random model does not follow it, but repeats itself, which lookup also exploits.
set -eu
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
N=${1:-64}
RUNS=${2:-2}
THREADS=${3:-2}
V=tests/data/vocab/ggml-vocab-qwen2.gguf
B=build/bench
mkdir -p $B
M=$B/spec-1b-Q4_K_M.gguf
[ -f "$M" ] || { "$NURI" mkmodel --arch llama --shape llama-3.2-1b --type Q4_K_M --seed 1 --vocab $V \
    "$M.tmp" >/dev/null && mv "$M.tmp" "$M"; }
for t in Q4_0 Q2_K; do # the target itself quantized harder (its Q4_K_M blocks dequantized first)
    f=$B/spec-1b-$t.gguf
    [ -f "$f" ] || { "$NURI" quantize --allow-requantize "$M" "$f.tmp" $t >/dev/null && mv "$f.tmp" "$f"; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/prompt" <<'EOF'
Fix the spelling in this paragraph and return it unchanged otherwise:

The quick brown fox jumpd over the lazy dog. The quick brown fox jumpd over the lazy dog again,
and the lazy dog did not move. The quick brown fox jumpd over the lazy dog a third time.

Corrected paragraph:

The quick brown fox
EOF
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; flags: $(grep -o -w 'avx512f\|avx512_vnni\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "commit $(git rev-parse --short HEAD); $THREADS threads; $N tokens, greedy; load: $(uptime | sed 's/.*load average: //')"
speed() { sed -n 's/.*(\([0-9.]*\) tokens\/s)$/\1/p' "$1"; }
acc() { sed -n 's/.*acceptance \([0-9.]*%\); drafted \([0-9]*\) tokens, \([0-9]*\) accepted$/\1 (\3 of \2)/p' "$1"; }
# bench_set TARGET DRAFT...: nuri plain, lookup and each draft; then llama.cpp the same
bench_set() {
    local target=$1 run c name args same mode
    shift
    echo "== target $target ($(du -m "$target" | cut -f1) MB); drafts: $* ($(for d in "$@"; do du -m "$d" | cut -f1; done | tr '\n' ' ')MB)"
    for run in $(seq 1 "$RUNS"); do
        for c in plain lookup "$@"; do
            case $c in
            plain) name=plain args="" ;;
            lookup) name=lookup args="--draft-lookup 8" ;;
            *) name="draft $(basename "$c")" args="--draft $c" ;;
            esac
            # shellcheck disable=SC2086
            "$NURI" run -m "$target" -p "$(cat "$tmp/prompt")" -n "$N" -t "$THREADS" -v $args >"$tmp/out" 2>"$tmp/err"
            if [ "$name" = plain ]; then
                cp "$tmp/out" "$tmp/plain"
                same=""
            else
                cmp -s "$tmp/out" "$tmp/plain" && same="same output" || same="DIFFERENT OUTPUT"
            fi
            echo "nuri run $run, $name: $(speed "$tmp/err") tokens/s; acceptance $(acc "$tmp/err") $same; load $(cut -d' ' -f1 /proc/loadavg)"
        done
        [ -d tests/oracle/node_modules/node-llama-cpp ] || continue
        for mode in plain lookup "$@"; do
            echo "llama.cpp run $run, $(basename "$mode"): $(node bench/spec_llama_cpp.mjs "$target" "$tmp/prompt" "$N" "$THREADS" "$mode"); load $(cut -d' ' -f1 /proc/loadavg)"
        done
    done
}
SETS=${SETS:-1b tiny}
case " $SETS " in *" 1b "*) bench_set "$M" $B/spec-1b-Q4_0.gguf $B/spec-1b-Q2_K.gguf ;; esac
# a small target whose 8-bit copy is a realistic draft: the tiny shape (2 layers, 256 wide) with
# Llama 3's vocabulary in F32, where the 128k x 256 output matrix is most of the bytes; the Q8_0
# copy reads a quarter of them and agrees with it about 70-80% of the time
case " $SETS " in *" tiny "*) ;; *) exit 0 ;; esac
T=$B/spec-tiny-F32.gguf
[ -f "$T" ] || { "$NURI" mkmodel --arch llama --shape tiny --type F32 --seed 3 \
    --vocab tests/data/vocab/ggml-vocab-llama-bpe.gguf "$T.tmp" >/dev/null && mv "$T.tmp" "$T"; }
[ -f $B/spec-tiny-Q8_0.gguf ] || { "$NURI" quantize "$T" $B/spec-tiny-Q8_0.gguf.tmp Q8_0 >/dev/null &&
    mv $B/spec-tiny-Q8_0.gguf.tmp $B/spec-tiny-Q8_0.gguf; }
bench_set "$T" $B/spec-tiny-Q8_0.gguf
