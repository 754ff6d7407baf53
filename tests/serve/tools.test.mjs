// tools.test.mjs: tool calling, structured output and reasoning through the official openai npm
// client, on loopback. tests/serve.test.sh starts three servers on one random-weight model with
// the real Qwen2 vocabulary (151,936 tokens) and a 4096-token context, each with a real chat template of another format:
//   NURI_URL_HERMES   Qwen2.5's template: <tool_call>{json}</tool_call>
//   NURI_URL_HCX      HyperCLOVA X SEED Think's: <tool_call>NAME<arg_key>..<arg_value>.., <think>
//   NURI_URL_EXAONE   EXAONE 4.0's: <tool_call>{json}</tool_call>, reasoning opened by the prompt
//   NURI_URL_HARMONY  gpt-oss's harmony (<|channel|>commentary to=functions.NAME ...<|message|>{json}),
//                     on a random gpt-oss model whose Qwen2 vocabulary got harmony's control tokens
// A random model calls no tool of its own accord: where a call must come, the grammar is what makes
// it valid, and every call's arguments are checked by Python's jsonschema, not by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';

const client = (base) => new OpenAI({ baseURL: base + '/v1', apiKey: 'none', maxRetries: 0, timeout: 120000 });
const hermes = client(process.env.NURI_URL_HERMES);
const hcx = client(process.env.NURI_URL_HCX);
const exaone = client(process.env.NURI_URL_EXAONE);
const harmony = client(process.env.NURI_URL_HARMONY);
const MODEL = 'tools-qwen2-tiny';
const user = (content) => [{ role: 'user', content }];

const weather = {
    type: 'object',
    properties: {
        city: { type: 'string', minLength: 1, maxLength: 24 },
        days: { type: 'integer', minimum: 1, maximum: 7 },
        unit: { enum: ['celsius', 'fahrenheit'] },
    },
    required: ['city', 'days'],
    additionalProperties: false,
};
const search = {
    type: 'object',
    properties: {
        query: { type: 'string', minLength: 1, maxLength: 30 },
        limit: { type: 'integer', minimum: 1, maximum: 10 },
    },
    required: ['query'],
    additionalProperties: false,
};
const tools = [
    { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather } },
    { type: 'function', function: { name: 'web_search', description: 'Searches the web', parameters: search } },
];
const schemas = { get_weather: weather, web_search: search };

// Validates [{schema, instance}] with Python's jsonschema; returns its verdict line.
function validate(cases) {
    const v = spawnSync('python3', ['-c', `import json, sys, jsonschema
cases = json.load(sys.stdin)
for c in cases: jsonschema.validate(c["instance"], c["schema"])
print("valid", len(cases))`], { input: JSON.stringify(cases), encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    return v.stdout.trim();
}

function callCases(calls, allowed = Object.keys(schemas)) {
    return calls.map((c) => {
        assert.equal(c.type, 'function');
        assert.match(c.id, /^call_[0-9a-f]{24}$/);
        assert.ok(allowed.includes(c.function.name), c.function.name);
        return { schema: schemas[c.function.name], instance: JSON.parse(c.function.arguments) };
    });
}

// Accumulates a streamed reply: content, reasoning and tool calls from their deltas, as a client
// (and the openai SDK's own stream helper) does.
async function collect(stream) {
    let content = '', reasoning = '', finish = null;
    const calls = [];
    const order = [];
    for await (const ch of stream) {
        for (const c of ch.choices) {
            const d = c.delta ?? {};
            if (d.content) content += d.content;
            if (d.reasoning_content) reasoning += d.reasoning_content;
            for (const t of d.tool_calls ?? []) {
                if (!calls[t.index]) {
                    // the first delta of a call carries its id, type and name
                    assert.ok(t.id && t.type === 'function' && t.function?.name, JSON.stringify(t));
                    calls[t.index] = { id: t.id, type: 'function', function: { name: t.function.name, arguments: '' } };
                    order.push(t.index);
                } else {
                    assert.equal(t.id, undefined);
                }
                calls[t.index].function.arguments += t.function?.arguments ?? '';
            }
            if (c.finish_reason) finish = c.finish_reason;
        }
    }
    assert.deepEqual(order, order.map((_, i) => i)); // indexes 0, 1, 2... in order
    return { content, reasoning, calls, finish };
}

// ---------------------------------------------------------------- required and named calls

test('tool_choice required: 50 seeds, every reply is a valid call (Qwen2.5 template)', async () => {
    const cases = [];
    for (let seed = 1; seed <= 50; seed++) {
        const r = await hermes.chat.completions.create({ model: MODEL, messages: user('What is the weather in Seoul?'),
            tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 300 });
        const ch = r.choices[0];
        assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch.message));
        assert.equal(ch.message.content, null);
        assert.ok(ch.message.tool_calls.length >= 1);
        cases.push(...callCases(ch.message.tool_calls));
    }
    assert.match(validate(cases), /^valid \d+$/);
});

test('tool_choice required in HyperCLOVA X SEED\'s arg-key format: 20 seeds valid', async () => {
    const cases = [];
    for (let seed = 1; seed <= 20; seed++) {
        const r = await hcx.chat.completions.create({ model: MODEL, messages: user('서울 날씨 알려줘'),
            tools, tool_choice: 'required', temperature: 1, seed, max_tokens: 300 });
        const ch = r.choices[0];
        assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch.message));
        cases.push(...callCases(ch.message.tool_calls));
    }
    assert.match(validate(cases), /^valid \d+$/);
});

test('a named function is the one called; parallel_tool_calls false gives one call', async () => {
    const cases = [];
    for (let seed = 1; seed <= 10; seed++) {
        const r = await hermes.chat.completions.create({ model: MODEL, messages: user('Search for nuri'),
            tools, tool_choice: { type: 'function', function: { name: 'web_search' } },
            parallel_tool_calls: false, temperature: 1, seed, max_tokens: 300 });
        const calls = r.choices[0].message.tool_calls;
        assert.equal(calls.length, 1);
        cases.push(...callCases(calls, ['web_search']));
    }
    assert.match(validate(cases), /^valid 10$/);
});

test('streamed tool calls: id and name first, then argument fragments, the same call as whole', async () => {
    for (const [api, label] of [[hermes, 'hermes'], [hcx, 'arg-key']]) {
        for (let seed = 1; seed <= 3; seed++) {
            const args = { model: MODEL, messages: user('Weather?'), tools, tool_choice: 'required',
                temperature: 1, seed, max_tokens: 300 };
            const whole = (await api.chat.completions.create(args)).choices[0];
            const s = await collect(await api.chat.completions.create({ ...args, stream: true }));
            assert.equal(s.finish, 'tool_calls', label);
            assert.equal(s.content, '');
            assert.equal(s.calls.length, whole.message.tool_calls.length, label);
            s.calls.forEach((c, i) => {
                const w = whole.message.tool_calls[i];
                assert.equal(c.function.name, w.function.name);
                assert.deepEqual(JSON.parse(c.function.arguments), JSON.parse(w.function.arguments));
            });
            validate(callCases(s.calls));
        }
    }
});

test('tool_choice none: no call, and the tools are not in the prompt', async () => {
    const base = { model: MODEL, messages: user('Weather?'), temperature: 0, max_tokens: 4 };
    const none = await hermes.chat.completions.create({ ...base, tools, tool_choice: 'none' });
    const auto = await hermes.chat.completions.create({ ...base, tools });
    const plain = await hermes.chat.completions.create(base);
    assert.equal(none.choices[0].message.tool_calls, undefined);
    assert.equal(none.usage.prompt_tokens, plain.usage.prompt_tokens);
    assert.ok(auto.usage.prompt_tokens > plain.usage.prompt_tokens + 50, 'the tools reach the template');
});

test('tool_choice auto with a response_format: a valid call or a valid answer, 10 seeds', async () => {
    const answer = { type: 'object', properties: { temp: { type: 'integer' } }, required: ['temp'], additionalProperties: false };
    const cases = [];
    for (let seed = 1; seed <= 10; seed++) {
        const r = await hermes.chat.completions.create({ model: MODEL, messages: user('Weather?'), tools,
            response_format: { type: 'json_schema', json_schema: { name: 'a', schema: answer, strict: true } },
            temperature: 1, seed, max_tokens: 300 });
        const m = r.choices[0].message;
        if (m.tool_calls) cases.push(...callCases(m.tool_calls));
        else cases.push({ schema: answer, instance: JSON.parse(m.content) });
    }
    assert.match(validate(cases), /^valid \d+$/);
});

// ---------------------------------------------------------------- the SDK's parse helpers

test('chat.completions.parse: a strict json_schema answer comes back parsed and valid', async () => {
    const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 16 }, age: { type: 'integer' } },
        required: ['name', 'age'], additionalProperties: false };
    const r = await hermes.chat.completions.parse({ model: MODEL, messages: user('A person as JSON'), temperature: 1,
        seed: 5, max_tokens: 200, response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } } });
    const parsed = r.choices[0].message.parsed;
    assert.ok(parsed && typeof parsed === 'object', r.choices[0].message.content);
    assert.match(validate([{ schema, instance: parsed }]), /^valid 1$/);
});

test('chat.completions.parse: strict function tools come back with parsed_arguments', async () => {
    const strict = tools.map((t) => ({ ...t, function: { ...t.function, strict: true } }));
    const r = await hermes.chat.completions.parse({ model: MODEL, messages: user('Weather in Busan?'), tools: strict,
        tool_choice: 'required', temperature: 1, seed: 9, max_tokens: 300 });
    const calls = r.choices[0].message.tool_calls;
    assert.ok(calls.length >= 1);
    for (const c of calls) {
        assert.deepEqual(c.function.parsed_arguments, JSON.parse(c.function.arguments));
        validate([{ schema: schemas[c.function.name], instance: c.function.parsed_arguments }]);
    }
});

// ---------------------------------------------------------------- a whole round trip

test('a tool round trip (call, result, answer) through two templates of different formats', async () => {
    for (const [api, label] of [[hermes, 'hermes'], [hcx, 'arg-key']]) {
        const messages = [{ role: 'system', content: 'You are a helpful assistant.' }, ...user('서울 날씨?')];
        const first = await api.chat.completions.create({ model: MODEL, messages, tools, tool_choice: 'required',
            parallel_tool_calls: false, temperature: 1, seed: 11, max_tokens: 300 });
        const msg = first.choices[0].message;
        assert.equal(msg.tool_calls.length, 1, label);
        const call = msg.tool_calls[0];
        messages.push(msg); // as the SDK returns it: content null, tool_calls with arguments as a string
        messages.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temp: 21, sky: '맑음' }) });
        const second = await api.chat.completions.create({ model: MODEL, messages, tools, temperature: 0, max_tokens: 8 });
        const ch = second.choices[0];
        assert.ok(['stop', 'length'].includes(ch.finish_reason), label);
        assert.equal(ch.message.tool_calls, undefined, label);
        // the call and its result are in the prompt: it grew by more than the result's text
        assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens, label);
    }
});

// ---------------------------------------------------------------- reasoning

test('reasoning: EXAONE 4.0 thinking goes to reasoning_content; enable_thinking false turns it off', async () => {
    const base = { model: MODEL, messages: user('1+1?'), temperature: 0, max_tokens: 12 };
    const think = await exaone.chat.completions.create({ ...base, chat_template_kwargs: { enable_thinking: true } });
    const m = think.choices[0].message;
    assert.ok(m.reasoning_content && m.reasoning_content.length > 0, JSON.stringify(m));
    assert.equal(m.content, '', 'the reply never left its reasoning');
    const s = await collect(await exaone.chat.completions.create({ ...base, chat_template_kwargs: { enable_thinking: true }, stream: true }));
    assert.equal(s.reasoning, m.reasoning_content);
    assert.equal(s.content, '');
    const off = await exaone.chat.completions.create({ ...base, chat_template_kwargs: { enable_thinking: false } });
    assert.equal(off.choices[0].message.reasoning_content, undefined);
    assert.ok(off.choices[0].message.content.length > 0);
    assert.ok(think.usage.prompt_tokens !== off.usage.prompt_tokens, 'the kwarg reached the template');
});

test('required calls after reasoning: the reply closes its thinking, then calls', async () => {
    const cases = [];
    for (let seed = 1; seed <= 5; seed++) {
        const r = await exaone.chat.completions.create({ model: MODEL, messages: user('Weather?'), tools,
            tool_choice: 'required', chat_template_kwargs: { enable_thinking: true }, temperature: 1, seed, max_tokens: 400 });
        const ch = r.choices[0];
        if (ch.finish_reason === 'length') continue; // a random model may think past max_tokens
        assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch.message));
        assert.ok(typeof ch.message.reasoning_content === 'string');
        cases.push(...callCases(ch.message.tool_calls));
    }
    assert.ok(cases.length >= 2, `only ${cases.length} of 5 replies ended their thinking within 400 tokens`);
    validate(cases);
});

// ---------------------------------------------------------------- gpt-oss's harmony

const noMarkup = (s, label) => assert.ok(!/<\|(channel|message|start|end|constrain)\|>/.test(s ?? ''), `${label}: ${s}`);

test('gpt-oss harmony: required calls parse whole and streamed, with no channel markup left', async () => {
    const cases = [];
    for (let seed = 1; seed <= 8; seed++) {
        const args = { model: MODEL, messages: user('What is the weather in Seoul?'), tools, tool_choice: 'required',
            temperature: 1, seed, max_tokens: 400 };
        const r = await harmony.chat.completions.create(args);
        const ch = r.choices[0];
        if (ch.finish_reason === 'length') continue; // a random model may reason past max_tokens
        assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch.message));
        assert.equal(ch.message.content, null);
        assert.equal(ch.message.tool_calls.length, 1, 'harmony carries one call per turn');
        noMarkup(ch.message.reasoning_content, 'reasoning');
        noMarkup(ch.message.tool_calls[0].function.arguments, 'arguments');
        const s = await collect(await harmony.chat.completions.create({ ...args, stream: true }));
        assert.equal(s.finish, 'tool_calls');
        assert.equal(s.content, '');
        assert.equal(s.reasoning, ch.message.reasoning_content ?? '');
        assert.equal(s.calls[0].function.name, ch.message.tool_calls[0].function.name);
        assert.equal(s.calls[0].function.arguments, ch.message.tool_calls[0].function.arguments);
        cases.push(...callCases(ch.message.tool_calls));
    }
    assert.ok(cases.length >= 4, `only ${cases.length} of 8 replies reached their call within 400 tokens`);
    assert.match(validate(cases), /^valid \d+$/);
});

test('gpt-oss harmony: an answer\'s reasoning_content sent back reaches the template as its thinking', async () => {
    const messages = [...user('What time is it?'), null,
        { role: 'tool', tool_call_id: 'call_1', content: '14:05' }];
    const call = { id: 'call_1', type: 'function', function: { name: 'web_search', arguments: '{"query": "time"}' } };
    const ask = (assistant) => {
        messages[1] = assistant;
        return harmony.chat.completions.create({ model: MODEL, messages, tools, temperature: 0, max_tokens: 1 });
    };
    const without = await ask({ role: 'assistant', content: null, tool_calls: [call] });
    const withR = await ask({ role: 'assistant', content: null, tool_calls: [call],
        reasoning_content: 'The user wants the time, so search for it first.' });
    // the template writes it as an analysis message before the call: the prompt grew by it
    assert.ok(withR.usage.prompt_tokens >= without.usage.prompt_tokens + 10,
        `${withR.usage.prompt_tokens} vs ${without.usage.prompt_tokens}`);
});

// ---------------------------------------------------------------- refusals

test('what nuri cannot do with tools is a 400 naming the field', async () => {
    const bad = async (extra, param, code) => {
        try {
            await hermes.chat.completions.create({ model: MODEL, messages: user('x'), max_tokens: 2, ...extra });
        } catch (e) {
            assert.ok(e instanceof OpenAI.APIError, String(e));
            assert.equal(e.status, 400, e.message);
            assert.equal(e.param, param, e.message);
            if (code) assert.equal(e.code, code);
            return;
        }
        assert.fail(`accepted: ${JSON.stringify(extra)}`);
    };
    await bad({ tools: [{ type: 'web_search' }] }, 'tools[0].type', 'unsupported_parameter');
    await bad({ tools, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice');
    await bad({ tool_choice: 'required' }, 'tool_choice');
    await bad({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object',
        properties: { x: { type: 'array', uniqueItems: true } } } } }], tool_choice: 'required' },
    'tools[0].function.parameters.properties.x.uniqueItems', 'unsupported_schema');
    await bad({ functions: [{ name: 'f' }] }, 'functions', 'unsupported_parameter');
    await bad({ messages: [{ role: 'tool', content: '1' }] }, 'messages[0].tool_call_id');
    // the same schema is fine where no grammar needs it (auto)
    const r = await hermes.chat.completions.create({ model: MODEL, messages: user('x'), max_tokens: 2,
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'array', uniqueItems: true } } } } }] });
    assert.equal(r.choices[0].index, 0);
});
