// replicas.mjs: the Responses API through a load balancer in front of two `nuri serve` replicas
// that share one PostgreSQL store and one KV snapshot directory, with the official openai client.
// tests/replicas.test.sh starts everything and runs it in two phases:
//   node replicas.mjs chain LB URL_A URL_B PID_A KVDIR STATEFILE
//     a conversation chained through the balancer until both replicas have answered, then A is
//     killed with SIGKILL right after it answered a turn (its snapshot written), and the chain
//     goes on through the balancer on B: B resumes that turn from the shared snapshot (its
//     metrics say so); every response is then retrievable whole, and the last turn's prompt is
//     the whole conversation. The ids go to STATEFILE.
//   node replicas.mjs resume URL_A URL_B KVDIR [WORDS]
//     (A restarted, its memory empty) a ~4000-token conversation (WORDS 500; the sanitizer build
//     passes fewer: the recomputation is 15x slower there) made on B continues on A from
//     the shared snapshot, and another one whose snapshot was removed is recomputed on A: both
//     times are printed, and the snapshot must be the faster.
// Prints "ok ..." or "FAIL ..." lines, and "time ..." lines with what was measured.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import OpenAI from 'openai';

const [phase, ...rest] = process.argv.slice(2);
const KEY = 'replica-key';
const MODEL = 'nuri-tiny';
const client = (url) => new OpenAI({ baseURL: url + '/v1', apiKey: KEY, maxRetries: 0, timeout: 300000 });
const args = { model: MODEL, max_output_tokens: 3, temperature: 0 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function turn(c, input, prev) {
    const { data, response } = await c.responses
        .create({ ...args, input, ...(prev ? { previous_response_id: prev } : {}) })
        .withResponse();
    return { r: data, replica: response.headers.get('x-nuri-replica') };
}

// the counters of nuri_kv_prefix_source_total{tier=...} of one replica
async function tiers(url) {
    const text = await (await fetch(url + '/metrics', { headers: { Authorization: `Bearer ${KEY}` } })).text();
    const t = {};
    for (const m of text.matchAll(/^nuri_kv_prefix_source_total\{tier="(\w+)"\} (\d+)$/gm)) t[m[1]] = Number(m[2]);
    return t;
}

async function waitFile(path, ms) {
    for (let i = 0; i < ms / 20 && !existsSync(path); i++) await sleep(20);
    return existsSync(path);
}

async function chain(lb, urlA, urlB, pidA, kvDir, stateFile) {
    const c = client(lb);
    const turns = []; // {r, replica, input}
    let prev = null;
    // through the balancer until both replicas have answered and the last answer was A's
    for (let i = 0; i < 8; i++) {
        const input = `turn ${i + 1}: tell me about the river`;
        const t = await turn(c, input, prev);
        turns.push({ ...t, input });
        prev = t.r.id;
        const seen = new Set(turns.map((x) => x.replica));
        if (seen.has('nuri-a') && seen.has('nuri-b') && t.replica === 'nuri-a') break;
    }
    const names = turns.map((x) => x.replica);
    assert.ok(names.includes('nuri-a') && names.includes('nuri-b'), `replicas seen: ${names}`);
    assert.equal(names.at(-1), 'nuri-a');
    console.log(`ok   a conversation chained across both replicas through the balancer (${names.join(', ')})`);

    // A has answered the last turn; its snapshot is written after the answer went out
    const lastA = turns.at(-1).r.id;
    assert.ok(await waitFile(`${kvDir}/${lastA}.kv`, 10000), 'the snapshot of A\'s last turn was written');
    const before = await tiers(urlB);
    process.kill(Number(pidA), 'SIGKILL');
    for (let i = 0; i < 3; i++) {
        const input = `turn ${turns.length + 1}: and after the kill?`;
        const t = await turn(c, input, prev);
        assert.equal(t.replica, 'nuri-b', 'A is dead: B answers');
        turns.push({ ...t, input });
        prev = t.r.id;
    }
    const after = await tiers(urlB);
    assert.equal(after.disk - before.disk, 1, `B resumed A's last turn from the shared snapshot (${JSON.stringify(before)} -> ${JSON.stringify(after)})`);
    assert.equal(after.none - before.none, 0, 'nothing was recomputed');
    console.log('ok   replica A killed with SIGKILL mid-conversation: the chain goes on on B, from the shared snapshot');

    // nothing lost: every response whole, the chain complete
    const ids = new Set();
    for (const t of turns) {
        const got = await c.responses.retrieve(t.r.id);
        assert.deepEqual(got.output, t.r.output);
        assert.equal(got.previous_response_id, t.r.previous_response_id);
        ids.add(t.r.id);
    }
    assert.equal(ids.size, turns.length, 'response ids are unique across replicas');
    const messages = [];
    for (const t of turns.slice(0, -1)) {
        messages.push({ role: 'user', content: t.input }, { role: 'assistant', content: t.r.output_text });
    }
    messages.push({ role: 'user', content: turns.at(-1).input });
    const whole = await c.chat.completions.create({ model: MODEL, max_tokens: 1, temperature: 0, messages });
    assert.equal(turns.at(-1).r.usage.input_tokens, whole.usage.prompt_tokens, 'the last turn saw the whole conversation');
    // another key sees none of it, on either replica
    const other = new OpenAI({ baseURL: lb + '/v1', apiKey: 'other-key', maxRetries: 0 });
    await assert.rejects(other.responses.retrieve(turns[0].r.id), (e) => e.status === 404);
    console.log(`ok   nothing lost: ${turns.length} responses retrievable whole, the last one's prompt is the whole conversation`);
    writeFileSync(stateFile, JSON.stringify({ last: prev, ids: [...ids] }));
}

// A text of about n tokens for the tiny model's synthetic vocabulary, different per seed
const longText = (seed, words) => Array.from({ length: words }, (_, i) => `w${seed}x${i} river`).join(' ');

async function resume(urlA, urlB, kvDir, words = '500') {
    const a = client(urlA), b = client(urlB);
    // two long conversations of the same length, made on B
    const x = (await turn(b, longText(1, Number(words)))).r;
    const y = (await turn(b, longText(2, Number(words)))).r;
    assert.ok(x.usage.input_tokens >= 7 * Number(words), `a long conversation (${x.usage.input_tokens} tokens)`);
    assert.ok(await waitFile(`${kvDir}/${x.id}.kv`, 20000) && await waitFile(`${kvDir}/${y.id}.kv`, 20000));
    rmSync(`${kvDir}/${y.id}.kv`); // y's follow-up must recompute its history
    const t0 = await tiers(urlA);
    let s = performance.now();
    const fx = await turn(a, 'and then?', x.id);
    const tSnap = (performance.now() - s) / 1000;
    const t1 = await tiers(urlA);
    s = performance.now();
    const fy = await turn(a, 'and then?', y.id);
    const tRecompute = (performance.now() - s) / 1000;
    const t2 = await tiers(urlA);
    assert.equal(fx.replica, 'nuri-a');
    assert.equal(t1.disk - t0.disk, 1, 'x resumed from the shared snapshot');
    // y's history came from nowhere: only the template's first tokens can be shared in memory
    assert.equal(t2.disk - t1.disk, 0, `y had no snapshot (${JSON.stringify(t1)} -> ${JSON.stringify(t2)})`);
    const cachedX = fx.r.usage.input_tokens_details.cached_tokens;
    const cachedY = fy.r.usage.input_tokens_details.cached_tokens;
    assert.ok(cachedX >= x.usage.input_tokens, `x's history came from the snapshot (${cachedX} cached)`);
    assert.ok(cachedY < 64, `y's history was recomputed (${cachedY} cached)`);
    console.log(`time follow-up of a ${x.usage.input_tokens + x.usage.output_tokens}-token conversation on the other replica: ` +
        `${tSnap.toFixed(3)} s from the shared snapshot, ${tRecompute.toFixed(3)} s recomputed ` +
        `(${(tRecompute / tSnap).toFixed(1)}x)`);
    assert.ok(tSnap < tRecompute, `snapshot ${tSnap} s should beat recompute ${tRecompute} s`);
    console.log('ok   a follow-up on another replica resumes from the shared snapshot, faster than recomputing');
}

try {
    if (phase === 'chain') await chain(...rest);
    else await resume(...rest);
} catch (e) {
    console.log(`FAIL replicas (${phase}): ${e.stack ?? e}`);
}
