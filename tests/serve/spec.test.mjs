// spec.test.mjs: `nuri serve --draft-lookup K` and `nuri serve --draft FILE` through the official
// openai npm client, on loopback. tests/spec.test.sh starts two servers on the same model and
// passes their addresses:
//   NURI_URL_PLAIN  no speculation
//   NURI_URL_SPEC   with the options in NURI_SPEC_OPTS (--draft-lookup 6, --draft FILE, both)
// Greedy requests sent together (so that they share the batches, each with its own draft) must
// give the plain server's text, and /metrics must count drafted and accepted tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const PLAIN = process.env.NURI_URL_PLAIN;
const SPEC = process.env.NURI_URL_SPEC;
const client = (base) =>
    new OpenAI({ baseURL: base + '/v1', apiKey: 'none', maxRetries: 0, timeout: 120000 });
const MODEL = process.env.NURI_MODEL_ID;
const OPTS = process.env.NURI_SPEC_OPTS;

async function metric(base, name) {
    const text = await (await fetch(base + '/metrics')).text();
    const line = text.split('\n').find((l) => l.startsWith(name + ' '));
    assert.ok(line, `metric ${name} missing`);
    return Number(line.split(' ')[1]);
}

// repetitive prompts, where lookup drafts hold, and plain ones
const prompts = [
    'the cat sat on the mat, the cat sat on the mat, the cat sat on the',
    'one two three four one two three four one two three',
    'Once upon a time there was a',
    'def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef',
];

async function completions(base, stream) {
    const api = client(base);
    return Promise.all(prompts.map(async (prompt) => {
        const req = { model: MODEL, prompt, max_tokens: 40, temperature: 0 };
        if (!stream) return (await api.completions.create(req)).choices[0].text;
        let text = '';
        for await (const ch of await api.completions.create({ ...req, stream: true }))
            text += ch.choices[0]?.text ?? '';
        return text;
    }));
}

test(`greedy completions sent together are the same with and without ${OPTS}`, async () => {
    const d0 = await metric(SPEC, 'nuri_spec_drafted_tokens_total');
    const a0 = await metric(SPEC, 'nuri_spec_accepted_tokens_total');
    const plain = await completions(PLAIN, false);
    const spec = await completions(SPEC, false);
    assert.deepEqual(spec, plain);
    const streamed = await completions(SPEC, true);
    assert.deepEqual(streamed, plain);
    const d1 = await metric(SPEC, 'nuri_spec_drafted_tokens_total');
    const a1 = await metric(SPEC, 'nuri_spec_accepted_tokens_total');
    assert.ok(d1 > d0, `drafted ${d0} -> ${d1}`);
    assert.ok(a1 > a0 && a1 - a0 <= d1 - d0, `accepted ${a0} -> ${a1} of ${d1 - d0}`);
    // the plain server drafts nothing
    assert.equal(await metric(PLAIN, 'nuri_spec_drafted_tokens_total'), 0);
});

test(`sampled chat with a seed is the same with and without ${OPTS}`, async () => {
    const req = {
        model: MODEL, max_tokens: 32, temperature: 0.9, seed: 7, frequency_penalty: 0.3,
        messages: [{ role: 'user', content: 'repeat: a b c a b c a b c' }],
    };
    const [p, s] = await Promise.all([client(PLAIN), client(SPEC)].map(
        async (api) => (await api.chat.completions.create(req)).choices[0].message.content));
    assert.equal(s, p);
});

test('logprobs requests still answer (they do not draft)', async () => {
    const req = { model: MODEL, prompt: prompts[0], max_tokens: 8, temperature: 0, logprobs: 2 };
    const [p, s] = await Promise.all([client(PLAIN), client(SPEC)].map(
        async (api) => (await api.completions.create(req)).choices[0]));
    assert.equal(s.text, p.text);
    assert.deepEqual(s.logprobs.tokens, p.logprobs.tokens);
});

test(`structured output (a JSON schema) is the same with and without ${OPTS}`, async () => {
    // the grammar ends the answer: the same text, ended for the same reason
    const schema = {
        type: 'object',
        properties: { a: { type: 'array', items: { enum: ['cat', 'mat'] }, maxItems: 12 } },
        required: ['a'], additionalProperties: false,
    };
    const req = {
        model: MODEL, max_tokens: 120, temperature: 0,
        messages: [{ role: 'user', content: 'cat mat cat mat cat mat' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
    };
    const [p, s] = await Promise.all([client(PLAIN), client(SPEC)].map(
        async (api) => (await api.chat.completions.create(req)).choices[0]));
    assert.equal(s.message.content, p.message.content);
    assert.equal(s.finish_reason, p.finish_reason);
    JSON.parse(s.message.content);
});
