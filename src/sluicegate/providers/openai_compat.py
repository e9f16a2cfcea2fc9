"""Any OpenAI-compatible server: vLLM, TEI, llama.cpp server, Ollama, OpenAI.

Bodies go upstream as the client sent them unless the upstream model name
differs; streams are relayed as whole SSE events without re-serialising them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson

from sluicegate.config.schema import ModelConfig, OpenAIDeployment
from sluicegate.errors import UpstreamError
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.protocol.sse import DONE, count_finish_reasons, data_payloads
from sluicegate.providers.transport import Response
from sluicegate.providers.upstream import Upstream, UpstreamProvider, is_event_stream
from sluicegate.types import Endpoint

__all__ = ["OpenAICompatProvider"]

log = logging.getLogger("sluicegate.providers")

_PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.COMPLETIONS: "/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
}


class OpenAICompatProvider(UpstreamProvider):
    model_list = "/models"

    def __init__(self, model: ModelConfig, deployment: OpenAIDeployment) -> None:
        self.endpoints = frozenset(_PATHS)
        headers = []
        if deployment.api_key is not None:
            headers.append(("Authorization", "Bearer " + deployment.api_key.get_secret_value()))
        self.upstream = Upstream(
            deployment.base_url,
            headers=headers,
            timeouts=deployment.timeouts,
            max_connections=deployment.max_concurrency,
        )

    async def send(self, call: Call) -> Reply:
        target = call.target
        assert target is not None
        if call.raw is not None and target.upstream_model == call.model:
            payload = call.raw
        else:
            payload = orjson.dumps({**call.body, "model": target.upstream_model})
        name = target.deployment_id
        deadline = self.upstream.deadline()
        resp = await self.upstream.post(_PATHS[call.endpoint], payload, name, call.upstream_headers)
        if call.stream and is_event_stream(resp):
            reply = Reply(served_model=target.upstream_model)
            reply.stream = self._relay(resp, reply, name, deadline, _expected_ends(call))
            return reply
        body, decoded = await self.upstream.read_json(resp, name, deadline)
        usage = Usage.from_openai(decoded.get("usage"))
        if call.stream:
            # The upstream ignored stream=true; the client still gets a well-formed stream.
            reply = Reply(served_model=target.upstream_model, usage=usage)
            reply.stream = _single(decoded, call.endpoint)
            return reply
        return Reply(
            body=body, usage=usage, served_model=decoded.get("model") or target.upstream_model
        )

    async def _relay(
        self,
        resp: Response,
        reply: Reply,
        name: str,
        deadline: float,
        ends: tuple[int, bool],
    ) -> AsyncIterator[bytes]:
        choices, wants_usage = ends
        finishes = 0
        finished = False
        async for block in self.upstream.events(resp, name, deadline):
            events = _well_formed(block, name)
            if not events:
                continue
            if b'"usage"' in events:
                _take_usage(events, reply)
            if not finished:
                finishes += count_finish_reasons(events)
                finished = finishes >= choices
            yield events
            if b"[DONE]" in events:
                return
            if finished and (reply.usage is not None or not wants_usage):
                # Whole, even if the upstream keeps the connection open without [DONE].
                yield DONE
                return
        if not finished:
            raise UpstreamError(f"Deployment '{name}' ended the stream before it was complete.")
        # The answer is whole but the upstream forgot [DONE]: finish it for the client.
        yield DONE


def _expected_ends(call: Call) -> tuple[int, bool]:
    """How many choices must finish, and whether a usage chunk follows, before a stream is whole."""
    n = call.body.get("n")
    options = call.body.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return (n if isinstance(n, int) and n > 1 else 1), wants_usage


def _well_formed(events: bytes, name: str) -> bytes:
    """The events whose data is JSON (or [DONE]); a malformed chunk is dropped, not relayed,
    because an SDK that cannot parse one chunk fails the whole answer."""
    if events.startswith(b"data: ") and events.find(b"\n") == len(events) - 2:
        # The common case, one event per read: check it without splitting.
        single = events[6:-2]
        if single == b"[DONE]" or _is_json(single):
            return events
    payloads = data_payloads(events)
    for payload in payloads:
        if payload != b"[DONE]" and not _is_json(payload):
            break
    else:
        return events
    log.warning("dropped a malformed chunk from %s", name)
    return b"".join(b"data: " + p + b"\n\n" for p in payloads if p == b"[DONE]" or _is_json(p))


def _is_json(payload: bytes) -> bool:
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return True


def _take_usage(events: bytes, reply: Reply) -> None:
    for payload in data_payloads(events):
        if b'"usage"' not in payload or payload == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        usage = Usage.from_openai(chunk.get("usage")) if isinstance(chunk, dict) else None
        if usage is not None:
            reply.usage = usage


async def _single(decoded: dict[str, object], endpoint: Endpoint) -> AsyncIterator[bytes]:
    """A non-streamed answer, re-told as one chunk so a streaming client can read it."""
    choices = []
    raw_choices = decoded.get("choices")
    chat = endpoint is Endpoint.CHAT
    for choice in raw_choices if isinstance(raw_choices, list) else []:
        if not isinstance(choice, dict):
            continue
        if chat:
            choices.append(
                {
                    "index": choice.get("index", 0),
                    "delta": choice.get("message") or {},
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        else:
            choices.append(choice)  # completion choices already have the chunk's shape
    kind = "chat.completion.chunk" if chat else "text_completion"
    chunk = {**decoded, "object": kind, "choices": choices}
    yield b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE
