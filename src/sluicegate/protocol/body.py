"""Decode a request body: one JSON object, or a 400 that says what is wrong."""

from __future__ import annotations

import orjson

from sluicegate.errors import InvalidRequest
from sluicegate.types import JSONObject

__all__ = ["decode_object"]


def decode_object(raw: bytes) -> JSONObject:
    if not raw.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body
