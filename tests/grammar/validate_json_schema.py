"""Validates constrained outputs against their JSON Schemas with the jsonschema package,
independently of kiln: reads JSON lines {"schema": ..., "output": "..."} from argv[1], prints
every failure and exits 1 if there was one."""
import datetime
import json
import re
import sys

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

checker = FormatChecker()

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@checker.checks("date-time", raises=ValueError)
def is_date_time(value):
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        return False
    datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@checker.checks("time", raises=ValueError)
def is_time(value):
    if not isinstance(value, str):
        return True
    if not re.match(r"^\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
        return False
    datetime.time.fromisoformat(value.replace("Z", "+00:00"))
    return True


failures = 0
count = 0
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        item = json.loads(line)
        count += 1
        try:
            value = json.loads(item["output"])
        except json.JSONDecodeError as e:
            failures += 1
            print(f"not JSON ({e}): {item['output']!r}\n  schema: {json.dumps(item['schema'])}")
            continue
        errors = list(Draft202012Validator(item["schema"], format_checker=checker).iter_errors(value))
        if errors:
            failures += 1
            print(f"invalid: {item['output']!r}\n  schema: {json.dumps(item['schema'])}\n  error: {errors[0].message}")
print(f"{count} outputs, {failures} invalid")
sys.exit(1 if failures or count == 0 else 0)
