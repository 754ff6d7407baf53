// restart.mjs: a three-turn conversation chained by previous_response_id with a server restart in
// the middle, through the official openai client. tests/serve.test.sh runs it twice:
//   node restart.mjs before URL STATEFILE   turns 1 and 2; their ids go to STATEFILE
//   node restart.mjs after URL STATEFILE    (a new server on the same store) turn 3, and checks
// Prints "ok ..." or "FAIL ..." lines.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import OpenAI from 'openai';

const [phase, url, stateFile] = process.argv.slice(2);
const k1 = new OpenAI({ baseURL: url + '/v1', apiKey: 'k1', maxRetries: 0, timeout: 60000 });
const k2 = new OpenAI({ baseURL: url + '/v1', apiKey: 'k2', maxRetries: 0, timeout: 60000 });
const MODEL = 'tools-qwen2-tiny';
const args = { model: MODEL, max_output_tokens: 4, temperature: 0 };
try {
    if (phase === 'before') {
        const r1 = await k1.responses.create({ ...args, input: '첫 번째 질문' });
        const r2 = await k1.responses.create({ ...args, input: '두 번째 질문', previous_response_id: r1.id });
        writeFileSync(stateFile, JSON.stringify({ r1, r2 }));
        console.log('ok   turns 1 and 2 before the restart');
    } else {
        const { r1, r2 } = JSON.parse(readFileSync(stateFile, 'utf8'));
        // both earlier turns are still there, whole, for their key only
        assert.deepEqual((await k1.responses.retrieve(r1.id)).output, r1.output);
        assert.deepEqual((await k1.responses.retrieve(r2.id)).output, r2.output);
        await assert.rejects(k2.responses.retrieve(r1.id), (e) => e.status === 404);
        const r3 = await k1.responses.create({ ...args, input: '세 번째 질문', previous_response_id: r2.id });
        assert.equal(r3.previous_response_id, r2.id);
        // turn 3 sees the first two: the same conversation sent whole gives the same prompt
        const chat = await k1.chat.completions.create({ model: MODEL, max_tokens: 1, temperature: 0, messages: [
            { role: 'user', content: '첫 번째 질문' }, { role: 'assistant', content: r1.output_text },
            { role: 'user', content: '두 번째 질문' }, { role: 'assistant', content: r2.output_text },
            { role: 'user', content: '세 번째 질문' }] });
        assert.equal(r3.usage.input_tokens, chat.usage.prompt_tokens);
        console.log('ok   a three-turn conversation continues across a restart (openai client)');
    }
} catch (e) {
    console.log(`FAIL restart (${phase}): ${e.stack ?? e}`);
}
