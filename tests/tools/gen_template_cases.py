#!/usr/bin/env python3
"""Generates tests/data/templates-extra/<name>.cases.json: the expected output of every template
there, rendered by Python's jinja2 exactly as transformers' apply_chat_template renders a chat
template (ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols; globals
raise_exception and strftime_now; tojson = json.dumps(ensure_ascii=False)). The conversations are
those of tests/data/templates/Qwen3.5-4B.cases.json, so both sets use the same inputs.

Run from the repository root: python3 tests/tools/gen_template_cases.py
(jinja2 3.1.x; the output is committed, the tests themselves do not need Python.)
"""
import datetime
import glob
import json
import os

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.join(os.path.dirname(__file__), "..", "data")
NOW = "2025-07-01T12:00:00"


class TemplateError(Exception):
    pass


def make_env(now):
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return now.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, src, case):
    kw = dict(case.get("kwargs", {}))
    for k in ("bos_token", "eos_token"):
        if case.get(k) is not None:
            kw[k] = case[k]
    return env.from_string(src).render(
        messages=case["messages"], tools=case.get("tools"), documents=None,
        add_generation_prompt=case["add_generation_prompt"], **kw)


def main():
    base = json.load(open(os.path.join(ROOT, "templates", "Qwen3.5-4B.cases.json")))
    by_name = {c["name"]: c for c in base}
    now = datetime.datetime.fromisoformat(NOW)
    env = make_env(now)
    extra = os.path.join(ROOT, "templates-extra")
    for path in sorted(glob.glob(os.path.join(extra, "*.jinja"))):
        name = os.path.basename(path)[:-6]
        src = open(path, encoding="utf-8").read()
        cases = []
        for cname in ("user_only", "multi_turn", "multi_turn_ko", "tools", "tool_call_roundtrip",
                      "multi_turn_thinking_on", "multi_turn_thinking_off"):
            c = json.loads(json.dumps(by_name[cname]))
            c.pop("expected", None)
            c["bos_token"] = "<s>"
            c["eos_token"] = "</s>"
            c["now"] = NOW
            if cname == "tool_call_roundtrip" and "tools" not in src:
                continue
            if cname.startswith("multi_turn_thinking") and "enable_thinking" not in src:
                continue
            if cname == "tools" and "tools" not in src:
                continue
            if name == "nuri-features" and cname == "multi_turn":
                c["add_generation_prompt"] = False
                c["bos_token"] = None
            try:
                c["expected"] = render(env, src, c)
            except TemplateError as e:
                c["expected_error"] = str(e)
            except Exception as e:  # a template that jinja2 itself rejects is a bug here
                raise SystemExit(f"{name} / {cname}: {type(e).__name__}: {e}")
            cases.append(c)
        with open(os.path.join(extra, name + ".cases.json"), "w", encoding="utf-8") as f:
            json.dump(cases, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print(f"{name}: {len(cases)} cases (jinja2 {jinja2.__version__})")


if __name__ == "__main__":
    main()
