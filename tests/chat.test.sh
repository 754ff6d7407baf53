#!/usr/bin/env bash
# chat.test.sh: `nuri chat` driven like a person at a terminal (through a pty, from python3's pty
# module), and `nuri run --chat`. Random-weight models answer gibberish, so this checks the
# mechanics: turns, /reset, /save then /load, context overflow dropping the oldest turns with a
# notice, Ctrl-C during a long answer (stops the answer, keeps the program and the partial answer),
# Ctrl-C at the prompt (once: a notice; twice: exit), Korean input echoed and saved byte-exactly,
# scripted (non-tty) input, and clear errors for bad files.
#
# Models: tests/data/models/llama-tiny-Q4_K.gguf (synthetic vocabulary, no chat template: ChatML)
# and a qwen2 model with the real Qwen2 vocabulary and its template, written once by
# `nuri mkmodel` into the build folder.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
TMP=$(mktemp -d /tmp/nuri-chat-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export XDG_DATA_HOME="$TMP/data" # the default store lives here, not in the user's home
LLAMA=tests/data/models/llama-tiny-Q4_K.gguf
# the qwen2 model is made once per build folder; writing it is slow under the sanitizers, so a plain
# build's copy (or its nuri) is used when there is one
QWEN="$(dirname "$NURI")/tests/chat-qwen2-tiny.gguf"
[ -f "$QWEN" ] || [ ! -f build/tests/chat-qwen2-tiny.gguf ] || QWEN=build/tests/chat-qwen2-tiny.gguf
MKNURI=$NURI
[ ! -x build/nuri ] || MKNURI=build/nuri
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

if [ ! -f "$QWEN" ]; then
    mkdir -p "$(dirname "$QWEN")"
    "$MKNURI" mkmodel --arch qwen2 --shape tiny --type Q8_0 \
        --vocab tests/data/vocab/ggml-vocab-qwen2.gguf "$QWEN.tmp" >/dev/null && mv "$QWEN.tmp" "$QWEN"
fi

# ---- interactive sessions through a pty (the python driver prints its own ok/FAIL lines)
out=$(NURI="$NURI" LLAMA="$LLAMA" QWEN="$QWEN" TMP="$TMP" python3 - <<'EOF'
import json, os, pty, re, select, signal, sys, time

NURI, LLAMA, QWEN, TMP = (os.environ[k] for k in ("NURI", "LLAMA", "QWEN", "TMP"))
passed = failed = 0

def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))

class Session:
    """One `nuri chat` on a pty: send keys, wait for text, keep the whole transcript."""
    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(NURI, [NURI, "chat"] + list(args))
        self.out = b""
        self.cursor = 0  # expect() searches from here
        self.status = None

    def read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            self.wait_exit(5)
            return None
        self.out += data
        return True

    def expect(self, pattern, timeout=60):
        """Waits for a regex (bytes) after the cursor; moves the cursor past it."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while True:
            m = rx.search(self.out, self.cursor)
            if m:
                self.cursor = m.end()
                return True
            left = end - time.time()
            if left <= 0 or self.read(left) is None:
                m = rx.search(self.out, self.cursor)
                if m:
                    self.cursor = m.end()
                    return True
                return False

    def prompt(self, timeout=60):
        return self.expect(rb"(?:^|\n)> ", timeout)

    def send(self, text):
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def line(self, text):
        self.send(text + "\r")

    def wait_exit(self, timeout):
        end = time.time() + timeout
        while self.status is None and time.time() < end:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                break
            try:
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if r:
                    self.out += os.read(self.fd, 65536)
            except OSError:
                time.sleep(0.05)
        return self.status

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait_exit(5)
        os.close(self.fd)

def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except Exception as e:
        return {"error": str(e)}

def roles(conv):
    return [m["role"] for m in conv.get("messages", [])]

# 1. turns, Korean, /save, /reset, /load, Ctrl-C at the prompt: the model without a template
s = Session("-m", LLAMA, "--system", "You are terse.", "--temp", "0", "-n", "12", "-v")
check(s.expect(rb"ChatML \(the model has no chat template\)", 60), "start-up says ChatML is used")
check(s.prompt(), "a prompt appears")
s.line("hello there")
check(s.prompt(), "first turn answered")
m = re.search(rb"\[prompt (\d+) tokens: 0 reused", s.out)
check(m is not None, "the first turn decodes the whole prompt")
n_first = int(m.group(1)) if m else 0
s.line("second message")
check(s.prompt(), "second turn answered")
m = re.search(rb"\[prompt (\d+) tokens: (\d+) reused from the KV cache, (\d+) decoded", s.out[s.out.rfind(b"second message"):])
check(m is not None and int(m.group(2)) >= n_first and int(m.group(2)) + int(m.group(3)) == int(m.group(1)),
      "the second turn decodes only what the KV cache lacks", m.group(0).decode() if m else "no stats line")
korean = "안녕하세요, 세계! 한국어 입력"
s.line(korean)
check(s.expect(re.escape(korean.encode())), "Korean input echoes back intact")
check(s.prompt(), "Korean turn answered")
f_turns = os.path.join(TMP, "turns.json")
s.line("/save " + f_turns)
check(s.expect(rb"\[saved 7 messages to "), "/save reports 7 messages")
conv = load(f_turns)
check(roles(conv) == ["system", "user", "assistant", "user", "assistant", "user", "assistant"],
      "saved roles alternate after the system message", str(conv)[:200])
msgs = conv.get("messages", [])
check(len(msgs) == 7 and msgs[0]["content"] == "You are terse." and msgs[5]["content"] == korean,
      "saved file holds the system message and the Korean text byte for byte")
s.line("/reset")
check(s.expect(rb"\[conversation cleared; the system message stays\]"), "/reset clears")
f_reset = os.path.join(TMP, "reset.json")
s.line("/save " + f_reset)
check(s.expect(rb"\[saved 1 messages"), "after /reset only the system message is left")
s.line("/load " + f_turns)
check(s.expect(rb"\[loaded 7 messages from "), "/load reports 7 messages")
f_again = os.path.join(TMP, "again.json")
s.line("/save " + f_again)
s.expect(rb"\[saved ")
check(open(f_turns, "rb").read() == open(f_again, "rb").read(), "/load restores the conversation exactly")
s.prompt()
s.line("after load")
check(s.prompt(), "the loaded conversation goes on")
f_bad = os.path.join(TMP, "bad.json")
with open(f_bad, "w") as f:
    f.write('{"format": "nuri-conversation", "version": 1, "messages": [{"role": "user"}]}')
s.line("/load " + f_bad)
check(s.expect(rb"messages\[0\]\.content: missing; the conversation is unchanged\]"),
      "a bad save file is a clear error")
s.line("/bogus")
check(s.expect(rb"\[unknown command /bogus"), "unknown commands are named")
s.prompt()
s.send(b"\x03")
check(s.expect(rb"\[Ctrl-C again, Ctrl-D or /quit to exit\]"), "Ctrl-C at the prompt only warns")
s.prompt()
s.line("still here")
check(s.prompt(), "a turn after Ctrl-C at the prompt works")
s.send(b"\x03")
s.expect(rb"\[Ctrl-C again")
s.send(b"\x03")
check(s.wait_exit(20) == 0, "Ctrl-C twice in a row at the prompt exits with status 0", str(s.status))
try:
    s.out.decode("utf-8")
    check(True, "the transcript is valid UTF-8")
except UnicodeDecodeError as e:
    check(False, "the transcript is valid UTF-8", str(e))
s.close()

# 2. context overflow: a tiny context fills after a few turns; the oldest turns go, the system
#    message stays, and a notice says so
s = Session("-m", LLAMA, "--system", "SYS", "--temp", "0", "-n", "4", "--ctx", "160")
s.prompt()
words = "apples pears plums figs " * 3
for i in range(5):
    s.line("turn %d %s" % (i, words))
    s.prompt()
check(b"[context full: dropped the 2 oldest messages, kept the system message]" in s.out,
      "a full context drops the oldest turn with a notice", s.out.decode("utf-8", "replace")[-600:])
f_over = os.path.join(TMP, "over.json")
s.line("/save " + f_over)
s.expect(rb"\[saved ")
conv = load(f_over)
msgs = conv.get("messages", [])
check(len(msgs) >= 3 and msgs[0] == {"role": "system", "content": "SYS"}
      and msgs[1]["role"] == "user" and not msgs[1]["content"].startswith("turn 0")
      and msgs[-2]["content"].startswith("turn 4"),
      "after overflow: system message kept, oldest turns gone, newest kept", str(msgs)[:300])
long = "word " * 400
s.line(long.strip())
check(s.expect(rb"\[not sent: the prompt needs \d+ tokens"), "a message too long for the context is refused clearly")
s.line("short again")
check(s.prompt(), "the session goes on after a refused message")
s.send(b"\x04")
check(s.wait_exit(20) == 0, "Ctrl-D exits with status 0")
s.close()

# 3. an answer that fills the context is cut with a notice; the next turn makes room
s = Session("-m", LLAMA, "--temp", "0", "--ctx", "96")
s.prompt()
s.line("hi")
check(s.expect(rb"\[context full: answer cut off"), "an answer that fills the context is cut with a notice")
s.prompt()
s.line("again")
check(s.expect(rb"\[context full: dropped the 2 oldest messages\]"), "the next turn drops the full turn")
check(s.prompt(), "and is answered")
s.close()

# 4. Ctrl-C during a long answer: the model with a real vocabulary and template
s = Session("-m", QWEN, "--seed", "7", "--ctx", "4096", "-n", "100000")
check(s.expect(rb"template: the model's\]", 60), "a model with a template uses it")
s.prompt()
s.line("이야기를 길게 해 주세요")
s.expect("이야기를 길게 해 주세요\r\n".encode())
check(s.expect(rb"[^\r\n]{20}", 60), "the answer streams")
s.send(b"\x03")
check(s.expect(rb"\[answer stopped\]", 30), "Ctrl-C stops the answer")
check(s.prompt(), "the program goes on after Ctrl-C in an answer")
f_int = os.path.join(TMP, "int.json")
s.line("/save " + f_int)
s.expect(rb"\[saved ")
msgs = load(f_int).get("messages", [])
check(len(msgs) == 2 and msgs[1]["role"] == "assistant" and len(msgs[1]["content"]) > 0,
      "the partial answer is kept as the assistant turn", str(msgs)[:200])
check(msgs and msgs[0]["content"] == "이야기를 길게 해 주세요", "Korean message saved intact")
s.close()
print("%d passed, %d failed" % (passed, failed))
EOF
)
echo "$out" | grep -v '^[0-9]* passed'
line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
if [ -n "$line" ]; then
    pass=$((pass + $(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')))
    fail=$((fail + $(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')))
else
    bad "the pty driver ran to the end"
fi

# ---- scripted use: stdin is not a terminal
printf 'first\n/save %s\n' "$TMP/piped.json" |
    "$NURI" chat -m "$LLAMA" --temp 0 -n 6 >"$TMP/piped.out" 2>"$TMP/piped.err"
rc=$?
if [ $rc -eq 0 ] && [ -s "$TMP/piped.out" ] && ! grep -q '^> ' "$TMP/piped.out" &&
    grep -q '"content": "first"' "$TMP/piped.json"; then
    ok "piped input: answers on stdout, no prompt, /save works"
else
    bad "piped input (rc $rc): $(cat "$TMP/piped.err")"
fi
printf 'multi\\\nline\n/save %s\n' "$TMP/multi.json" | "$NURI" chat -m "$LLAMA" --temp 0 -n 2 >/dev/null 2>&1
if grep -q '"content": "multi\\nline"' "$TMP/multi.json" 2>/dev/null; then
    ok "a line ending in a backslash continues the message"
else
    bad "a line ending in a backslash continues the message"
fi

# a template that opens the reasoning (Qwen3.5): the answer shows its thinking set apart, and the
# conversation keeps what the model wrote
printf 'hello\n/save %s\n' "$TMP/think.json" | "$NURI" chat -m "$QWEN" --temp 0 -n 8 \
    --chat-template tests/data/templates/Qwen3.5-4B.jinja >"$TMP/think.out" 2>"$TMP/think.err"
rc=$?
if [ $rc -eq 0 ] && [ "$(head -n 1 "$TMP/think.out")" = "[thinking]" ] &&
    grep -qx '\[/thinking\]' "$TMP/think.out" &&
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; assert m[-1]["role"]=="assistant" and m[-1]["content"]' "$TMP/think.json" 2>/dev/null; then
    ok "reasoning is shown set apart from the answer"
else
    bad "reasoning display (rc $rc): $(cat "$TMP/think.out" "$TMP/think.err")"
fi

# ---- the conversation store: saved, listed, resumed, deleted
printf '안녕하세요 저장해 주세요\n' | "$NURI" chat -m "$LLAMA" --temp 0 -n 4 --store "$TMP/c.db" >/dev/null 2>"$TMP/s1.err"
printf '/list\n' | "$NURI" chat -m "$LLAMA" --store "$TMP/c.db" >/dev/null 2>"$TMP/s2.err"
conv=$(sed -n 's/^  \(conv_[0-9a-f]*\) .*안녕하세요 저장해 주세요$/\1/p' "$TMP/s2.err")
printf 'second\n/save %s\n' "$TMP/resumed.json" |
    "$NURI" chat -m "$LLAMA" --temp 0 -n 4 --store "$TMP/c.db" --resume "$conv" >/dev/null 2>"$TMP/s3.err"
printf '/delete %s\n/list\n' "$conv" | "$NURI" chat -m "$LLAMA" --store "$TMP/c.db" >/dev/null 2>"$TMP/s4.err"
if [ -n "$conv" ] && grep -q "resumed $conv: 2 messages" "$TMP/s3.err" &&
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["messages"]; assert [x["role"] for x in m]==["user","assistant","user","assistant"] and m[0]["content"]=="안녕하세요 저장해 주세요" and m[2]["content"]=="second"' "$TMP/resumed.json" &&
    grep -q "deleted $conv" "$TMP/s4.err" && grep -q "no stored conversations" "$TMP/s4.err"; then
    ok "conversations are saved to the store, listed, resumed (--resume) and deleted"
else
    bad "store: [$conv] $(cat "$TMP"/s[1-4].err | head -c 800)"
fi
"$NURI" chat -m "$LLAMA" --store "$TMP/c.db" --resume conv_nope </dev/null >/dev/null 2>"$TMP/s5.err"
rc=$?
if [ $rc -eq 1 ] && grep -q "conv_nope" "$TMP/s5.err"; then ok "--resume of a missing conversation fails naming it"; else bad "--resume missing (rc $rc): $(cat "$TMP/s5.err")"; fi

# ---- run --chat
if out=$("$NURI" run -m "$LLAMA" -p "hello" --chat -n 6 2>"$TMP/run.err") && [ -n "$out" ] &&
    grep -q "ChatML" "$TMP/run.err" && [ "${out#hello}" = "$out" ]; then
    ok "run --chat prints only the answer (ChatML for a model without a template)"
else
    bad "run --chat: $(cat "$TMP/run.err")"
fi
if out=$("$NURI" run -m "$QWEN" -p "안녕" --chat-template \
    tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja -n 4 2>"$TMP/run2.err") && [ -n "$out" ]; then
    ok "run --chat-template FILE"
else
    bad "run --chat-template FILE: $(cat "$TMP/run2.err")"
fi

# ---- errors
"$NURI" chat -m "$LLAMA" --chat-template "$TMP/none.jinja" </dev/null >/dev/null 2>"$TMP/e1"
rc=$?
if [ $rc -eq 1 ] && grep -q "none.jinja" "$TMP/e1"; then ok "a missing --chat-template file is named"; else bad "missing template (rc $rc)"; fi
printf '{%% for m in messages %%}{{ m.content }\n' >"$TMP/broken.jinja"
"$NURI" chat -m "$LLAMA" --chat-template "$TMP/broken.jinja" </dev/null >/dev/null 2>"$TMP/e2"
rc=$?
if [ $rc -eq 1 ] && grep -q "line 1" "$TMP/e2"; then ok "a broken template is an error with its line"; else bad "broken template (rc $rc): $(cat "$TMP/e2")"; fi
"$NURI" chat </dev/null >/dev/null 2>&1
rc=$?
if [ $rc -eq 2 ]; then ok "chat without -m is a usage error"; else bad "chat without -m (rc $rc)"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
