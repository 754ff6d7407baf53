#!/usr/bin/env bash
# serve.test.sh: `nuri serve` on loopback, driven by the official openai npm client
# (tests/serve/*.test.mjs, node's built-in test runner; scripts/setup installs the client into
# tests/serve/node_modules). Starts four servers on free ports: the main one, one with an API key,
# one with a queue of 1 (and a short header timeout), one with a KV pool too small for its
# sequences at once (preemption); one whose "model" does not load, which must exit with status 1 and the reason;
# and one whose model is a FIFO (still loading while the test reads its store). At
# the end every server must stop cleanly on SIGTERM (under ASan: without a leak report).
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
MODEL=tests/data/models/llama-tiny-Q8_0.gguf
if [ ! -d tests/serve/node_modules/openai ]; then
    echo "serve: the openai npm package is not installed in tests/serve (scripts/setup installs it)"
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

# start NAME ARGS...: runs nuri serve on a free port, sets URL_<NAME>
start() {
    local name=$1
    shift
    : >"$tmp/$name.out"
    "$NURI" serve --port 0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pids+=($!)
    eval "PID_$name=$!"
    local port=""
    for _ in $(seq 1 200); do
        port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "serve: server $name did not start:"
        cat "$tmp/$name.err"
        echo "0 passed, 1 failed"
        exit 1
    fi
    eval "URL_$name=http://127.0.0.1:$port"
}
start main --no-store -m "$MODEL" --max-seqs 16 --ctx 8192 --max-body 65536
start auth --no-store -m "$MODEL" --max-seqs 2 --api-key other --api-key sekrit \
    --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja
start queue --no-store -m "$MODEL" --max-seqs 1 --queue 1 --header-timeout 400
start kv --no-store -m "$MODEL" --max-seqs 4 --ctx 512
# tool calling: a random-weight model with the real Qwen2 vocabulary and a 4096-token context
# (made once per build folder: slow under the sanitizers), three real templates of three formats
QWEN="$(dirname "$NURI")/tests/tools-qwen2-tiny.gguf"
[ -f "$QWEN" ] || [ ! -f build/tests/tools-qwen2-tiny.gguf ] || QWEN=build/tests/tools-qwen2-tiny.gguf
if [ ! -f "$QWEN" ]; then
    mkdir -p "$(dirname "$QWEN")"
    MKNURI=$NURI
    [ ! -x build/nuri ] || MKNURI=build/nuri
    "$MKNURI" mkmodel --arch qwen2 --shape tiny --type Q8_0 --ctx 4096 \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$QWEN.tmp" >/dev/null && mv "$QWEN.tmp" "$QWEN"
fi
start hermes --no-store -m "$QWEN" --max-seqs 4 --ctx 4096 \
    --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja
start hcx --no-store -m "$QWEN" --max-seqs 4 --ctx 4096 \
    --chat-template tests/data/templates-korean/HyperCLOVAX-SEED-Think-32B.jinja
start resp -m "$QWEN" --max-seqs 4 --ctx 8192 --api-key k1 --api-key k2 --store "$tmp/store.db" \
    --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja
start exaone --no-store -m "$QWEN" --max-seqs 4 --ctx 4096 \
    --chat-template tests/data/templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.jinja
# gpt-oss's harmony format: a random gpt-oss model on the Qwen2 vocabulary with harmony's control
# tokens added (the o200k_harmony vocabulary is not in tests/data), and OpenAI's own template
HARMONY="$(dirname "$NURI")/tests/tools-gptoss-tiny.gguf"
[ -f "$HARMONY" ] || [ ! -f build/tests/tools-gptoss-tiny.gguf ] || HARMONY=build/tests/tools-gptoss-tiny.gguf
if [ ! -f "$HARMONY" ]; then
    MKNURI=$NURI
    [ ! -x build/nuri ] || MKNURI=build/nuri
    ctl=""
    for t in '<|start|>' '<|channel|>' '<|message|>' '<|end|>' '<|return|>' '<|call|>' '<|constrain|>'; do
        ctl="$ctl --add-control $t"
    done
    # shellcheck disable=SC2086
    "$MKNURI" mkmodel --arch gpt-oss --shape gpt-oss-tiny --type Q8_0 --ctx 4096 $ctl \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf \
        --template tests/data/templates/openai-gpt-oss-120b.jinja "$HARMONY.tmp" >/dev/null &&
        mv "$HARMONY.tmp" "$HARMONY"
fi
start harmony --no-store -m "$HARMONY" --max-seqs 4 --ctx 4096
# wait until the real ones have loaded
node -e '
const urls = process.argv.slice(1);
const deadline = Date.now() + 20000;
(async () => {
    for (const u of urls)
        while (Date.now() < deadline) {
            const ok = await fetch(u + "/health").then((r) => r.status === 200, () => false);
            if (ok) break;
            await new Promise((r) => setTimeout(r, 50));
        }
})();' "$URL_main" "$URL_auth" "$URL_queue" "$URL_kv" "$URL_hermes" "$URL_hcx" "$URL_exaone" "$URL_resp" "$URL_harmony"

out=$(NURI_URL=$URL_main NURI_URL_AUTH=$URL_auth NURI_URL_QUEUE=$URL_queue NURI_URL_KV=$URL_kv \
    NURI_URL_HERMES=$URL_hermes NURI_URL_HCX=$URL_hcx NURI_URL_EXAONE=$URL_exaone \
    NURI_URL_HARMONY=$URL_harmony \
    NURI_URL_RESP=$URL_resp \
    timeout 600 node --test --test-concurrency=1 \
    tests/serve/api.test.mjs tests/serve/concurrency.test.mjs tests/serve/tools.test.mjs \
    tests/serve/responses.test.mjs 2>&1)
rc=$?
passed=$(printf '%s\n' "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p' | tail -n 1)
failed=$(printf '%s\n' "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p' | tail -n 1)
passed=${passed:-0}
failed=${failed:-0}
if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" | grep -v '^ok \|^# Subtest' | head -n 150
    [ "$failed" -eq 0 ] && failed=1
else
    printf '%s\n' "$out" | grep -E '^(not )?ok ' || true
fi

# a model that does not load ends the server with status 1 and the reason
"$NURI" serve --port 0 -m tests/data/vocab/ggml-vocab-llama-bpe.gguf >"$tmp/broken.out" \
    2>"$tmp/broken.err" &
bpid=$!
for _ in $(seq 1 200); do kill -0 "$bpid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$bpid" 2>/dev/null; then
    kill -KILL "$bpid"
    echo "FAIL a server whose model does not load is still running after 10 s"
    failed=$((failed + 1))
else
    wait "$bpid"
    brc=$?
    if [ "$brc" -eq 1 ] && grep -q "cannot load the model: .*token_embd.weight" "$tmp/broken.err" &&
        ! grep -q "Sanitizer" "$tmp/broken.err"; then
        echo "ok   a model that does not load ends the server with status 1 and the reason"
        passed=$((passed + 1))
    else
        echo "FAIL a model that does not load: status $brc:"
        head -n 20 "$tmp/broken.err"
        failed=$((failed + 1))
    fi
fi

node tests/serve/restart.mjs before "$URL_resp" "$tmp/restart.json" >"$tmp/restart.out" 2>&1

# a stored response outlives its server: made here, read back after a restart on the same store
kept=$(curl -s "$URL_resp/v1/responses" -H 'Authorization: Bearer k1' -H 'Content-Type: application/json' \
    -d '{"input": "기억해 줘", "max_output_tokens": 4, "temperature": 0}')
kept_id=$(printf '%s' "$kept" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)
kept2=$(curl -s "$URL_resp/v1/responses" -H 'Authorization: Bearer k1' -H 'Content-Type: application/json' \
    -d '{"input": "두 번째", "previous_response_id": "'"$kept_id"'", "max_output_tokens": 4, "temperature": 0}')
kept2_id=$(printf '%s' "$kept2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)

# every server stops cleanly on SIGTERM, without sanitizer reports
for name in main auth queue kv hermes hcx exaone resp harmony; do
    eval "pid=\$PID_$name"
    kill -TERM "$pid" 2>/dev/null
    rc=0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "FAIL server $name did not stop within 5 s of SIGTERM"
        kill -KILL "$pid"
        failed=$((failed + 1))
        continue
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" -ne 0 ] || grep -q "Sanitizer" "$tmp/$name.err"; then
        echo "FAIL server $name exited with status $rc:"
        head -n 60 "$tmp/$name.err"
        failed=$((failed + 1))
    else
        echo "ok   server $name stopped cleanly"
        passed=$((passed + 1))
    fi
done
start resp2 -m "$QWEN" --max-seqs 1 --ctx 4096 --api-key k1 --api-key k2 --store "$tmp/store.db" \
    --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja
for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL_resp2/health")" = 200 ] && break
    sleep 0.05
done
again=$(curl -s "$URL_resp2/v1/responses/$kept_id" -H 'Authorization: Bearer k1')
other=$(curl -s -o /dev/null -w '%{http_code}' "$URL_resp2/v1/responses/$kept_id" -H 'Authorization: Bearer k2')
third=$(curl -s "$URL_resp2/v1/responses" -H 'Authorization: Bearer k1' -H 'Content-Type: application/json' \
    -d '{"input": "세 번째", "previous_response_id": "'"$kept2_id"'", "max_output_tokens": 4, "temperature": 0}')
if [ -n "$kept_id" ] && python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); assert a["output"]==b["output"] and a["id"]==b["id"]' "$kept" "$again" 2>/dev/null &&
    [ "$other" = 404 ] && python3 -c '
import json,sys
two, three = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert three["previous_response_id"] == two["id"] and three["status"] in ("completed", "incomplete")
# the third turn sees both earlier turns: its prompt holds the second one whole
assert three["usage"]["input_tokens"] > two["usage"]["input_tokens"] + two["usage"]["output_tokens"]' "$kept2" "$third" 2>/dev/null; then
    echo "ok   a three-turn conversation continues across a restart; a stored response is read back (and stays its key's)"
    passed=$((passed + 1))
else
    echo "FAIL a stored response after a restart: $kept_id: $again (other key: $other); third turn: $third"
    failed=$((failed + 1))
fi
node tests/serve/restart.mjs after "$URL_resp2" "$tmp/restart.json" >>"$tmp/restart.out" 2>&1
while read -r line; do
    case $line in
    ok*) echo "$line"; passed=$((passed + 1)) ;;
    *) echo "$line"; failed=$((failed + 1)) ;;
    esac
done <"$tmp/restart.out"
[ "$(grep -c '^ok' "$tmp/restart.out")" = 2 ] || { echo "FAIL restart.mjs did not run both phases"; failed=$((failed + 1)); }
kill -TERM "$PID_resp2" 2>/dev/null
wait "$PID_resp2" 2>/dev/null
# stored objects are served while the model loads (the store opens before it): this server's
# model is a FIFO that nobody has opened for writing, so its loader waits in open(2) until the
# test opens it; then the load fails (not a regular file) and the server exits 1 with the reason
mkfifo "$tmp/loading.gguf"
start loading -m "$tmp/loading.gguf" --max-seqs 1 --ctx 4096 --api-key k1 --api-key k2 --store "$tmp/store.db"
l_health=$(curl -s "$URL_loading/health")
l_got=$(curl -s "$URL_loading/v1/responses/$kept_id" -H 'Authorization: Bearer k1')
l_other=$(curl -s -o /dev/null -w '%{http_code}' "$URL_loading/v1/responses/$kept_id" -H 'Authorization: Bearer k2')
l_items=$(curl -s -o /dev/null -w '%{http_code}' "$URL_loading/v1/responses/$kept_id/input_items" -H 'Authorization: Bearer k1')
l_gen=$(curl -s -w ' %{http_code}' "$URL_loading/v1/responses" -H 'Authorization: Bearer k1' \
    -H 'Content-Type: application/json' -d '{"input": "안녕", "max_output_tokens": 2}')
l_health2=$(curl -s "$URL_loading/health")
exec 3<>"$tmp/loading.gguf" # a writer: the loader's open returns
l_rc=0
for _ in $(seq 1 200); do kill -0 "$PID_loading" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$PID_loading" 2>/dev/null; then
    kill -KILL "$PID_loading"
    l_rc=timeout
else
    wait "$PID_loading"
    l_rc=$?
fi
exec 3>&-
if [[ "$l_health" == *model_loading* ]] && [[ "$l_health2" == *model_loading* ]] &&
    python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); assert a["id"]==b["id"] and a["output"]==b["output"]' "$kept" "$l_got" 2>/dev/null &&
    [ "$l_other" = 404 ] && [ "$l_items" = 200 ] && [[ "$l_gen" == *model_loading*" 503" ]] &&
    [ "$l_rc" = 1 ] && grep -q 'not a regular file' "$tmp/loading.err"; then
    echo "ok   while the model loads, a stored response is read back (its key's only); generation is 503 model_loading"
    passed=$((passed + 1))
else
    echo "FAIL store while loading: health [$l_health] [$l_health2] got [$l_got] other $l_other items $l_items gen [$l_gen] exit $l_rc: $(tail -n 3 "$tmp/loading.err")"
    failed=$((failed + 1))
fi
# the KV memory hierarchy: a follow-up resumes from the pool in memory, then (after a restart)
# from the snapshot on disk, then (the snapshot damaged) by recomputing: the same answer each time
kvargs=(-m "$QWEN" --max-seqs 2 --ctx 4096 --store "$tmp/kv.db" --kv-dir "$tmp/kvdir"
    --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja)
kv_up() {
    start "$1" "${kvargs[@]}"
    eval "local u=\$URL_$1"
    for _ in $(seq 1 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$u/health")" = 200 ] && break
        sleep 0.05
    done
}
kv_follow() { # URL -> the follow-up's text, then the tier counters
    curl -s "$1/v1/responses" -H 'Content-Type: application/json' -d '{"input": "그 다음은?",
        "previous_response_id": "'"$kv_r1"'", "max_output_tokens": 12, "temperature": 0,
        "store": false}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["output"][0]["content"][0]["text"])'
    curl -s "$1/metrics" | sed -n 's/^nuri_kv_prefix_source_total{tier="\([a-z]*\)"} \([0-9]*\)$/\1=\2/p;s/^nuri_kv_snapshots_refused_total \([0-9]*\)$/refused=\1/p' | tr '\n' ' '
}
kv_up kv1
kv_r1=$(curl -s "$URL_kv1/v1/responses" -H 'Content-Type: application/json' -d '{"input": "바다와 산 사이에 사는 사람들에 대한 긴 이야기를 들려주세요. 그들의 하루, 그들의 일, 그들의 노래.", "max_output_tokens": 16, "temperature": 0}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t_mem=$(kv_follow "$URL_kv1")
kill -TERM "$PID_kv1"; wait "$PID_kv1" 2>/dev/null
kv_up kv2
t_disk=$(kv_follow "$URL_kv2")
kill -TERM "$PID_kv2"; wait "$PID_kv2" 2>/dev/null
snapf="$tmp/kvdir/$kv_r1.kv"
[ -f "$snapf" ] && printf '\x5a' | dd of="$snapf" bs=1 seek=200 conv=notrunc status=none
kv_up kv3
t_none=$(kv_follow "$URL_kv3")
kill -TERM "$PID_kv3"; wait "$PID_kv3" 2>/dev/null
first() { printf '%s\n' "$1" | head -n -1; }
if [ -n "$(first "$t_mem")" ] && [ "$(first "$t_mem")" = "$(first "$t_disk")" ] &&
    [ "$(first "$t_mem")" = "$(first "$t_none")" ] &&
    [[ "$t_mem" == *"memory=1 disk=0"* ]] && [[ "$t_disk" == *"memory=0 disk=1 none=0"* ]] &&
    [[ "$t_none" == *"disk=0 none=1 refused=1"* ]] && [ ! -f "$snapf" ]; then
    echo "ok   a follow-up resumes from memory, from a snapshot after a restart, or recomputes a damaged one: the same answer"
    passed=$((passed + 1))
else
    echo "FAIL KV tiers: memory [$t_mem] disk [$t_disk] recomputed [$t_none]"
    failed=$((failed + 1))
fi
# --kv-type q8_0: the server says its cache's type and size; its snapshots carry the type, and an
# f16 server refuses one by name (and recomputes), never reading q8_0 rows as f16
kvargs+=(--kv-type q8_0)
kv_up kvq
grep -q 'tokens of KV cache (K q8_0, V q8_0, ' "$tmp/kvq.err"
q_log=$?
kv_r1=$(curl -s "$URL_kvq/v1/responses" -H 'Content-Type: application/json' -d '{"input": "바다 이야기", "max_output_tokens": 8, "temperature": 0}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 100); do [ -f "$tmp/kvdir/$kv_r1.kv" ] && break; sleep 0.05; done
t_q=$(kv_follow "$URL_kvq")
kill -TERM "$PID_kvq"; wait "$PID_kvq" 2>/dev/null
unset 'kvargs[${#kvargs[@]}-1]' 'kvargs[${#kvargs[@]}-1]'
kv_up kvf
t_f=$(kv_follow "$URL_kvf")
kill -TERM "$PID_kvf"; wait "$PID_kvf" 2>/dev/null
if [ $q_log -eq 0 ] && [[ "$t_q" == *"memory=1"* ]] && [[ "$t_f" == *"none=1 refused=1"* ]] &&
    [ -n "$(first "$t_f")" ] && grep -qF "has a q8_0/q8_0 KV cache (K/V) where this server's is f16/f16" "$tmp/kvf.err"; then
    echo "ok   a q8_0 server's snapshot is refused by an f16 one, by name, and the follow-up recomputed"
    passed=$((passed + 1))
else
    echo "FAIL KV types: log $q_log, q8_0 [$t_q], f16 [$t_f]; $(grep -h 'kv snapshot' "$tmp/kvf.err" | head -2)"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
