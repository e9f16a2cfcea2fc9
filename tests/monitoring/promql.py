"""The metric names a PromQL expression reads, for checking shipped rules and dashboards.

A tokenizer, not a parser: enough for the expressions in deploy/monitoring. A name
is an identifier outside ``{}`` (label matchers) and ``[]`` (ranges, subqueries),
not followed by ``(``, ``by`` or ``without`` (functions, aggregations), not a
keyword, and not in the label list of ``by``, ``without``, ``on``, ``ignoring``,
``group_left`` or ``group_right``.
Strings, numbers, durations and Grafana variables (``$model``, ``${x}``,
``$__rate_interval``) are skipped. Anything it cannot read raises ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["metric_names", "variables"]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$\w+)
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*)
    | (?P<identifier>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<operator>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],@])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
_CLOSING = {")": "(", "}": "{", "]": "["}
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


def _tokens(expr: str) -> Iterator[tuple[str, str]]:
    at = 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            raise ValueError(f"cannot read {expr[at : at + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            yield kind, match.group()
        at = match.end()


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects."""
    tokens = list(_tokens(expr))
    names: set[str] = set()
    open_: list[str] = []  # the brackets around the current token
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if text in _CLOSING.values():
            open_.append(text)
        elif text in _CLOSING:
            if not open_ or open_.pop() != _CLOSING[text]:
                raise ValueError(f"unbalanced {text!r} in {expr!r}")
        elif kind == "identifier" and "{" not in open_ and "[" not in open_:
            if text in _LABEL_LISTS and following == "(":
                index = _after_parenthesis(tokens, index + 1, expr)
                continue
            # `(` follows a function or aggregation; `by`/`without` an aggregation too.
            if text not in _KEYWORDS and following not in ("(", "by", "without"):
                names.add(text)
        index += 1
    if open_:
        raise ValueError(f"unclosed {open_[-1]!r} in {expr!r}")
    return names


def _after_parenthesis(tokens: list[tuple[str, str]], start: int, expr: str) -> int:
    """The index after the ``)`` that closes the ``(`` at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        text = tokens[index][1]
        depth += {"(": 1, ")": -1}.get(text, 0)
        if depth == 0:
            return index + 1
    raise ValueError(f"unclosed label list in {expr!r}")


def variables(expr: str) -> set[str]:
    """The Grafana variables ``expr`` uses (``$model``, ``${model}``), built-ins left out."""
    return {
        name
        for kind, text in _tokens(expr)
        if kind in ("variable", "string")
        for name in re.findall(r"\$\{?(\w+)", text)
        if not name.startswith("__")
    }
