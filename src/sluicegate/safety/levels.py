"""Data sensitivity levels (seed 001) and how a request gets one.

A request's level is the highest of: the level its caller declares (a header),
the default for its org, and what detectors find in its text — PII, and the
org's own patterns and terms. Confidential and restricted data may only reach
self-hosted deployments; a role's ``data_access`` caps what its keys may send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["LEVELS", "Rule", "classify_text", "higher", "rank"]

LEVELS = ("public", "internal", "confidential", "restricted")
_RANK = {level: index for index, level in enumerate(LEVELS)}


def rank(level: str) -> int:
    return _RANK[level]


def higher(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


@dataclass(frozen=True, slots=True)
class Rule:
    """Text matching ``pattern`` (a compiled regex) makes a request at least ``level``."""

    name: str
    pattern: re.Pattern[str]
    level: str

    @classmethod
    def build(
        cls, name: str, level: str, pattern: str | None = None, terms: Sequence[str] = ()
    ) -> Rule:
        parts = [pattern] if pattern else []
        # Terms match as whole words, case-insensitively: "Project Falcon", "M&A".
        parts += [rf"(?<!\w){re.escape(term)}(?!\w)" for term in terms]
        return cls(name, re.compile("|".join(parts), re.IGNORECASE), level)


def classify_text(
    texts: Iterable[str], rules: Sequence[Rule], floor: str
) -> tuple[str, str | None]:
    """The highest level any rule gives these texts (at least ``floor``), and that rule's name."""
    level, why = floor, None
    for rule in rules:
        if rank(rule.level) <= rank(level):
            continue  # cannot raise the level: skip the regex
        if any(rule.pattern.search(text) for text in texts):
            level, why = rule.level, rule.name
    return level, why
