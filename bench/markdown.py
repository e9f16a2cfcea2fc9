"""Markdown helpers shared by the results writers."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["brief", "table"]


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def brief(name: str) -> str:
    """``f (pkg/sub/mod.py) → write()`` as ``f (mod.py) → write()``."""
    return re.sub(r"\(([^()]*/)?([^()/]+)\)", r"(\2)", name)
