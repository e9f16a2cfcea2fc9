"""protocol/sse: cutting a byte stream at event boundaries, and reading what the events say."""

from __future__ import annotations

import orjson
import pytest

from sluicegate.protocol.sse import (
    DONE,
    EventBuffer,
    data_payloads,
    error_event,
    event,
    has_finish_reason,
)

ONE = b'data: {"a":1}\n\n'
TWO = b'data: {"b":2}\n\n'


def test_event_and_error_event_framing() -> None:
    assert event({"a": 1}) == ONE
    body = {"error": {"message": "m", "type": "t", "param": None, "code": "c"}}
    framed = error_event(body)
    assert framed.startswith(b"data: ") and framed.endswith(b"\n\n")
    assert orjson.loads(framed[6:]) == body
    assert DONE == b"data: [DONE]\n\n"


def test_whole_events_pass_at_once() -> None:
    buffer = EventBuffer()
    assert buffer.feed(ONE + TWO) == ONE + TWO
    assert buffer.pending == b""


def test_event_split_across_chunks() -> None:
    buffer = EventBuffer()
    assert buffer.feed(b'data: {"a"') == b""
    assert buffer.pending == b'data: {"a"'
    assert buffer.feed(b":1}\n") == b""
    assert buffer.feed(b"\n" + TWO[:5]) == ONE
    assert buffer.pending == TWO[:5]
    assert buffer.feed(TWO[5:]) == TWO
    assert buffer.pending == b""


def test_every_split_point_gives_the_same_events() -> None:
    stream = ONE + TWO + DONE
    for cut in range(1, len(stream)):
        buffer = EventBuffer()
        out = buffer.feed(stream[:cut]) + buffer.feed(stream[cut:])
        assert out == stream, cut
        assert buffer.pending == b""


def test_byte_at_a_time() -> None:
    buffer = EventBuffer()
    out = b"".join(buffer.feed(bytes([b])) for b in ONE + TWO)
    assert out == ONE + TWO


def test_crlf_is_normalised() -> None:
    buffer = EventBuffer()
    assert buffer.feed(b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n') == ONE + TWO


@pytest.mark.parametrize("cut", range(1, len(b'data: {"a":1}\r\n\r\n')))
def test_crlf_split_anywhere(cut: int) -> None:
    raw = b'data: {"a":1}\r\n\r\n'
    buffer = EventBuffer()
    assert buffer.feed(raw[:cut]) + buffer.feed(raw[cut:]) == ONE
    assert buffer.pending == b""


def test_trailing_partial_event_stays_pending() -> None:
    buffer = EventBuffer()
    assert buffer.feed(ONE + b"data: {") == ONE
    assert buffer.pending == b"data: {"


def test_data_payloads() -> None:
    events = (
        b": keep-alive comment\n\n"
        b'data: {"a":1}\n\n'
        b'event: message\nid: 7\ndata:{"b":2}\n\n'
        b"data: line one\ndata: line two\n\n" + DONE
    )
    assert data_payloads(events) == [b'{"a":1}', b'{"b":2}', b"line one\nline two", b"[DONE]"]


def test_data_payloads_of_nothing() -> None:
    assert data_payloads(b"") == []
    assert data_payloads(b": only a comment\n\n") == []


@pytest.mark.parametrize(
    ("events", "finished"),
    [
        (b'data: {"choices":[{"finish_reason":"stop"}]}\n\n', True),
        (b'data: {"choices":[{"finish_reason" : "length"}]}\n\n', True),
        (b'data: {"choices":[{"finish_reason":\t"tool_calls"}]}\n\n', True),
        (b'data: {"choices":[{"finish_reason":null}]}\n\n', False),
        (b'data: {"choices":[{"finish_reason": null}]}\n\n', False),
        (b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', False),
        (DONE, False),
    ],
)
def test_has_finish_reason(events: bytes, finished: bool) -> None:
    assert has_finish_reason(events) is finished
