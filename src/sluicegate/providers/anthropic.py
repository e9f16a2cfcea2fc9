"""The Anthropic Messages API as a chat backend for OpenAI-shaped calls.

Requests, answers and streams are translated by ``protocol.anthropic*``; this
module only moves bytes: pooled keep-alive connections, the connect, first-byte,
stream-idle and total timeouts, and upstream failures mapped to our errors.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson

from sluicegate.config.schema import AnthropicDeployment, ModelConfig
from sluicegate.errors import InvalidRequest, UpstreamError
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.protocol.anthropic import openai_usage, to_openai_completion
from sluicegate.protocol.anthropic_stream import ToOpenAIStream
from sluicegate.protocol.anthropic_upstream import to_anthropic_request
from sluicegate.providers.transport import Response
from sluicegate.providers.upstream import Upstream, UpstreamProvider, is_event_stream
from sluicegate.types import Endpoint

__all__ = ["AnthropicProvider"]


class AnthropicProvider(UpstreamProvider):
    model_list = "/v1/models"

    def __init__(self, model: ModelConfig, deployment: AnthropicDeployment) -> None:
        self.deployment = deployment
        self.endpoints = frozenset({Endpoint.CHAT})
        headers = [("anthropic-version", deployment.anthropic_version)]
        if deployment.api_key is not None:
            headers.append(("x-api-key", deployment.api_key.get_secret_value()))
        self.upstream = Upstream(
            deployment.base_url,
            headers=headers,
            timeouts=deployment.timeouts,
            max_connections=deployment.max_concurrency,
        )

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
        name = target.deployment_id
        deadline = self.upstream.deadline()
        resp = await self.upstream.post(
            "/v1/messages", orjson.dumps(request), name, call.upstream_headers
        )

        if call.stream:
            if not is_event_stream(resp):
                resp.close()
                raise UpstreamError(
                    f"Deployment '{name}' answered a stream request with "
                    f"{resp.header(b'content-type') or 'no content type'}."
                )
            options = call.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            reply = Reply(served_model=target.upstream_model)
            translator = ToOpenAIStream(
                name, target.upstream_model, int(time.time()), include_usage
            )
            reply.stream = self._relay(resp, reply, translator, deadline)
            return reply
        _, message = await self.upstream.read_json(resp, name, deadline)
        if message.get("type") != "message":
            raise UpstreamError(f"Deployment '{name}' answered with something not a message.")
        completion = to_openai_completion(message, target.upstream_model, int(time.time()))
        return Reply(
            body=orjson.dumps(completion),
            usage=Usage.from_openai(openai_usage(message.get("usage"))),
            served_model=completion["model"],
        )

    async def _relay(
        self, resp: Response, reply: Reply, translator: ToOpenAIStream, deadline: float
    ) -> AsyncIterator[bytes]:
        name = translator.deployment
        async for events in self.upstream.events(resp, name, deadline):
            for out in translator.feed_events(events):
                yield out
            if translator.usage is not None:
                reply.usage = Usage.from_openai(translator.usage)
            if translator.done:
                return
        raise UpstreamError(f"Deployment '{name}' ended the stream before message_stop.")
