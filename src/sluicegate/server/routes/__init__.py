"""Every HTTP route, in one table. A route parses, runs the pipeline, renders; nothing else."""

from __future__ import annotations

from starlette.routing import Route

from sluicegate.server.routes import anthropic, health, meta, openai
from sluicegate.server.routes.admin import admin_routes

__all__ = ["ROUTES"]

ROUTES: list[Route] = [
    Route("/health", health.health, methods=["GET"]),
    Route("/ready", health.ready, methods=["GET"]),
    Route("/openapi.json", meta.openapi, methods=["GET"]),
    Route("/metrics", meta.metrics, methods=["GET"]),
    Route("/v1/models", openai.models, methods=["GET"]),
    Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
    Route("/v1/completions", openai.completions, methods=["POST"]),
    Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
    Route("/v1/messages", anthropic.messages, methods=["POST"]),
    *admin_routes(),
]
