#!/usr/bin/env bash
# cli.test.sh: the nuri command as a user runs it: eval, run (text and token ids), mkmodel, and
# what each does with bad arguments and bad files; the random-weights note, quantize's refusal to
# requantize, and errors that name a path once.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
M=tests/data/models/llama-tiny-Q8_0.gguf
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # name, then a command that must succeed
    local name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/    /' "$tmp/out" | head -5
    fi
}

eval_lines() {
    out=$("$NURI" eval -m $M --tokens 1,390,3159 --top 5) || return 1
    [ "$(echo "$out" | wc -l)" -eq 3 ] || return 1
    echo "$out" | node -e '
        const rows = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse);
        rows.forEach((r, i) => { if (r.pos !== i || r.top.length !== 5) process.exit(1);
            for (let j = 1; j < 5; j++) if (r.top[j][1] > r.top[j - 1][1]) process.exit(1); });'
}
check "eval prints one sorted JSON line per position" eval_lines

run_text() {
    a=$("$NURI" run -m $M -p "hello world" -n 12) || return 1
    b=$("$NURI" run -m $M -p "hello world" -n 12) || return 1
    [ "$a" = "$b" ] && [ "${a#hello world}" != "$a" ] && [ ${#a} -gt 11 ]
}
check "run -p prints the prompt and a deterministic greedy continuation" run_text

run_seeded() {
    a=$("$NURI" run -m $M -p "abc" -n 16 --temp 1 --seed 7) || return 1
    b=$("$NURI" run -m $M -p "abc" -n 16 --temp 1 --seed 7) || return 1
    c=$("$NURI" run -m $M -p "abc" -n 16 --temp 1 --seed 8) || return 1
    [ "$a" = "$b" ] && [ "$a" != "$c" ]
}
check "run with a seed repeats itself, another seed does not" run_seeded

run_tokens_match_eval() {
    # the first greedy token after a prompt is eval's top-1 at the last position
    first=$("$NURI" run -m $M --tokens 1,390,3159 -n 1) || return 1
    top=$("$NURI" eval -m $M --tokens 1,390,3159 --top 1 | tail -n 1 | sed -E 's/.*\[\[([0-9]+),.*/\1/')
    [ "$first" = "$top" ]
}
check "run --tokens continues with eval's most likely token" run_tokens_match_eval

bad_args() {
    "$NURI" run -m $M -p x -n abc 2>"$tmp/e"
    [ $? -eq 2 ] && grep -q -- "-n must be an integer" "$tmp/e" || return 1
    "$NURI" eval -m $M --tokens 1,x,3 2>"$tmp/e"
    [ $? -eq 2 ] && grep -q "bad at 'x,3'" "$tmp/e" || return 1
    "$NURI" eval -m $M --tokens 1,99999 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "99999" "$tmp/e" || return 1
    "$NURI" frobnicate 2>/dev/null
    [ $? -eq 2 ]
}
check "bad arguments exit 2 (usage) or 1 (runtime) with a message naming the problem" bad_args

bad_files() {
    "$NURI" run -m /nonexistent.gguf -p x 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "/nonexistent.gguf" "$tmp/e" || return 1
    head -c 1000 $M >"$tmp/cut.gguf"
    "$NURI" eval -m "$tmp/cut.gguf" --tokens 1 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "cut.gguf" "$tmp/e" || return 1
    "$NURI" eval -m tests/data/vocab/ggml-vocab-llama-spm.gguf --tokens 1 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "token_embd.weight" "$tmp/e"
}
check "bad model files are errors that name the file and what is wrong" bad_files

broken_vocab() {
    # the model with tokenizer.ggml.bos_token_id (uint32 after its key) set past its 4096 tokens:
    # every command that loads a model refuses it at load, naming the key; info describes the file
    # and says why it does not run
    python3 - "$M" "$tmp/bos.gguf" <<'PY' || return 1
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
k = b"tokenizer.ggml.bos_token_id"
i = d.index(k) + len(k)
assert struct.unpack_from("<I", d, i)[0] == 4  # GGUF_TYPE_UINT32
struct.pack_into("<I", d, i + 4, 99999)
open(sys.argv[2], "wb").write(d)
PY
    local want="tokenizer.ggml.bos_token_id = 99999 is out of range"
    "$NURI" eval -m "$tmp/bos.gguf" --tokens 1,2 >/dev/null 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "bos.gguf: $want" "$tmp/e" || return 1
    "$NURI" run -m "$tmp/bos.gguf" --tokens 1,2 -n 2 >/dev/null 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "$want" "$tmp/e" || return 1
    "$NURI" run -m "$tmp/bos.gguf" -p hello -n 2 >/dev/null 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "$want" "$tmp/e" || return 1
    "$NURI" chat -m "$tmp/bos.gguf" </dev/null >/dev/null 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "$want" "$tmp/e" || return 1
    "$NURI" bench -m "$tmp/bos.gguf" -p 4 -n 4 --no-membw >/dev/null 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "$want" "$tmp/e" || return 1
    "$NURI" info "$tmp/bos.gguf" >"$tmp/o" 2>&1 || return 1
    grep -q "^runs: *no: .*$want" "$tmp/o"
}
check "a broken vocabulary is refused at load by eval, run, chat and bench; info names it" \
    broken_vocab

mkmodel_errors() {
    "$NURI" mkmodel --arch gpt9 "$tmp/x.gguf" 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "unknown architecture 'gpt9'" "$tmp/e" || return 1
    "$NURI" mkmodel --type Q7_K "$tmp/x.gguf" 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "unknown type 'Q7_K'" "$tmp/e" || return 1
    "$NURI" mkmodel --arch qwen3 --shape tiny --type Q4_K_M --seed 5 "$tmp/q.gguf" || return 1
    "$NURI" info "$tmp/q.gguf" | grep -q "qwen3"
}
check "mkmodel writes loadable models and rejects unknown names" mkmodel_errors

# --add-control: new control tokens at the vocabulary's end, parsed as one token each; a token the
# vocabulary already has, or no --vocab, is refused by name
add_control() {
    local v=tests/data/vocab/ggml-vocab-gpt-2.gguf
    "$NURI" mkmodel --arch llama --shape tiny --vocab $v --add-control '<|channel|>' \
        --add-control '<|message|>' "$tmp/ac.gguf" || return 1
    local ids
    ids=$("$NURI" tokenize -m "$tmp/ac.gguf" --no-bos --parse-special --ids '<|channel|>x<|message|>')
    [ "$ids" = "[50257, 87, 50258]" ] || { echo "ids $ids"; return 1; }
    "$NURI" mkmodel --arch llama --shape tiny --vocab $v --add-control '<|endoftext|>' \
        "$tmp/x.gguf" 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "already has the token '<|endoftext|>'" "$tmp/e" || return 1
    "$NURI" mkmodel --arch llama --shape tiny --add-control '<|x|>' "$tmp/x.gguf" 2>"$tmp/e"
    [ $? -eq 1 ] && grep -q "to a --vocab file only" "$tmp/e"
}
check "mkmodel --add-control appends control tokens to a vocabulary" add_control

# a random-weight test model (one nuri mkmodel wrote, or tests/data/models/) says so where it runs,
# once; another name does not (the same file with general.name changed, same length)
random_note() {
    local want="nuri: note: $tmp/r.gguf has random weights (a test model): its output is meaningless"
    "$NURI" mkmodel --arch llama --shape tiny --type Q8_0 "$tmp/r.gguf" || return 1
    "$NURI" run -m "$tmp/r.gguf" -p hi -n 2 >/dev/null 2>"$tmp/e" || return 1
    [ "$(grep -c "random weights" "$tmp/e")" -eq 1 ] && grep -qxF "$want" "$tmp/e" || return 1
    printf '/quit\n' | "$NURI" chat -m "$tmp/r.gguf" --no-store >/dev/null 2>"$tmp/e" || return 1
    grep -qxF "$want" "$tmp/e" || return 1
    "$NURI" run -m $M -p hi -n 2 >/dev/null 2>"$tmp/e" || return 1
    grep -qF "$M has random weights" "$tmp/e" || return 1
    python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); assert b.count(b"llama-tiny") == 1
open(sys.argv[2], "wb").write(b.replace(b"llama-tiny", b"llama-real"))' $M "$tmp/real.gguf" || return 1
    "$NURI" run -m "$tmp/real.gguf" -p hi -n 2 >/dev/null 2>"$tmp/e" || return 1
    ! grep -q "random weights" "$tmp/e"
}
check "run and chat say a random-weight test model has random weights, once" random_note

# quantize refuses a source that is already quantized, unless --allow-requantize
requantize() {
    "$NURI" quantize $M "$tmp/rq.gguf" Q4_K 2>"$tmp/e"
    [ $? -eq 1 ] && [ ! -e "$tmp/rq.gguf" ] || return 1
    grep -qF "nuri: quantize: $M is already quantized (tensor 'token_embd.weight' is Q8_0)" "$tmp/e" &&
        grep -qF -- "--allow-requantize converts it all the same" "$tmp/e" || return 1
    "$NURI" quantize $M "$tmp/rq.gguf" Q4_K --allow-requantize >/dev/null || return 1
    "$NURI" run -m "$tmp/rq.gguf" -p hi -n 2 >/dev/null 2>&1 || return 1
    # F16 and BF16 sources are not quantized
    "$NURI" quantize tests/data/models/llama-tiny-F16.gguf "$tmp/f.gguf" Q8_0 >/dev/null &&
        "$NURI" quantize tests/data/models/llama-tiny-BF16.gguf "$tmp/b.gguf" Q8_0 >/dev/null
}
check "quantize refuses to requantize without --allow-requantize" requantize

# an error about a file names its path once
once() { # file, then a nuri command line that must fail with "cannot open" naming file once
    local f=$1
    shift
    "$NURI" "$@" </dev/null >/dev/null 2>"$tmp/e" && return 1
    [ "$(grep -o "$f" "$tmp/e" | wc -l)" -eq 1 ] || { echo "$*:"; cat "$tmp/e"; return 1; }
}
path_once() {
    local none=$tmp/none.gguf short=$tmp/short.gguf
    printf 'GGUF\003\000\000\000' >"$short"
    once "$none" run -m "$none" -p hi && once "$none" chat -m "$none" &&
        once "$none" bench -m "$none" && once "$none" eval -m "$none" --tokens 1 &&
        once "$none" info "$none" && once "$none" quantize "$none" "$tmp/o.gguf" Q8_0 &&
        once "$short" run -m "$short" -p hi && once "$short" chat -m "$short"
}
check "errors about a model file name its path once" path_once

# speculative decoding with prompt lookup: the same output, greedy and sampled, text and chat;
# and the drafts are really used (some accepted)
lookup_same() {
    local model args a b
    for model in $M tests/data/models/qwen2-tiny-Q4_K.gguf; do
        for args in "--temp 0" "--temp 0.8 --seed 11" "--temp 1 --top-k 0 --top-p 1 --min-p 0 --seed 3 --repeat-penalty 1.1"; do
            # shellcheck disable=SC2086
            a=$("$NURI" run -m "$model" -p "the cat sat on the mat, the cat sat on the" -n 48 $args) || return 1
            # shellcheck disable=SC2086
            b=$("$NURI" run -m "$model" -p "the cat sat on the mat, the cat sat on the" -n 48 $args \
                --draft-lookup 6 -v 2>"$tmp/lk") || return 1
            [ "$a" = "$b" ] || { echo "$model $args: [$a] vs [$b]"; return 1; }
            grep -q "accepted" "$tmp/lk" || return 1
        done
    done
    a=$("$NURI" run -m $M -p "hi" --chat -n 24) && b=$("$NURI" run -m $M -p "hi" --chat -n 24 --draft-lookup 4) &&
        [ "$a" = "$b" ] || return 1
    a=$("$NURI" run -m $M --tokens 1,5,6,7,5,6,7,5,6 -n 30) &&
        b=$("$NURI" run -m $M --tokens 1,5,6,7,5,6,7,5,6 -n 30 --draft-lookup 8 -v 2>"$tmp/lk") &&
        [ "$a" = "$b" ] || return 1
    # some drafts hold on a prompt that repeats
    n=$(sed -n 's/.* \([0-9]*\) accepted$/\1/p' "$tmp/lk")
    [ "${n:-0}" -gt 0 ]
}
check "run --draft-lookup gives the same tokens as without it, and its drafts are used" lookup_same

trained_context_warning() {
    "$NURI" mkmodel --arch llama --shape tiny --type Q8_0 --ctx 16 "$tmp/ctx16.gguf" >/dev/null ||
        return 1
    # 3 + 13 tokens end at position 15: inside the trained context, no warning
    "$NURI" run -m "$tmp/ctx16.gguf" --tokens 1,2,3 -n 13 >/dev/null 2>"$tmp/e" || return 1
    ! grep -q warning "$tmp/e" || return 1 # (the random-weights note is not a warning)
    # 3 + 20 tokens pass it: one warning naming the trained length, and the run goes on
    out=$("$NURI" run -m "$tmp/ctx16.gguf" --tokens 1,2,3 -n 20 2>"$tmp/e") || return 1
    [ "$(echo "$out" | wc -w)" -eq 20 ] || return 1
    [ "$(grep -c warning "$tmp/e")" -eq 1 ] &&
        grep -q 'passed the context the model was trained on (16 tokens)' "$tmp/e" || return 1
    # a prompt longer than it is warned about before generating
    "$NURI" run -m "$tmp/ctx16.gguf" --tokens 1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8 -n 2 \
        >/dev/null 2>"$tmp/e" || return 1
    [ "$(grep -c warning "$tmp/e")" -eq 1 ] && grep -q 'prompt (17 tokens) is longer' "$tmp/e"
}
check "run warns once on stderr when the text passes the model's trained context" \
    trained_context_warning

# --kv-type: every command that makes a context takes it; the cache's type changes the numbers (a
# q8_0 cache is not silently an f16 one), run and eval agree with it, a bad type is refused by name
kv_type_option() {
    f=$("$NURI" eval -m $M --tokens 1,390,3159,42,7 --top 3) || return 1
    q=$("$NURI" eval -m $M --tokens 1,390,3159,42,7 --top 3 --kv-type q8_0) || return 1
    [ "$f" != "$q" ] || return 1
    a=$("$NURI" run -m $M --tokens 1,390,3159 -n 8 --kv-type q4_0) || return 1
    b=$("$NURI" run -m $M --tokens 1,390,3159 -n 8 --kv-type-k q4_0 --kv-type-v q4_0 -t 2) || return 1
    [ "$a" = "$b" ] || return 1
    "$NURI" bench -m $M -p 0 -n 4 -r 1 --depth 40 --no-membw --kv-type q8_0 >"$tmp/b" 2>&1 &&
        grep -q 'KV cache: K q8_0, V q8_0, 0.5 KiB per token' "$tmp/b" || return 1
    # the depth's prompt is timed: a positive tokens/s in the text and in the kv JSON line
    grep -Eq '^depth +[0-9]*[1-9][0-9]*\.[0-9]+ tok/s +\(the 40-token prompt' "$tmp/b" || return 1
    "$NURI" bench -m $M -p 0 -n 2 -r 1 --depth 40 --no-membw --json >"$tmp/j" 2>/dev/null &&
        python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
k=[x for x in r if x["test"]=="kv"][0]; sys.exit(0 if k["depth"]==40 and k["fill_tokens_per_s"]>0 else 1)' "$tmp/j" || return 1
    for cmd in run eval bench chat serve; do
        "$NURI" $cmd --kv-type q5_1 -m $M >"$tmp/e" 2>&1
        [ $? -eq 2 ] && grep -q -- "--kv-type must be f16, q8_0 or q4_0 (got 'q5_1')" "$tmp/e" || return 1
    done
}
check "--kv-type picks the KV cache's type in every command; a bad one is refused by name" \
    kv_type_option

# models whose attention writes f16 rows of its own (deepseek2's latent, qwen35's gated attention)
# refuse a quantized KV cache by name instead of reading it wrong
kv_type_refused() {
    "$NURI" mkmodel --arch deepseek2 --shape ds2-tiny --type Q8_0 "$tmp/ds.gguf" >/dev/null &&
        "$NURI" mkmodel --arch qwen35 --shape qwen35-tiny --type Q8_0 "$tmp/q35.gguf" >/dev/null ||
        return 1
    "$NURI" run -m "$tmp/ds.gguf" -p hi -n 2 --kv-type q8_0 >"$tmp/e" 2>&1 && return 1
    grep -q "a q8_0 KV cache is not supported for deepseek2" "$tmp/e" || return 1
    "$NURI" run -m "$tmp/q35.gguf" -p hi -n 2 --kv-type-k q4_0 >"$tmp/e" 2>&1 && return 1
    grep -q "a q4_0 KV cache is not supported for qwen35" "$tmp/e" || return 1
    "$NURI" run -m "$tmp/ds.gguf" -p hi -n 2 --kv-type f16 >/dev/null 2>&1
}
check "deepseek2 and qwen35 refuse a quantized KV cache by name" kv_type_refused

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
