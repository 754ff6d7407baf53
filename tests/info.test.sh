#!/usr/bin/env bash
# info.test.sh: `nuri info` on a test model (text and --json), on a truncated copy and on a missing
# file (exit code 1 and "nuri: info: <path>: <message>"), MODEL given as -m MODEL, and its usage
# errors (exit code 2).
set -u
NURI=${NURI:-build/nuri}
MODEL=tests/data/models/llama-tiny-Q4_K_M.gguf
passed=0
failed=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$("$NURI" info "$MODEL" 2>&1)
rc=$?
check "model exits 0" test "$rc" -eq 0
check "shows version" grep -q '^gguf version: 3$' <<<"$out"
check "shows architecture" grep -q '^architecture: llama$' <<<"$out"
check "shows name" grep -q '^name: *llama-tiny$' <<<"$out"
check "shows a scalar key" grep -Eq '^  llama.embedding_length +uint32 +256$' <<<"$out"
check "summarizes arrays" grep -Eq '^  tokenizer.ggml.tokens +string\[4096\] +"<unk>", "<s>", "</s>"' <<<"$out"
check "shows tensors" grep -Eq '^  1 +token_embd.weight +Q6_K +256 x 4096 +860160 +1024$' <<<"$out"
check "shows totals" grep -q '^totals: 20 tensors, 2622720 parameters, 1809152 bytes' <<<"$out"
check "bytes by type" grep -Eq '^  Q4_K +12 tensors +755712 bytes' <<<"$out"

json=$("$NURI" info --json "$MODEL")
check "json exits 0" test $? -eq 0
check "json is valid" python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["architecture"]=="llama" and d["metadata"]["llama.block_count"]["value"]==2 and len(d["tensors"])==20 and d["totals"]["bytes"]==1809152 and d["metadata"]["tokenizer.ggml.tokens"]["count"]==4096' <<<"$json"

head -c 5000 "$MODEL" >"$tmp/trunc.gguf"
err=$("$NURI" info "$tmp/trunc.gguf" 2>&1 >/dev/null)
rc=$?
check "truncated exits 1" test "$rc" -eq 1
check "truncated message" grep -q "^nuri: info: $tmp/trunc.gguf: key 'tokenizer.ggml.tokens' .*left in the file" <<<"$err"

head -c 1000000 "$MODEL" >"$tmp/trunc2.gguf"
err=$("$NURI" info "$tmp/trunc2.gguf" 2>&1 >/dev/null)
check "truncated data exits 1" test $? -eq 1
check "truncated data message" grep -q "^nuri: info: $tmp/trunc2.gguf: tensor '.*past the end of the file" <<<"$err"

printf 'GGUF\001\000\000\000' >"$tmp/v1.gguf"
err=$("$NURI" info "$tmp/v1.gguf" 2>&1 >/dev/null)
check "version 1 exits 1" test $? -eq 1
check "version 1 message" grep -q "^nuri: info: $tmp/v1.gguf: GGUF version 1" <<<"$err"

err=$("$NURI" info "$tmp/missing.gguf" 2>&1 >/dev/null)
check "missing exits 1" test $? -eq 1
check "missing message" grep -q "^nuri: info: $tmp/missing.gguf: cannot open: No such file" <<<"$err"

check "-m MODEL shows the same as MODEL" test "$("$NURI" info -m "$MODEL" 2>&1)" = "$("$NURI" info "$MODEL" 2>&1)"
check "--json --model MODEL too" test "$("$NURI" info --json --model "$MODEL")" = "$json"
"$NURI" info -m >/dev/null 2>&1
check "-m without a value is a usage error" test $? -eq 2
"$NURI" info -m "$MODEL" "$MODEL" >/dev/null 2>&1
check "-m and a second MODEL is a usage error" test $? -eq 2

"$NURI" info >/dev/null 2>&1
check "no model is a usage error" test $? -eq 2
"$NURI" info --bogus "$MODEL" >/dev/null 2>&1
check "unknown option is a usage error" test $? -eq 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
