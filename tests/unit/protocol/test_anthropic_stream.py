"""Stream translation, both ways, on recorded transcripts fed as real SSE bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluicegate.errors import RateLimited, ServiceUnavailable, UpstreamError
from sluicegate.protocol.anthropic_stream import ToAnthropicStream, ToOpenAIStream
from sluicegate.protocol.sse import EventBuffer, data_payloads

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TRANSCRIPTS / name).read_text(encoding="utf-8"))
    return loaded


def openai_wire(chunks: list[Any]) -> bytes:
    return b"".join(
        b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n" for c in chunks
    )


def anthropic_wire(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n".encode() for e in events
    )


def translate(translator: ToAnthropicStream | ToOpenAIStream, wire: bytes) -> bytes:
    return b"".join(translator.feed_events(wire))


def pieces(wire: bytes, size: int) -> list[bytes]:
    """The wire cut every ``size`` bytes, as a network would, then re-joined at event edges."""
    buffer = EventBuffer()
    out = [buffer.feed(wire[i : i + size]) for i in range(0, len(wire), size)]
    assert buffer.pending == b""
    return [p for p in out if p]


def parse_anthropic(out: bytes) -> list[dict[str, Any]]:
    events = []
    for block in out.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:], "the event line names the data's type"
        events.append({"event": name_line[7:], "data": data})
    return events


def parse_openai(out: bytes) -> list[Any]:
    return [p.decode() if p == b"[DONE]" else json.loads(p) for p in data_payloads(out)]


@pytest.mark.parametrize(
    "name", ["claude_client_text_stream.json", "claude_client_tool_stream.json"]
)
@pytest.mark.parametrize("size", [1, 7, 100_000])
def test_openai_stream_to_anthropic_events(name: str, size: int) -> None:
    t = transcript(name)
    translator = ToAnthropicStream(t["anthropic_request"]["model"])
    wire = b"".join(translate(translator, p) for p in pieces(openai_wire(t["openai_stream"]), size))
    assert parse_anthropic(wire) == t["anthropic_events"]
    assert translator.done


@pytest.mark.parametrize(
    "name", ["claude_backend_text_stream.json", "claude_backend_tool_stream.json"]
)
@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_anthropic_events_to_openai_stream(name: str, size: int) -> None:
    t = transcript(name)
    translator = ToOpenAIStream("claude/0", t["upstream_model"], t["created"], t["include_usage"])
    out = b"".join(
        translate(translator, p) for p in pieces(anthropic_wire(t["anthropic_events"]), size)
    )
    assert parse_openai(out) == t["openai_stream"]
    assert translator.done
    assert translator.usage is not None
    assert translator.usage["prompt_tokens"] == t["usage"]["prompt_tokens"]
    assert translator.usage["completion_tokens"] == t["usage"]["completion_tokens"]


def test_openai_sdk_accumulates_tool_arguments_to_the_anthropic_input() -> None:
    """What a client rebuilds from the translated deltas is the tool input the backend meant."""
    t = transcript("claude_backend_tool_stream.json")
    translator = ToOpenAIStream("claude/0", "claude", 0, include_usage=False)
    chunks = parse_openai(translate(translator, anthropic_wire(t["anthropic_events"])))
    arguments = "".join(
        call["function"].get("arguments", "")
        for chunk in chunks[:-1]
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", [])
    )
    assert json.loads(arguments) == {"location": "Tokyo, Japan"}


def test_anthropic_error_event_raises_the_matching_error() -> None:
    translator = ToOpenAIStream("claude/0", "claude", 0, include_usage=True)
    start = transcript("claude_backend_text_stream.json")["anthropic_events"][:4]
    assert translate(translator, anthropic_wire(start))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(ServiceUnavailable, match="overloaded: Overloaded") as caught:
        translate(translator, anthropic_wire([{"event": "error", "data": overloaded}]))
    assert caught.value.status == 503
    assert not translator.done

    limited = {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}
    with pytest.raises(RateLimited):
        ToOpenAIStream("claude/0", "c", 0, False).feed(limited)
    with pytest.raises(UpstreamError, match="api_error"):
        ToOpenAIStream("claude/0", "c", 0, False).feed(
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}
        )


def test_anthropic_stream_ignores_event_types_it_does_not_know() -> None:
    translator = ToOpenAIStream("claude/0", "claude", 0, include_usage=False)
    assert (
        translator.feed(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "hm"},
            }
        )
        == b""
    )
    assert translator.feed({"type": "some_future_event"}) == b""


def test_openai_in_band_error_becomes_an_upstream_error() -> None:
    translator = ToAnthropicStream("fake-chat")
    first = transcript("claude_client_text_stream.json")["openai_stream"][:2]
    assert translate(translator, openai_wire(first))
    error = {"error": {"message": "Deployment 'x' broke off the stream.", "type": "upstream_error"}}
    with pytest.raises(UpstreamError, match="broke off the stream"):
        translate(translator, openai_wire([error]))
    assert not translator.done


def test_bad_json_in_a_stream_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="not JSON"):
        translate(ToAnthropicStream("m"), b"data: {oops\n\n")
    with pytest.raises(UpstreamError, match="not JSON"):
        translate(ToOpenAIStream("claude/0", "m", 0, False), b"event: ping\ndata: {oops\n\n")


def test_openai_stream_without_usage_or_finish_still_ends_well_formed() -> None:
    translator = ToAnthropicStream("fake-chat")
    events = parse_anthropic(translator.finish())
    assert [e["event"] for e in events] == ["message_start", "message_delta", "message_stop"]
    assert events[0]["data"]["message"]["model"] == "fake-chat"
    assert events[1]["data"]["delta"]["stop_reason"] == "end_turn"
    assert events[1]["data"]["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_vllm_stop_string_becomes_stop_sequence() -> None:
    translator = ToAnthropicStream("fake-chat")
    chunk = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"content": "a"}, "finish_reason": "stop", "stop_reason": "END"}
        ],
    }
    events = parse_anthropic(translator.feed(chunk) + translator.finish())
    delta = events[-2]["data"]["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_events_before_an_error_in_the_same_read_still_go_out() -> None:
    """A backend's last words and its error often arrive in one read; the words are kept."""
    events = transcript("claude_backend_text_stream.json")["anthropic_events"][:4]
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    batch = anthropic_wire([*events, {"event": "error", "data": overloaded}])
    sent: list[bytes] = []
    with pytest.raises(ServiceUnavailable):
        sent.extend(ToOpenAIStream("claude/0", "claude", 0, False).feed_events(batch))
    [out] = sent
    texts = [c["choices"][0]["delta"].get("content") for c in parse_openai(out)]
    assert texts == ["", "Hello"]

    chunks = transcript("claude_client_text_stream.json")["openai_stream"][:3]
    batch = openai_wire([*chunks, {"error": {"message": "boom", "type": "upstream_error"}}])
    sent = []
    with pytest.raises(UpstreamError, match="boom"):
        sent.extend(ToAnthropicStream("fake-chat").feed_events(batch))
    deltas = [
        e["data"]["delta"]["text"]
        for e in parse_anthropic(sent[0])
        if e["event"] == "content_block_delta"
    ]
    assert deltas == ["Hello", " there"]


def test_nothing_follows_the_end() -> None:
    t = transcript("claude_client_text_stream.json")
    translator = ToAnthropicStream("fake-chat")
    translate(translator, openai_wire(t["openai_stream"]))
    assert translate(translator, openai_wire(t["openai_stream"][1:])) == b""

    t = transcript("claude_backend_text_stream.json")
    to_openai = ToOpenAIStream("claude/0", "claude", 0, include_usage=True)
    out = translate(to_openai, anthropic_wire(t["anthropic_events"] * 2))
    assert out.count(b"[DONE]") == 1
    assert out.endswith(b"data: [DONE]\n\n")


def test_a_whole_message_in_one_chunk_keeps_its_tool_calls_apart() -> None:
    """What a backend that ignored stream=true is re-told as: calls listed without an index."""
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": '{"x":1}'}},
    ]
    chunk = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": None, "tool_calls": calls},
                "finish_reason": "tool_calls",
            }
        ],
    }
    translator = ToAnthropicStream("m")
    events = parse_anthropic(translator.feed(chunk) + translator.finish())
    starts = [e["data"]["content_block"] for e in events if e["event"] == "content_block_start"]
    assert [(b["id"], b["name"]) for b in starts] == [("call_a", "f"), ("call_b", "g")]
    deltas = [
        (e["data"]["index"], e["data"]["delta"]["partial_json"])
        for e in events
        if e["event"] == "content_block_delta"
    ]
    assert deltas == [(0, "{}"), (1, '{"x":1}')]
