"""safety/pii/answer: PII the caller did not send, found in whole answers and in streams
however they are chunked, and never sent before it is checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest

from sluicegate.errors import ContentPolicyViolation
from sluicegate.protocol.sse import event
from sluicegate.safety.pii import PiiDetector
from sluicegate.safety.pii.answer import AnswerMode, AnswerPii

STRUCTURED = ["EMAIL_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER", "US_SSN", "IBAN_CODE"]
OWN = "ann.lee@example.com"
ANSWER = (
    f"Sure. I will copy {OWN} on it. For billing, write to jane.roe@example.org or call "
    "+1 212 555 0100; the card on file is 4111 1111 1111 1111. "
    + "Nothing else to add here, the rest is ordinary prose about invoices. " * 6
    + "Bye, and do not share the SSN 536-90-4399."
)
REDACTED = (
    ANSWER.replace("jane.roe@example.org", "<EMAIL_ADDRESS_REDACTED>")
    .replace("+1 212 555 0100", "<PHONE_NUMBER_REDACTED>")
    .replace("4111 1111 1111 1111", "<CREDIT_CARD_REDACTED>")
    .replace("536-90-4399", "<US_SSN_REDACTED>")
)
LEAKS = ["jane.roe@example.org", "212 555 0100", "4111 1111 1111 1111", "536-90-4399"]


@pytest.fixture(scope="module")
def detector() -> Iterator[PiiDetector]:
    yield PiiDetector(types=STRUCTURED)


def check(detector: PiiDetector, mode: AnswerMode, decisions: dict[str, str]) -> AnswerPii:
    request = [f"Please answer by mail; I am {OWN}."]
    return AnswerPii(detector.detect, mode, request, decisions, hold=64, batch=48)


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    return event({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


async def _upstream(pieces: list[str]) -> AsyncIterator[bytes]:
    yield _chunk("")
    for piece in pieces:
        yield _chunk(piece)
    yield _chunk(None, "stop")
    yield b"data: [DONE]\n\n"


def _run(check_: AnswerPii, pieces: list[str]) -> tuple[str, bool, Exception | None]:
    """The text the client got, whether [DONE] came, and the error that ended it."""

    async def main() -> tuple[str, bool, Exception | None]:
        text, done, error = "", False, None
        try:
            async for events in check_.check_stream(_upstream(pieces)):
                for line in events.split(b"\n\n"):
                    if line == b"data: [DONE]":
                        done = True
                    elif line.startswith(b"data: "):
                        choice = orjson.loads(line[6:])["choices"][0]
                        text += choice["delta"].get("content") or ""
        except ContentPolicyViolation as exc:
            error = exc
        return text, done, error

    return asyncio.run(main())


@pytest.mark.parametrize("size", [1, 3, 7, 50, 1000])
def test_a_redacted_stream_reads_the_same_however_it_is_chunked(
    detector: PiiDetector, size: int
) -> None:
    decisions: dict[str, str] = {}
    pieces = [ANSWER[i : i + size] for i in range(0, len(ANSWER), size)]
    text, done, error = _run(check(detector, "redact", decisions), pieces)
    assert (text, done, error) == (REDACTED, True, None)
    assert decisions["pii_answer"] == (
        "redact:CREDIT_CARD=1,EMAIL_ADDRESS=1,PHONE_NUMBER=1,US_SSN=1"
    )


def test_a_blocked_stream_ends_before_the_pii_is_sent(detector: PiiDetector) -> None:
    pieces = [ANSWER[i : i + 5] for i in range(0, len(ANSWER), 5)]
    text, done, error = _run(check(detector, "block", {}), pieces)
    assert isinstance(error, ContentPolicyViolation) and error.check == "pii_answer"
    assert not done
    assert all(leak not in text for leak in LEAKS)
    assert text and ANSWER.startswith(text)  # what came before the first leak was sent


def test_detect_counts_each_finding_once_and_changes_nothing(detector: PiiDetector) -> None:
    decisions: dict[str, str] = {}
    pieces = [ANSWER[i : i + 9] for i in range(0, len(ANSWER), 9)]
    text, done, _ = _run(check(detector, "detect", decisions), pieces)
    assert (text, done) == (ANSWER, True)
    assert decisions["pii_answer"] == (
        "detect:CREDIT_CARD=1,EMAIL_ADDRESS=1,PHONE_NUMBER=1,US_SSN=1"
    )


def test_whole_answers_and_the_callers_own_data(detector: PiiDetector) -> None:
    body = orjson.dumps({"choices": [{"index": 0, "message": {"content": ANSWER}}]})
    redacted = asyncio.run(check(detector, "redact", {}).check_body(body))
    assert orjson.loads(redacted)["choices"][0]["message"]["content"] == REDACTED
    assert OWN in REDACTED  # the caller's own address, echoed, is no leak
    clean = orjson.dumps({"choices": [{"index": 0, "message": {"content": f"Hi {OWN}"}}]})
    assert asyncio.run(check(detector, "block", {}).check_body(clean)) == clean
    with pytest.raises(ContentPolicyViolation):
        asyncio.run(check(detector, "block", {}).check_body(body))


def test_a_detector_that_fails_blocks_unless_told_otherwise() -> None:
    def broken(text: str) -> list[object]:
        raise RuntimeError("model unavailable")

    decisions: dict[str, str] = {}
    closed = AnswerPii(broken, "redact", [], decisions)  # type: ignore[arg-type]
    body = orjson.dumps({"choices": [{"message": {"content": "hello"}}]})
    with pytest.raises(ContentPolicyViolation):
        asyncio.run(closed.check_body(body))
    assert decisions["pii_answer"] == "unknown"
    opened = AnswerPii(broken, "redact", [], {}, fail_open=True)  # type: ignore[arg-type]
    assert asyncio.run(opened.check_body(body)) == body
