#!/usr/bin/env python3
"""Generates tests/data/templates/openai-gpt-oss-120b.cases.json: what Python's jinja2 renders
through gpt-oss's chat template (the harmony format), set up as transformers' apply_chat_template
sets it up (the environment of gen_template_cases.py). The conversations: those of
tests/data/templates/Qwen3.5-4B.cases.json (without their "expected"), and harmony's own: an
assistant turn with its analysis ("thinking") kept before a tool call and dropped after a final
answer, a developer instruction, reasoning_effort, model_identity, builtin_tools, and the
template's own errors (a tool result without a call, channel tags inside content).

Run from the repository root: python3 tests/tools/gen_gptoss_template_cases.py
(jinja2 3.1.x; the output is committed, the tests themselves do not need Python.)
"""
import datetime
import json
import os

import jinja2

from gen_template_cases import NOW, ROOT, TemplateError, make_env, render

NAME = "openai-gpt-oss-120b"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}

HARMONY = [
    {"name": "reasoning_effort_high", "kwargs": {"reasoning_effort": "high"},
     "messages": [{"role": "system", "content": "Answer in one sentence."},
                  {"role": "user", "content": "Why is the sky blue?"}],
     "add_generation_prompt": True},
    {"name": "developer_and_identity",
     "kwargs": {"model_identity": "You are nuri's assistant.", "reasoning_effort": "low"},
     "messages": [{"role": "developer", "content": "Reply in Korean."},
                  {"role": "user", "content": "안녕하세요!"}],
     "add_generation_prompt": True},
    {"name": "thinking_dropped_after_final_answer",
     "messages": [{"role": "user", "content": "2+2?"},
                  {"role": "assistant", "thinking": "Add them: 4.", "content": "4"},
                  {"role": "user", "content": "And 3+3?"}],
     "add_generation_prompt": True},
    {"name": "thinking_kept_before_a_tool_call", "tools": [WEATHER],
     "messages": [
         {"role": "user", "content": "Weather in Seoul?"},
         {"role": "assistant", "thinking": "I should call get_weather.",
          "tool_calls": [{"type": "function", "function": {
              "name": "get_weather", "arguments": {"city": "Seoul", "days": 2}}}]},
         {"role": "tool", "content": "{\"temp\": 21}"}],
     "add_generation_prompt": True},
    {"name": "final_turn_without_generation_prompt",
     "messages": [{"role": "user", "content": "Hi"},
                  {"role": "assistant", "thinking": "Greet back.", "content": "Hello!"}],
     "add_generation_prompt": False},
    {"name": "builtin_tools", "kwargs": {"builtin_tools": ["browser", "python"]},
     "messages": [{"role": "user", "content": "Look it up."}],
     "add_generation_prompt": True},
    {"name": "tool_result_without_a_call",
     "messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42"}],
     "add_generation_prompt": True},
    {"name": "channel_tags_in_content",
     "messages": [{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "<|channel|>analysis<|message|>x"}],
     "add_generation_prompt": True},
]


def main():
    base = json.load(open(os.path.join(ROOT, "templates", "Qwen3.5-4B.cases.json")))
    now = datetime.datetime.fromisoformat(NOW)
    env = make_env(now)
    src = open(os.path.join(ROOT, "templates", NAME + ".jinja"), encoding="utf-8").read()
    cases = []
    for c in [json.loads(json.dumps(b)) for b in base] + HARMONY:
        c.pop("expected", None)
        c["bos_token"] = "<|startoftext|>"
        c["eos_token"] = "<|return|>"
        c["now"] = NOW
        try:
            c["expected"] = render(env, src, c)
        except TemplateError as e:
            c["expected_error"] = str(e)
        cases.append(c)
    with open(os.path.join(ROOT, "templates", NAME + ".cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{NAME}: {len(cases)} cases (jinja2 {jinja2.__version__})")


if __name__ == "__main__":
    main()
