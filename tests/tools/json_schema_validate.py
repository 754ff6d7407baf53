#!/usr/bin/env python3
"""json_schema_validate.py: validates generated JSON against the schema it was generated for.

Reads JSON lines on stdin, {"name", "seed", "schema", "output", "complete"}, where output is the
generated text. A line passes when the text is exactly one JSON document (json.loads, nothing
around it) that Draft 2020-12 validation accepts, format assertions included (date, time,
date-time, uuid). Prints one "FAIL ..." line per failure and ends with
"validated N, failed M". Used by tests/test_json_schema_generate.c; needs python3-jsonschema.
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("FAIL the python3 jsonschema module is not installed (scripts/setup installs it)")
    print("validated 0, failed 1")
    sys.exit(1)

checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
n = failed = 0
for line in sys.stdin:
    if not line.strip():
        continue
    case = json.loads(line)
    n += 1
    where = f"{case['name']} seed {case['seed']}"
    text = case["output"]
    try:
        if not case.get("complete", True):
            raise ValueError("generation stopped before the grammar was complete")
        if text != text.strip():
            raise ValueError("whitespace around the JSON")
        value = json.loads(text)
        jsonschema.Draft202012Validator(case["schema"], format_checker=checker).validate(value)
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        failed += 1
        msg = str(e).splitlines()[0][:200]
        shown = text if len(text) <= 400 else text[:200] + " ... " + text[-200:]
        print(f"FAIL {where}: {msg}: {shown!r}")
print(f"validated {n}, failed {failed}")
sys.exit(1 if failed else 0)
