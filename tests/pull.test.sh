#!/usr/bin/env bash
# pull.test.sh: `nuri pull`, `nuri ls`, `nuri rm` and hub names after -m, against
# tests/tools/fake_hub.py on loopback (HF_ENDPOINT=http://127.0.0.1:PORT, a temporary cache):
# quant choice, pagination, the CDN redirect, split files, a gated repository (401 without a
# token, 403 with a wrong one, 200 with the right one, never sent to the CDN), 404s, a dropped
# connection and a killed download resumed with Range, a wrong checksum (the .part kept, never
# used), disk full (a small tmpfs in a user namespace), a network error, the progress bar in a
# pty, and `nuri run -m ORG/REPO:QUANT` from the cache with the hub gone.
set -u
NURI=${NURI:-build/nuri}
case $NURI in /*) ;; *) NURI=$PWD/$NURI ;; esac
passed=0
failed=0
check() { # check NAME COMMAND...
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}
has() { grep -q -- "$1" <<<"$2"; } # has TEXT IN
tmp=$(mktemp -d)
hub=$tmp/hub
hub_pid=
cleanup() {
    [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- the repositories: GGUFs from nuri mkmodel
mk() { "$NURI" mkmodel --arch llama --shape tiny --type "$1" "$2" >/dev/null || exit 1; }
mkdir -p "$hub/org/tiny" "$hub/org/gated" "$hub/org/split/Q8_0" "$hub/org/bad" "$hub/org/drop" \
    "$hub/org/slow" "$hub/org/etag" "$hub/org/many" "$hub/org/badetag" "$hub/org/plain"
mk Q8_0 "$hub/org/tiny/tiny-Q8_0.gguf"
mk Q4_K_M "$hub/org/tiny/tiny-Q4_K_M.gguf"
echo "# tiny" >"$hub/org/tiny/README.md"
echo "*.gguf filter=lfs" >"$hub/org/tiny/.gitattributes"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/gated/gated-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/bad/bad-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/drop/drop-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/slow/slow-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/etag/etag-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/badetag/badetag-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/plain/plain-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/many/a-Q8_0.gguf"
cp "$hub/org/tiny/tiny-Q8_0.gguf" "$hub/org/many/b-Q6_K.gguf"
# a split model: byte slices of one file, named as llama.cpp's gguf-split names parts
head -c 1000000 "$hub/org/tiny/tiny-Q8_0.gguf" >"$hub/org/split/Q8_0/split-Q8_0-00001-of-00002.gguf"
tail -c +1000001 "$hub/org/tiny/tiny-Q8_0.gguf" >"$hub/org/split/Q8_0/split-Q8_0-00002-of-00002.gguf"
cat >"$hub/hub.json" <<'JSON'
{"token": "hf_right", "gated": ["org/gated"],
 "wrong_sha": ["org/bad/bad-Q8_0.gguf", "org/badetag/badetag-Q8_0.gguf"],
 "no_lfs": ["org/etag/etag-Q8_0.gguf", "org/badetag/badetag-Q8_0.gguf"], "drop_once": ["org/drop/drop-Q8_0.gguf"],
 "slow": ["org/slow/slow-Q8_0.gguf"], "vanish": [], "plain": ["org/plain/plain-Q8_0.gguf"]}
JSON

python3 tests/tools/fake_hub.py "$hub" "$tmp/port" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
check "the fake hub starts" test -s "$tmp/port"
export HF_ENDPOINT=http://127.0.0.1:$(cat "$tmp/port")
export XDG_CACHE_HOME=$tmp/xdg
unset HF_TOKEN
cache=$XDG_CACHE_HOME/nuri/models
src=$hub/org/tiny/tiny-Q8_0.gguf
log=$hub/requests.log
pull() { "$NURI" pull "$@" 2>"$tmp/err"; }

# ---- a quant, chosen case-insensitively; the listing is paginated (3 entries a page)
out=$(pull org/tiny:q8_0)
check "pull exits 0" test $? -eq 0
check "pull prints the cached path" test "$out" = "$cache/org/tiny/tiny-Q8_0.gguf"
check "the file is the hub's, byte for byte" cmp -s "$src" "$cache/org/tiny/tiny-Q8_0.gguf"
check "no .part is left" test ! -e "$cache/org/tiny/tiny-Q8_0.gguf.part"
check "stderr (not a terminal) has one line and no bar" test "$(wc -l <"$tmp/err")" -eq 1
check "the line says pulled" grep -q "^nuri: pull: org/tiny:q8_0: pulled (2.7 MiB)" "$tmp/err"
check "the listing was fetched page by page" grep -q "tree/main?recursive=true&cursor=3" "$log"
check "the download went through the CDN redirect" grep -q "GET /cdn/" "$log"
meta=$cache/org/tiny/tiny-Q8_0.gguf.meta.json
check "metadata: sha256, commit, size" python3 -c '
import hashlib, json, sys
m = json.load(open(sys.argv[1])); data = open(sys.argv[2], "rb").read()
assert m["sha256"] == hashlib.sha256(data).hexdigest() and m["size"] == len(data)
assert m["repo"] == "org/tiny" and m["file"] == "tiny-Q8_0.gguf"
assert m["commit"] == "0123456789abcdef0123456789abcdef01234567"' "$meta" "$src"

# again: nothing is downloaded
n_cdn=$(grep -c "GET /cdn/" "$log")
out=$(pull org/tiny:Q8_0)
check "a second pull exits 0" test $? -eq 0
check "a second pull downloads nothing" test "$(grep -c "GET /cdn/" "$log")" -eq "$n_cdn"
check "a second pull says so" grep -q "already in the cache" "$tmp/err"

# the default quant is Q4_K_M; hf:// names one file
out=$(pull org/tiny)
check "without a quant: Q4_K_M" test "$out" = "$cache/org/tiny/tiny-Q4_K_M.gguf"
out=$(pull hf://org/tiny/tiny-Q8_0.gguf)
check "hf://ORG/REPO/FILE" test "$out" = "$cache/org/tiny/tiny-Q8_0.gguf"

# ---- nuri run from the cache: the same tokens as from the hub's file, without asking the hub
want=$("$NURI" run -m "$src" -p "hello world" -n 8 2>/dev/null)
n_req=$(wc -l <"$log")
got=$("$NURI" run -m org/tiny:Q8_0 -p "hello world" -n 8 2>"$tmp/err")
check "run -m ORG/REPO:QUANT exits 0" test $? -eq 0
check "run -m ORG/REPO:QUANT gives the local file's tokens" test -n "$got" -a "$got" = "$want"
check "run -m ORG/REPO:QUANT did not ask the hub" test "$(wc -l <"$log")" -eq "$n_req"
got=$("$NURI" tokenize -m hf://org/tiny/tiny-Q8_0.gguf --ids "hello" 2>/dev/null)
check "tokenize -m hf://..." test -n "$got"
check "info hf://..." sh -c "'$NURI' info hf://org/tiny/tiny-Q4_K_M.gguf | grep -q '^architecture: llama'"

# a local path that exists wins over a hub name
mkdir -p "$tmp/cwd/org" && cp "$hub/org/tiny/tiny-Q4_K_M.gguf" "$tmp/cwd/org/tiny"
n_req=$(wc -l <"$log")
(cd "$tmp/cwd" && "$NURI" info org/tiny >/dev/null 2>&1)
check "a local file named like ORG/REPO is read as a file" test $? -eq 0
check "... without asking the hub" test "$(wc -l <"$log")" -eq "$n_req"

# pulled on first use by run
got=$("$NURI" run -m org/etag:Q8_0 -p "hello world" -n 8 2>"$tmp/err")
check "run pulls on first use" test "$got" = "$want"
check "run says what it pulled" grep -q "^nuri: run: pulled org/etag:Q8_0 (2.7 MiB) into" "$tmp/err"
check "X-Linked-Etag verifies a file the listing gives no sha256 for" python3 -c '
import json, sys; assert len(json.load(open(sys.argv[1]))["sha256"]) == 64' \
    "$cache/org/etag/etag-Q8_0.gguf.meta.json"
check "... asked with a HEAD on the resolve route" grep -q "^HEAD /org/etag/resolve/main/etag-Q8_0.gguf" "$log"

out=$("$NURI" pull --cache-dir "$tmp/other" org/tiny:Q4_K_M 2>/dev/null)
check "--cache-dir" test "$out" = "$tmp/other/models/org/tiny/tiny-Q4_K_M.gguf" -a -f "$out"

# ---- split files come together
out=$(pull org/split:Q8_0)
check "split: exits 0" test $? -eq 0
check "split: both parts, in order" test "$out" = "$cache/org/split/Q8_0/split-Q8_0-00001-of-00002.gguf
$cache/org/split/Q8_0/split-Q8_0-00002-of-00002.gguf"
check "split: the parts join to the original" sh -c "cat $(echo $out) | cmp -s - '$src'"
out=$(pull hf://org/split/Q8_0/split-Q8_0-00002-of-00002.gguf)
check "split: naming part 2 brings the set" test "$(echo "$out" | wc -l)" -eq 2
"$NURI" run -m org/split:Q8_0 -p hi -n 2 >/dev/null 2>"$tmp/err"
check "split: run refuses, saying why" grep -q "split into 2 files.*cannot load a split model" "$tmp/err"

# ---- a gated repository
pull org/gated:Q8_0 >/dev/null
check "gated without a token exits 1" test $? -eq 1
check "gated without a token: what to do" grep -q "org/gated needs a token (HTTP 401, gated or private): accept the licence on $HF_ENDPOINT/org/gated, then set HF_TOKEN" "$tmp/err"
HF_TOKEN=hf_wrong pull org/gated:Q8_0 >/dev/null
check "gated with a wrong token exits 1" test $? -eq 1
check "gated with a wrong token: no access" grep -q "org/gated is gated (HTTP 403): the token in HF_TOKEN has no access; accept the licence on $HF_ENDPOINT/org/gated" "$tmp/err"
HF_TOKEN=hf_right pull org/gated:Q8_0 >/dev/null
check "gated with the token exits 0" test $? -eq 0
check "gated: the token went to the hub" grep -q "GET /api/models/org/gated/.*auth=yes" "$log"
check "gated: the token did not go to the CDN" sh -c "! grep 'GET /cdn/.*org%2Fgated.*auth=yes' '$log'"
check "gated: the CDN was asked" grep -q "GET /cdn/.*org%2Fgated.*auth=no" "$log"

# ---- not found
pull org/missing:Q8_0 >/dev/null
check "missing repo exits 1" test $? -eq 1
check "missing repo: named" grep -q "repository org/missing not found on $HF_ENDPOINT (HTTP 401); a private repository needs HF_TOKEN" "$tmp/err"
pull org/tiny:Q2_K >/dev/null
check "missing quant exits 1" test $? -eq 1
check "missing quant: the quants there" grep -q "org/tiny has no Q2_K file (quants there: Q4_K_M, Q8_0)" "$tmp/err"
pull hf://org/tiny/nope.gguf >/dev/null
check "missing file exits 1" test $? -eq 1
check "missing file: named" grep -q "org/tiny has no file 'nope.gguf'" "$tmp/err"
pull org/many >/dev/null
check "several models, no quant: a choice to make" grep -q "org/many has several models: choose one as org/many:QUANT (quants there: Q8_0, Q6_K)" "$tmp/err"
echo '{"vanish": ["org/many/a-Q8_0.gguf"]}' >"$hub/hub.json.new"
python3 -c '
import json, sys; c = json.load(open(sys.argv[1])); c["vanish"] = ["org/many/a-Q8_0.gguf"]
json.dump(c, open(sys.argv[1], "w"))' "$hub/hub.json"
pull org/many:Q8_0 >/dev/null
check "a 404 from the resolve route: the file named" grep -q "org/many has no file 'a-Q8_0.gguf' (HTTP 404)" "$tmp/err"

# ---- a dropped connection, then a resume with Range
pull org/drop:Q8_0 >/dev/null
check "dropped connection exits 1" test $? -eq 1
check "dropped connection: curl's words, and how to resume" grep -q "network error downloading org/drop/drop-Q8_0.gguf: transfer closed with 1437792 bytes remaining to read; 1437792 of 2875584 bytes are kept in .*drop-Q8_0.gguf.part: run the command again to resume$" "$tmp/err"
check "dropped connection: the .part is kept" test "$(stat -c %s "$cache/org/drop/drop-Q8_0.gguf.part")" -eq 1437792
check "dropped connection: no final file" test ! -e "$cache/org/drop/drop-Q8_0.gguf"
out=$(pull org/drop:Q8_0)
check "resume exits 0" test $? -eq 0
check "resume asked for the rest only" grep -q "GET /cdn/.*drop.* range=bytes=1437792-" "$log"
check "resume: the file is whole" cmp -s "$src" "$cache/org/drop/drop-Q8_0.gguf"

# a download killed midway resumes too
"$NURI" pull org/slow:Q8_0 >/dev/null 2>&1 &
pid=$!
part=$cache/org/slow/slow-Q8_0.gguf.part
# (the transfer takes about 3 s; 300 kB are there a few tenths of a second after it starts)
for _ in $(seq 500); do [ "$(stat -c %s "$part" 2>/dev/null || echo 0)" -gt 300000 ] && break; sleep 0.02; done
{
    kill -9 $pid
    wait $pid
} 2>/dev/null # without the shell's "Killed" line
have=$(stat -c %s "$part" 2>/dev/null || echo 0)
check "killed: part of the file was kept" test "$have" -gt 0 -a "$have" -lt 2875584
out=$(pull org/slow:Q8_0)
check "killed: the next pull exits 0" test $? -eq 0
check "killed: it resumed from the .part's end" grep -q "GET /cdn/.*slow.* range=bytes=$have-" "$log"
check "killed: the file is whole" cmp -s "$src" "$cache/org/slow/slow-Q8_0.gguf"

# ---- a wrong checksum: the .part stays, is never used, and the command fails
pull org/bad:Q8_0 >/dev/null
check "wrong sha256 exits 1" test $? -eq 1
check "wrong sha256: says so" grep -q "checksum mismatch for org/bad/bad-Q8_0.gguf: the hub publishes sha256 [0-9a-f]\{64\}, the download has [0-9a-f]\{64\}; it stays in .*bad-Q8_0.gguf.part and is not used" "$tmp/err"
check "wrong sha256: the .part is kept" test -f "$cache/org/bad/bad-Q8_0.gguf.part"
check "wrong sha256: never renamed into place" test ! -e "$cache/org/bad/bad-Q8_0.gguf"
"$NURI" run -m org/bad:Q8_0 -p hi -n 2 >/dev/null 2>"$tmp/err"
check "wrong sha256: run refuses it too" grep -q "checksum mismatch" "$tmp/err"

# a file the hub publishes no sha256 for (stored in git, not LFS): kept, with a warning
out=$(pull org/plain:Q8_0)
check "no published sha256 exits 0" test $? -eq 0
check "no published sha256: a warning" grep -q "warning: the hub publishes no sha256 for 1 of its files; they were not verified" "$tmp/err"
check "no published sha256: the file" cmp -s "$src" "$out"
check "no published sha256: none in the metadata" python3 -c '
import json, sys; assert json.load(open(sys.argv[1])).get("sha256") is None' "$out.meta.json"

# the same when the sha256 comes only from X-Linked-Etag, and again once the .part is whole
pull org/badetag:Q8_0 >/dev/null
check "wrong X-Linked-Etag exits 1" test $? -eq 1
check "wrong X-Linked-Etag: checksum mismatch" grep -q "checksum mismatch for org/badetag/badetag-Q8_0.gguf" "$tmp/err"
pull org/badetag:Q8_0 >/dev/null
check "a whole but wrong .part is still refused" grep -q "checksum mismatch for org/badetag/badetag-Q8_0.gguf" "$tmp/err"
check "... and never renamed into place" test ! -e "$cache/org/badetag/badetag-Q8_0.gguf"

# ---- ls and rm
out=$("$NURI" ls 2>&1)
check "ls lists a model with size and path" grep -Eq "^org/tiny/tiny-Q8_0.gguf +2.7 MiB  $cache/org/tiny/tiny-Q8_0.gguf$" <<<"$out"
check "ls shows a split model once" test "$(grep -c "org/split/Q8_0/split-Q8_0" <<<"$out")" -eq 1
check "ls counts its parts" grep -q "split-Q8_0-00001-of-00002.gguf .*(2 parts)" <<<"$out"
check "ls marks a partial download" grep -q "^org/bad/bad-Q8_0.gguf .*(partial download)" <<<"$out"
"$NURI" rm org/tiny:Q4_K_M 2>"$tmp/err"
check "rm ORG/REPO:QUANT exits 0" test $? -eq 0
check "rm says what it removed" grep -q "nuri: rm: org/tiny:Q4_K_M: removed 1 file" "$tmp/err"
check "rm removed the file and its metadata" test ! -e "$cache/org/tiny/tiny-Q4_K_M.gguf" -a ! -e "$cache/org/tiny/tiny-Q4_K_M.gguf.meta.json"
check "rm kept the other quant" test -f "$cache/org/tiny/tiny-Q8_0.gguf"
"$NURI" rm org/split/Q8_0/split-Q8_0-00001-of-00002.gguf 2>/dev/null
check "rm of a split model's name removes its parts" test ! -e "$cache/org/split"
"$NURI" rm org/bad 2>/dev/null
check "rm ORG/REPO removes partial downloads too" test ! -e "$cache/org/bad"
"$NURI" rm org/nothing 2>"$tmp/err"
check "rm of what is not there exits 1" test $? -eq 1
check "rm of what is not there says so" grep -q "nothing in the cache matches 'org/nothing'" "$tmp/err"

# ---- a network error: curl's message
HF_ENDPOINT=http://127.0.0.1:1 pull org/tiny:Q8_0 >/dev/null
check "network error exits 1" test $? -eq 1
check "network error: curl's words" grep -q "network error listing org/tiny at http://127.0.0.1:1: .*onnect" "$tmp/err"

# ---- disk full: a 512 KiB tmpfs in a user and mount namespace (skipped where there is none)
if unshare -rm true 2>/dev/null; then
    mkdir -p "$tmp/small"
    unshare -rm sh -c "mount -t tmpfs -o size=512k tmpfs '$tmp/small' &&
        '$NURI' pull --cache-dir '$tmp/small' org/tiny:Q8_0 >/dev/null 2>'$tmp/err'
        echo \$? >'$tmp/rc'; ls -l '$tmp/small/models/org/tiny/' >'$tmp/ls'"
    check "disk full exits 1" test "$(cat "$tmp/rc")" = 1
    check "disk full: says so, and that the partial is kept" grep -q "disk full while writing $tmp/small/models/org/tiny/tiny-Q8_0.gguf.part: [0-9]* of 2875584 bytes kept there; free some space and run the command again to resume" "$tmp/err"
    check "disk full: the .part was there" grep -q "tiny-Q8_0.gguf.part" "$tmp/ls"
else
    echo "skip: disk full (no unprivileged user namespaces here)"
fi

# ---- usage
"$NURI" pull >/dev/null 2>&1
check "pull without a model is a usage error" test $? -eq 2
"$NURI" pull --bogus org/tiny >/dev/null 2>&1
check "pull with an unknown option is a usage error" test $? -eq 2
"$NURI" pull ./model.gguf >/dev/null 2>"$tmp/err"
check "pull of a local path exits 1" test $? -eq 1
check "pull of a local path: says what a hub name is" grep -q "'./model.gguf' is not a hub model: use ORG/REPO\[:QUANT\] or hf://ORG/REPO/FILE.gguf" "$tmp/err"
"$NURI" run -m hf://org -p hi >/dev/null 2>"$tmp/err"
check "a malformed hf:// name exits 1" test $? -eq 1
check "a malformed hf:// name: the forms" grep -q "^nuri: run: 'hf://org' is not a hub name: use hf://ORG/REPO/FILE.gguf or hf://ORG/REPO\[:QUANT\]" "$tmp/err"
"$NURI" ls extra >/dev/null 2>&1
check "ls with an argument is a usage error" test $? -eq 2
"$NURI" rm >/dev/null 2>&1
check "rm without a name is a usage error" test $? -eq 2
check "nuri --help lists pull, ls, rm" sh -c "'$NURI' --help | grep -q '^  pull ' && '$NURI' --help | grep -q '^  ls ' && '$NURI' --help | grep -q '^  rm '"

# ---- the progress bar: on a terminal only
check "progress bar in a pty" python3 - "$NURI" "$tmp/pty-cache" <<'PY'
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "pull", "--cache-dir", sys.argv[2], "org/slow:Q8_0"])
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
text = out.decode("utf-8", "replace")
ok = os.WEXITSTATUS(status) == 0 and "\r" in text and "slow-Q8_0.gguf 100% [" in text \
    and "2.7 MiB / 2.7 MiB" in text and "/s  ETA" in text and "ETA done" in text
if not ok:
    print(repr(text[-600:]))
sys.exit(0 if ok else 1)
PY

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
