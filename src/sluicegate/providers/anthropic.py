"""The Anthropic Messages API as a chat backend for OpenAI-shaped calls.

Requests, answers and streams are translated by ``protocol.anthropic*``; this
module only moves bytes: pooled keep-alive connections, the connect, first-byte,
stream-idle and total timeouts, and upstream failures mapped to our errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from sluicegate.config.schema import AnthropicDeployment, ModelConfig
from sluicegate.errors import InvalidRequest, ServiceUnavailable, UpstreamError, UpstreamTimeout
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.protocol.anthropic import error_message, openai_usage, to_openai_completion
from sluicegate.protocol.anthropic_stream import ToOpenAIStream
from sluicegate.protocol.anthropic_upstream import to_anthropic_request
from sluicegate.protocol.sse import EventBuffer
from sluicegate.providers.upstream_errors import from_status
from sluicegate.types import Endpoint

__all__ = ["AnthropicProvider"]


class AnthropicProvider:
    def __init__(self, model: ModelConfig, deployment: AnthropicDeployment) -> None:
        self.deployment = deployment
        self.endpoints = frozenset({Endpoint.CHAT})
        self.timeouts = deployment.timeouts
        self._url = deployment.base_url + "/v1/messages"
        self._headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "anthropic-version": deployment.anthropic_version,
        }
        if deployment.api_key is not None:
            self._headers["x-api-key"] = deployment.api_key.get_secret_value()
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
                self.deployment.base_url + "/v1/models",
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=min(5.0, self.timeouts.first_byte)),
            ) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, TimeoutError, UpstreamError):
            return False

    async def send(self, call: Call) -> Reply:
        target = call.target
        assert target is not None
        if call.endpoint is not Endpoint.CHAT:
            raise InvalidRequest(
                f"The model '{call.model}' is served by Anthropic, which has no "
                f"/{call.endpoint.value} endpoint; use /chat/completions.",
                param="model",
                code="model_not_supported",
            )
        request = to_anthropic_request(
            call.body, target.upstream_model, self.deployment.default_max_tokens
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.total
        name = target.deployment_id
        try:
            async with asyncio.timeout(min(self.timeouts.first_byte, self.timeouts.total)):
                resp = await self.session.post(
                    self._url, data=orjson.dumps(request), headers=self._headers
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
            if resp.status == 529:
                said = error_message(body)
                raise ServiceUnavailable(
                    f"Deployment '{name}' is overloaded (HTTP 529)" + (f": {said}" if said else ""),
                    code="upstream_overloaded",
                )
            raise from_status(name, resp.status, body, resp.headers.get("retry-after"))

        if call.stream:
            if resp.content_type != "text/event-stream":
                resp.release()
                raise UpstreamError(
                    f"Deployment '{name}' answered a stream request with {resp.content_type}."
                )
            options = call.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            reply = Reply(served_model=target.upstream_model)
            translator = ToOpenAIStream(
                name, target.upstream_model, int(time.time()), include_usage
            )
            reply.stream = self._relay(resp, reply, translator, deadline)
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
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"Deployment '{name}' answered with invalid JSON.") from exc
        if not isinstance(message, dict) or message.get("type") != "message":
            raise UpstreamError(f"Deployment '{name}' answered with something not a message.")
        completion = to_openai_completion(message, target.upstream_model, int(time.time()))
        return Reply(
            body=orjson.dumps(completion),
            usage=Usage.from_openai(openai_usage(message.get("usage"))),
            served_model=completion["model"],
        )

    async def _relay(
        self,
        resp: aiohttp.ClientResponse,
        reply: Reply,
        translator: ToOpenAIStream,
        deadline: float,
    ) -> AsyncIterator[bytes]:
        buffer = EventBuffer()
        name = translator.deployment
        loop = asyncio.get_running_loop()
        try:
            async for chunk in resp.content.iter_any():
                events = buffer.feed(chunk)
                if not events:
                    continue
                out = translator.feed_events(events)
                if translator.usage is not None:
                    reply.usage = Usage.from_openai(translator.usage)
                if out:
                    yield out
                if translator.done:
                    return
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
        raise UpstreamError(f"Deployment '{name}' ended the stream before message_stop.")
