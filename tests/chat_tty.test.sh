#!/usr/bin/env bash
# chat_tty.test.sh: `nuri chat`'s line editing at a terminal (libedit), driven through a pty from
# python3's pty module, with LANG and LC_ALL unset (nuri must still read UTF-8): Up recalls the last
# message; Hangul edited with Left and Backspace moves the cursor two columns per syllable and
# sends the edited text; Ctrl-C discards the line being typed; a line typed during an answer shows
# once; a message too long for the context
# is refused with the conversation intact and the line kept in the history; the history outlives
# the program (a file next to the default store, mode 0600). What was sent is read back with /save.
# Also: progress lines on a terminal (mkmodel, quantize, bench, loading with repacking) and none
# when stderr is not one.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
TMP=$(mktemp -d /tmp/nuri-chat-tty-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
export XDG_DATA_HOME="$TMP/data"

NURI="$NURI" TMP="$TMP" python3 - <<'EOF'
import json, os, pty, re, select, signal, subprocess, sys, time

NURI, TMP = os.environ["NURI"], os.environ["TMP"]
LLAMA = "tests/data/models/llama-tiny-Q4_K.gguf"
passed = failed = 0

def check(cond, name, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + name)
    else:
        failed += 1
        print("FAIL " + name + (": " + detail if detail else ""))

class Pty:
    """One nuri command on a pty, without LANG/LC_ALL: send keys, wait for text."""
    def __init__(self, args, env=None):
        e = dict(os.environ)
        e.pop("LANG", None)
        e.pop("LC_ALL", None)
        e.pop("LC_CTYPE", None)
        e["TERM"] = "xterm"  # the cursor motions checked below (ncurses-base's terminfo)
        e.update(env or {})
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(NURI, [NURI] + args, e)
        self.out = b""
        self.cursor = 0
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
        rx = re.compile(pattern)
        end = time.time() + timeout
        while True:
            m = rx.search(self.out, self.cursor)
            if m:
                self.cursor = m.end()
                return m
            left = end - time.time()
            if left <= 0 or self.read(left) is None:
                m = rx.search(self.out, self.cursor)
                if m:
                    self.cursor = m.end()
                return m

    def settle(self, quiet=0.3):
        """Reads until nothing comes for `quiet` seconds; returns what came."""
        start = len(self.out)
        while self.read(quiet):
            pass
        self.cursor = len(self.out)
        return self.out[start:]

    def prompt(self, timeout=60):
        return self.expect(rb"(?:^|\n)> ", timeout)

    def send(self, b):
        os.write(self.fd, b.encode() if isinstance(b, str) else b)

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

def saved(s, name):
    path = os.path.join(TMP, name)
    s.send("/save " + path + "\r")
    s.expect(rb"\[saved \d+ messages")
    s.prompt()
    try:
        with open(path, encoding="utf-8") as f:
            return [(m["role"], m["content"]) for m in json.load(f)["messages"]]
    except Exception as e:
        return [("error", str(e))]

UP, LEFT = b"\x1b[A", b"\x1b[D"

# 1. Up recalls the last message; Hangul editing; Ctrl-C discards the typed line
s = Pty(["chat", "-m", LLAMA, "--temp", "0", "-n", "3", "--no-store"])
check(s.prompt() is not None, "a prompt appears")
s.send("first message\r")
s.prompt()
s.send(UP)
check(b"first message" in s.settle(), "Up shows the last message again")
s.send("\r")
s.prompt()
s.send("가나다라")
s.settle()
s.send(LEFT)
left = s.settle()
check(left == b"\x08\x08", "Left over a Hangul syllable moves the cursor two columns", repr(left))
s.send(LEFT)
s.settle()
s.send(b"\x7f")
redraw = s.settle()
# the line redrawn without 나, the cursor put back before 다라: four columns
check("가다라".encode() in redraw and redraw.endswith(b"\x08" * 4),
      "Backspace over Hangul redraws the line by display width", repr(redraw))
s.send("X\r")
s.prompt()
# a terminal without cursor motions (TERM=dumb): the line is rewritten, two blanks where the
# deleted syllable was, then again up to the cursor
d = Pty(["chat", "-m", LLAMA, "--no-store"], {"TERM": "dumb"})
d.prompt()
d.send("가나다라")
d.settle()
d.send(LEFT + LEFT)
d.settle()
d.send(b"\x7f")
redraw = d.settle()
check(redraw == "\r> 가다라  \r> 가".encode(), "on a dumb terminal too, by display width", repr(redraw))
d.close()
s.send("abc")
s.settle()
s.send(b"\x03")
check(s.expect(rb"\[Ctrl-C again, Ctrl-D or /quit to exit\]") is not None, "Ctrl-C at the prompt warns")
s.prompt()
s.send("xyz\r")
s.prompt()
msgs = saved(s, "edit.json")
users = [c for r, c in msgs if r == "user"]
check(users == ["first message", "first message", "가X다라", "xyz"],
      "what was sent: the recalled line, the edited Hangul, only what followed Ctrl-C", str(users))
s.send(b"\x04")
check(s.wait_exit(20) == 0, "Ctrl-D exits with status 0", str(s.status))
s.close()

# typed ahead while an answer streams (a long one: until the 4096-token context is full): shown
# once, by libedit, not echoed by the terminal as well
s = Pty(["chat", "-m", LLAMA, "--temp", "0", "-n", "100000", "--ctx", "4096", "--no-store"])
s.prompt()
s.send("one\r")
s.expect(rb"one\r\n[^\r\n]{20}")
s.send("typed ahead")
check(s.expect(rb"\[context full: answer cut off") is not None, "the answer went on to the end")
s.prompt()
s.settle(0.5)
s.send("\r")
s.prompt()
# (the first turn filled the context: it was dropped to make room for this one)
users = [c for r, c in saved(s, "ahead.json") if r == "user"]
check(s.out.count(b"typed ahead") == 1 and users == ["typed ahead"],
      "a line typed ahead during an answer is shown once and sent", repr(s.out[-300:]))
s.close()

# 2. a message too long for the context: refused, the conversation and the history intact
s = Pty(["chat", "-m", LLAMA, "--temp", "0", "-n", "2", "--ctx", "160", "--no-store",
         "--system", "S"])
s.prompt()
s.send("hello\r")
s.prompt()
before = saved(s, "before.json")
s.send(" ".join(["word"] * 300) + "\r")
check(s.expect(rb"\[not sent: the prompt needs \d+ tokens with only the system message and this "
               rb"message, and the context \(160 tokens, \d+ kept for the answer\) has room for "
               rb"\d+; the conversation is unchanged\]") is not None,
      "a message too long for the context is refused, saying why")
s.prompt()
s.send(UP)
check(b"word word word" in s.settle(), "the refused message is in the history, to shorten")
s.send(b"\x15")  # Ctrl-U: kill the recalled line
s.settle()
s.send("short\r")
s.prompt()
after = saved(s, "after.json")
check(len(before) == 3 and after[:3] == before and [c for r, c in after if r == "user"] == ["hello", "short"],
      "the refused message dropped nothing; the next one is sent", str(after))
s.close()

# 3. the history outlives the program (with the default store): a file of its own, mode 0600
s = Pty(["chat", "-m", LLAMA, "--temp", "0", "-n", "2"])
s.prompt()
s.send("remember me\r")
s.prompt()
s.send(b"\x04")
s.wait_exit(20)
s.close()
hist = os.path.join(TMP, "data", "nuri", "chat_history")
check(os.path.exists(hist) and (os.stat(hist).st_mode & 0o077) == 0,
      "the history file is private to its owner", hist)
s = Pty(["chat", "-m", LLAMA, "--temp", "0", "-n", "2"])
s.prompt()
s.send(UP)
check(b"remember me" in s.settle(), "Up in a new session recalls the last session's message")
s.close()

# 4. progress on a terminal: a line redrawn with \r and cleared at the end; nothing in a pipe
def progress(args, what):
    p = Pty(args)
    p.wait_exit(120)
    out = p.out
    p.close()
    shown = what.encode() in out and b"\r\x1b[K" in out
    r = subprocess.run([NURI] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p.status == 0 and shown and r.returncode == 0 and what.encode() not in r.stderr \
        and b"\r" not in r.stderr, out[-300:]

big = os.path.join(TMP, "tiny.gguf")
ok_, tail = progress(["mkmodel", "--arch", "llama", "--shape", "tiny", "--type", "F16", big],
                     "making random weights")
check(ok_, "mkmodel shows progress on a terminal only", repr(tail))
ok_, tail = progress(["quantize", big, os.path.join(TMP, "tiny-q4.gguf"), "Q4_K"], "quantizing")
check(ok_, "quantize shows progress on a terminal only", repr(tail))
ok_, tail = progress(["bench", "-m", LLAMA, "-p", "8", "-n", "8", "-r", "1", "--no-membw"],
                     "benchmarking")
check(ok_, "bench shows progress on a terminal only", repr(tail))
packs = " avx512_vnni " in " " + open("/proc/cpuinfo").read().replace("\n", " ") + " "
if packs:  # the weights are repacked (kernels/pack.h) only on CPUs with AVX-512 VNNI
    ok_, tail = progress(["run", "-m", os.path.join(TMP, "tiny-q4.gguf"), "-p", "hi", "-n", "1",
                          "--repack", "on"], "repacking the weights")
    check(ok_, "loading shows the repacking's progress on a terminal only", repr(tail))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
EOF
