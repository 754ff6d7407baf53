// concurrency.test.mjs: 16 simultaneous streaming clients each get exactly the tokens they get
// when served alone (greedy). The kernels are batch-invariant, so a user's answer never depends on
// who else is being served. Server: NURI_URL (16 sequences), see api.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const api = new OpenAI({ baseURL: process.env.NURI_URL + '/v1', apiKey: 'none', maxRetries: 0, timeout: 120000 });
const N = 16;
const req = (i) => ({
    model: 'llama-tiny-Q8_0', temperature: 0, max_tokens: 24 + (i % 5) * 4, logprobs: true,
    // a shared system prompt for half of them (prefix reuse while others run), distinct users
    messages: [
        ...(i % 2 ? [{ role: 'system', content: 'You answer briefly and kindly.' }] : []),
        { role: 'user', content: `Question number ${i}: what is ${i * 7} plus ${i + 3}?` },
    ],
});

async function streamed(i) {
    const s = await api.chat.completions.create({ ...req(i), stream: true, stream_options: { include_usage: true } });
    let text = '', tokens = [], finish = null, usage = null;
    for await (const ch of s) {
        if (ch.usage) usage = ch.usage;
        for (const c of ch.choices) {
            text += c.delta?.content ?? '';
            for (const t of c.logprobs?.content ?? []) tokens.push(t.token);
            if (c.finish_reason) finish = c.finish_reason;
        }
    }
    return { text, tokens, finish, n: usage.completion_tokens };
}

test('16 simultaneous streams match their solo runs token for token', async () => {
    const alone = [];
    for (let i = 0; i < N; i++) alone.push(await streamed(i));
    const together = await Promise.all([...Array(N).keys()].map(streamed));
    for (let i = 0; i < N; i++) {
        assert.ok(alone[i].n > 0);
        assert.deepEqual(together[i].tokens, alone[i].tokens, `client ${i}`);
        assert.equal(together[i].text, alone[i].text, `client ${i}`);
        assert.equal(together[i].finish, alone[i].finish, `client ${i}`);
    }
});
