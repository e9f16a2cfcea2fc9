"""What a guardrail check says about a text: allow, block, or unknown (it could not tell).

``unknown`` is what a check that errors or times out returns; the pipeline treats
it as ``block`` unless the operator configured otherwise (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Decision", "Verdict"]


class Decision(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Verdict:
    #: The check's name, e.g. "injection", "pii", "moderation:openai".
    check: str
    decision: Decision
    #: The check's own score (probability, severity...), where it has one.
    score: float | None = None
    #: Why, for logs and the audit trail; never sent to the client.
    reason: str = ""
