"""PII in answers: find what the model says that the caller did not send, and act on it.

A model can leak PII from its training data, from a retrieved document or from
another user's conversation cached upstream. What the caller sent itself (its own
email echoed back) is not a leak: a finding whose text occurs in the request is
left alone. By ``safety.pii.answers``:

- ``detect``: counted (``decisions.pii_answer``), the answer untouched;
- ``redact``: replaced by a typed marker (``<EMAIL_REDACTED>``) before it leaves;
- ``block``: a whole answer becomes ``400 content_policy_violation`` (check
  ``pii_answer``); a stream ends with the in-band error event, before the PII is sent.

Whole answers are checked at once. Streams are checked as they arrive, in batches
of at least ``batch`` characters: in ``redact`` and ``block`` modes the last
``hold`` characters (never a finding's middle) wait for the next batch, so a value
split across chunks is seen whole before any of it is sent. Detection (NER costs
milliseconds) runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import orjson

from sluicegate.errors import ContentPolicyViolation
from sluicegate.protocol.sse import choice_text, rewrite_chunks
from sluicegate.safety.pii.entities import Entity

__all__ = ["AnswerMode", "AnswerPii"]

log = logging.getLogger("sluicegate.safety")

AnswerMode = Literal["detect", "redact", "block"]
Detect = Callable[[str], list[Entity]]

CHECK = "pii_answer"
#: Longest tail held back in a stream: more than any email, card, IBAN or full name.
HOLD = 64
BATCH = 256


class AnswerPii:
    """One answer's PII check; ``request_texts`` are what the caller sent."""

    def __init__(
        self,
        detect: Detect,
        mode: AnswerMode,
        request_texts: Sequence[str],
        decisions: dict[str, str],
        *,
        fail_open: bool = False,
        hold: int = HOLD,
        batch: int = BATCH,
    ) -> None:
        self.detect = detect
        self.fail_open = fail_open
        self.mode = mode
        self.known = "\n".join(request_texts).casefold()
        self.decisions = decisions
        self.found: Counter[str] = Counter()
        self.hold = hold
        self.batch = batch

    def leaks(self, text: str) -> list[Entity]:
        """Findings in ``text`` the caller did not send itself. A detector that fails
        blocks (fail closed) unless ``fail_open``."""
        try:
            found = self.detect(text)
        except Exception as exc:
            log.error("PII detection in an answer failed", exc_info=exc)
            self.decisions[CHECK] = "unknown"
            if self.fail_open:
                return []
            raise ContentPolicyViolation(CHECK) from None
        return [e for e in found if e.text.casefold() not in self.known]

    def _note(self, leaks: Sequence[Entity]) -> None:
        if not leaks:
            return
        self.found.update(e.type for e in leaks)
        summary = ",".join(f"{kind}={n}" for kind, n in sorted(self.found.items()))
        self.decisions[CHECK] = f"{self.mode}:{summary}"
        if self.mode == "block":
            raise ContentPolicyViolation(CHECK)

    # --- whole answers ---------------------------------------------------------------

    async def check_body(self, body: bytes) -> bytes:
        """The answer as it may leave; raises ``ContentPolicyViolation`` in block mode."""
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        holders = list(_text_holders(answer))
        if not holders:
            return body
        texts = [holder[field] for holder, field in holders]
        results = await asyncio.to_thread(lambda: [self.leaks(t) for t in texts])
        changed = False
        for (holder, field), text, leaks in zip(holders, texts, results, strict=True):
            self._note(leaks)
            if leaks and self.mode == "redact":
                holder[field] = _redacted(text, leaks)
                changed = True
        return orjson.dumps(answer) if changed else body

    # --- streams ---------------------------------------------------------------------

    def check_stream(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``stream`` checked as it passes; text held back where the mode needs it."""
        pending: dict[int, _Pending] = {}  # by choice index

        async def rewrite(chunk: dict[str, Any]) -> None:
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict):
                    await self._choice(choice, pending)

        return rewrite_chunks(stream, rewrite)

    async def _choice(self, choice: dict[str, Any], pending: dict[int, _Pending]) -> None:
        holder, field, text = choice_text(choice)
        final = choice.get("finish_reason") is not None
        if text is None and not final:
            return
        state = pending.setdefault(choice.get("index", 0), _Pending())
        state.text += text or ""
        # detect: the text goes on at once, only the check waits for whole batches.
        holding = self.mode != "detect"
        if not final and len(state.text) < self.batch + self.hold:
            if holding and text is not None and holder is not None:
                holder[field] = ""  # held until checked
            return
        buffered = state.text
        leaks = await asyncio.to_thread(self.leaks, buffered) if buffered.strip() else []
        # The tail past the cut may hold the start of a finding: it is checked again with
        # the next batch, and each finding counts once, in the batch that holds it whole.
        cut = len(buffered) if final else _cut(buffered, leaks, self.hold)
        sent = [e for e in leaks if e.end <= cut]
        self._note(sent)
        state.text = buffered[cut:]
        if not holding:
            return
        emitted = buffered[:cut]
        if sent and self.mode == "redact":
            emitted = _redacted(emitted, sent)
        if holder is not None:
            holder[field] = emitted


class _Pending:
    """One choice's text not yet checked (and, but in detect mode, not yet sent)."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text = ""


def _cut(text: str, leaks: Sequence[Entity], hold: int) -> int:
    """Where to stop sending: ``hold`` characters short of the end, at a space, and
    never inside a finding (whose end may still be arriving)."""
    cut = max(0, len(text) - hold)
    space = text.rfind(" ", 0, cut + 1)
    if space > 0:
        cut = space
    for entity in leaks:
        if entity.start < cut < entity.end:
            cut = entity.start  # findings never overlap: no other one spans this point
    return cut


def _redacted(text: str, leaks: Sequence[Entity]) -> str:
    parts: list[str] = []
    at = 0
    for entity in sorted(leaks, key=lambda e: e.start):
        parts.append(text[at : entity.start])
        parts.append(f"<{entity.type}_REDACTED>")
        at = entity.end
    parts.append(text[at:])
    return "".join(parts)


def _text_holders(answer: Any) -> list[tuple[dict[str, Any], str]]:
    """(object, key) of every answer text in a chat or completions body."""
    holders: list[tuple[dict[str, Any], str]] = []
    for choice in answer.get("choices") or () if isinstance(answer, dict) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            holders.append((message, "content"))
        if isinstance(choice.get("text"), str):
            holders.append((choice, "text"))
    return holders
