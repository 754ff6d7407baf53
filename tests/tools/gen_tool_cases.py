#!/usr/bin/env python3
"""Generates tests/data/tool-conversations.json: tool-calling conversations, as an OpenAI client
sends them to /v1/chat/completions (tools; assistant tool_calls whose arguments are JSON *strings*;
role "tool" results with tool_call_id), rendered through the real chat templates of
tests/data/templates*/ by Python's jinja2 exactly as transformers' apply_chat_template renders
(the environment of gen_template_cases.py: ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, raise_exception, strftime_now, transformers' tojson).

Before rendering, the messages are prepared the way vLLM prepares them
(vllm/entrypoints/chat_utils.py, _postprocess_messages, and for Mistral models
truncate_tool_call_ids): an assistant tool call's arguments string is json.loads'ed into an
object, since templates write `arguments | tojson` or iterate `arguments | items`; for Mistral
templates, tool call ids keep their last 9 characters. Where the template cannot render that,
the next of these is taken, as llama.cpp adapts to a template's capabilities: arguments as
objects with content null (vLLM's way), arguments as the client's strings (a template that
concatenates them), content "" for null (a template that tests `'</think>' in content`). The
flags arguments_as_strings / null_content_as_empty record which. That preparation is written here
independently of nuri's (src/chat/toolcall.c nuri_toolcall_template_caps, which probes a template
with a fixed conversation, and nuri_toolcall_messages), which tests/test_tool_templates.c runs on
the unprepared messages before rendering with nuri.

Run from the repository root: python3 tests/tools/gen_tool_cases.py
(jinja2 3.1.x; the output is committed, the tests do not need Python.) The conversations are
written for nuri.
"""
import copy
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jinja2  # noqa: E402
from gen_template_cases import NOW, TemplateError, make_env  # noqa: E402
import datetime  # noqa: E402

DATA = os.path.join(HERE, "..", "data")

# (template path under tests/data, bos, eos, mistral ids, the template's thinking switch: one more
# case renders single_call with it)
TEMPLATES = [
    ("templates/Qwen-Qwen2.5-7B-Instruct.jinja", None, "<|im_end|>", False, {}),
    ("templates/Qwen-Qwen3-0.6B.jinja", None, "<|im_end|>", False, {"enable_thinking": False}),
    ("templates/Qwen-QwQ-32B.jinja", None, "<|im_end|>", False, {}),
    ("templates/Qwen3.5-4B.jinja", None, "<|im_end|>", False, {"enable_thinking": False}),
    ("templates/meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     False, {}),
    ("templates/meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     False, {}),
    ("templates/meta-llama-Llama-3.3-70B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     False, {}),
    ("templates/Mistral-Small-3.2-24B-Instruct-2506.jinja", "<s>", "</s>", True, {}),
    ("templates/mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", True, {}),
    ("templates/HuggingFaceTB-SmolLM3-3B.jinja", None, "<|im_end|>", False,
     {"enable_thinking": False}),
    ("templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>",
     "<｜end▁of▁sentence｜>", False, {}),
    ("templates/deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "<｜begin▁of▁sentence｜>",
     "<｜end▁of▁sentence｜>", False, {}),
    ("templates-korean/LGAI-EXAONE-EXAONE-4.0-1.2B.jinja", "[BOS]", "[|endofturn|]", False,
     {"enable_thinking": True}),
    ("templates-korean/HyperCLOVAX-SEED-Think-32B.jinja", None, None, False, {"thinking": True}),
    ("templates-korean/HyperCLOVAX-SEED-Omni-8B.jinja", None, None, False, {}),
    ("templates/openai-gpt-oss-120b.jinja", None, None, False, {"reasoning_effort": "low"}),
]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city (도시의 현재 날씨)",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. 서울 or Paris"},
            "days": {"type": "integer"},
            "detail": {"type": "object"},
        }, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                       "required": ["tz"]}}},
]

ARGS1 = '{"city": "서울", "days": 3, "detail": {"hourly": true, "ratio": 0.5, "tags": ["a", "b"]}}'
ARGS2 = '{"tz": "Asia/Seoul"}'


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


CASES = {
    # one call, its result, then the generation prompt
    "single_call": [
        {"role": "system", "content": "You are a helpful assistant with tools."},
        {"role": "user", "content": "What's the weather in Seoul for the next 3 days?"},
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_a1b2c3d4e", "get_weather", ARGS1)]},
        {"role": "tool", "tool_call_id": "call_a1b2c3d4e", "name": "get_weather",
         "content": '{"temperature": 21, "condition": "맑음"}'},
    ],
    # two calls in one answer (with text before them), two results
    "parallel_calls": [
        {"role": "user", "content": "서울 날씨와 시간을 알려 주세요."},
        {"role": "assistant", "content": "두 가지를 확인해 볼게요.",
         "tool_calls": [call("call_f0e1d2c3b", "get_weather", '{"city": "서울"}'),
                        call("call_9z8y7x6w5", "get_time", ARGS2)]},
        {"role": "tool", "tool_call_id": "call_f0e1d2c3b", "name": "get_weather",
         "content": '{"temperature": 21}'},
        {"role": "tool", "tool_call_id": "call_9z8y7x6w5", "name": "get_time",
         "content": "14:05"},
    ],
    # a call, its result, the final answer, and the next question
    "multi_turn": [
        {"role": "user", "content": "What time is it in Seoul?"},
        {"role": "assistant", "content": "",
         "tool_calls": [call("call_0123456789abcdef", "get_time", ARGS2)]},
        {"role": "tool", "tool_call_id": "call_0123456789abcdef", "name": "get_time",
         "content": "14:05"},
        {"role": "assistant", "content": "It is 14:05 in Seoul."},
        {"role": "user", "content": "고마워요! And in Paris?"},
    ],
    # an earlier answer's reasoning (reasoning_content, as nuri returns it) sent back with its call
    "reasoning_kept": [
        {"role": "user", "content": "What time is it in Seoul?"},
        {"role": "assistant", "content": "", "reasoning_content": "The user wants the time.",
         "tool_calls": [call("call_0123456789abcdef", "get_time", ARGS2)]},
        {"role": "tool", "tool_call_id": "call_0123456789abcdef", "name": "get_time",
         "content": "14:05"},
    ],
}


def prepare(messages, mistral, object_args, empty_content, harmony=False):
    """vLLM's preparation: arguments strings to objects; Mistral ids cut to their last 9. For
    OpenAI's harmony template (gpt-oss), which reads an assistant's reasoning as `thinking`, the
    reasoning_content goes there too, as llama.cpp passes it."""
    out = copy.deepcopy(messages)
    for m in out:
        if harmony and m["role"] == "assistant" and isinstance(m.get("reasoning_content"), str) \
                and "thinking" not in m:
            m["thinking"] = m["reasoning_content"]
        if m["role"] == "assistant" and empty_content and m.get("content") is None:
            m["content"] = ""
        if m["role"] == "assistant" and isinstance(m.get("tool_calls"), list):
            for tc in m["tool_calls"]:
                args = tc["function"]["arguments"]
                if object_args and isinstance(args, str):
                    try:
                        obj = json.loads(args)
                    except ValueError:
                        obj = None
                    if isinstance(obj, dict):
                        tc["function"]["arguments"] = obj
                if mistral and isinstance(tc.get("id"), str) and len(tc["id"]) > 9:
                    tc["id"] = tc["id"][-9:]
        if mistral and m["role"] == "tool" and isinstance(m.get("tool_call_id"), str):
            if len(m["tool_call_id"]) > 9:
                m["tool_call_id"] = m["tool_call_id"][-9:]
    return out


def main():
    env = make_env(datetime.datetime.fromisoformat(NOW))
    out = []
    for path, bos, eos, mistral, thinking in TEMPLATES:
        src = open(os.path.join(DATA, path), encoding="utf-8").read()
        tpl = env.from_string(src)
        runs = [(name, messages, {}) for name, messages in CASES.items()]
        if thinking:
            runs.append(("single_call_" + "_".join(f"{k}_{v}".lower() for k, v in thinking.items()),
                         CASES["single_call"], thinking))
        for name, messages, kwargs in runs:
            kw = dict(kwargs)
            if bos is not None:
                kw["bos_token"] = bos
            if eos is not None:
                kw["eos_token"] = eos
            case = {"template": path, "name": name, "messages": messages, "tools": TOOLS,
                    "add_generation_prompt": True, "bos_token": bos, "eos_token": eos,
                    "kwargs": kwargs, "now": NOW}
            try:
                for object_args, empty_content in ((True, False), (False, False), (True, True),
                                                   (False, True)):
                    try:
                        case["expected"] = tpl.render(
                            messages=prepare(messages, mistral, object_args, empty_content,
                                             "<|channel|>" in src and "<|message|>" in src),
                            tools=TOOLS, documents=None, add_generation_prompt=True, **kw)
                    except TemplateError:
                        raise
                    except Exception:  # the template cannot take this preparation: the next
                        continue
                    if not object_args:
                        case["arguments_as_strings"] = True
                    if empty_content:
                        case["null_content_as_empty"] = True
                    break
                else:
                    raise SystemExit(f"{path} / {name}: no preparation renders")
            except TemplateError as e:
                case["expected_error"] = str(e)
            out.append(case)
            print(f"{path} / {name}: {'error: ' + case['expected_error'] if 'expected_error' in case else 'ok'}")
    with open(os.path.join(DATA, "tool-conversations.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(out)} cases (jinja2 {jinja2.__version__})")


if __name__ == "__main__":
    main()
