"""The OpenAI-compatible routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sluicegate.pipeline.call import Parsed
from sluicegate.protocol.openai import validate_chat, validate_completion, validate_embeddings
from sluicegate.server.routes.calls import new_call, run_and_render
from sluicegate.types import Endpoint, JSONObject

__all__ = ["chat_completions", "completions", "embeddings", "models"]


def _chat(body: JSONObject) -> Parsed:
    return Parsed(*validate_chat(body))


def _completion(body: JSONObject) -> Parsed:
    return Parsed(*validate_completion(body))


def _embeddings(body: JSONObject) -> Parsed:
    return Parsed(validate_embeddings(body))


async def chat_completions(request: Request) -> Response:
    return await run_and_render(request, new_call(request, Endpoint.CHAT, _chat))


async def completions(request: Request) -> Response:
    return await run_and_render(request, new_call(request, Endpoint.COMPLETIONS, _completion))


async def embeddings(request: Request) -> Response:
    return await run_and_render(request, new_call(request, Endpoint.EMBEDDINGS, _embeddings))


async def models(request: Request) -> Response:
    return await run_and_render(request, new_call(request, Endpoint.MODELS))
