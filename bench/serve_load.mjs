// serve_load.mjs: the bounded load test of issue 17 against a running `nuri serve` (loopback only).
//
//   node bench/serve_load.mjs --url http://127.0.0.1:PORT --pid PID [--clients 64] [--duration 300]
//        [--min-tokens 16] [--max-tokens 200] [--sample S] [--json FILE]
//
// CLIENTS streaming clients (each on its own kept-alive connection, as the openai clients do) loop
// chat requests with a random max_tokens in [min, max] until DURATION seconds have passed; the
// requests under way then finish (each is cut after 120 s: a stall). Every request ends as one of:
//   completed  200, a finish_reason, then data: [DONE]
//   died       200, then an in-stream error event, a cut connection, no [DONE] or a stall
//   refused    503 with Retry-After before the stream started (the client waits that long)
//   rejected   any other status (or a 503 without Retry-After)
//   error      no status at all (connection refused or reset before the answer)
// Every S seconds (default: duration / 10, at most 5) it samples the server's RSS and open fds
// (/proc/PID) and its queue and KV gauges (/metrics). Prints one JSON line, then a table; exits 1
// if a stream died inside a 200, a refusal was not a 503 with Retry-After, a request got no status,
// the fd count did not return to its baseline after the load, or RSS grew in the second half of the
// run (more than 8 MiB and 5 % over its level at the end of the first half).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';

const args = process.argv.slice(2);
const opt = (k, d) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : d;
};
const url = new URL(opt('--url', 'http://127.0.0.1:8080'));
if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) && !/^127\./.test(url.hostname)) {
    console.error('serve_load.mjs: loopback addresses only');
    process.exit(2);
}
const PID = Number(opt('--pid', 0));
const CLIENTS = Number(opt('--clients', 64));
const DURATION = Number(opt('--duration', 300));
const MIN_T = Number(opt('--min-tokens', 16)), MAX_T = Number(opt('--max-tokens', 200));
const SAMPLE = Number(opt('--sample', Math.min(5, Math.max(1, DURATION / 10))));
const JSON_OUT = opt('--json', null);
const REQ_TIMEOUT_S = 120;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

// ---------------------------------------------------------------- the machine

function machine() {
    const m = { cpu: os.cpus()[0]?.model ?? '?', cpus: os.availableParallelism?.() ?? os.cpus().length,
        mem_gib: +(os.totalmem() / 2 ** 30).toFixed(1), kernel: os.release(), node: process.version, flags: '' };
    try {
        const t = execFileSync('lscpu', { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
        m.cpu = /^Model name:\s*(.*)$/m.exec(t)?.[1] ?? m.cpu;
        m.flags = /^Flags:\s*(.*)$/m.exec(t)?.[1] ?? '';
    } catch {
        m.flags = /^flags\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
    }
    return m;
}

// ---------------------------------------------------------------- the server's side

function procSample() {
    if (!PID) return {};
    try {
        const st = fs.readFileSync(`/proc/${PID}/status`, 'utf8');
        return { rss_kib: Number(/^VmRSS:\s*(\d+)/m.exec(st)?.[1]), fds: fs.readdirSync(`/proc/${PID}/fd`).length };
    } catch {
        return { gone: true };
    }
}

function get(path, timeoutMs = 5000) {
    return new Promise((resolve) => {
        const req = http.get({ host: url.hostname, port: url.port, path, agent: false }, (res) => {
            let t = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (t += d));
            res.on('end', () => resolve({ status: res.statusCode, text: t }));
            res.on('error', () => resolve(null));
        });
        req.setTimeout(timeoutMs, () => req.destroy());
        req.on('error', () => resolve(null));
    });
}

async function gauges() {
    const r = await get('/metrics');
    if (!r || r.status !== 200) return { metrics: r ? r.status : 'no answer' };
    const g = {};
    for (const name of ['nuri_running_sequences', 'nuri_queue_depth', 'nuri_kv_cache_usage_ratio', 'nuri_preemptions_total']) {
        const line = r.text.split('\n').find((l) => l.startsWith(name + ' '));
        if (line) g[name.replace(/^nuri_/, '')] = Number(line.split(' ')[1]);
    }
    return g;
}

// ---------------------------------------------------------------- one request

const WORDS = 'the a of river stone light quiet answer number seven garden machine letter window morning'.split(' ');
const pick = (a) => a[Math.floor(Math.random() * a.length)];
const randInt = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));

function oneRequest(agent, client, k) {
    const maxTokens = randInt(MIN_T, MAX_T);
    const words = Array.from({ length: randInt(3, 40) }, () => pick(WORDS)).join(' ');
    const body = JSON.stringify({
        model: 'load', stream: true, max_tokens: maxTokens, temperature: 0.8,
        messages: [{ role: 'user', content: `Client ${client}, request ${k}: ${words}` }],
    });
    return new Promise((resolve) => {
        const t0 = now();
        const r = { kind: null, tokens: 0, ttft: null, status: null, detail: null, maxTokens };
        let settled = false, timer;
        const finish = (kind, detail = null) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            Object.assign(r, { kind, detail, ms: now() - t0 });
            resolve(r);
        };
        const req = http.request({ host: url.hostname, port: url.port, method: 'POST', path: '/v1/chat/completions', agent,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
            r.status = res.statusCode;
            res.setEncoding('utf8');
            let buf = '';
            if (res.statusCode !== 200) {
                res.on('data', (d) => (buf += d));
                res.on('end', () => {
                    const ra = res.headers['retry-after'];
                    if (res.statusCode === 503 && ra !== undefined && /^\d+$/.test(ra)) finish('refused', { retryAfter: Number(ra) });
                    else finish('rejected', `status ${res.statusCode}${res.statusCode === 503 ? ' without Retry-After' : ''}: ${buf.slice(0, 160)}`);
                });
                res.on('error', (e) => finish('rejected', `status ${res.statusCode}, then ${e.code ?? e.message}`));
                return;
            }
            let done = false, finishReason = null, errorEvent = null, bad = null;
            res.on('data', (d) => {
                buf += d;
                let i;
                while ((i = buf.indexOf('\n\n')) >= 0) {
                    const ev = buf.slice(0, i);
                    buf = buf.slice(i + 2);
                    if (!ev.startsWith('data: ')) continue;
                    const data = ev.slice(6);
                    if (data === '[DONE]') {
                        done = true;
                        continue;
                    }
                    let j;
                    try { j = JSON.parse(data); } catch { bad ??= data.slice(0, 120); continue; }
                    if (j.error) errorEvent = j.error;
                    for (const c of j.choices ?? []) {
                        if (c.delta?.content) {
                            r.tokens++;
                            r.ttft ??= now() - t0;
                        }
                        if (c.finish_reason) finishReason = c.finish_reason;
                    }
                }
            });
            res.on('close', () => {
                if (errorEvent) finish('died', `in-stream error ${JSON.stringify(errorEvent).slice(0, 200)}`);
                else if (bad) finish('died', `an event that is not JSON: ${bad}`);
                else if (!done) finish('died', `cut after ${r.tokens} chunks${res.complete ? '' : ' (the connection closed mid-body)'}`);
                else if (!finishReason) finish('died', '[DONE] without a finish_reason');
                else finish('completed');
            });
        });
        req.on('error', (e) => {
            if (r.status === 200) finish('died', `cut: ${e.code ?? e.message}`);
            else if (r.status === null) finish('error', e.code ?? e.message);
        });
        timer = setTimeout(() => {
            finish(r.status === 200 ? 'died' : 'error', `stalled: no end within ${REQ_TIMEOUT_S} s`);
            req.destroy();
        }, REQ_TIMEOUT_S * 1000);
        req.end(body);
    });
}

// ---------------------------------------------------------------- the run

const counts = { requests: 0, completed: 0, died: 0, refused: 0, rejected: 0, error: 0 };
const examples = { died: [], rejected: [], error: [] };
const ttfts = [];
let tokens = 0;

async function client(id, deadline) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let k = 0; now() < deadline; k++) {
        const r = await oneRequest(agent, id, k);
        counts.requests++;
        counts[r.kind]++;
        tokens += r.tokens;
        if (r.kind === 'completed' && r.ttft !== null) ttfts.push(r.ttft);
        if (examples[r.kind] && examples[r.kind].length < 10)
            examples[r.kind].push({ client: id, request: k, max_tokens: r.maxTokens, after_ms: Math.round(r.ms), detail: r.detail });
        if (r.kind === 'refused') await sleep(r.detail.retryAfter * 1000 * (0.5 + Math.random()));
        else if (r.kind !== 'completed') await sleep(500);
    }
    agent.destroy();
}

const pct = (a, p) => {
    if (!a.length) return null;
    const s = [...a].sort((x, y) => x - y);
    return +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(1);
};

async function main() {
    const health = await get('/health');
    if (!health || health.status !== 200) {
        console.error(`serve_load.mjs: ${url.origin}/health is ${health ? health.status : 'not answering'}`);
        process.exit(2);
    }
    // warm up, then the baseline the server returns to
    await oneRequest(new http.Agent({ keepAlive: false }), -1, 0);
    await sleep(500);
    const base = procSample();
    const samples = [];
    const t0 = now();
    const deadline = t0 + DURATION * 1000;
    let sampling = true;
    const sampler = (async () => {
        while (sampling) {
            samples.push({ t: +((now() - t0) / 1000).toFixed(1), ...procSample(), ...(await gauges()) });
            const next = t0 + samples.length * SAMPLE * 1000;
            while (sampling && now() < next) await sleep(Math.min(200, next - now()));
        }
    })();
    // a hard bound: the run never outlives its duration plus one request's timeout
    const hard = setTimeout(() => {
        console.error('serve_load.mjs: the hard time limit passed; giving up');
        process.exit(3);
    }, (DURATION + REQ_TIMEOUT_S + 30) * 1000);
    hard.unref();
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i, deadline)));
    const wall = (now() - t0) / 1000;
    sampling = false;
    await sampler;
    // after the load: the fds of the clients' connections must be released
    let after = procSample();
    for (let i = 0; i < 100 && after.fds > base.fds; i++) {
        await sleep(100);
        after = procSample();
    }

    const during = samples.filter((s) => s.rss_kib && s.t <= DURATION);
    const inRange = (a, b) => during.filter((s) => s.t >= a * DURATION && s.t <= b * DURATION).map((s) => s.rss_kib);
    const midMax = Math.max(...inRange(0.25, 0.5)), lateMax = Math.max(...inRange(0.75, 1));
    const growth = lateMax - midMax;
    const fdsMax = Math.max(...during.map((s) => s.fds));
    const checks = {
        no_stream_died: counts.died === 0,
        refusals_are_503_with_retry_after: counts.rejected === 0,
        every_request_got_a_status: counts.error === 0,
        fds_back_to_baseline: !PID || after.fds <= base.fds,
        rss_flat: !PID || !Number.isFinite(growth) || growth <= Math.max(8192, 0.05 * midMax),
    };
    const summary = {
        bench: 'serve_load', date: new Date().toISOString(), url: url.origin, clients: CLIENTS, duration_s: DURATION,
        wall_s: +wall.toFixed(1), max_tokens: [MIN_T, MAX_T], machine: machine(), server: { pid: PID, nuri: process.env.NURI_VERSION ?? null, args: process.env.NURI_ARGS ?? null },
        requests: counts.requests, streams_completed: counts.completed, streams_died: counts.died, refusals: counts.refused,
        rejected: counts.rejected, errors_before_status: counts.error, tokens, tok_per_s: +(tokens / wall).toFixed(1),
        ttft_ms: { p50: pct(ttfts, 50), p99: pct(ttfts, 99) },
        rss_mib: PID ? { baseline: +(base.rss_kib / 1024).toFixed(1), first_half_max: +(midMax / 1024).toFixed(1),
            last_quarter_max: +(lateMax / 1024).toFixed(1), growth: +(growth / 1024).toFixed(1) } : null,
        fds: PID ? { baseline: base.fds, max: fdsMax, after: after.fds } : null,
        examples, samples, checks, ok: Object.values(checks).every(Boolean),
    };
    console.log(JSON.stringify(summary));
    if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify(summary, null, 2) + '\n');

    const row = (k, v) => console.log(`  ${k.padEnd(28)} ${v}`);
    console.log(`\nserve_load: ${CLIENTS} streaming clients for ${DURATION} s against ${url.origin} (max_tokens ${MIN_T}-${MAX_T})`);
    row('machine', `${summary.machine.cpu}, ${summary.machine.cpus} CPUs, ${summary.machine.mem_gib} GiB, Linux ${summary.machine.kernel}`);
    row('cpu flags', summary.machine.flags || '?');
    row('requests', counts.requests);
    row('streams completed', counts.completed);
    row('streams died inside a 200', counts.died);
    row('refusals (503 + Retry-After)', counts.refused);
    row('other non-200 answers', counts.rejected);
    row('no status at all', counts.error);
    row('tokens, tokens/s', `${tokens}, ${summary.tok_per_s}`);
    row('time to first token p50/p99', `${summary.ttft_ms.p50} / ${summary.ttft_ms.p99} ms`);
    if (PID) {
        row('RSS MiB base/half/end', `${summary.rss_mib.baseline} / ${summary.rss_mib.first_half_max} / ${summary.rss_mib.last_quarter_max}`);
        row('fds base/max/after', `${base.fds} / ${fdsMax} / ${after.fds}`);
    }
    console.log('\n     t s    RSS MiB  fds  running  queue  kv use  preempt');
    for (const s of samples)
        console.log(`  ${String(s.t).padStart(6)}  ${s.rss_kib ? (s.rss_kib / 1024).toFixed(1).padStart(9) : '        -'}  ${String(s.fds ?? '-').padStart(3)}` +
            `  ${String(s.running_sequences ?? '-').padStart(7)}  ${String(s.queue_depth ?? '-').padStart(5)}  ${String(s.kv_cache_usage_ratio ?? '-').padStart(6)}  ${String(s.preemptions_total ?? '-').padStart(7)}`);
    for (const [k, ex] of Object.entries(examples)) for (const e of ex) console.log(`  ${k}: ${JSON.stringify(e)}`);
    console.log('');
    for (const [k, v] of Object.entries(checks)) console.log(`  ${v ? 'ok  ' : 'FAIL'} ${k}`);
    process.exit(summary.ok ? 0 : 1);
}

main();
