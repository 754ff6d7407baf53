#!/usr/bin/env bash
# template.test.sh: `nuri template` prints the rendered prompt byte for byte (no newline added),
# reads the template from a model (-m) or a file, and fails with a clear message and status.
set -u
NURI=${NURI:-build/nuri}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }

printf '[{"role":"system","content":"Be brief."},{"role":"user","content":"안녕"}]' >"$tmp/m.json"
printf '[{"type":"function","function":{"name":"f"}}]' >"$tmp/tools.json"

# 1. a file template, every option, exact bytes (no trailing newline)
printf '{{ bos_token }}{%% for m in messages %%}[{{ m.role }}:{{ m.content }}]{%% endfor %%}\n{{ tools | tojson }}|{{ x }}|{{ strftime_now("%%Y-%%m-%%d %%a") }}|{{ add_generation_prompt }}|{{ eos_token }}\n' >"$tmp/t.jinja"
"$NURI" template --file "$tmp/t.jinja" --messages "$tmp/m.json" --tools "$tmp/tools.json" \
    --add-generation-prompt --bos '<s>' --eos '</s>' --now 2026-11-26T09:00:00 \
    --vars '{"x": [1, 2]}' >"$tmp/out"
printf '<s>[system:Be brief.][user:안녕][{"type": "function", "function": {"name": "f"}}]|[1, 2]|2026-11-26 Thu|True|</s>' >"$tmp/want"
if cmp -s "$tmp/out" "$tmp/want"; then ok file_template_renders_exactly; else bad file_template_renders_exactly; fi

# 2. the model's own template (ChatML in the qwen2 vocab file) with its BOS/EOS
"$NURI" template -m tests/data/vocab/ggml-vocab-qwen2.gguf --messages "$tmp/m.json" \
    --add-generation-prompt >"$tmp/out"
printf '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n안녕<|im_end|>\n<|im_start|>assistant\n' >"$tmp/want"
if cmp -s "$tmp/out" "$tmp/want"; then ok model_template_renders; else bad model_template_renders; fi

# 3. a golden case from the test data through the CLI
"$NURI" template --file tests/data/templates/google-gemma-2-2b-it.jinja --messages "$tmp/m.json" \
    --bos '<bos>' 2>"$tmp/err" >"$tmp/out"
rc=$?
if [ $rc -eq 1 ] && grep -q 'System role not supported' "$tmp/err" && [ ! -s "$tmp/out" ]; then
    ok raise_exception_fails_with_its_message
else bad raise_exception_fails_with_its_message; fi

# 4. a model without a chat template
"$NURI" template -m tests/data/models/llama-tiny-F32.gguf --messages "$tmp/m.json" 2>"$tmp/err" >/dev/null
rc=$?
if [ $rc -eq 1 ] && grep -q 'no tokenizer.chat_template' "$tmp/err"; then ok model_without_template_fails
else bad model_without_template_fails; fi

# 5. syntax errors name line and column
printf 'x\n{{ 1 + }}' >"$tmp/bad.jinja"
"$NURI" template --file "$tmp/bad.jinja" --messages "$tmp/m.json" 2>"$tmp/err" >/dev/null
rc=$?
if [ $rc -eq 1 ] && grep -q 'line 2 col 8' "$tmp/err"; then ok syntax_error_has_line_col
else bad syntax_error_has_line_col; fi

# 6. usage errors
"$NURI" template --messages "$tmp/m.json" >/dev/null 2>&1
rc1=$?
"$NURI" template --file "$tmp/t.jinja" --messages "$tmp/m.json" --vars '[1]' >/dev/null 2>&1
rc2=$?
"$NURI" template --file "$tmp/t.jinja" --messages "$tmp/m.json" --now yesterday >/dev/null 2>&1
rc3=$?
if [ $rc1 -eq 2 ] && [ $rc2 -eq 1 ] && [ $rc3 -eq 2 ]; then ok usage_errors; else bad "usage_errors ($rc1 $rc2 $rc3)"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
