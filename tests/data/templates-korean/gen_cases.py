#!/usr/bin/env python3
"""Generates tests/data/templates-korean/<name>.cases.json: Korean-first conversations rendered
through each real Korean-family chat template in this folder by Python's jinja2, exactly as
transformers' apply_chat_template renders (the environment of tests/tools/gen_template_cases.py:
ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols; raise_exception,
strftime_now; tojson = json.dumps(ensure_ascii=False); tools passed as None when absent).

Run from the repository root: python3 tests/data/templates-korean/gen_cases.py
(Debian's python3-jinja2 3.1.x; the output is committed, the tests do not need Python.)
The cases are written for nuri; the conversations are not taken from anywhere.
"""
import datetime
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import jinja2  # noqa: E402
from gen_template_cases import NOW, TemplateError, make_env, render  # noqa: E402

SYSTEM = "당신은 LG AI 연구원이 만든 친절한 한국어 비서입니다. 존댓말로 간결하게 답하세요."

# Korean system / user / assistant turns; the last user turn mixes Korean, English and emoji.
MULTI = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "안녕하세요! 오늘 서울 날씨 어때요?"},
    {"role": "assistant", "content": "안녕하세요 😊 오늘 서울은 맑고 기온은 21°C 정도예요."},
    {"role": "user", "content": "그럼 한강에서 자전거 타도 될까요? GPU 서버 점검은 내일 해도 돼요."},
]

MIXED = [
    {"role": "system", "content": "You are a bilingual assistant. 한국어와 English 모두 가능합니다."},
    {"role": "user",
     "content": "  다음 문장을 English로 번역해 주세요:\n\t\"나는 🇰🇷 김치찌개를 좋아해요 👨‍👩‍👧\"  "},
    {"role": "assistant", "content": "\"I like 🇰🇷 kimchi stew 👨‍👩‍👧\"\n\n더 필요하신 게 있나요?"},
    {"role": "user", "content": "ㅋㅋㅋ 고마워요! 漢字도 섞어 볼까요? 國漢文 混用體, ＡＢＣ１２３ ①"},
]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "도시의 현재 날씨를 알려줍니다 (current weather)",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "도시 이름, 예: 서울, 부산"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}]

TOOL_ROUNDTRIP = [
    {"role": "system", "content": "도구를 쓸 수 있는 비서입니다."},
    {"role": "user", "content": "서울과 부산 날씨를 알려 주세요."},
    {"role": "assistant", "content": "",
     "tool_calls": [
         {"id": "call_1", "type": "function",
          "function": {"name": "get_weather", "arguments": {"city": "서울", "unit": "celsius"}}},
         {"id": "call_2", "type": "function",
          "function": {"name": "get_weather", "arguments": {"city": "부산"}}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"condition\": \"맑음\"}"},
    {"role": "tool", "tool_call_id": "call_2", "content": "흐림, 18°C"},
]

# EXAONE 4.0 reasoning: earlier answers carry <think> blocks (or reasoning_content), which the
# template drops unless skip_think is false and the message is the last one.
REASONING = [
    {"role": "user", "content": "17 곱하기 23은?"},
    {"role": "assistant",
     "content": "<think>\n17 × 23 = 17 × 20 + 17 × 3 = 340 + 51 = 391\n</think>\n\n391입니다."},
    {"role": "user", "content": "그걸 2로 나누면요?"},
    {"role": "assistant", "content": "195.5입니다.",
     "reasoning_content": "391 / 2 = 195.5"},
]


def cases_for(src):
    c = []

    def add(name, messages, gen, **extra):
        case = {"name": name, "messages": messages, "add_generation_prompt": gen}
        case.update(extra)
        c.append(case)

    add("ko_user_only", [{"role": "user", "content": "한국의 수도는 어디인가요?"}], True)
    add("ko_multi_turn", MULTI, True)
    add("ko_multi_turn_no_generation_prompt", MULTI[:3], False)
    add("ko_no_system", MULTI[1:], True)
    add("ko_en_mixed_emoji", MIXED, True)
    if "enable_thinking" in src:
        add("ko_thinking_on", MULTI, True, kwargs={"enable_thinking": True})
        add("ko_thinking_off", MULTI, True, kwargs={"enable_thinking": False})
    if "reasoning_content" in src:
        add("ko_reasoning_history_dropped", REASONING, False)
        add("ko_reasoning_last_kept", REASONING, False, kwargs={"skip_think": False})
        add("ko_reasoning_then_user", REASONING[:2] + [REASONING[2]], True,
            kwargs={"skip_think": False})
        # the last answer has no reasoning of its own: does an earlier turn's leak into it?
        add("ko_reasoning_not_carried_over", REASONING[:3] + [{"role": "assistant",
            "content": "195.5입니다."}], False, kwargs={"skip_think": False})
    if "tools" in src:
        add("ko_tools", [{"role": "user", "content": "지금 서울 날씨 어때?"}], True, tools=TOOLS)
        add("ko_tools_with_system", MULTI[:2], True, tools=TOOLS)
        add("ko_tool_call_roundtrip", TOOL_ROUNDTRIP, True, tools=TOOLS)
    if "raise_exception" in src:
        add("unknown_role_fails", [{"role": "narrator", "content": "옛날 옛적에"}], True)
    return c


def main():
    now = datetime.datetime.fromisoformat(NOW)
    env = make_env(now)
    for path in sorted(glob.glob(os.path.join(HERE, "*.jinja"))):
        name = os.path.basename(path)[:-6]
        src = open(path, encoding="utf-8", newline="").read()
        out = []
        for c in cases_for(src):
            c["bos_token"] = "[BOS]"
            c["eos_token"] = "[|endofturn|]"
            c["now"] = NOW
            try:
                c["expected"] = render(env, src, c)
            except TemplateError as e:
                c["expected_error"] = str(e)
            except Exception as e:  # a template jinja2 itself rejects is a bug here
                raise SystemExit(f"{name} / {c['name']}: {type(e).__name__}: {e}")
            out.append(c)
        with open(os.path.join(HERE, name + ".cases.json"), "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{name}: {len(out)} cases (jinja2 {jinja2.__version__})")


if __name__ == "__main__":
    main()
