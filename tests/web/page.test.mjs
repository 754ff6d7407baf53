// page.test.mjs: the web chat page (GET /) and CORS, in Debian's chromium driven by playwright-core
// (run by tests/web.test.sh, which starts the servers and passes their URLs):
//   NURI_URL_MAIN   no keys, a store, --cors NURI_ORIGIN
//   NURI_URL_KEYED  --api-key sekrit, a store, no CORS
//   NURI_URL_WILD   --api-key k, --cors '*'
//   NURI_ORIGIN     a blank page on another origin (tests/web/origin.mjs)
// The model has random weights: the tests look at how text flows (streamed, stored, restored,
// stopped), never at what it says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const MAIN = process.env.NURI_URL_MAIN;
const KEYED = process.env.NURI_URL_KEYED;
const WILD = process.env.NURI_URL_WILD;
const ORIGIN = process.env.NURI_ORIGIN;
const SHOTS = process.env.NURI_WEB_SHOTS; // where screenshots go (none: not taken)
const KOREAN = '안녕하세요, 오늘 서울 날씨는 어때요?';

async function screenshot(page, name) {
    if (!SHOTS) return;
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

let browser;
before(async () => {
    browser = await chromium.launch({
        executablePath: '/usr/bin/chromium',
        headless: true,
        args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
    });
});
after(async () => {
    await browser?.close();
});

/* A fresh browser context (its own localStorage) with the page open at url, ready (history
 * loaded). Collects the page's console errors (a CSP violation shows up there). */
async function openPage(url, { maxOutputTokens = 24, lang = 'en' } = {}) {
    const context = await browser.newContext({ locale: lang === 'ko' ? 'ko-KR' : 'en-US' });
    await context.addInitScript(
        ([max]) => {
            if (!localStorage.getItem('nuri.maxOutputTokens'))
                localStorage.setItem('nuri.maxOutputTokens', String(max));
        },
        [maxOutputTokens],
    );
    const page = await context.newPage();
    page.consoleErrors = [];
    page.on('console', (m) => m.type() === 'error' && page.consoleErrors.push(m.text()));
    page.on('pageerror', (e) => page.consoleErrors.push(String(e)));
    await page.goto(url + '/');
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    return page;
}

/* Sends text as a user would (typing, then Enter) and waits for the answer to end. Returns the
 * number of DOM mutations seen in the assistant's text while it streamed. */
async function sendAndWait(page, text) {
    await page.evaluate(() => {
        window.__mutations = 0;
        window.__observer?.disconnect();
        window.__observer = new MutationObserver((ms) => {
            for (const m of ms)
                if (m.target.closest?.('.msg.assistant') || m.target.parentElement?.closest('.msg.assistant'))
                    window.__mutations++;
        });
        window.__observer.observe(document.getElementById('log'), {
            childList: true, subtree: true, characterData: true,
        });
    });
    const sent = (await page.$$('#log .msg.user')).length + 1; // a send shows the user's text at once
    await page.fill('#input', text);
    await page.press('#input', 'Enter');
    await page.waitForFunction(
        (n) => document.querySelectorAll('#log .msg.user').length >= n && document.body.dataset.busy === '',
        sent, { timeout: 60000 });
    return page.evaluate(() => window.__mutations);
}

const bubbles = (page) =>
    page.$$eval('#log .msg', (els) => els.map((e) => ({ role: e.classList[1], text: e.textContent })));

/* fetch, with the whole body read before it returns: an answer whose body is left unread keeps
 * its connection busy, and so this test process alive, until the server's idle timeout (60 s). */
async function fetchRead(url, init) {
    const r = await fetch(url, init);
    const body = await r.text();
    return { status: r.status, headers: r.headers, text: async () => body, json: async () => JSON.parse(body) };
}

async function json(url, init) {
    const r = await fetchRead(url, init);
    assert.equal(r.status, 200, `${url}: ${r.status}`);
    return r.json();
}

test('GET / is the page: HTML, a strict CSP with hashes, nosniff; its script runs under it', async () => {
    const r = await fetchRead(MAIN + '/');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const html = await r.text();
    assert.doesNotMatch(html, /(src|href)\s*=\s*["']?(https?:)?\/\//i, 'the page loads nothing from outside');
    assert.equal((await fetchRead(MAIN + '/index.html')).status, 200);
    const page = await openPage(MAIN); // ready: its script ran under the CSP
    assert.deepEqual(page.consoleErrors, []);
    assert.equal(await page.textContent('#model'), 'tools-qwen2-tiny');
    await page.context().close();
});

let mainPage, firstTurn;
test('a Korean message streams its answer in many DOM updates', async () => {
    mainPage = await openPage(MAIN);
    const mutations = await sendAndWait(mainPage, KOREAN);
    assert.equal(await mainPage.textContent('#error'), '');
    const b = await bubbles(mainPage);
    assert.equal(b.length, 2);
    assert.deepEqual(b[0], { role: 'user', text: KOREAN });
    assert.equal(b[1].role, 'assistant');
    assert.ok(b[1].text.length > 0, 'the answer has text');
    assert.ok(mutations > 1, `the answer arrived in ${mutations} DOM update(s)`);
    firstTurn = b;
    assert.deepEqual(mainPage.consoleErrors, []);
});

test('a reload restores the conversation from the store', async () => {
    const conv = await mainPage.evaluate(() => localStorage.getItem('nuri.conversation'));
    assert.match(conv, /^conv_/);
    await mainPage.reload();
    await mainPage.waitForFunction(() => document.body.dataset.ready === '1');
    assert.deepEqual(await bubbles(mainPage), firstTurn);
});

test('the next message continues the same conversation on the server', async () => {
    const conv = await mainPage.evaluate(() => localStorage.getItem('nuri.conversation'));
    await sendAndWait(mainPage, '부산은요?');
    assert.equal(await mainPage.textContent('#error'), '');
    assert.equal(await mainPage.evaluate(() => localStorage.getItem('nuri.conversation')), conv);
    // the server holds both turns, in order, and the new response names the conversation
    const items = await json(`${MAIN}/v1/conversations/${conv}/items?order=asc&limit=100`);
    const msgs = items.data.filter((it) => it.type === 'message');
    assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    assert.equal(msgs[0].content[0].text, KOREAN);
    assert.equal(msgs[2].content[0].text, '부산은요?');
    const last = await mainPage.evaluate(() => localStorage.getItem('nuri.lastResponse'));
    const resp = await json(`${MAIN}/v1/responses/${last}`);
    assert.equal(resp.conversation?.id ?? resp.conversation, conv);
    await mainPage.reload();
    await mainPage.waitForFunction(() => document.body.dataset.ready === '1');
    const b = await bubbles(mainPage);
    assert.deepEqual(b.map((x) => x.role), ['user', 'assistant', 'user', 'assistant']);
    assert.equal(b[2].text, '부산은요?');
    assert.equal(await mainPage.textContent('#send'), 'Send'); // an English browser
    await screenshot(mainPage, 'chat-en.png');
});

test('Enter while an IME composes does not send; Shift+Enter does not send', async () => {
    const before = (await bubbles(mainPage)).length;
    await mainPage.fill('#input', '한');
    await mainPage.dispatchEvent('#input', 'keydown', { key: 'Enter', isComposing: true, bubbles: true, cancelable: true });
    await mainPage.press('#input', 'Shift+Enter');
    // a send would show the user's bubble at once (synchronously in the submit handler)
    assert.equal((await bubbles(mainPage)).length, before);
    assert.equal(await mainPage.evaluate(() => document.body.dataset.busy), '');
    assert.match(await mainPage.inputValue('#input'), /^한/);
    await mainPage.fill('#input', '');
});

test('user text is shown as text, never parsed as HTML', async () => {
    const evil = '<img src=x onerror="window.__pwned=1"><b>굵게</b>';
    await sendAndWait(mainPage, evil);
    const b = await bubbles(mainPage);
    assert.equal(b[b.length - 2].text, evil);
    assert.equal(await mainPage.$$eval('#log img, #log b', (els) => els.length), 0);
    assert.equal(await mainPage.evaluate(() => window.__pwned), undefined);
});

test('new conversation clears the page and starts another conversation', async () => {
    const old = await mainPage.evaluate(() => localStorage.getItem('nuri.conversation'));
    await mainPage.click('#new');
    await mainPage.waitForFunction(() => document.querySelectorAll('#log .msg').length === 0);
    assert.equal(await mainPage.evaluate(() => localStorage.getItem('nuri.conversation')), null);
    await sendAndWait(mainPage, '새 대화');
    const conv = await mainPage.evaluate(() => localStorage.getItem('nuri.conversation'));
    assert.match(conv, /^conv_/);
    assert.notEqual(conv, old);
    assert.equal((await bubbles(mainPage)).length, 2);
    await mainPage.context().close();
});

/* ---------- the list of conversations, Markdown, context use ---------- */

const LIBS = fs.existsSync('src/serve/web/node_modules/marked/lib/marked.umd.js') &&
    fs.existsSync('src/serve/web/node_modules/dompurify/dist/purify.min.js');
const MARKDOWN = 'Here is **bold** and a [link](https://example.com/).\n\n' +
    '```c\nint main(void) { return 0; }\n```\n\n' +
    '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>';
const li = (id) => `#convs li[data-id="${id}"]`;
async function reloadPage(page) {
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === '1');
}

test('GET /v1/conversations lists the conversations, newest first, in pages', async () => {
    const post = { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' };
    const a = await json(`${MAIN}/v1/conversations`, post);
    const b = await json(`${MAIN}/v1/conversations`, post);
    const first = await json(`${MAIN}/v1/conversations?limit=1`);
    assert.equal(first.object, 'list');
    assert.deepEqual(first.data.map((c) => c.id), [b.id]);
    assert.equal(first.has_more, true);
    const next = await json(`${MAIN}/v1/conversations?limit=1&after=${first.last_id}`);
    assert.deepEqual(next.data.map((c) => c.id), [a.id]);
    const asc = await json(`${MAIN}/v1/conversations?order=asc&limit=100`);
    assert.deepEqual(asc.data.slice(-2).map((c) => c.id), [a.id, b.id]);
    assert.equal((await fetchRead(`${MAIN}/v1/conversations?limit=0`)).status, 400);
    assert.equal((await fetchRead(`${MAIN}/v1/conversations?order=up`)).status, 400);
    assert.equal((await fetchRead(`${MAIN}/v1/conversations`, { method: 'PUT' })).status, 405);
    for (const c of [a, b]) await fetchRead(`${MAIN}/v1/conversations/${c.id}`, { method: 'DELETE' });
});

let listPage, listConv;
test('a new conversation shows in the list, titled with its first words, and again after a reload', async () => {
    listPage = await openPage(MAIN);
    await sendAndWait(listPage, '목록 시험: the first words of this message');
    listConv = await listPage.evaluate(() => localStorage.getItem('nuri.conversation'));
    await listPage.waitForSelector(li(listConv));
    const title = '목록 시험: the first words of';
    assert.equal(await listPage.textContent(li(listConv) + ' .open'), title);
    assert.equal(await listPage.getAttribute(li(listConv), 'aria-current'), 'true');
    assert.equal(await listPage.$eval('#convs li', (e) => e.dataset.id), listConv, 'newest first');
    const conv = await json(`${MAIN}/v1/conversations/${listConv}`);
    assert.equal(conv.metadata.title, title);
    await reloadPage(listPage);
    assert.equal(await listPage.textContent(li(listConv) + ' .open'), title);
    assert.equal(await listPage.getAttribute(li(listConv), 'aria-current'), 'true');
});

test('the model and its context use show, and the use grows after a turn', async () => {
    const model = (await json(`${MAIN}/v1/models`)).data[0];
    assert.ok(model.context_length > 0);
    assert.equal((await json(`${MAIN}/v1/models/${model.id}`)).context_length, model.context_length);
    assert.equal(await listPage.textContent('#model'), model.id);
    const max = model.context_length.toLocaleString('en-US');
    const used = async () => {
        const m = new RegExp(`^([\\d,]+) / ${max} tokens$`).exec(await listPage.textContent('#ctx'));
        assert.ok(m, await listPage.textContent('#ctx'));
        return Number(m[1].replace(/,/g, ''));
    };
    const before = await used();
    assert.ok(before > 0);
    await sendAndWait(listPage, '하나 더');
    assert.ok((await used()) > before, 'the second turn uses more of the context');
});

test('rename changes the title in the list and on the server', async () => {
    listPage.once('dialog', (d) => d.accept('서울 날씨'));
    await listPage.click(li(listConv) + ' .rename');
    await listPage.waitForFunction((sel) => document.querySelector(sel)?.textContent === '서울 날씨', li(listConv) + ' .open');
    assert.equal((await json(`${MAIN}/v1/conversations/${listConv}`)).metadata.title, '서울 날씨');
});

test('a stored Markdown answer renders sanitized: bold, a code block, no img or script; open and back', async () => {
    const md = await json(`${MAIN}/v1/conversations`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
            metadata: { title: 'Markdown' },
            items: [
                { type: 'message', role: 'user', content: 'Markdown, please' },
                { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: MARKDOWN }] },
            ],
        }),
    });
    await reloadPage(listPage); // the list shows the new conversation
    await listPage.click(li(md.id) + ' .open');
    await listPage.waitForFunction(() => document.querySelectorAll('#log .msg').length === 2);
    assert.equal(await listPage.getAttribute(li(md.id), 'aria-current'), 'true');
    assert.equal(await listPage.evaluate(() => !!(window.marked && window.DOMPurify)), LIBS);
    assert.equal(await listPage.$$eval('#log img, #log script', (els) => els.length), 0);
    assert.equal(await listPage.evaluate(() => window.__pwned), undefined);
    if (LIBS) {
        assert.equal(await listPage.textContent('.msg.assistant strong'), 'bold');
        assert.equal(await listPage.textContent('.msg.assistant pre > code'), 'int main(void) { return 0; }\n');
        const a = await listPage.$eval('.msg.assistant a', (e) => [e.href, e.target, e.rel]);
        assert.deepEqual(a, ['https://example.com/', '_blank', 'noopener noreferrer']);
    } else {
        assert.match(await listPage.textContent('.msg.assistant'), /\*\*bold\*\*/); // plain text
    }
    assert.equal(await listPage.textContent('.msg.user'), 'Markdown, please');
    // DOMPurify parses the HTML in an inert document of this page, where chromium checks the CSP
    // and reports the inline handler it refused (it never runs): the only error allowed
    const errors = listPage.consoleErrors.filter((e) => !/^Executing inline event handler violates/.test(e));
    assert.deepEqual(errors, []);
    await screenshot(listPage, 'list-markdown-en.png');
    await listPage.selectOption('#lang', 'ko');
    await listPage.waitForFunction(() => / 토큰$/.test(document.getElementById('ctx').textContent));
    await screenshot(listPage, 'list-markdown-ko.png');
    await listPage.selectOption('#lang', 'en');
    // back to the first conversation: its turns, and its context use
    await listPage.click(li(listConv) + ' .open');
    await listPage.waitForFunction(() => document.querySelectorAll('#log .msg').length === 4);
    assert.equal((await bubbles(listPage))[2].text, '하나 더');
    assert.match(await listPage.textContent('#ctx'), /^[\d,]+ \/ /);
    assert.equal(await listPage.evaluate(() => localStorage.getItem('nuri.conversation')), listConv);
    await fetchRead(`${MAIN}/v1/conversations/${md.id}`, { method: 'DELETE' });
});

test('delete asks, then removes the conversation from the list and the server', async () => {
    let asked = '';
    listPage.once('dialog', (d) => { asked = d.message(); d.dismiss(); });
    await listPage.click(li(listConv) + ' .delete');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(asked, 'Delete this conversation?');
    assert.equal((await fetchRead(`${MAIN}/v1/conversations/${listConv}`)).status, 200, 'dismissed: kept');
    listPage.once('dialog', (d) => d.accept());
    await listPage.click(li(listConv) + ' .delete');
    await listPage.waitForSelector(li(listConv), { state: 'detached' });
    assert.equal((await fetchRead(`${MAIN}/v1/conversations/${listConv}`)).status, 404);
    assert.equal(await listPage.evaluate(() => localStorage.getItem('nuri.conversation')), null);
    assert.equal((await bubbles(listPage)).length, 0, 'the open conversation was the deleted one');
    await listPage.context().close();
});

test('on a narrow screen the list is a drawer behind the menu button', async () => {
    const page = await openPage(MAIN, { lang: 'ko' });
    await page.setViewportSize({ width: 400, height: 700 });
    assert.equal(await page.isVisible('#side'), false);
    await page.click('#menu');
    assert.equal(await page.isVisible('#side'), true);
    await screenshot(page, 'drawer-ko.png');
    await page.click('#menu');
    assert.equal(await page.isVisible('#side'), false);
    await page.context().close();
});

async function metric(url, name) {
    const t = await (await fetchRead(url + '/metrics')).text();
    return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(t)[1]);
}

test('stop ends the answer in the page and the server cancels its generation', async () => {
    const page = await openPage(MAIN, { maxOutputTokens: 3000, lang: 'ko' });
    const before = await metric(MAIN, 'nuri_generated_tokens_total');
    await page.fill('#input', '긴 이야기를 해 주세요');
    await page.press('#input', 'Enter');
    // the first words have arrived: the answer is streaming (3000 tokens take seconds)
    await page.waitForFunction(() => (document.querySelector('.msg.assistant .text')?.textContent || '').length > 0);
    assert.equal(await metric(MAIN, 'nuri_running_sequences'), 1);
    assert.equal(await page.isVisible('#stop'), true);
    await page.click('#stop');
    await page.waitForFunction(() => document.body.dataset.busy === '');
    assert.equal(await page.textContent('.msg.assistant .note'), '(중지됨)');
    assert.equal(await page.isVisible('#send'), true);
    assert.equal(await page.textContent('#send'), '보내기'); // a Korean browser
    await screenshot(page, 'chat-ko.png');
    // the server saw the client go and dropped the sequence, long before its 3000 tokens
    const deadline = Date.now() + 5000;
    while ((await metric(MAIN, 'nuri_running_sequences')) > 0 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
    assert.equal(await metric(MAIN, 'nuri_running_sequences'), 0, 'the generation was cancelled');
    const made = (await metric(MAIN, 'nuri_generated_tokens_total')) - before;
    assert.ok(made < 3000, `${made} tokens generated of 3000`);
    await page.context().close();
});

test('a server with API keys: without the key the error shows, with it the chat works', async () => {
    const page = await openPage(KEYED);
    await sendAndWait(page, '안녕');
    assert.match(await page.textContent('#error'), /API key/);
    await page.fill('#key', 'sekrit');
    await page.dispatchEvent('#key', 'change');
    await page.waitForFunction(() => document.getElementById('model').textContent !== '');
    await sendAndWait(page, '안녕');
    assert.equal(await page.textContent('#error'), '');
    const b = await bubbles(page);
    assert.deepEqual(b.slice(-2).map((x) => x.role), ['user', 'assistant']);
    // the key is kept: a reload still works, and shows the conversation (owned by that key)
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    assert.equal(await page.inputValue('#key'), 'sekrit');
    assert.deepEqual((await bubbles(page)).map((x) => x.role), ['user', 'assistant']);
    await page.context().close();
});

/* Runs fetch(url, init) inside a page of the other origin: 'ok STATUS' or 'blocked ERROR'. */
async function fetchFromOrigin(page, url, init) {
    return page.evaluate(
        async ([u, i]) => {
            try {
                const r = await fetch(u, i);
                await r.text();
                return 'ok ' + r.status;
            } catch (e) {
                return 'blocked ' + e.name;
            }
        },
        [url, init],
    );
}

test('CORS: a page on an allowed origin calls the API, preflighted requests included', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(ORIGIN + '/');
    assert.equal(await fetchFromOrigin(page, MAIN + '/v1/models'), 'ok 200');
    // JSON POST with the openai client's extra headers: a preflight, then the request
    const body = JSON.stringify({ input: '안녕', max_output_tokens: 2, store: false });
    const init = { method: 'POST', body, headers: { 'Content-Type': 'application/json', 'X-Stainless-Lang': 'js', 'X-Stainless-OS': 'Linux' } };
    assert.equal(await fetchFromOrigin(page, MAIN + '/v1/responses', init), 'ok 200');
    // errors are readable too
    assert.equal(await fetchFromOrigin(page, MAIN + '/v1/responses/resp_none'), 'ok 404');
    // a streamed answer
    const stream = { ...init, body: JSON.stringify({ input: '안녕', max_output_tokens: 2, store: false, stream: true }) };
    assert.equal(await fetchFromOrigin(page, MAIN + '/v1/responses', stream), 'ok 200');
    // '*' with keys: any origin, with its key
    assert.equal(await fetchFromOrigin(page, WILD + '/v1/models', { headers: { Authorization: 'Bearer k' } }), 'ok 200');
    assert.equal(await fetchFromOrigin(page, WILD + '/v1/models'), 'ok 401');
    await context.close();
});

test('CORS: a page on another origin is blocked where CORS is off', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(ORIGIN + '/');
    assert.equal(await fetchFromOrigin(page, KEYED + '/v1/models', { headers: { Authorization: 'Bearer sekrit' } }), 'blocked TypeError');
    assert.equal(await fetchFromOrigin(page, KEYED + '/v1/models'), 'blocked TypeError');
    await context.close();
});

test('CORS headers and preflights, as the server sends them', async () => {
    const pre = await fetchRead(MAIN + '/v1/responses', {
        method: 'OPTIONS',
        headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-stainless-retry-count' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), ORIGIN);
    assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
    assert.match(pre.headers.get('access-control-allow-methods'), /DELETE/);
    assert.equal(pre.headers.get('access-control-allow-headers'), 'content-type,x-stainless-retry-count');
    assert.ok(Number(pre.headers.get('access-control-max-age')) > 0);
    const other = await fetchRead(MAIN + '/v1/responses', { method: 'OPTIONS', headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(other.status, 403);
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    assert.equal((await other.json()).error.code, 'origin_not_allowed');
    // CORS off: OPTIONS stays a 405 with Allow, and no answer carries CORS headers
    const off = await fetchRead(KEYED + '/v1/responses', { method: 'OPTIONS', headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', Authorization: 'Bearer sekrit' } });
    assert.equal(off.status, 405);
    assert.equal(off.headers.get('allow'), 'POST');
    assert.equal(off.headers.get('access-control-allow-origin'), null);
    const plain = await fetchRead(KEYED + '/health', { headers: { Origin: ORIGIN } });
    assert.equal(plain.headers.get('access-control-allow-origin'), null);
    // an allowed origin's 401 carries it (the page can read why)
    const wild401 = await fetchRead(WILD + '/v1/models', { headers: { Origin: 'http://any.example' } });
    assert.equal(wild401.status, 401);
    assert.equal(wild401.headers.get('access-control-allow-origin'), 'http://any.example');
    assert.match(wild401.headers.get('vary'), /Origin/);
});
