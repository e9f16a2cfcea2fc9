"""Streams, both ways: OpenAI chat chunks ⇄ Anthropic Messages SSE events.

Each translator is a small state machine fed one decoded chunk (or event) at a
time; it returns the SSE bytes to send on, possibly none. Neither does I/O.

The shapes differ in where they keep things. Anthropic opens and closes a
content block per text run or tool call and names the usage in ``message_start``
(input) and ``message_delta`` (output); OpenAI streams flat deltas, numbers tool
calls by their own index, and (with ``include_usage``) sends all usage in one
last chunk after ``finish_reason``. So the Anthropic side holds its
``message_delta`` back until the OpenAI stream says ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from sluicegate.errors import SluicegateError, UpstreamError
from sluicegate.protocol.anthropic import (
    anthropic_usage,
    finish_reason,
    message_id,
    obj,
    openai_usage,
    stop_reason,
    upstream_error,
)
from sluicegate.protocol.sse import DONE, data_payloads
from sluicegate.protocol.sse import event as data_event
from sluicegate.types import JSONObject

__all__ = ["ToAnthropicStream", "ToOpenAIStream", "anthropic_event"]


def _decode(payload: bytes, who: str) -> JSONObject:
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{who} sent a stream event that is not JSON.") from exc
    if not isinstance(decoded, dict):
        raise UpstreamError(f"{who} sent a stream event that is not a JSON object.")
    return decoded


def _translated(events: bytes, feed: Callable[[bytes], bytes]) -> Iterator[bytes]:
    """The translation of a batch of events, as one item so it goes out in one write.

    When an event in the batch fails (an in-band error), what the events before it
    said is yielded first, then the error is raised: a client sees every byte the
    backend managed to send before it broke.
    """
    out: list[bytes] = []
    try:
        for payload in data_payloads(events):
            out.append(feed(payload))
    except SluicegateError:
        if any(out):
            yield b"".join(out)
        raise
    if any(out):
        yield b"".join(out)


def anthropic_event(payload: JSONObject) -> bytes:
    """One Anthropic SSE event: its type named on the ``event:`` line, as the SDKs expect."""
    name: str = payload["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class ToAnthropicStream:
    """OpenAI chat chunks in, Anthropic Messages events out (for Claude clients)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.done = False
        self._open: int | None = None  # index of the open content block
        self._open_text = False
        self._blocks = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index → block index
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Any = None

    def feed_events(self, events: bytes) -> Iterator[bytes]:
        """Translate whole OpenAI SSE events, ``[DONE]`` included; see ``_translated``."""
        return _translated(events, self._feed_payload)

    def _feed_payload(self, payload: bytes) -> bytes:
        if payload == b"[DONE]":
            return self.finish()
        return self.feed(_decode(payload, "The backend"))

    def feed(self, chunk: JSONObject) -> bytes:
        """Translate one decoded ``chat.completion.chunk``; nothing once finished."""
        if self.done:
            return b""
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(f"The backend failed mid-stream: {message}")
        out: list[bytes] = []
        if not self.started:
            out.append(self._start(chunk))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, dict):
            delta = obj(choice.get("delta"))
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.append(self._text(text))
            calls = delta.get("tool_calls")
            for listed, call in enumerate(calls if isinstance(calls, list) else []):
                out.append(self._tool(obj(call), listed))
            finish = choice.get("finish_reason")
            if finish:
                out.append(self._close())
                self._stop_reason = stop_reason(finish)
                matched = choice.get("stop_reason")
                if finish == "stop" and isinstance(matched, str):
                    self._stop_reason, self._stop_sequence = "stop_sequence", matched
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of the OpenAI stream (``[DONE]``): stop reason, usage, ``message_stop``."""
        if self.done:
            return b""
        out = [] if self.started else [self._start({})]
        out.append(self._close())
        usage = anthropic_usage(self._usage)
        out.append(
            anthropic_event(
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": self._stop_reason or "end_turn",
                        "stop_sequence": self._stop_sequence,
                    },
                    "usage": usage,
                }
            )
        )
        out.append(anthropic_event({"type": "message_stop"}))
        self.done = True
        return b"".join(out)

    def _start(self, chunk: JSONObject) -> bytes:
        self.started = True
        message: JSONObject = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # OpenAI names usage only at the end; message_delta carries the real counts.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return anthropic_event({"type": "message_start", "message": message})

    def _begin(self, block: JSONObject, is_text: bool) -> bytes:
        closed = self._close()
        self._open = self._blocks
        self._open_text = is_text
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._open, "content_block": block}
        return closed + anthropic_event(start)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return anthropic_event({"type": "content_block_stop", "index": index})

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open is None or not self._open_text:
            out = self._begin({"type": "text", "text": ""}, is_text=True)
        delta = {"type": "text_delta", "text": text}
        event = {"type": "content_block_delta", "index": self._open, "delta": delta}
        return out + anthropic_event(event)

    def _tool(self, call: JSONObject, listed: int) -> bytes:
        # A whole message re-told as one chunk lists its calls without an index.
        position = call.get("index", listed)
        if not isinstance(position, int):
            raise UpstreamError("The backend sent a tool call delta without an index.")
        fn = obj(call.get("function"))
        out = b""
        if position not in self._tool_blocks:
            block: JSONObject = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{position}",
                "name": fn.get("name") or "",
                "input": {},
            }
            out = self._begin(block, is_text=False)
            assert self._open is not None
            self._tool_blocks[position] = self._open
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            index = self._tool_blocks[position]
            out += anthropic_event({"type": "content_block_delta", "index": index, "delta": delta})
        return out


class ToOpenAIStream:
    """Anthropic Messages events in, OpenAI chat chunks out (for OpenAI clients of Claude)."""

    def __init__(self, deployment: str, model: str, created: int, include_usage: bool) -> None:
        self.deployment = deployment
        self.include_usage = include_usage
        self.done = False
        #: OpenAI-shaped usage, once the stream has named it.
        self.usage: JSONObject | None = None
        self._id = "unknown"
        self._model = model
        self._created = created
        self._anthropic_usage: JSONObject = {}
        self._tools: dict[int, int] = {}  # block index → OpenAI tool call index

    def feed_events(self, events: bytes) -> Iterator[bytes]:
        """Translate whole Anthropic SSE events (each one's data names its type too)."""
        return _translated(events, self._feed_payload)

    def _feed_payload(self, payload: bytes) -> bytes:
        return self.feed(_decode(payload, f"Deployment '{self.deployment}'"))

    def feed(self, event: JSONObject) -> bytes:
        """Translate one decoded Anthropic event; an ``error`` event raises its error."""
        if self.done:
            return b""  # nothing may follow [DONE]
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event.get("index"), obj(event.get("delta")))
        if kind == "content_block_start":
            return self._block(event.get("index"), obj(event.get("content_block")))
        if kind == "message_start":
            message = obj(event.get("message"))
            self._id = message.get("id") or self._id
            self._model = message.get("model") or self._model
            self._take_usage(message.get("usage"))
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            self._take_usage(event.get("usage"))
            stop = obj(event.get("delta")).get("stop_reason")
            if stop is None:
                return b""
            return self._chunk({}, finish_reason(stop))
        if kind == "message_stop":
            self.done = True
            if self.include_usage and self.usage is not None:
                return self._usage_chunk() + DONE
            return DONE
        if kind == "error":
            raise upstream_error(self.deployment, event.get("error"))
        # ping, content_block_stop, and event types Anthropic may add later: nothing to say.
        return b""

    def _take_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            # message_delta counts are cumulative and may omit what message_start said.
            self._anthropic_usage.update({k: v for k, v in usage.items() if v is not None})
            self.usage = openai_usage(self._anthropic_usage)

    def _block(self, index: Any, block: JSONObject) -> bytes:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return self._chunk({"content": block["text"]})
        if kind != "tool_use" or not isinstance(index, int):
            return b""  # thinking and server-tool blocks have no OpenAI equivalent
        position = self._tools[index] = len(self._tools)
        given = block.get("input")
        call = {
            "index": position,
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(given).decode() if given else "",
            },
        }
        return self._chunk({"tool_calls": [call]})

    def _delta(self, index: Any, delta: JSONObject) -> bytes:
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return self._chunk({"content": text}) if text else b""
        if kind == "input_json_delta" and isinstance(index, int) and index in self._tools:
            partial = delta.get("partial_json")
            if not partial:
                return b""
            call = {"index": self._tools[index], "function": {"arguments": partial}}
            return self._chunk({"tool_calls": [call]})
        return b""  # thinking, signature and citation deltas

    def _chunk(self, delta: JSONObject, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return data_event(self._envelope([choice]))

    def _usage_chunk(self) -> bytes:
        return data_event({**self._envelope([]), "usage": self.usage})

    def _envelope(self, choices: list[JSONObject]) -> JSONObject:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
