// serve.mjs: load generator for `nuri serve` (or any OpenAI-compatible server) on loopback.
//
//   node bench/serve.mjs URL USERS REQUESTS_PER_USER MAX_TOKENS [TIME_LIMIT_S]
//
// USERS clients run at once; each sends REQUESTS_PER_USER streamed chat requests one after the
// other (distinct prompts, greedy) and records when every token arrives. Prints one JSON line:
// aggregate output tokens/s over the wall time, time to first token and inter-token latency
// p50 / p99 (ms). Bounded: stops issuing requests after TIME_LIMIT_S (default 120) and refuses
// any host that is not a loopback address.
const [url, users, perUser, maxTokens, limitS = '120'] = process.argv.slice(2);
const host = new URL(url).hostname;
if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) {
    console.error('serve.mjs: loopback addresses only');
    process.exit(2);
}
const U = Number(users), R = Number(perUser), T = Number(maxTokens);
const deadline = Date.now() + Number(limitS) * 1000;
const ttft = [], itl = [];
let tokens = 0, requests = 0;

async function one(u, r) {
    const t0 = performance.now();
    const res = await fetch(url + '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
            model: 'bench', temperature: 0, max_tokens: T, stream: true,
            messages: [{ role: 'user', content: `User ${u} asks question ${r}: tell me about ${u * 31 + r}.` }],
        }),
    });
    if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
    const dec = new TextDecoder();
    let buf = '', last = null;
    for await (const part of res.body) {
        buf += dec.decode(part, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
            const ch = JSON.parse(ev.slice(6));
            const c = ch.choices?.[0];
            if (!c || !c.delta?.content) continue;
            const now = performance.now();
            if (last === null) ttft.push(now - t0);
            else itl.push(now - last);
            last = now;
            tokens++;
        }
    }
    requests++;
}

async function user(u) {
    for (let r = 0; r < R && Date.now() < deadline; r++) await one(u, r);
}

const pct = (a, p) => {
    if (!a.length) return null;
    const s = [...a].sort((x, y) => x - y);
    return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2));
};
const t0 = performance.now();
await Promise.all([...Array(U).keys()].map(user));
const wall = (performance.now() - t0) / 1000;
console.log(JSON.stringify({
    users: U, requests, tokens, wall_s: Number(wall.toFixed(3)),
    tok_per_s: Number((tokens / wall).toFixed(1)),
    ttft_ms_p50: pct(ttft, 50), ttft_ms_p99: pct(ttft, 99),
    itl_ms_p50: pct(itl, 50), itl_ms_p99: pct(itl, 99),
}));
