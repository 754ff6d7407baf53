#!/usr/bin/env bash
# grammar.test.sh: structured output from the command line. `nuri run --json-schema` prints only
# the JSON (which Python's json and jsonschema accept), `--grammar` takes GBNF files such as
# grammars/json.gbnf, `nuri chat` constrains every answer, and bad grammars or schemas are errors
# that say where. Model: tests/data/models/qwen2-tiny-Q8_0.gguf (random weights, synthetic
# vocabulary), so the JSON is gibberish of the right shape.
set -u
cd "$(dirname "$0")/.."
NURI=${NURI:-build/nuri}
MODEL=tests/data/models/qwen2-tiny-Q8_0.gguf
TMP=$(mktemp -d /tmp/nuri-grammar-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

cat >"$TMP/person.json" <<'JSON'
{"type": "object",
 "properties": {"name": {"type": "string", "maxLength": 12},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
 "required": ["name", "age"]}
JSON

# ---- --json-schema prints only the JSON, and it validates
all_valid=1
for seed in 1 2 3 4 5; do
    "$NURI" run -m "$MODEL" -p "A person:" --json-schema "$TMP/person.json" -n 300 --temp 1 \
        --seed "$seed" >"$TMP/out.$seed" 2>"$TMP/err.$seed" || all_valid=0
    python3 - "$TMP/person.json" "$TMP/out.$seed" <<'PY' || all_valid=0
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
text = open(sys.argv[2], encoding="utf-8").read()
assert text.endswith("\n"), "no final newline"
jsonschema.validate(json.loads(text[:-1]), schema)  # the whole output is the JSON
PY
done
[ "$all_valid" = 1 ] && ok "run --json-schema prints only JSON that validates (5 seeds)" ||
    bad "run --json-schema output: $(cat "$TMP"/out.* "$TMP"/err.* | head -c 600)"

# ---- --grammar with a GBNF file; greedy output is the same every time
out1=$("$NURI" run -m "$MODEL" -p "x" --grammar grammars/json.gbnf -n 200 2>"$TMP/g1.err")
out2=$("$NURI" run -m "$MODEL" -p "x" --grammar grammars/json.gbnf -n 200 2>"$TMP/g2.err")
if [ -n "$out1" ] && [ "$out1" = "$out2" ] && printf '%s' "$out1" | python3 -c 'import json,sys; json.loads(sys.stdin.read())' 2>/dev/null; then
    ok "run --grammar grammars/json.gbnf gives JSON"
else
    bad "run --grammar: '$out1' / '$out2' $(cat "$TMP/g1.err")"
fi
printf 'root ::= "yes" | "no"\n' >"$TMP/yn.gbnf"
out=$("$NURI" run -m "$MODEL" -p "Is it?" --grammar "$TMP/yn.gbnf" -n 10 --temp 1 --seed 7)
case "$out" in yes | no) ok "a two-word grammar gives one of its words" ;; *) bad "yes/no: '$out'" ;; esac

# ---- running out of tokens before the grammar is complete is a failure (status 1)
"$NURI" run -m "$MODEL" -p "x" --json-schema "$TMP/person.json" -n 2 >"$TMP/short" 2>"$TMP/short.err"
rc=$?
if [ "$rc" = 1 ] && grep -q "not complete" "$TMP/short.err"; then
    ok "-n too small for the grammar: status 1 and a message"
else
    bad "-n 2: rc $rc, $(cat "$TMP/short.err")"
fi

# ---- errors say where
printf 'root ::= "a" item\nitem ::= [a-z]{3,2}\n' >"$TMP/bad.gbnf"
err=$("$NURI" run -m "$MODEL" -p "x" --grammar "$TMP/bad.gbnf" 2>&1)
rc=$?
if [ "$rc" = 2 ] && printf '%s' "$err" | grep -q "bad.gbnf: grammar: line 2, column 15: .*below the minimum"; then
    ok "a bad grammar file: status 2, file, line and column"
else
    bad "bad grammar: rc $rc: $err"
fi
printf '{"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": true}}}' >"$TMP/uniq.json"
err=$("$NURI" run -m "$MODEL" -p "x" --json-schema "$TMP/uniq.json" 2>&1)
rc=$?
if [ "$rc" = 2 ] && printf '%s' "$err" | grep -q "'uniqueItems'.*properties.tags.uniqueItems"; then
    ok "an unsupported schema keyword: status 2, keyword and path"
else
    bad "uniqueItems: rc $rc: $err"
fi
err=$("$NURI" run -m "$MODEL" --tokens 1,2 --grammar grammars/json.gbnf 2>&1)
[ $? = 2 ] && ok "--grammar needs a text prompt" || bad "--tokens with --grammar: $err"
err=$("$NURI" run -m "$MODEL" -p x --grammar grammars/json.gbnf --json-schema "$TMP/person.json" 2>&1)
[ $? = 2 ] && printf '%s' "$err" | grep -q "not both" && ok "--grammar and --json-schema together are refused" ||
    bad "both: $err"

# ---- chat: every answer follows the schema
printf 'one\ntwo\n' | "$NURI" chat -m "$MODEL" --json-schema "$TMP/person.json" --seed 3 -n 300 \
    >"$TMP/chat.out" 2>"$TMP/chat.err"
if python3 - "$TMP/person.json" "$TMP/chat.out" <<'PY'; then
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
dec, text, n = json.JSONDecoder(), open(sys.argv[2], encoding="utf-8").read(), 0
i = 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    value, i = dec.raw_decode(text, i)
    jsonschema.validate(value, schema)
    n += 1
assert n == 2, f"{n} answers"
PY
    ok "chat --json-schema: both answers validate"
else
    bad "chat: $(head -c 600 "$TMP/chat.out") $(cat "$TMP/chat.err")"
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
