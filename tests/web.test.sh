#!/usr/bin/env bash
# web.test.sh: the web chat page at GET / and CORS, in a real browser: Debian's chromium driven by
# playwright-core (tests/web/page.test.mjs, node's test runner; scripts/setup installs both, and
# never Playwright's own browsers). Starts a page on another origin (tests/web/origin.mjs) and
# three servers on free ports: `main` (no keys, a store, CORS for that origin), `keyed` (an API
# key, a store, no CORS) and `wild` (an API key, CORS for any origin). A wildcard without keys
# must be refused at start. Screenshots of the page in English and Korean go to
# $(dirname $NURI)/web-screenshots/. Every server must stop cleanly on SIGTERM (under ASan: no leaks).
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
if [ ! -d tests/web/node_modules/playwright-core ] || [ ! -x /usr/bin/chromium ]; then
    echo "web: playwright-core (tests/web/node_modules) or /usr/bin/chromium is missing (scripts/setup installs them)"
    echo "0 passed, 1 failed"
    exit 1
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# wait_line FILE: the port of the "listening on http://127.0.0.1:PORT" line in FILE (10 s at most)
wait_line() {
    local port=""
    for _ in $(seq 1 200); do
        port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$1")
        [ -n "$port" ] && break
        sleep 0.05
    done
    echo "$port"
}
# start NAME ARGS...: runs nuri serve on a free port, sets URL_<NAME> and PID_<NAME>
start() {
    local name=$1
    shift
    "$NURI" serve --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pids+=($!)
    eval "PID_$name=$!"
    local port
    port=$(wait_line "$tmp/$name.out")
    if [ -z "$port" ]; then
        echo "web: server $name did not start:"
        cat "$tmp/$name.err"
        echo "0 passed, 1 failed"
        exit 1
    fi
    eval "URL_$name=http://127.0.0.1:$port"
}

node tests/web/origin.mjs >"$tmp/origin.out" 2>&1 &
pids+=($!)
oport=$(wait_line "$tmp/origin.out")
ORIGIN=http://127.0.0.1:$oport

# the random-weight qwen2 model with the real vocabulary (shared with serve.test.sh)
QWEN="$(dirname "$NURI")/tests/tools-qwen2-tiny.gguf"
[ -f "$QWEN" ] || [ ! -f build/tests/tools-qwen2-tiny.gguf ] || QWEN=build/tests/tools-qwen2-tiny.gguf
if [ ! -f "$QWEN" ]; then
    mkdir -p "$(dirname "$QWEN")"
    MKNURI=$NURI
    [ ! -x build/nuri ] || MKNURI=build/nuri
    "$MKNURI" mkmodel --arch qwen2 --shape tiny --type Q8_0 --ctx 4096 \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$QWEN.tmp" >/dev/null && mv "$QWEN.tmp" "$QWEN"
fi
TEMPLATE=tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja
start main -m "$QWEN" --max-seqs 4 --ctx 8192 --store "$tmp/main.db" --chat-template "$TEMPLATE" \
    --cors "$ORIGIN/"
start keyed -m "$QWEN" --max-seqs 2 --ctx 4096 --store "$tmp/keyed.db" --api-key sekrit \
    --chat-template "$TEMPLATE"
start wild -m tests/data/models/llama-tiny-Q8_0.gguf --no-store --api-key k --cors '*'

# a wildcard without keys is refused at start, with the reason
"$NURI" serve --port 0 --no-store -m tests/data/models/llama-tiny-Q8_0.gguf --cors '*' \
    >"$tmp/refused.out" 2>"$tmp/refused.err"
rc=$?
if [ "$rc" -ne 0 ] && grep -q "needs API keys" "$tmp/refused.err"; then
    ok "--cors '*' without --api-key is refused at start"
else
    fail "--cors '*' without --api-key: status $rc: $(head -c 300 "$tmp/refused.err")"
fi

for u in "$URL_main" "$URL_keyed" "$URL_wild"; do
    for _ in $(seq 1 400); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$u/health")" = 200 ] && break
        sleep 0.05
    done
done

# screenshots of the page in English and in Korean, kept next to the binary for a look
SHOTS="$(dirname "$NURI")/web-screenshots"
out=$(NURI_WEB_SHOTS=$SHOTS NURI_URL_MAIN=$URL_main NURI_URL_KEYED=$URL_keyed NURI_URL_WILD=$URL_wild NURI_ORIGIN=$ORIGIN \
    timeout 300 node --test --test-concurrency=1 tests/web/page.test.mjs 2>&1)
rc=$?
p=$(printf '%s\n' "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p' | tail -n 1)
f=$(printf '%s\n' "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p' | tail -n 1)
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-0}))
if [ "${f:-0}" -ne 0 ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v '^ok \|^# Subtest' | head -n 150
    [ "${f:-0}" -eq 0 ] && failed=$((failed + 1))
else
    printf '%s\n' "$out" | grep -E '^(not )?ok ' || true
fi

for name in main keyed wild; do
    eval "pid=\$PID_$name"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        fail "server $name did not stop within 5 s of SIGTERM"
        kill -KILL "$pid"
        continue
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" -ne 0 ] || grep -q "Sanitizer" "$tmp/$name.err"; then
        fail "server $name exited with status $rc: $(head -n 60 "$tmp/$name.err")"
    else
        ok "server $name stopped cleanly"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
