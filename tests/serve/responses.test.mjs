// responses.test.mjs: the Responses and Conversations APIs through the official openai npm client,
// on loopback. tests/serve.test.sh starts the server (NURI_URL_RESP): a random-weight model with
// the real Qwen2 vocabulary and Qwen2.5's template, API keys k1 and k2, and a store in a temp dir.
// Greedy wherever outputs are compared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';

const URL_RESP = process.env.NURI_URL_RESP;
const client = (key) => new OpenAI({ baseURL: URL_RESP + '/v1', apiKey: key, maxRetries: 0, timeout: 60000 });
const k1 = client('k1');
const k2 = client('k2');
const MODEL = 'tools-qwen2-tiny';

async function apiError(promise) {
    try {
        await promise;
    } catch (e) {
        assert.ok(e instanceof OpenAI.APIError, `expected an APIError, got ${e}`);
        return e;
    }
    assert.fail('the request succeeded but should have failed');
}

const text = (r) => r.output.filter((i) => i.type === 'message')
    .flatMap((i) => i.content).map((c) => c.text).join('');

test('a response: output_text, stored, retrieved, its input items listed', async () => {
    const r = await k1.responses.create({ model: MODEL, input: '안녕하세요', max_output_tokens: 8, temperature: 0 });
    assert.match(r.id, /^resp_[0-9a-f]{48}$/);
    assert.equal(r.object, 'response');
    assert.ok(['completed', 'incomplete'].includes(r.status));
    assert.equal(r.output[0].type, 'message');
    assert.ok(r.output_text.length > 0); // the SDK's own aggregate of the output_text parts
    assert.equal(r.output_text, text(r));
    assert.equal(r.usage.output_tokens, 8);
    const got = await k1.responses.retrieve(r.id);
    assert.deepEqual(got.output, r.output);
    assert.equal(got.usage.input_tokens, r.usage.input_tokens);
    const items = await k1.responses.inputItems.list(r.id);
    assert.equal(items.data.length, 1);
    assert.equal(items.data[0].role, 'user');
    assert.equal(items.data[0].content[0].text, '안녕하세요');
});

test('previous_response_id: the follow-up sees the whole history, as the same chat would', async () => {
    const first = await k1.responses.create({ model: MODEL, instructions: 'Be brief.', input: 'Hello there',
        max_output_tokens: 6, temperature: 0 });
    const second = await k1.responses.create({ model: MODEL, previous_response_id: first.id,
        input: 'And then?', max_output_tokens: 6, temperature: 0 });
    assert.equal(second.previous_response_id, first.id);
    assert.ok(second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens - 8);
    // the same conversation through chat completions gives the same answer, token for token
    // (instructions are not carried over to a follow-up, as OpenAI does)
    const chat = await k1.chat.completions.create({ model: MODEL, temperature: 0, max_tokens: 6, messages: [
        { role: 'user', content: 'Hello there' },
        { role: 'assistant', content: first.output_text },
        { role: 'user', content: 'And then?' }] });
    // (a Responses message is the parsed reply: whitespace at its ends is not part of it)
    assert.equal(second.output_text, chat.choices[0].message.content.trim());
    assert.equal(second.usage.input_tokens, chat.usage.prompt_tokens);
});

test('streamed: the typed events in order, and the same response as whole', async () => {
    const args = { model: MODEL, input: 'Stream this', max_output_tokens: 10, temperature: 0 };
    const whole = await k1.responses.create(args);
    const stream = await k1.responses.create({ ...args, stream: true });
    const types = [];
    let seq = -1, deltas = '', final = null;
    for await (const ev of stream) {
        types.push(ev.type);
        assert.equal(ev.sequence_number, seq + 1);
        seq = ev.sequence_number;
        if (ev.type === 'response.output_text.delta') deltas += ev.delta;
        if (ev.type === 'response.completed' || ev.type === 'response.incomplete') final = ev.response;
    }
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress',
        'response.output_item.added', 'response.content_part.added']);
    assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done',
        'response.output_item.done', whole.status === 'completed' ? 'response.completed' : 'response.incomplete']);
    assert.equal(deltas, whole.output_text);
    assert.equal(text(final), whole.output_text);
    const stored = await k1.responses.retrieve(final.id);
    assert.equal(text(stored), deltas);
});

test('another key never sees a response: 404 as for a missing one', async () => {
    const r = await k1.responses.create({ model: MODEL, input: 'mine', max_output_tokens: 2, temperature: 0 });
    const missing = await apiError(k2.responses.retrieve('resp_' + '0'.repeat(48)));
    for (const call of [() => k2.responses.retrieve(r.id), () => k2.responses.delete(r.id),
        () => k2.responses.inputItems.list(r.id),
        () => k2.responses.create({ model: MODEL, input: 'x', previous_response_id: r.id, max_output_tokens: 2 })]) {
        const e = await apiError(call());
        assert.equal(e.status, 404);
        assert.ok(!e.message.includes('mine'));
        if (!e.message.includes('history')) assert.equal(e.message.replace(r.id, 'X'), missing.message.replace(/resp_0+/, 'X'));
    }
    // still there for its owner
    assert.equal((await k1.responses.retrieve(r.id)).id, r.id);
});

test('delete, and store: false', async () => {
    const r = await k1.responses.create({ model: MODEL, input: 'forget me', max_output_tokens: 2, temperature: 0 });
    const d = await k1.responses.delete(r.id);
    assert.equal(d?.deleted ?? true, true);
    assert.equal((await apiError(k1.responses.retrieve(r.id))).status, 404);
    const n = await k1.responses.create({ model: MODEL, input: 'not kept', store: false, max_output_tokens: 2 });
    assert.equal(n.store, false);
    assert.equal((await apiError(k1.responses.retrieve(n.id))).status, 404);
});

test('function calling: a call, its output as the next input, the answer', async () => {
    const tools = [{ type: 'function', name: 'get_weather', description: 'Weather in a city', strict: true,
        parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 } }, required: ['city'],
            additionalProperties: false } }];
    const r = await k1.responses.create({ model: MODEL, input: '서울 날씨?', tools, tool_choice: 'required',
        parallel_tool_calls: false, temperature: 1, seed: 3, max_output_tokens: 120 });
    const calls = r.output.filter((i) => i.type === 'function_call');
    assert.equal(calls.length, 1, JSON.stringify(r.output));
    const call = calls[0];
    assert.equal(call.name, 'get_weather');
    assert.match(call.call_id, /^call_/);
    const args = JSON.parse(call.arguments);
    const v = spawnSync('python3', ['-c', 'import json,sys,jsonschema; d=json.load(sys.stdin); jsonschema.validate(d["a"], d["s"])'],
        { input: JSON.stringify({ a: args, s: tools[0].parameters }), encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    const next = await k1.responses.create({ model: MODEL, previous_response_id: r.id, tools, temperature: 0,
        max_output_tokens: 4, input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp": 21}' }] });
    assert.equal(next.output.at(-1).type, 'message');
    assert.ok(next.usage.input_tokens > r.usage.input_tokens);
    // streamed: the call's arguments come as deltas
    const s = await k1.responses.create({ model: MODEL, input: '날씨?', tools, tool_choice: 'required',
        parallel_tool_calls: false, temperature: 1, seed: 3, max_output_tokens: 120, stream: true });
    let argsDelta = '', done = null;
    for await (const ev of s) {
        if (ev.type === 'response.function_call_arguments.delta') argsDelta += ev.delta;
        if (ev.type === 'response.function_call_arguments.done') done = ev.arguments;
    }
    assert.equal(argsDelta, done);
    assert.deepEqual(JSON.parse(done), args); // the same seed, the same call
});

test('text.format json_schema: the answer parses and validates', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer' } },
        required: ['ok', 'n'], additionalProperties: false };
    const r = await k1.responses.create({ model: MODEL, input: 'JSON please', temperature: 1, seed: 4, max_output_tokens: 100,
        text: { format: { type: 'json_schema', name: 'x', schema, strict: true } } });
    const o = JSON.parse(r.output_text);
    assert.equal(typeof o.ok, 'boolean');
    assert.ok(Number.isInteger(o.n));
});

test('conversations: items in, responses appended, items listed in order', async () => {
    const conv = await k1.conversations.create({ metadata: { topic: 'test' },
        items: [{ type: 'message', role: 'user', content: 'Remember: 42' }] });
    assert.match(conv.id, /^conv_/);
    assert.equal((await k1.conversations.retrieve(conv.id)).metadata.topic, 'test');
    const r = await k1.responses.create({ model: MODEL, conversation: conv.id, input: 'What number?',
        max_output_tokens: 4, temperature: 0 });
    const items = await k1.conversations.items.list(conv.id, { order: 'asc' });
    const kinds = items.data.map((i) => i.type + ':' + (i.role ?? ''));
    assert.deepEqual(kinds, ['message:user', 'message:user', 'message:assistant']);
    assert.equal(items.data[2].content[0].text, r.output_text);
    assert.equal((await apiError(k2.conversations.retrieve(conv.id))).status, 404);
    await k1.conversations.delete(conv.id);
    assert.equal((await apiError(k1.conversations.retrieve(conv.id))).status, 404);
});

test('what nuri does not do is a 400 naming it', async () => {
    const bad = async (extra, param) => {
        const e = await apiError(k1.responses.create({ model: MODEL, input: 'x', max_output_tokens: 2, ...extra }));
        assert.equal(e.status, 400, e.message);
        assert.equal(e.param, param, e.message);
    };
    await bad({ tools: [{ type: 'web_search' }] }, 'tools[0].type');
    await bad({ background: true }, 'background');
    await bad({ include: ['reasoning.encrypted_content'] }, 'include');
    await bad({ truncation: 'auto' }, 'truncation');
    await bad({ input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'x' }] }] }, 'input[0].content[0]');
    await bad({ text: { format: { type: 'json_schema', name: 'x', schema: { type: 'array', uniqueItems: true } } } },
        'text.format.schema.uniqueItems');
    await bad({ previous_response_id: 'resp_nope', conversation: 'conv_nope' }, 'conversation');
});
