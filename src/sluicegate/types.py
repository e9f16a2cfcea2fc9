"""The vocabulary every layer shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

__all__ = ["Endpoint", "JSONObject", "SSEStream"]

#: A decoded JSON object, as it came off the wire.
JSONObject = dict[str, Any]

#: Server-sent event bytes, each item one or more complete events (``data: ...\n\n``).
SSEStream = AsyncIterator[bytes]


class Endpoint(StrEnum):
    """What a call asks for; decides which provider method serves it."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MODELS = "models"
    ADMIN = "admin"
    OPENAPI = "openapi"
    METRICS = "metrics"
