"""The OpenAPI 3.1 document: the admin API in full (from its request models), the rest
in outline."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from sluicegate import __version__
from sluicegate.server.routes.admin import ADMIN_OPS

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

#: The OpenAI- and Anthropic-compatible surface: their bodies are those APIs' own.
_MODEL_API = [
    ("get", "/v1/models", "Models this key may use"),
    ("post", "/v1/chat/completions", "Chat completion (OpenAI), streamed or not"),
    ("post", "/v1/completions", "Text completion (OpenAI), streamed or not"),
    ("post", "/v1/embeddings", "Embeddings (OpenAI)"),
    ("post", "/v1/messages", "Messages (Anthropic), streamed or not"),
]


def _responses(status: int) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        str(status): {"description": "OK", "content": {"application/json": {"schema": {}}}},
        "400": {"description": "Invalid request; `param` names the field", **error},
        "401": {"description": "Missing or wrong API key", **error},
        "403": {"description": "Not allowed for this key's role", **error},
        "429": {"description": "A rate limit, quota or budget; see Retry-After", **error},
    }


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for op in ADMIN_OPS:
        operation: dict[str, Any] = {
            "summary": op.summary,
            "tags": ["admin"],
            "responses": _responses(op.status),
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        parameters += [
            {"name": name, "in": "query", "description": text, "schema": {"type": "string"}}
            for name, text in (op.query or {}).items()
        ]
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(op.body, schemas)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    for method, path, summary in _MODEL_API:
        paths[path] = {
            method: {"summary": summary, "tags": ["inference"], "responses": _responses(200)}
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Sluicegate", "version": __version__},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
