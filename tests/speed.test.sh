#!/usr/bin/env bash
# speed.test.sh: the speed tooling's command lines: `nuri bench --json` fields (with the bandwidth
# probe), `nuri bench --membw`, `nuri quantize` (a mix and --pure, the result loads and runs) and
# their usage errors (exit code 2); `bench/compare` against llama.cpp (node-llama-cpp) on a tiny
# model and `bench/roofline.py` on its results; `bench/ab` (this nuri against an earlier one).
# Speeds themselves are not checked (the machine is shared).
set -u
NURI=${NURI:-build/nuri}
F32=tests/data/models/llama-tiny-F32.gguf
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

out=$("$NURI" bench -m tests/data/models/llama-tiny-Q4_0.gguf -p 8 -n 4 -t 2 -r 2 --json \
    --membw-mib 64 2>&1)
check "bench --json exits 0" test $? -eq 0
check "bench pp line" grep -Eq '^\{"test": "pp8", "n_threads": 2, .*"tokens_per_s": [0-9.]+, "stddev": [0-9.]+, "bytes_per_token": [0-9]+, "gb_per_s": [0-9.]+, "bandwidth_fraction": [0-9.]+\}$' <<<"$out"
# (a 2 MB test model decodes from cache, so its fraction of the DRAM bandwidth may exceed 1)
check "bench tg line" grep -Eq '^\{"test": "tg4", "n_threads": 2, .*"bytes_per_token": [0-9]+, "gb_per_s": [0-9.]+, "bandwidth_fraction": [0-9.]+\}$' <<<"$out"
check "bench membw line" grep -Eq '^\{"test": "membw", "n_threads": 2, "bytes": 67108864, "gb_per_s": [0-9.]+\}$' <<<"$out"

out=$("$NURI" bench -m tests/data/models/llama-tiny-Q4_0.gguf -p 0 -n 2 -r 1 --no-membw 2>&1)
check "bench text exits 0" test $? -eq 0
check "bench text tg line" grep -Eq '^tg2 +[0-9.]+ tok/s' <<<"$out"
check "no pp line with -p 0" bash -c '! grep -q "^pp" <<<"$1"' _ "$out"

out=$("$NURI" bench --membw --membw-mib 64 -t 1 2>&1)
check "membw exits 0" test $? -eq 0
check "membw text" grep -Eq '^membw: [0-9.]+ GB/s read bandwidth \(1 threads, 64 MiB buffer' <<<"$out"

"$NURI" bench --membw-mib 1 --membw >/dev/null 2>&1
check "membw-mib below 64 is a usage error" test $? -eq 2

out=$("$NURI" quantize "$F32" "$tmp/m.gguf" Q4_K_M 2>&1)
check "quantize Q4_K_M exits 0" test $? -eq 0
check "quantize summary" grep -q "(Q4_K_M): 20 tensors, 15 converted" <<<"$out"
info=$("$NURI" info "$tmp/m.gguf" 2>&1)
check "Q4_K_M: token_embd (tied output) is Q6_K" grep -Eq '^ +[0-9]+ +token_embd.weight +Q6_K ' <<<"$info"
check "Q4_K_M: blk.0.attn_q is Q4_K" grep -Eq '^ +[0-9]+ +blk.0.attn_q.weight +Q4_K ' <<<"$info"
check "Q4_K_M: blk.1.ffn_down is Q6_K" grep -Eq '^ +[0-9]+ +blk.1.ffn_down.weight +Q6_K ' <<<"$info"
"$NURI" quantize "$F32" "$tmp/p.gguf" Q4_K_M --pure >/dev/null 2>&1
check "quantize --pure exits 0" test $? -eq 0
check "--pure: token_embd is Q4_K" grep -Eq '^ +[0-9]+ +token_embd.weight +Q4_K ' <<<"$("$NURI" info "$tmp/p.gguf")"
out=$("$NURI" bench -m "$tmp/m.gguf" -p 4 -n 2 -r 1 --no-membw 2>&1)
check "the quantized model runs" test $? -eq 0

"$NURI" quantize "$F32" "$tmp/x.gguf" Q7_0 >/dev/null 2>&1
check "unknown type is a usage error" test $? -eq 2
check "no file for an unknown type" test ! -e "$tmp/x.gguf"
"$NURI" quantize "$F32" >/dev/null 2>&1
check "missing arguments is a usage error" test $? -eq 2
err=$("$NURI" quantize "$tmp/none.gguf" "$tmp/y.gguf" Q8_0 2>&1)
check "missing input exits 1" test $? -eq 1
check "missing input message" grep -q "^nuri: quantize: $tmp/none.gguf" <<<"$err"

# side by side with llama.cpp (the npm peer scripts/setup installs), then the roofline picture of
# those results together with a copy that names another peer (as a llama-bench given by path)
if [ -d tests/oracle/node_modules/node-llama-cpp ]; then
    out=$(bench/compare -p 8 -n 4 -t 2 -r 1 --nuri "$NURI" --out "$tmp/cmp.jsonl" \
        tests/data/models/llama-tiny-Q4_0.gguf 2>&1)
    check "compare exits 0" test $? -eq 0
    check "compare prints the tg ratio" \
        grep -Eq '^llama-tiny-Q4_0.gguf +tg4 +[0-9.]+\+-[0-9.]+ +[0-9.]+\+-[0-9.]+ +[0-9.]+\+-[0-9.]+' <<<"$out"
    check "compare writes a result per test" test "$(grep -c '"ratio": ' "$tmp/cmp.jsonl")" -eq 2
    sed 's/(node-llama-cpp)/(\/opt\/llama.cpp\/llama-bench)/' "$tmp/cmp.jsonl" >"$tmp/other.jsonl"
    python3 bench/roofline.py "$tmp/cmp.jsonl" "$tmp/other.jsonl" "$tmp/roof.svg"
    check "roofline exits 0" test $? -eq 0
    check "roofline draws the roof" grep -q 'stroke="#c00"' "$tmp/roof.svg"
    check "roofline: a nuri point per result and the legend's" \
        test "$(grep -o '<circle' "$tmp/roof.svg" | wc -l)" -eq 3
    check "roofline marks the second peer apart" grep -q 'llama-bench, built here' "$tmp/roof.svg"
    grep -v '"tg4"' "$tmp/cmp.jsonl" >"$tmp/pp.jsonl"
    python3 bench/roofline.py "$tmp/pp.jsonl" "$tmp/none.svg" 2>/dev/null
    check "roofline without decode results fails" test $? -ne 0
else
    check "node-llama-cpp is installed in tests/oracle (scripts/setup)" false
fi

# bench/ab: this nuri against an earlier one (a binary here; a commit, cloned and built, once:
# in the optimized pass, about 30 s)
TINY=tests/data/models/llama-tiny-Q4_0.gguf
out=$(bench/ab -p 8 -n 4 -t 2 -r 2 --nuri "$NURI" --out "$tmp/ab.jsonl" "$NURI" "$TINY" 2>&1)
check "ab exits 0" test $? -eq 0
check "ab names the CPU" grep -Eq '^cpu: .*; [0-9]+ CPUs$' <<<"$out"
check "ab prints the pp ratio" \
    grep -Eq '^llama-tiny-Q4_0.gguf +pp8 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+- *[0-9.]+ +[0-2]/2$' <<<"$out"
check "ab prints the tg ratio" grep -Eq '^llama-tiny-Q4_0.gguf +tg4 +[0-9.]+ +[0-9.]+ ' <<<"$out"
check "ab writes a result per test, each with its 2 ratios" \
    test "$(grep -c '"ratios": \[[0-9.e-]*, [0-9.e-]*\]' "$tmp/ab.jsonl")" -eq 2
err=$(bench/ab -r 1 --nuri "$NURI" no-such-commit "$TINY" 2>&1)
check "ab: an unknown base is a usage error" test $? -eq 2
check "ab names the unknown base" grep -q "^ab: no-such-commit: neither a nuri binary nor a commit" <<<"$err"
bench/ab -r 1 --nuri "$NURI" "$NURI" "$tmp/none.gguf" >/dev/null 2>&1
check "ab: a missing model is a usage error" test $? -eq 2
bench/ab -p 8 -n 0 -r 1 --nuri "$NURI" --fail-below 1000 "$NURI" "$TINY" >/dev/null 2>&1
check "ab --fail-below fails on a lower ratio" test $? -eq 1
# a base that cannot run a file (as one older than its type): named and skipped, the rest runs
printf '#!/bin/sh\necho "nuri: bench: type X, which nuri cannot run" >&2\nexit 1\n' >"$tmp/old"
chmod +x "$tmp/old"
out=$(bench/ab -p 8 -n 0 -r 1 --nuri "$NURI" "$tmp/old" "$TINY" 2>&1)
check "ab: a file the base cannot run is skipped" test $? -eq 0
check "ab names the base's failure" \
    grep -q "^llama-tiny-Q4_0.gguf *the base nuri failed (exit 1): nuri: bench: type X" <<<"$out"
out=$(bench/ab -p 8 -n 0 -r 1 --nuri "$NURI" "$NURI" README.md 2>&1)
check "ab: a file the new nuri cannot run fails" test $? -eq 1
check "ab names the new one's failure" grep -q "^README.md *the new nuri failed (exit 1): " <<<"$out"
if [ "$NURI" = build/nuri ]; then
    out=$(bench/ab -p 8 -n 0 -r 1 --build-dir "$tmp/ab" HEAD "$TINY" 2>&1)
    check "ab builds a commit and runs it" test $? -eq 0
    head12=$(git rev-parse HEAD | cut -c1-12)
    check "ab names the built commit" grep -Eq "^base: $head12 " <<<"$out"
    check "ab's clone holds the base binary" test -x "$tmp/ab/nuri-$head12/build/nuri"
fi

echo "$passed passed, $failed failed"
test "$failed" -eq 0
