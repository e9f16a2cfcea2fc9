"""Output checks applied to an answer: a whole body, or a stream as it passes.

A stream is checked as its text arrives (``OutputScan.feed``) and once more before
its last event; a block ends it with the in-band error event (the relay turns the
raised ``ContentPolicyViolation`` into one) and no ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from sluicegate.errors import ContentPolicyViolation
from sluicegate.protocol.sse import aclose, has_finish_reason, json_chunks
from sluicegate.safety.output_checks import OutputChecks, OutputScan
from sluicegate.safety.verdict import Decision, Verdict

__all__ = ["answer_text", "check_answer", "checked_stream"]


def answer_text(body: bytes) -> str:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    parts: list[str] = []
    for choice in answer.get("choices") or () if isinstance(answer, dict) else ():
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                parts.append(message["content"])
            if isinstance(choice.get("text"), str):
                parts.append(choice["text"])
    return "\n".join(parts)


def _blocking(verdicts: list[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.decision is not Decision.ALLOW), None)


def check_answer(
    checks: OutputChecks, body: bytes, system: list[str], inputs: list[str]
) -> Verdict | None:
    """The first verdict that does not allow this whole answer, if any."""
    return _blocking(checks.check(answer_text(body), system, inputs))


def _deltas(events: bytes) -> str:
    parts: list[str] = []
    for chunk in json_chunks(events):
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


async def checked_stream(stream: AsyncIterator[bytes], scan: OutputScan) -> AsyncIterator[bytes]:
    try:
        async for events in stream:
            text = _deltas(events)
            verdict = scan.feed(text) if text else None
            if verdict is None and has_finish_reason(events):
                verdict = _blocking(scan.finish())
            if verdict is not None:
                raise ContentPolicyViolation(verdict.check)
            yield events
    finally:
        await aclose(stream)
