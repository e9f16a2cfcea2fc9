"""Request ids: taken from the client when sane, else made; echoed on every response."""

from __future__ import annotations

import itertools
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestIdMiddleware", "new_request_id"]

_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

# A random per-process prefix and a counter: unique across replicas for practical
# purposes, and a fraction of uuid4's cost (no syscall per request).
_PREFIX = os.urandom(6).hex().encode()
_COUNTER = itertools.count(1)


def new_request_id() -> bytes:
    return b"%s%010x" % (_PREFIX, next(_COUNTER))


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value
                break
        if not _SANE_ID.match(rid):
            rid = new_request_id()
        scope.setdefault("state", {})["request_id"] = rid.decode()
        header = (b"x-request-id", rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if not any(name == b"x-request-id" for name, _ in headers):
                    message["headers"] = [*headers, header]
            await send(message)

        await self.app(scope, receive, send_with_id)
