"""What one audit entry holds, and the canonical bytes its hash covers.

An entry is a flat JSON object: ``seq`` (1, 2, 3... without gaps), ``ts`` (ISO 8601
UTC, taken when the gateway submitted it), ``kind`` ("request" or "admin") and the
fields of its kind. A request entry::

    {"seq": 42, "ts": "2025-03-01T12:00:00.123456Z", "kind": "request",
     "request_id": "req_...", "org": "acme", "key_id": "k_12", "route": "chat",
     "model": "gpt-oss", "served_model": "gpt-oss-20b", "deployment": "vllm-a",
     "data_level": "confidential",
     "decisions": {"pii": "redacted:EMAIL_ADDRESS=2", "route": "self-hosted-only"},
     "prompt_tokens": 512, "completion_tokens": 80, "status": 200}

Standard fields the caller leaves out are stored as null, so every entry of a kind
has the same keys; other fields pass through. ``prompt`` is kept only when the log
is configured to record prompts (the caller redacts it first).

The canonical form is orjson's with sorted keys: no spaces, UTF-8, shortest float
form. Values orjson cannot write (integers past 64 bits, lone surrogates) are stored
as their ``str``; nothing the caller submits is ever dropped for its content.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "ADMIN_FIELDS",
    "KINDS",
    "REQUEST_FIELDS",
    "RESERVED",
    "canonical",
    "format_ts",
    "make_entry",
    "payload",
]

KINDS = ("request", "admin")

REQUEST_FIELDS = (
    "request_id",
    "org",
    "key_id",
    "route",
    "model",
    "served_model",
    "deployment",
    "data_level",
    "decisions",
    "prompt_tokens",
    "completion_tokens",
    "status",
)
#: ``key_id`` is the actor's key; ``action`` e.g. "keys.create"; ``target`` what it changed.
ADMIN_FIELDS = ("request_id", "org", "key_id", "route", "action", "target", "status", "detail")

#: Names the log itself writes; a caller's values for them are ignored.
RESERVED = frozenset({"seq", "ts", "prev", "hash", "checkpoint", "audit", "sig", "kid", "alg"})

_STANDARD = {"request": REQUEST_FIELDS, "admin": ADMIN_FIELDS}
# Non-str keys and numpy values have one JSON form that survives a re-parse;
# anything else unknown becomes its str.
_LENIENT = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# What the fast path accepts: no dataclasses, no non-str keys, no unknown types.
_STRICT = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes hashes and signatures cover."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def format_ts(epoch: float) -> str:
    """ISO 8601 UTC with microseconds and a ``Z``."""
    second = int(epoch // 1)
    micros = round((epoch - second) * 1_000_000)
    if micros == 1_000_000:
        second, micros = second + 1, 0
    return f"{_second(second)}.{micros:06d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    # Entries of one batch mostly share their second; strftime is the slow part.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def make_entry(
    seq: int, epoch: float, fields: Mapping[str, Any], *, keep_prompt: bool
) -> dict[str, Any]:
    kind = fields.get("kind")
    if not isinstance(kind, str) or not kind:
        kind = "request"
    entry: dict[str, Any] = dict.fromkeys(_STANDARD.get(kind, ()))
    entry.update(fields)
    if not RESERVED.isdisjoint(entry):
        for name in RESERVED.intersection(entry):
            del entry[name]
    if not keep_prompt:
        entry.pop("prompt", None)
    entry["seq"], entry["ts"], entry["kind"] = seq, format_ts(epoch), kind
    return entry


def payload(entry: Mapping[str, Any]) -> bytes:
    """The canonical bytes of ``entry`` exactly as a verifier re-reading the line gets them.

    Plain JSON values, datetimes, enums and UUIDs write the same bytes after a
    re-parse, so one dump does. Dataclasses (orjson keeps their field order,
    unsorted), non-str keys and other types go through JSON once first, and what
    orjson cannot write at all becomes its ``str``.
    """
    try:
        return orjson.dumps(entry, option=_STRICT)
    except TypeError:
        pass
    try:
        raw = orjson.dumps(entry, default=str, option=_LENIENT)
    except TypeError:
        fixed = {str(k): _encodable(v) for k, v in entry.items()}
        raw = orjson.dumps(fixed, default=str, option=_LENIENT)
    return canonical(orjson.loads(raw))


def _encodable(value: Any) -> Any:
    try:
        orjson.dumps(value, default=str, option=_LENIENT)
    except TypeError:
        return str(value).encode("utf-8", "replace").decode("utf-8")
    return value
