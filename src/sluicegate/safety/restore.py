"""Put masked PII back into an answer, for the caller whose request was masked.

The upstream saw ``<PERSON_1>``; the caller gets the name back. Whole answers are
decoded and re-encoded once; streams are rewritten event by event, with one
restorer per choice, because a placeholder may be split across chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from sluicegate.protocol.sse import choice_text, rewrite_chunks
from sluicegate.safety.pii import Mask, StreamRestorer

__all__ = ["restore_body", "restore_stream"]


def restore_body(body: bytes, mask: Mask) -> bytes:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    for choice in answer.get("choices") or () if isinstance(answer, dict) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] = mask.restore(message["content"])
        if isinstance(choice.get("text"), str):
            choice["text"] = mask.restore(choice["text"])
    return orjson.dumps(answer)


def restore_stream(stream: AsyncIterator[bytes], mask: Mask) -> AsyncIterator[bytes]:
    restorers: dict[int, StreamRestorer] = {}

    async def rewrite(chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            restorer = restorers.get(index)
            if restorer is None:
                restorer = restorers[index] = mask.stream_restorer()
            holder, field, text = choice_text(choice)
            out = restorer.feed(text) if text is not None else ""
            if choice.get("finish_reason") is not None:
                out += restorer.flush()
            if holder is not None and (text is not None or out):
                holder[field] = out

    return rewrite_chunks(stream, rewrite)
