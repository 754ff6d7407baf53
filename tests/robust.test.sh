#!/usr/bin/env bash
# robust.test.sh: issue 17 ("Serving under fire"): `nuri serve` against hostile and unlucky clients
# on loopback: slow bodies and trickled heads by the thousand, per-client and total connection caps,
# request/idle timeouts, typed ChatML markers, SIGTERM drains, models that do not load, fd hygiene
# (strace), half-closed sockets, HTTP framing, Host and keys, KV admission and preemption
# (tests/serve/robust.test.mjs, node's built-in test runner; each test starts its own servers), then
# a short bounded load run (bench/serve_load.sh, 16 streaming clients for 20 s) as one more test.
# Every server is killed when the script ends. Under ASan (NURI under build-san/) time limits grow 3x.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
if [ ! -d tests/serve/node_modules/openai ]; then
    echo "robust: the openai npm package is not installed in tests/serve (scripts/setup installs it)"
    echo "0 passed, 1 failed"
    exit 1
fi
case "$NURI" in *san*) slow=3 ;; *) slow=1 ;; esac
SLOW=${NURI_SLOW:-$slow}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true
tmp=$(mktemp -d)
: >"$tmp/pids"
cleanup() {
    # servers a crashed or timed-out node run left behind (each pid was written when it started)
    while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$tmp/pids"
    rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
# a qwen2-architecture model on Qwen2's real vocabulary (control tokens <|im_start|>, <|im_end|>);
# its 152k-row output matrix also makes each step slow enough to SIGTERM a stream mid-way
qwen=$tmp/qwen2-vocab-Q8_0.gguf
if ! "$NURI" mkmodel --arch qwen2 --shape tiny --type Q8_0 --ctx 4096 --vocab tests/data/vocab/ggml-vocab-qwen2.gguf \
    "$qwen" >/dev/null 2>"$tmp/mkmodel.err"; then
    echo "robust: nuri mkmodel failed:"
    cat "$tmp/mkmodel.err"
    qwen=""
fi

out=$(NURI=$NURI NURI_TMP=$tmp NURI_PIDS=$tmp/pids NURI_QWEN_MODEL=$qwen NURI_SLOW=$SLOW \
    timeout $((300 * SLOW)) node --test --test-concurrency=1 tests/serve/robust.test.mjs 2>&1)
rc=$?
p=$(printf '%s\n' "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p' | tail -n 1)
f=$(printf '%s\n' "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p' | tail -n 1)
p=${p:-0}
f=${f:-0}
# every test's line, then what the failures said (without stack traces)
printf '%s\n' "$out" | grep -E '^(not )?ok ' || true
if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v '^ok \|^# Subtest\|^ *\(at \|async \|process\.\|TestContext\|Test\.\)' |
        grep -v '^  \(duration_ms\|location\|failureType\|stack\|code\|operator\):' | head -n 600
    [ "$f" -eq 0 ] && f=1
fi
passed=$((passed + p))
failed=$((failed + f))

# the bounded load test, short: no stream may die inside a 200, fds and RSS stay flat. Under ASan
# its quarantine holds freed memory back by design (256 MB by default), which reads as growth: a
# small quarantine keeps the RSS check meaningful there too.
if ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4:thread_local_quarantine_size_kb=64 \
    NURI=$NURI timeout $((120 * SLOW)) bench/serve_load.sh --clients 16 --duration 20 >"$tmp/load.txt" 2>&1; then
    echo "ok   serve_load: 16 streaming clients for 20 s"
    passed=$((passed + 1))
else
    echo "FAIL serve_load: 16 streaming clients for 20 s:"
    tail -n 40 "$tmp/load.txt"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
