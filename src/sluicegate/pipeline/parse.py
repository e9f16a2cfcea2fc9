"""Stage: read the request body within its limit, decode it, and let the endpoint check it."""

from __future__ import annotations

from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.protocol.body import decode_object

__all__ = ["Parse"]


class Parse:
    name = "parse"

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        if call.read_body is not None and call.parser is not None:
            raw = await call.read_body()
            call.raw = raw
            call.body = decode_object(raw)
            parsed = call.parser(call.body)
            call.model = parsed.model
            call.stream = parsed.stream
            if parsed.body is not None:
                call.body = parsed.body
                call.raw = None
        return await call_next(call)
