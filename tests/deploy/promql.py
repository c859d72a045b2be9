"""Just enough PromQL structure for the checks of deploy/: the operands of an alert's condition,
and the queries of a Grafana dashboard with its template variables filled in."""
import re

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = ("and", "or", "unless")


def _top_level(expr):
    """Yields (index, char) of the characters outside (), {}, [] and string literals."""
    depth, quote, i = 0, None, 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif depth == 0:
            yield i, ch
        i += 1


def split_set_operators(expr):
    """`a > 1 and b > 0` -> ['a > 1', 'b > 0'] (top level only; on()/ignoring() dropped)."""
    parts, start = [], 0
    for i, _ in _top_level(expr):
        for op in _SET_OPERATORS:
            before = expr[i - 1] if i > 0 else " "
            after = expr[i + len(op)] if i + len(op) < len(expr) else " "
            if expr.startswith(op, i) and not (before.isalnum() or before in "_:") and not (after.isalnum() or after in "_:"):
                parts.append(expr[start:i])
                start = i + len(op)
    parts.append(expr[start:])
    return [re.sub(r"^\s*(on|ignoring)\s*\([^)]*\)", "", p).strip() for p in parts]


def comparison_left(expr):
    """The left operand of a top-level comparison (`x / y > 0.9` -> `x / y`); the expression itself
    when there is none."""
    skip_to = -1
    for i, ch in _top_level(expr):
        if i < skip_to:
            continue
        two = expr[i:i + 2]
        if two in _COMPARISONS:
            return expr[:i].strip()
        if ch in "<>" :
            return expr[:i].strip()
        if two in ("=~", "!~"):
            skip_to = i + 2
    return expr.strip()


def alert_operands(expr):
    """What an alert compares, as queries that return data whenever the metrics exist: the left
    side of each comparison, and for absent(x), x."""
    out = []
    for part in split_set_operators(expr):
        left = comparison_left(part)
        m = re.fullmatch(r"absent(_over_time)?\s*\((.*)\)", left, re.S)
        out.append(m.group(2).strip() if m else left)
    return out


def substitute(expr, values):
    """Fills in Grafana's template variables ($name and ${name}); fails on one it does not know."""
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown template variable ${name} in {expr}")
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def dashboard_queries(dashboard):
    """(panel title, expr) of every target of every panel, rows' nested panels included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", ""), t["expr"]))
            walk(p.get("panels", []))
    walk(dashboard.get("panels", []))
    return out


def variable_selectors(dashboard):
    """(variable name, selector, label) of each label_values(selector, label) query variable."""
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q, re.S)
        if m:
            out.append((v["name"], m.group(1).strip(), m.group(2)))
        else:
            out.append((v["name"], None, q))
    return out
