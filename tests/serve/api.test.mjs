// api.test.mjs: `nuri serve` through the official openai npm client, on loopback only.
//
// tests/serve.test.sh starts the servers and passes their addresses:
//   NURI_URL         the main server (tiny model, 16 sequences)
//   NURI_URL_AUTH    the same model with --api-key sekrit and --chat-template (Qwen2.5's)
//   NURI_URL_QUEUE   --max-seqs 1 --queue 1 (queue-full 503); --header-timeout 400
//   NURI_URL_KV      --ctx 512 --max-seqs 4 (16 KV pages for 4 sequences of 8: preemption)
// Generation is greedy (temperature 0) wherever outputs are compared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';

const URL_MAIN = process.env.NURI_URL;
const client = (base = URL_MAIN, apiKey = 'none') =>
    new OpenAI({ baseURL: base + '/v1', apiKey, maxRetries: 0, timeout: 60000 });
const api = client();
const MODEL = 'llama-tiny-Q8_0';
const greedy = { model: MODEL, temperature: 0 };
const json = { 'Content-Type': 'application/json' };
const user = (content) => [{ role: 'user', content }];

async function apiError(promise) {
    try {
        await promise;
    } catch (e) {
        assert.ok(e instanceof OpenAI.APIError, `expected an APIError, got ${e}`);
        return e;
    }
    assert.fail('the request succeeded but should have failed');
}

async function metric(base, name) {
    const text = await (await fetch(base + '/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith(name + ' '));
    assert.ok(line, `metric ${name} missing`);
    return Number(line.split(' ')[1]);
}

async function collect(stream) {
    let text = '', finish = null, usage = null, chunks = 0;
    for await (const ch of stream) {
        chunks++;
        if (ch.usage) usage = ch.usage;
        for (const c of ch.choices) {
            text += c.delta?.content ?? c.text ?? '';
            if (c.finish_reason) finish = c.finish_reason;
        }
    }
    return { text, finish, usage, chunks };
}

// ---------------------------------------------------------------- routes

test('models lists the served model and retrieves it by id', async () => {
    const list = await api.models.list();
    assert.equal(list.data.length, 1);
    assert.equal(list.data[0].id, MODEL);
    assert.equal(list.data[0].object, 'model');
    const m = await api.models.retrieve(MODEL);
    assert.equal(m.id, MODEL);
    const e = await apiError(api.models.retrieve('no-such-model'));
    assert.equal(e.status, 404);
});

test('health is 200 once loaded', async () => {
    const r = await fetch(URL_MAIN + '/health');
    assert.equal(r.status, 200);
    assert.equal((await r.json()).status, 'ok');
});

// ---------------------------------------------------------------- chat

test('chat: a plain completion with usage and finish_reason length', async () => {
    const r = await api.chat.completions.create({ ...greedy, messages: user('Hello there'), max_tokens: 8 });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.model, MODEL);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 8);
    assert.ok(r.usage.prompt_tokens > 3);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
});

test('chat: max_completion_tokens works like max_tokens', async () => {
    const r = await api.chat.completions.create({ ...greedy, messages: user('Hi'), max_completion_tokens: 3 });
    assert.equal(r.usage.completion_tokens, 3);
});

test('chat: greedy is deterministic, and the stream carries the same text', async () => {
    const args = { ...greedy, messages: user('Tell me a story'), max_tokens: 20 };
    const a = await api.chat.completions.create(args);
    const b = await api.chat.completions.create(args);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    const s = await collect(
        await api.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(s.text, a.choices[0].message.content);
    assert.equal(s.finish, 'length');
    assert.deepEqual(
        [s.usage.prompt_tokens, s.usage.completion_tokens],
        [a.usage.prompt_tokens, a.usage.completion_tokens],
    );
});

test('chat: a stream without include_usage has no usage chunk', async () => {
    const s = await collect(
        await api.chat.completions.create({ ...greedy, messages: user('x'), max_tokens: 4, stream: true }),
    );
    assert.equal(s.usage, null);
    assert.ok(s.chunks >= 2);
});

test('chat: the raw stream is server-sent events ending in [DONE]', async () => {
    const r = await fetch(URL_MAIN + '/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...greedy, messages: user('y'), max_tokens: 3, stream: true }),
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const text = await r.text();
    const events = text.split('\n\n').filter((e) => e);
    assert.equal(events.at(-1), 'data: [DONE]');
    for (const e of events.slice(0, -1)) JSON.parse(e.replace(/^data: /, ''));
});

test('chat: the same seed gives the same sampled text', async () => {
    const args = { model: MODEL, messages: user('Sample'), max_tokens: 16, temperature: 1.0, top_p: 0.9, seed: 42 };
    const a = await api.chat.completions.create(args);
    const b = await api.chat.completions.create(args);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('chat: a stop string cuts the text before it and finishes with stop', async () => {
    const args = { ...greedy, messages: user('Stop test'), max_tokens: 24 };
    const full = (await api.chat.completions.create(args)).choices[0].message.content;
    assert.ok(full.length > 8, full);
    const stop = full.slice(5, 8);
    const cut = full.slice(0, full.indexOf(stop));
    const r = await api.chat.completions.create({ ...args, stop: [stop] });
    assert.equal(r.choices[0].message.content, cut);
    assert.equal(r.choices[0].finish_reason, 'stop');
    const s = await collect(await api.chat.completions.create({ ...args, stop, stream: true }));
    assert.equal(s.text, cut);
    assert.equal(s.finish, 'stop');
});

test('chat: logprobs with top_logprobs, sorted and consistent', async () => {
    const r = await api.chat.completions.create({
        ...greedy, messages: user('Logprobs'), max_tokens: 6, logprobs: true, top_logprobs: 3,
    });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, 6);
    for (const t of lp) {
        assert.ok(t.logprob <= 0);
        assert.equal(t.top_logprobs.length, 3);
        assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
        assert.ok(t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob);
        // greedy: the chosen token is the most likely one
        assert.equal(t.logprob, t.top_logprobs[0].logprob);
        assert.ok(Array.isArray(t.bytes));
    }
    const s = await api.chat.completions.create({
        ...greedy, messages: user('Logprobs'), max_tokens: 6, logprobs: true, stream: true,
    });
    let n = 0;
    for await (const ch of s) n += ch.choices[0]?.logprobs?.content?.length ?? 0;
    assert.equal(n, 6);
});

test('chat: logit_bias can force a token', async () => {
    const r = await api.chat.completions.create({
        ...greedy, messages: user('Bias'), max_tokens: 3, logit_bias: { 300: 100 }, logprobs: true,
    });
    for (const t of r.choices[0].logprobs.content) assert.ok(t.logprob > -50);
    const forced = await api.completions.create({
        ...greedy, prompt: [1, 300], max_tokens: 3, logit_bias: { 300: 100 }, logprobs: 0,
    });
    const plain = await api.completions.create({ ...greedy, prompt: [1, 300], max_tokens: 3, logprobs: 0 });
    assert.notDeepEqual(forced.choices[0].logprobs.tokens, plain.choices[0].logprobs.tokens);
    assert.equal(new Set(forced.choices[0].logprobs.tokens).size, 1);
});

test('chat: penalties change a greedy continuation', async () => {
    const args = { ...greedy, messages: user('Repeat repeat repeat'), max_tokens: 40 };
    const a = (await api.chat.completions.create(args)).choices[0].message.content;
    const b = (await api.chat.completions.create({ ...args, frequency_penalty: 2, presence_penalty: 2 }))
        .choices[0].message.content;
    assert.notEqual(a, b);
});

test('chat: array content parts are joined', async () => {
    const a = await api.chat.completions.create({ ...greedy, messages: user('Hello world'), max_tokens: 5 });
    const b = await api.chat.completions.create({
        ...greedy, max_tokens: 5,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello ' }, { type: 'text', text: 'world' }] }],
    });
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('chat: a repeated system prompt reuses cached KV pages', async () => {
    const sys = { role: 'system', content: 'You are a helpful assistant. '.repeat(8) };
    await api.chat.completions.create({ ...greedy, messages: [sys, ...user('first')], max_tokens: 2 });
    const r = await api.chat.completions.create({ ...greedy, messages: [sys, ...user('second')], max_tokens: 2 });
    assert.ok(r.usage.prompt_tokens_details.cached_tokens > 40, JSON.stringify(r.usage));
});

// ---------------------------------------------------------------- completions

test('completions: text prompt, token prompt, stream and logprobs', async () => {
    const r = await api.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 7 });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.usage.completion_tokens, 7);
    const s = await collect(await api.completions.create({ ...greedy, prompt: 'Once upon a time', max_tokens: 7, stream: true }));
    assert.equal(s.text, r.choices[0].text);
    const t = await api.completions.create({ ...greedy, prompt: [1, 50, 60, 70], max_tokens: 4, logprobs: 2 });
    const lp = t.choices[0].logprobs;
    assert.equal(lp.tokens.length, 4);
    assert.equal(lp.token_logprobs.length, 4);
    assert.equal(Object.keys(lp.top_logprobs[0]).length <= 2, true);
    assert.equal(lp.tokens.join(''), t.choices[0].text);
});

// ---------------------------------------------------------------- errors

test('400 names the parameter at fault', async () => {
    const cases = [
        [{ messages: user('x'), temperature: 3 }, 'temperature'],
        [{ messages: user('x'), top_p: 'high' }, 'top_p'],
        [{ messages: user('x'), max_tokens: 0 }, 'max_tokens'],
        [{ messages: user('x'), max_tokens: 2.5 }, 'max_tokens'],
        [{ messages: [] }, 'messages'],
        [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
        [{ messages: [{ role: 'user' }] }, 'messages[0].content'],
        [{ messages: user('x'), top_logprobs: 2 }, 'top_logprobs'],
        [{ messages: user('x'), logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
        [{ messages: user('x'), stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
        [{ messages: user('x'), stop: [5] }, 'stop[0]'],
        [{ messages: user('x'), logit_bias: { 99999999: 1 } }, 'logit_bias'],
        [{ messages: user('x'), logit_bias: { 5: 101 } }, 'logit_bias'],
        [{ messages: user('x'), frequency_penalty: -3 }, 'frequency_penalty'],
        [{ messages: user('x'), presence_penalty: 2.5 }, 'presence_penalty'],
        [{ messages: user('x'), seed: 'abc' }, 'seed'],
        [{ messages: user('x'), n: 17 }, 'n'],
        [{ messages: user('x'), n: 0 }, 'n'],
        [{ messages: user('x'), stream_options: { include_usage: true } }, 'stream_options'],
    ];
    for (const [body, param] of cases) {
        const e = await apiError(api.chat.completions.create({ model: MODEL, ...body }));
        assert.equal(e.status, 400, JSON.stringify(body));
        assert.equal(e.param, param, `${JSON.stringify(body)}: ${e.message}`);
        assert.equal(e.type, 'invalid_request_error');
    }
    const e = await apiError(api.completions.create({ model: MODEL, prompt: [1, 999999] }));
    assert.equal(e.param, 'prompt');
});

test('a parameter nuri does not implement is a 400 naming it, never ignored', async () => {
    for (const [extra, param] of [[{ functions: [{ name: 'f' }] }, 'functions'],
        [{ service_tier: 'flex' }, 'service_tier'],
        [{ modalities: ['audio'] }, 'modalities']]) {
        const e = await apiError(api.chat.completions.create({ ...greedy, messages: user('x'), ...extra }));
        assert.equal(e.status, 400);
        assert.equal(e.param, param);
        assert.equal(e.code, 'unsupported_parameter');
    }
    // llama-server's sampling keys are implemented
    const r = await api.chat.completions.create({ ...greedy, messages: user('x'), max_tokens: 2,
        top_k: 5, min_p: 0.1, repeat_penalty: 1.1 });
    assert.equal(r.usage.completion_tokens, 2);
});

test('n choices: one prompt, n answers that share its KV pages, whole and streamed', async () => {
    const messages = user('Tell me three things about the sea, please, in a few words');
    const before = await metric(URL_MAIN, 'nuri_prompt_tokens_cached_total');
    const r = await api.chat.completions.create({ model: MODEL, messages, n: 4, max_tokens: 8, temperature: 1, seed: 21 });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
    const texts = r.choices.map((c) => c.message.content);
    assert.ok(new Set(texts).size >= 2, 'sampled choices differ: ' + JSON.stringify(texts));
    assert.ok(r.usage.completion_tokens >= 4 && r.usage.completion_tokens <= 32, 'every choice counts');
    const cached = (await metric(URL_MAIN, 'nuri_prompt_tokens_cached_total')) - before;
    assert.ok(cached >= 3 * (r.usage.prompt_tokens - 1), `choices 1-3 reuse the prompt's KV: ${cached} cached`);
    // choice i samples with seed + i: the same request again gives the same choices
    const again = await api.chat.completions.create({ model: MODEL, messages, n: 4, max_tokens: 8, temperature: 1, seed: 21 });
    assert.deepEqual(again.choices.map((c) => c.message.content), texts);
    // streamed: chunks name their choice; put together they are the whole answers
    const stream = await api.chat.completions.create({ model: MODEL, messages, n: 4, max_tokens: 8, temperature: 1,
        seed: 21, stream: true, stream_options: { include_usage: true } });
    const got = ['', '', '', ''], finish = [];
    let usage = null;
    for await (const ch of stream) {
        if (ch.usage) usage = ch.usage;
        for (const c of ch.choices) {
            got[c.index] += c.delta?.content ?? '';
            if (c.finish_reason) finish[c.index] = c.finish_reason;
        }
    }
    assert.deepEqual(got, texts);
    assert.equal(finish.length, 4);
    assert.equal(usage.completion_tokens, r.usage.completion_tokens);
    // greedy: every choice is the same answer
    const g = await api.chat.completions.create({ ...greedy, messages, n: 3, max_tokens: 6 });
    assert.equal(new Set(g.choices.map((c) => c.message.content)).size, 1);
});

test('response_format json_schema: every answer parses and validates, for 10 seeds', async () => {
    const schema = {
        type: 'object',
        properties: {
            name: { type: 'string', maxLength: 20 },
            age: { type: 'integer' },
            tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
            ok: { type: 'boolean' },
        },
        required: ['name', 'age', 'tags', 'ok'],
        additionalProperties: false,
    };
    const answers = [];
    for (let seed = 1; seed <= 10; seed++) {
        const r = await api.chat.completions.create({ model: MODEL, messages: user('a person, as JSON'),
            temperature: 1, seed, max_tokens: 200,
            response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } } });
        assert.equal(r.choices[0].finish_reason, 'stop', r.choices[0].message.content);
        answers.push(r.choices[0].message.content);
    }
    // validated by Python's jsonschema, not by hand
    const v = spawnSync('python3', ['-c', `import json, sys, jsonschema
d = json.load(sys.stdin)
for a in d["answers"]: jsonschema.validate(json.loads(a), d["schema"])
print("valid", len(d["answers"]))`], { input: JSON.stringify({ answers, schema }), encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr + '\n' + answers.join('\n'));
    assert.match(v.stdout, /valid 10/);
});

test('response_format json_object and a GBNF grammar constrain the answer', async () => {
    // a random-weight model may stay inside a free-text string until max_tokens: what it wrote is
    // still the start of a JSON object, and parses whenever the object was closed
    let closed = 0;
    for (let seed = 1; seed <= 5; seed++) {
        const r = await api.chat.completions.create({ model: MODEL, messages: user('x'), max_tokens: 150,
            temperature: 1, seed, response_format: { type: 'json_object' } });
        const text = r.choices[0].message.content;
        assert.match(text, /^\s*\{/);
        if (r.choices[0].finish_reason === 'stop') {
            const o = JSON.parse(text);
            assert.ok(o && typeof o === 'object' && !Array.isArray(o), text);
            closed++;
        }
    }
    void closed; // (the schema test above checks whole objects: its grammar bounds its strings)
    const free = await api.chat.completions.create({ ...greedy, messages: user('x'), max_tokens: 5 });
    assert.doesNotMatch(free.choices[0].message.content, /^\s*\{/); // the format made the difference
    const g = await fetch(URL_MAIN + '/v1/completions', { method: 'POST', headers: json,
        body: JSON.stringify({ prompt: 'x', max_tokens: 20, temperature: 1, seed: 3,
            grammar: 'root ::= ("yes" | "no") "!"' }) }).then((x) => x.json());
    assert.match(g.choices[0].text, /^(yes|no)!$/);
});

test('a schema keyword nuri cannot enforce is a 400 naming its path', async () => {
    const e = await apiError(api.chat.completions.create({ ...greedy, messages: user('x'),
        response_format: { type: 'json_schema', json_schema: { name: 'x',
            schema: { type: 'object', properties: { tags: { type: 'array', uniqueItems: true } } } } } }));
    assert.equal(e.status, 400);
    assert.equal(e.param, 'response_format.json_schema.schema.properties.tags.uniqueItems');
});

test('400 for a body that is not JSON, or not an object', async () => {
    for (const body of ['{"messages": [', '[1,2]', '']) {
        const r = await fetch(URL_MAIN + '/v1/chat/completions', { method: 'POST', body, headers: json });
        assert.equal(r.status, 400, body);
        const j = await r.json();
        assert.equal(j.error.type, 'invalid_request_error');
        assert.ok('param' in j.error && 'code' in j.error);
    }
});

test('400 for a prompt longer than the context, with both sizes', async () => {
    const e = await apiError(api.chat.completions.create({ ...greedy, messages: user('word '.repeat(600)) }));
    assert.equal(e.status, 400);
    assert.equal(e.code, 'context_length_exceeded');
    assert.equal(e.param, 'messages');
    assert.match(e.message, /is \d+ tokens long, but a sequence holds at most 512 tokens/);
});

test('404 unknown route, 405 wrong method', async () => {
    let r = await fetch(URL_MAIN + '/v1/nothing');
    assert.equal(r.status, 404);
    assert.equal((await r.json()).error.code, 'not_found');
    r = await fetch(URL_MAIN + '/v1/chat/completions');
    assert.equal(r.status, 405);
    r = await fetch(URL_MAIN + '/v1/models', { method: 'POST', body: '{}' });
    assert.equal(r.status, 405);
});

test('413 for a body over the limit', async () => {
    const big = JSON.stringify({ model: MODEL, messages: user('x'.repeat(70000)) });
    const r = await fetch(URL_MAIN + '/v1/chat/completions', { method: 'POST', body: big, headers: json });
    assert.equal(r.status, 413);
    assert.equal((await r.json()).error.code, 'request_too_large');
});

test('408 for headers that do not arrive in time', async () => {
    // on the server with a short header timeout (the loop answers before any route or model)
    const port = Number(new URL(process.env.NURI_URL_QUEUE).port);
    const reply = await new Promise((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => sock.write('GET /health HTTP/1.1\r\nHost: x\r\n'));
        let data = '';
        sock.on('data', (d) => (data += d));
        sock.on('end', () => resolve(data));
        sock.on('error', reject);
        setTimeout(() => reject(new Error('no 408 within 5 s')), 5000).unref();
    });
    assert.match(reply, /^HTTP\/1\.1 408/);
    assert.match(reply, /"request_timeout"/);
});

test('401 for a missing or wrong key; the right key works', async () => {
    const base = process.env.NURI_URL_AUTH;
    let e = await apiError(client(base, 'wrong').chat.completions.create({ ...greedy, messages: user('x'), max_tokens: 1 }));
    assert.equal(e.status, 401);
    assert.equal(e.code, 'invalid_api_key');
    const r = await fetch(base + '/v1/models');
    assert.equal(r.status, 401);
    const ok = await client(base, 'sekrit').chat.completions.create({ ...greedy, messages: user('x'), max_tokens: 1 });
    assert.equal(ok.usage.completion_tokens, 1);
    assert.equal((await fetch(base + '/health')).status, 200); // health needs no key
});

test('503 with Retry-After when the queue is full', async () => {
    const base = process.env.NURI_URL_QUEUE;
    // one sequence slot and a queue of 1: of 4 requests sent at once, one runs, one waits and the
    // others are refused at once. Each asks for 400 tokens with EOS barred, far longer than the 4
    // take to arrive. (An earlier form stalled one unread stream to hold the slot; a stream that
    // fits in the sockets' buffers does not stall, and it finished first on a fast machine.)
    const body = JSON.stringify({ ...greedy, messages: user('long'), max_tokens: 400, logit_bias: { 2: -100 } });
    const rs = await Promise.all([0, 1, 2, 3].map(() =>
        fetch(base + '/v1/chat/completions', { method: 'POST', body, headers: json })));
    const statuses = rs.map((r) => r.status);
    assert.ok(statuses.every((st) => st === 200 || st === 503), `statuses ${statuses}`);
    assert.ok(statuses.filter((st) => st === 503).length >= 1, `nothing refused: ${statuses}`);
    assert.ok(statuses.filter((st) => st === 200).length >= 2, `the slot and the queue: ${statuses}`);
    for (const r of rs) {
        const j = await r.json();
        if (r.status === 200) {
            assert.equal(j.usage.completion_tokens, 400);
            continue;
        }
        assert.equal(r.headers.get('retry-after'), '1');
        assert.equal(j.error.code, 'queue_full');
    }
});

test('a KV pool too small for every stream at once: each one finishes with its solo answer', async () => {
    const base = process.env.NURI_URL_KV;
    const c = client(base);
    // a 512-token pool (16 pages): four requests that each grow to 8 pages cannot all run at once;
    // the youngest is preempted and recomputed later, and batch invariance keeps its answer
    const req = (w) => ({ ...greedy, messages: user(w), max_tokens: 200 });
    const words = ['alpha beta', 'gamma delta', 'epsilon', 'zeta eta'];
    const alone = [];
    for (const w of words) alone.push(await api.chat.completions.create(req(w)));
    const before = await metric(base, 'nuri_preemptions_total');
    const results = await Promise.all(words.map(async (w) => collect(await c.chat.completions.create({
        ...req(w), stream: true, stream_options: { include_usage: true } }))));
    for (let i = 0; i < words.length; i++) {
        assert.equal(results[i].text, alone[i].choices[0].message.content, words[i]);
        assert.equal(results[i].finish, alone[i].choices[0].finish_reason, words[i]);
        assert.equal(results[i].usage.completion_tokens, alone[i].usage.completion_tokens, words[i]);
    }
    assert.ok((await metric(base, 'nuri_preemptions_total')) > before, 'no request was preempted');
});

test('a client that disconnects frees its sequence at once', async () => {
    const c = client(process.env.NURI_URL_QUEUE);
    const base = process.env.NURI_URL_QUEUE;
    const before = await metric(base, 'nuri_generated_tokens_total');
    const ac = new AbortController();
    const s = await c.chat.completions.create(
        { ...greedy, messages: user('disconnect me'), max_tokens: 460, stream: true }, { signal: ac.signal });
    for await (const ch of s) { void ch; break; } // one chunk, then hang up
    let running = 1;
    for (let i = 0; i < 100 && running > 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        running = await metric(base, 'nuri_running_sequences');
    }
    assert.equal(running, 0);
    const after = await metric(base, 'nuri_generated_tokens_total');
    assert.ok(after - before < 400, `generated ${after - before} tokens for a client that left`);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await metric(base, 'nuri_generated_tokens_total'), after); // nothing runs on
    assert.ok((await metric(base, 'nuri_client_disconnects_total')) >= 1);
});

test('--chat-template replaces the built-in ChatML', async () => {
    const args = { ...greedy, messages: user('Which template?'), max_tokens: 1 };
    const chatml = await api.chat.completions.create(args);
    const qwen = await client(process.env.NURI_URL_AUTH, 'sekrit').chat.completions.create(args);
    // Qwen2.5's template adds its default system message ("You are Qwen, created by ...")
    assert.ok(qwen.usage.prompt_tokens > chatml.usage.prompt_tokens + 10,
        `${qwen.usage.prompt_tokens} vs ${chatml.usage.prompt_tokens}`);
});

test('metrics: Prometheus text with requests, tokens, latencies, queue and KV', async () => {
    const r = await fetch(URL_MAIN + '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/plain/);
    const t = await r.text();
    for (const name of ['nuri_requests_total{code="200"}', 'nuri_prompt_tokens_total', 'nuri_completion_tokens_total',
        'nuri_time_to_first_token_seconds_bucket', 'nuri_inter_token_latency_seconds_count',
        'nuri_queue_depth', 'nuri_kv_pages_used', 'nuri_kv_pages_total', 'nuri_kv_cache_usage_ratio'])
        assert.ok(t.includes(name), name);
    assert.ok((await metric(URL_MAIN, 'nuri_completion_tokens_total')) > 0);
});
