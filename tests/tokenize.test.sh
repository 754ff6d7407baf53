#!/usr/bin/env bash
# tokenize.test.sh: `nuri tokenize` from the shell: output formats, flags, files, errors.
# Run by tests/run.sh with NURI set; prints "N passed, N failed".
set -u
NURI=${NURI:-build/nuri}
V=tests/data/vocab
pass=0
fail=0
check() { # name, expected, actual
    if [ "$2" == "$3" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1))
        printf 'FAIL %s\n  expected: %s\n  got:      %s\n' "$1" "$2" "$3"
    fi
}
check "ids with BOS" "[128000, 9906, 1917]" "$($NURI tokenize -m $V/ggml-vocab-llama-bpe.gguf --ids 'Hello world')"
check "ids without BOS" "[9906, 1917]" "$($NURI tokenize -m $V/ggml-vocab-llama-bpe.gguf --no-bos --ids 'Hello world')"
check "pieces" "$(printf "9906\t'Hello'\n1917\t' world'")" "$($NURI tokenize -m $V/ggml-vocab-llama-bpe.gguf --no-bos 'Hello world')"
check "parse special" "[151644, 872]" "$($NURI tokenize -m $V/ggml-vocab-qwen2.gguf --parse-special --ids '<|im_start|>user')"
tmp=$(mktemp)
printf '한국어 텍스트\n' >"$tmp"
check "file = argument" "$($NURI tokenize -m $V/ggml-vocab-llama-spm.gguf --ids "$(cat "$tmp")
")" "$($NURI tokenize -m $V/ggml-vocab-llama-spm.gguf --ids --file "$tmp")"
rm -f "$tmp"
$NURI tokenize -m $V/ggml-vocab-llama-bpe.gguf >/dev/null 2>&1
check "no text is a usage error" "2" "$?"
$NURI tokenize -m /nonexistent.gguf hi >/dev/null 2>&1
check "missing model fails" "1" "$?"
err=$($NURI tokenize -m /nonexistent.gguf hi 2>&1)
case "$err" in *nonexistent*) check "error names the file" ok ok ;; *) check "error names the file" "mentions path" "$err" ;; esac
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
