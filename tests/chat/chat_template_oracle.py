#!/usr/bin/python3
"""Reference renderer for kiln's Jinja tests: Jinja2 configured as Hugging Face transformers
renders chat templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop
controls, its tojson filter and its raise_exception / strftime_now globals).

stdin:  a JSON list of cases {"template": str, "variables": {...}, "now": seconds or null}
stdout: a JSON list of results {"output": str} or {"error": "<ExceptionType>: message"}
Needs Debian's python3-jinja2; exits 3 when it is missing so the caller can skip visibly.
"""
import json
import sys
from datetime import datetime

try:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    sys.stderr.write("chat_template_oracle.py: jinja2 is not installed (apt-get install python3-jinja2)\n")
    sys.exit(3)


class TemplateRaised(Exception):
    pass


def raise_exception(message):
    raise TemplateRaised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' override: no HTML escaping, and its options passed to json.dumps.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def render(case):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    now = case.get("now")
    env.globals["strftime_now"] = lambda fmt: (
        datetime.fromtimestamp(now) if now is not None else datetime.now()).strftime(fmt)
    try:
        template = env.from_string(case["template"])
        return {"output": template.render(**case.get("variables", {}))}
    except Exception as e:  # every failure is a result the test compares kind-for-kind
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    cases = json.load(sys.stdin)
    json.dump([render(c) for c in cases], sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
