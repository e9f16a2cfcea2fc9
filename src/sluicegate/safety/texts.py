"""The texts of a request that the checks read: message contents, prompts, inputs."""

from __future__ import annotations

from sluicegate.types import Endpoint, JSONObject

__all__ = ["request_texts", "system_texts", "user_texts"]


def _text_of(content: object) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def request_texts(endpoint: Endpoint, body: JSONObject) -> list[str]:
    """Every text a model would read, in order (token-id inputs have none)."""
    if endpoint is Endpoint.CHAT:
        texts: list[str] = []
        for message in body.get("messages") or ():
            if isinstance(message, dict):
                texts += _text_of(message.get("content"))
        return texts
    source = body.get("prompt") if endpoint is Endpoint.COMPLETIONS else body.get("input")
    if isinstance(source, str):
        return [source]
    if isinstance(source, list):
        return [item for item in source if isinstance(item, str)]
    return []


def user_texts(endpoint: Endpoint, body: JSONObject) -> list[str]:
    """What the caller's users (and tools) wrote: where injections arrive. System and
    assistant messages are the application's own, and are left out."""
    if endpoint is not Endpoint.CHAT:
        return request_texts(endpoint, body)
    texts: list[str] = []
    for message in body.get("messages") or ():
        if isinstance(message, dict) and message.get("role") in ("user", "tool", "function"):
            texts += _text_of(message.get("content"))
    return texts


def system_texts(endpoint: Endpoint, body: JSONObject) -> list[str]:
    """The application's own instructions (system and developer messages)."""
    if endpoint is not Endpoint.CHAT:
        return []
    texts: list[str] = []
    for message in body.get("messages") or ():
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            texts += _text_of(message.get("content"))
    return texts
