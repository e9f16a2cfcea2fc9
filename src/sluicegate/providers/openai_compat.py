"""Any OpenAI-compatible server: vLLM, TEI, llama.cpp server, Ollama, OpenAI.

Bodies go upstream as the client sent them unless the upstream model name
differs; streams are relayed as whole SSE events without re-serialising them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson

from sluicegate.config.schema import ModelConfig, OpenAIDeployment
from sluicegate.errors import UpstreamError, UpstreamTimeout
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.protocol.sse import DONE, EventBuffer, data_payloads, has_finish_reason
from sluicegate.providers.upstream_errors import from_status
from sluicegate.types import Endpoint

__all__ = ["OpenAICompatProvider"]

_PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.COMPLETIONS: "/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
}


class OpenAICompatProvider:
    def __init__(self, model: ModelConfig, deployment: OpenAIDeployment) -> None:
        self.deployment = deployment
        self.endpoints = frozenset(_PATHS)
        self.timeouts = deployment.timeouts
        self._urls = {endpoint: deployment.base_url + path for endpoint, path in _PATHS.items()}
        self._headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if deployment.api_key is not None:
            self._headers["authorization"] = "Bearer " + deployment.api_key.get_secret_value()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamError("The provider is not started.")
        return self._session

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.deployment.max_concurrency, keepalive_timeout=60, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.stream_idle
            ),
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def healthy(self) -> bool:
        try:
            async with self.session.get(
                self.deployment.base_url + "/models",
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=min(5.0, self.timeouts.first_byte)),
            ) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, TimeoutError, UpstreamError):
            return False

    async def send(self, call: Call) -> Reply:
        target = call.target
        assert target is not None
        if call.raw is not None and target.upstream_model == call.model:
            payload = call.raw
        else:
            payload = orjson.dumps({**call.body, "model": target.upstream_model})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        name = target.deployment_id
        try:
            async with asyncio.timeout(min(self.timeouts.first_byte, self.timeouts.total)):
                resp = await self.session.post(
                    self._urls[call.endpoint], data=payload, headers=self._headers
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Deployment '{name}' sent no response within {self.timeouts.first_byte:g}s."
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError(
                f"Cannot connect to deployment '{name}'.", code="upstream_unreachable"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"Deployment '{name}' failed before answering ({type(exc).__name__})."
            ) from exc

        if resp.status != 200:
            try:
                body = await resp.read()
            except aiohttp.ClientError:
                body = b""
            finally:
                resp.release()
            raise from_status(name, resp.status, body, resp.headers.get("retry-after"))

        if call.stream and resp.content_type == "text/event-stream":
            reply = Reply(served_model=target.upstream_model)
            reply.stream = self._relay(resp, reply, name, deadline)
            return reply
        try:
            async with asyncio.timeout_at(deadline):
                body = await resp.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Deployment '{name}' did not finish within {self.timeouts.total:g}s."
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Deployment '{name}' broke off its answer.") from exc
        finally:
            resp.release()
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"Deployment '{name}' answered with invalid JSON.") from exc
        if not isinstance(decoded, dict):
            raise UpstreamError(f"Deployment '{name}' answered with a non-object JSON body.")
        if call.stream:
            # The upstream ignored stream=true; the client still gets a well-formed stream.
            reply = Reply(
                served_model=target.upstream_model, usage=Usage.from_openai(decoded.get("usage"))
            )
            reply.stream = _single(decoded)
            return reply
        return Reply(
            body=body,
            usage=Usage.from_openai(decoded.get("usage")),
            served_model=decoded.get("model") or target.upstream_model,
        )

    async def _relay(
        self, resp: aiohttp.ClientResponse, reply: Reply, name: str, deadline: float
    ) -> AsyncIterator[bytes]:
        buffer = EventBuffer()
        finished = done = False
        loop = asyncio.get_running_loop()
        try:
            async for chunk in resp.content.iter_any():
                events = buffer.feed(chunk)
                if not events:
                    continue
                if b'"usage"' in events:
                    _take_usage(events, reply)
                if not finished:
                    finished = has_finish_reason(events)
                if b"[DONE]" in events:
                    done = True
                yield events
                if loop.time() > deadline:
                    raise UpstreamTimeout(
                        f"Deployment '{name}' did not finish within {self.timeouts.total:g}s."
                    )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Deployment '{name}' stalled: no data for {self.timeouts.stream_idle:g}s."
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"Deployment '{name}' broke off the stream.") from exc
        finally:
            resp.release()
        if done:
            return
        if not finished:
            raise UpstreamError(f"Deployment '{name}' ended the stream before it was complete.")
        # The answer is whole but the upstream forgot [DONE]: finish it for the client.
        yield DONE


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


async def _single(decoded: dict[str, object]) -> AsyncIterator[bytes]:
    """A non-streamed chat answer, re-told as one chunk so a streaming client can read it."""
    choices = []
    for choice in decoded.get("choices") or []:  # type: ignore[attr-defined]
        if isinstance(choice, dict):
            message = choice.get("message") or {}
            choices.append(
                {
                    "index": choice.get("index", 0),
                    "delta": message,
                    "finish_reason": choice.get("finish_reason"),
                }
            )
    chunk = {**decoded, "object": "chat.completion.chunk", "choices": choices}
    yield b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE
