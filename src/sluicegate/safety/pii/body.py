"""Apply detection and redaction to every text of an OpenAI request body.

Texts are ``messages[].content`` of a chat request (a string, or a list of parts of
which the ``{"type": "text", "text": ...}`` ones are read), ``prompt`` of a completion
request and ``input`` of an embeddings request (a string or a list of strings; token
arrays are left alone). Every other field is passed through untouched, and the body
given is never modified: changed containers are copied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sluicegate.safety.pii.entities import Entity
from sluicegate.safety.pii.redact import Mask, redact
from sluicegate.types import JSONObject

__all__ = ["BodyMode", "BodyResult", "protect_body"]

#: "detect" only counts; "redact" and "mask" also rewrite the texts.
BodyMode = Literal["detect", "redact", "mask"]


@dataclass
class BodyResult:
    #: The body to send upstream (the same object when nothing changed).
    body: JSONObject
    #: Entities found, by type.
    found: Counter[str] = field(default_factory=Counter)
    #: The request's mask: restores the answer when the mode is "mask".
    mask: Mask = field(default_factory=Mask)


def protect_body(
    body: JSONObject,
    detect: Callable[[str], Sequence[Entity]],
    mode: BodyMode = "redact",
) -> BodyResult:
    """Run ``detect`` (e.g. ``PiiDetector.detect``) on each text of ``body``."""
    result = BodyResult(body, mask=Mask(reversible=mode == "mask"))

    def text(value: str) -> str:
        entities = detect(value)
        if not entities:
            return value
        result.found.update(e.type for e in entities)
        if mode == "detect":
            return value
        redacted, _ = redact(value, entities, mask=result.mask)
        return redacted

    new = dict(body)
    if isinstance(body.get("messages"), list):
        new["messages"] = _list(body["messages"], lambda m: _message(m, text))
    for key in ("prompt", "input"):
        if key in body:
            new[key] = _strings(body[key], text)
    if result.found and mode != "detect":
        result.body = new
    return result


def _message(message: Any, text: Callable[[str], str]) -> Any:
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    new: Any
    if isinstance(content, str):
        new = text(content)
    elif isinstance(content, list):
        new = _list(content, lambda part: _part(part, text))
    else:
        return message
    return message if new is content else {**message, "content": new}


def _part(part: Any, text: Callable[[str], str]) -> Any:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        new = text(part["text"])
        return part if new is part["text"] else {**part, "text": new}
    return part


def _strings(value: Any, text: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, list):
        return _list(value, lambda item: text(item) if isinstance(item, str) else item)
    return value


def _list(items: list[Any], each: Callable[[Any], Any]) -> list[Any]:
    """``items`` mapped by ``each``; the same list object when no item changed."""
    new = [each(item) for item in items]
    return items if all(a is b for a, b in zip(new, items, strict=True)) else new
