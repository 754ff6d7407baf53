#!/usr/bin/env bash
# qwen35_serve.test.sh: `nuri serve` with a qwen35 model (gated delta-net layers, whose recurrent
# state lives beside the KV pool), on loopback over HTTP.
#
# Two servers on free ports: "main" (4 sequences, room for all) and "small" (3 sequences in a KV
# pool of 128 tokens, so that requests of 80 tokens out preempt one another and are recomputed). At
# temperature 0:
#   - requests sent together get exactly what each gets alone (token ids and logprobs), on both
#     servers: the state is per sequence, batching and preemption change no bit;
#   - a follow-up whose prompt extends an earlier request's whole text reuses that cache (the
#     state of the whole sequence is exact) and one that shares only part of it recomputes (a
#     state cannot be rewound): both answer exactly as a server that has never seen the first
#     request, and the usage's cached tokens say which happened.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
MKNURI=$NURI
[ ! -x build/nuri ] || MKNURI=build/nuri
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
model=$tmp/qwen35.gguf
if ! "$MKNURI" mkmodel --arch qwen35 --shape qwen35-tiny --type Q8_0 --seed 3 \
    --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$model" >/dev/null 2>"$tmp/err"; then
    echo "qwen35_serve: mkmodel: $(cat "$tmp/err")"
    echo "0 passed, 1 failed"
    exit 1
fi

start() {
    local name=$1
    shift
    "$NURI" serve --port 0 --no-store -m "$model" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pids+=($!)
    local port=""
    for _ in $(seq 1 400); do
        port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "qwen35_serve: server $name did not start: $(cat "$tmp/$name.err")"
        echo "0 passed, 1 failed"
        exit 1
    fi
    eval "URL_$name=http://127.0.0.1:$port"
}
start main --max-seqs 4 --ctx 1024
start small --max-seqs 3 --ctx 128

URL_MAIN=$URL_main URL_SMALL=$URL_small timeout 300 node -e '
const main = process.env.URL_MAIN, small = process.env.URL_SMALL;
let passed = 0, failed = 0;
function check(ok, what) {
    if (ok) { passed++; console.log("ok   " + what); } else { failed++; console.log("FAIL " + what); }
}
async function complete(url, prompt, max_tokens) {
    for (let t = 0; t < 100; t++) {
        const r = await fetch(url + "/v1/completions", {
            method: "POST", headers: {"content-type": "application/json"},
            body: JSON.stringify({prompt, max_tokens, temperature: 0, logprobs: 1}),
        });
        if (r.status === 200) {
            const j = await r.json();
            const c = j.choices[0];
            return {text: c.text, lp: c.logprobs.token_logprobs, cached: j.usage.prompt_tokens_details?.cached_tokens ?? 0};
        }
        if (r.status !== 503) throw new Error(url + ": HTTP " + r.status + " " + await r.text());
        await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error("still busy");
}
const same = (a, b) => a.text === b.text && JSON.stringify(a.lp) === JSON.stringify(b.lp);
(async () => {
    const prompts = [
        "The delta rule keeps a state per head", "Once upon a time in a small village",
        "def fib(n):", "Seoul is the capital of", "A recurrent layer remembers",
    ];
    for (const [name, url, len] of [["main", main, 24], ["small", small, 80]]) {
        const alone = [];
        for (const p of prompts) alone.push(await complete(url, p, len));
        const together = await Promise.all(prompts.map((p) => complete(url, p, len)));
        check(alone.every((a, i) => same(a, together[i])),
              name + ": 5 requests together get what each gets alone (" + len + " tokens)");
    }
    const metrics = await (await fetch(small + "/metrics")).text();
    const pre = Number((metrics.match(/^nuri_preemptions_total (\d+)$/m) ?? [0, 0])[1]);
    check(pre > 0, "small: requests were preempted and recomputed (" + pre + " times)");
    // prefix reuse, on prompts of token ids (text would not tokenize back to the same ids): a
    // request of one token out leaves exactly its prompt in the cache; a fresh server (small,
    // which never saw it) is the reference
    const first = Array.from({length: 20}, (_, i) => 1000 + 37 * i);
    await complete(main, first, 1);
    const whole = [...first, 4242, 4343];
    const b = await complete(main, whole, 12), bRef = await complete(small, whole, 12);
    check(same(b, bRef), "a follow-up extending a whole request answers as without the cache");
    check(b.cached === first.length, "it reused the whole cache (" + b.cached + " tokens)");
    const part = [...first.slice(0, 15), 4444, 4545];
    const c = await complete(main, part, 12), cRef = await complete(small, part, 12);
    check(same(c, cRef), "a prompt sharing part of a request answers as without the cache");
    check(c.cached === 0, "and recomputed it (cached " + c.cached + ")");
    console.log(passed + " passed, " + failed + " failed");
    process.exit(failed ? 1 : 0);
})().catch((e) => { console.log("FAIL " + e.message); console.log(passed + " passed, " + (failed + 1) + " failed"); process.exit(1); });
'
