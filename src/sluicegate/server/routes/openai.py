"""The OpenAI-compatible routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sluicegate.protocol.openai import validate_chat, validate_completion, validate_embeddings
from sluicegate.server.body import read_json
from sluicegate.server.gateway import gateway
from sluicegate.server.routes.calls import new_call, run_and_render
from sluicegate.types import Endpoint

__all__ = ["chat_completions", "completions", "embeddings", "models"]


async def chat_completions(request: Request) -> Response:
    raw, body = await read_json(request, gateway(request).max_body_bytes)
    model, stream = validate_chat(body)
    return await run_and_render(request, new_call(request, Endpoint.CHAT, body, raw, model, stream))


async def completions(request: Request) -> Response:
    raw, body = await read_json(request, gateway(request).max_body_bytes)
    model, stream = validate_completion(body)
    call = new_call(request, Endpoint.COMPLETIONS, body, raw, model, stream)
    return await run_and_render(request, call)


async def embeddings(request: Request) -> Response:
    raw, body = await read_json(request, gateway(request).max_body_bytes)
    model = validate_embeddings(body)
    return await run_and_render(request, new_call(request, Endpoint.EMBEDDINGS, body, raw, model))


async def models(request: Request) -> Response:
    return await run_and_render(request, new_call(request, Endpoint.MODELS, {}, None, None))
