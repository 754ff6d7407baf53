#!/usr/bin/env bash
# kv_snapshot.sh: time to first token of a follow-up on a long stored conversation, after a server
# restart: resumed from the KV snapshot on disk (--kv-dir) against recomputed (the snapshot
# removed). Same server, same model, same request; runs alternate.
#
#   bench/kv_snapshot.sh [PROMPT_TOKENS] [RUNS] [THREADS]     (defaults 4000, 2, 2)
#
# Model: a Llama-3.2-1B-shape random-weight Q4_0 model with the Qwen2 vocabulary (written once to
# build/bench/). Needs `make` first.
set -eu
cd "$(dirname "$0")/.."
N=${1:-4000}
RUNS=${2:-2}
THREADS=${3:-2}
NURI=${NURI:-build/nuri}
mkdir -p build/bench
MODEL=build/bench/llama-1b-qwen2vocab-Q4_0.gguf
if [ ! -f "$MODEL" ]; then
    "$NURI" mkmodel --arch llama --shape llama-3.2-1b --type Q4_0 \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$MODEL.tmp" >/dev/null && mv "$MODEL.tmp" "$MODEL"
fi
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $THREADS threads"
echo "model: $MODEL (Llama-3.2-1B shape, Q4_0, random weights, Qwen2 vocabulary)"

up() {
    "$NURI" serve -m "$MODEL" --port 0 -t "$THREADS" --max-seqs 2 --ctx $((2 * N + 1024)) \
        --store "$tmp/store.db" --kv-dir "$tmp/kv" \
        --chat-template tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    url=""
    for _ in $(seq 1 600); do
        url=$(sed -n 's/^listening on \(http:.*\)$/\1/p' "$tmp/out")
        [ -n "$url" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break
        sleep 0.1
    done
}
down() {
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
}

# the conversation: a user message of about N tokens, one stored answer
up
python3 - "$url" "$N" >"$tmp/r1" <<'EOF'
import json, sys, urllib.request, random
url, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
words = ["바다", "산", "사람", "노래", "하루", "river", "mountain", "song", "day", "work", "the", "and"]
text = " ".join(random.choice(words) for _ in range(n * 2 // 3))
req = urllib.request.Request(url + "/v1/responses", json.dumps({"input": text, "max_output_tokens": 4,
    "temperature": 0}).encode(), {"Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req, timeout=3600))
print(r["id"], r["usage"]["input_tokens"])
EOF
read -r r1 ntok <"$tmp/r1"
down
snap="$tmp/kv/$r1.kv"
cp "$snap" "$tmp/snap.keep"
echo "conversation: $ntok prompt tokens; snapshot $(du -h "$snap" | cut -f1)"

ttft() { # prints: seconds to the first text delta, a hash of the answer, and the tier counters
    python3 - "$url" "$r1" <<'EOF'
import json, sys, time, urllib.request
url, prev = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url + "/v1/responses", json.dumps({"input": "그리고?", "previous_response_id": prev,
    "max_output_tokens": 8, "temperature": 0, "stream": True, "store": False}).encode(),
    {"Content-Type": "application/json"})
t0 = time.time()
first, text = None, ""
with urllib.request.urlopen(req, timeout=3600) as r:
    for line in r:
        if line.startswith(b"data: "):
            ev = json.loads(line[6:])
            if ev["type"] == "response.output_text.delta":
                if first is None: first = time.time() - t0
                text += ev["delta"]
m = urllib.request.urlopen(url + "/metrics").read().decode()
tiers = [l.split('tier="')[1].replace('"} ', "=") for l in m.splitlines()
         if l.startswith("nuri_kv_prefix_source_total{")]
import hashlib
print(f"{first:.3f}", hashlib.sha1(text.encode()).hexdigest()[:12], ",".join(tiers))
EOF
}

for run in $(seq 1 "$RUNS"); do
    cp "$tmp/snap.keep" "$snap"
    up
    read -r t_disk a_disk tiers_disk < <(ttft)
    down
    rm -f "$snap"
    up
    read -r t_none a_none tiers_none < <(ttft)
    down
    same=$([ "$a_disk" = "$a_none" ] && echo "same answer" || echo "DIFFERENT ANSWERS")
    echo "run $run: from the snapshot $t_disk s [$tiers_disk]; recomputed $t_none s [$tiers_none];" \
        "ratio $(python3 -c "print(f'{$t_none / $t_disk:.1f}x')"); $same"
done
