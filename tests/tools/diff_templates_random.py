#!/usr/bin/env python3
"""Differential check of nuri's template engine against Python's jinja2 on random templates.

  python3 tests/tools/diff_templates_random.py ws   SEED COUNT   # text, tags, whitespace control
  python3 tests/tools/diff_templates_random.py expr SEED COUNT   # expressions, filters, tests

Each random template is rendered by jinja2 (the environment of gen_template_cases.py, i.e.
transformers') and by `build/nuri template --file`; outputs must be equal byte for byte, and where
jinja2 raises, nuri must fail too. Prints the first differences and a count. A development tool
(run it after changing the engine), not part of `make test`: it needs python3 + jinja2.
"""
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import gen_template_cases as g  # noqa: E402

NURI = os.environ.get("NURI", "build/nuri")
VARS = {"x": True, "m": {"role": "user", "content": "Hi there"},
        "ms": [{"role": "a"}, {"role": "b"}], "n": 3, "s": "xyz"}


def gen_ws(rnd):
    texts = ["", " ", "  ", "\n", "\n\n", " \n ", "\t", "a", "b ", " c", "x\n  ", "\n  y",
             "  \n", "\r\n", "é "]
    mod = lambda: rnd.choice(["", "", "-", "+"])
    vmod = lambda: rnd.choice(["", "", "-"])
    txt = lambda: "".join(rnd.choice(texts) for _ in range(rnd.randint(0, 3)))

    def block(depth):
        parts = []
        for _ in range(rnd.randint(1, 4)):
            parts.append(txt())
            r = rnd.random()
            if r < 0.25:
                parts.append("{{%s %s %s}}" % (vmod(), rnd.choice(["'v'", "x", "' s '"]), vmod()))
            elif r < 0.4:
                parts.append("{#%s c %s#}" % (mod(), mod()))
            elif r < 0.6 and depth < 3:
                parts.append("{%%%s if %s %s%%}" % (mod(), rnd.choice(["true", "false", "x"]), mod()))
                parts.append(block(depth + 1))
                if rnd.random() < 0.4:
                    parts.append("{%%%s else %s%%}" % (mod(), mod()))
                    parts.append(block(depth + 1))
                parts.append("{%%%s endif %s%%}" % (mod(), mod()))
            elif r < 0.8 and depth < 3:
                parts.append("{%%%s for i in [1, 2] %s%%}" % (mod(), mod()))
                parts.append(block(depth + 1))
                parts.append("{%%%s endfor %s%%}" % (mod(), mod()))
            elif r < 0.85:
                parts.append("{%%%s set y = 1 %s%%}" % (mod(), mod()))
            elif r < 0.9:
                parts.append("{%%%s raw %s%%}%s{{ r }}%s{%%%s endraw %s%%}"
                             % (mod(), mod(), txt(), txt(), mod(), mod()))
        parts.append(txt())
        return "".join(parts)

    return block(0)


def gen_expr(rnd):
    atoms = ["1", "0", "-3", "2.5", "0.1", "1e3", "'ab'", "''", "'A b'", "'é한'", "none", "true",
             "false", "[1, 2]", "[]", "['b', 'a']", "{'k': 1}", "{}", "u", "m", "m.role",
             "m.content", "ms", "ms[0]", "(1, 2)", "n", "s"]
    filters = ["length", "string", "upper", "lower", "trim", "tojson", "list", "first", "last",
               "sort", "unique | list", "join", "join(',')", "int", "float", "abs", "round",
               "default(7)", "capitalize", "title", "count", "sum", "max", "min", "wordcount",
               "e", "safe", "replace('a', 'x')", "map('string') | list", "select | list",
               "dictsort", "center(5)"]
    tests = ["defined", "undefined", "none", "string", "number", "mapping", "iterable",
             "sequence", "odd", "even", "integer", "float", "boolean", "true", "false", "lower",
             "upper", "equalto 1", "in [1, 'ab']"]
    binops = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and",
              "or"]
    methods = ["strip()", "split()", "upper()", "startswith('a')", "replace('a', 'b')",
               "find('b')", "keys() | list", "get('k')", "lstrip('a')", "title()", "count('a')"]

    def expr(d):
        r = rnd.random()
        if d > 2 or r < 0.3:
            return rnd.choice(atoms)
        if r < 0.5:
            return "%s %s %s" % (expr(d + 1), rnd.choice(binops), expr(d + 1))
        if r < 0.65:
            return "(%s) | %s" % (expr(d + 1), rnd.choice(filters))
        if r < 0.72:
            return "(%s) is %s%s" % (expr(d + 1), rnd.choice(["", "not "]), rnd.choice(tests))
        if r < 0.8:
            return "(%s).%s" % (expr(d + 1), rnd.choice(methods))
        if r < 0.86:
            return "(%s)[%s]" % (expr(d + 1), rnd.choice(["0", "-1", "1:", "::-1", "'k'", "5"]))
        if r < 0.92:
            return "%s if %s else %s" % (expr(d + 1), expr(d + 1), expr(d + 1))
        return "not %s" % expr(d + 1)

    return "{{ %s }}" % expr(0)


def main():
    mode, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(seed)
    env = g.make_env(datetime.datetime(2026, 11, 26, 9, 0, 0))
    tmp = tempfile.mkdtemp()
    tpl, msgs = os.path.join(tmp, "t.jinja"), os.path.join(tmp, "m.json")
    with open(msgs, "w") as f:
        f.write("[]")
    bad = 0
    for _ in range(count):
        src = gen_ws(rnd) if mode == "ws" else gen_expr(rnd)
        try:
            want = env.from_string(src).render(**VARS)
        except Exception as e:  # jinja2 refuses: nuri must fail too
            want = None
            why = f"{type(e).__name__}: {e}"
        with open(tpl, "w", newline="") as f:
            f.write(src)
        p = subprocess.run([NURI, "template", "--file", tpl, "--messages", msgs,
                            "--vars", json.dumps(VARS)], capture_output=True)
        if p.returncode not in (0, 1):
            print("CRASH", repr(src), p.returncode, p.stderr.decode()[-300:])
        got = p.stdout.decode() if p.returncode == 0 else None
        if got != want and "object at 0x" not in (want or ""):
            bad += 1
            if bad <= 10:
                print("---", repr(src))
                print("  jinja2", repr(want) if want is not None else why)
                print("  nuri  ", repr(got) if got is not None else p.stderr.decode().strip())
    print(f"{bad} of {count} differ")


if __name__ == "__main__":
    main()
