"""Stage: who is calling. Keys are held only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Protocol

from sluicegate.errors import AuthenticationFailed, PermissionDenied
from sluicegate.pipeline.call import Call, Principal, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.types import Endpoint

__all__ = ["Authenticate", "KeyLookup", "KeyRing"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """The keys this gateway accepts, as digests. Plain keys are dropped once hashed."""

    def __init__(
        self,
        master_key: str,
        static_keys: Iterable[tuple[str, str] | tuple[str, str, Principal]] = (),
    ) -> None:
        self._entries: list[tuple[bytes, Principal]] = [
            (_digest(master_key), Principal(name="master", is_admin=True))
        ]
        for entry in static_keys:
            principal = entry[2] if len(entry) == 3 else Principal(name=entry[0])
            self._entries.append((_digest(entry[1]), principal))

    def lookup(self, key: str) -> Principal:
        principal = self.find(key)
        if principal is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return principal

    def find(self, key: str) -> Principal | None:
        digest = _digest(key)
        found: Principal | None = None
        # Compare against every entry, without an early exit, so timing says nothing.
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


_ADMIN_ONLY = frozenset({Endpoint.ADMIN, Endpoint.METRICS})


class KeyLookup(Protocol):
    def lookup(self, key: str) -> Principal:
        """The key's principal; raises ``AuthenticationFailed`` (or 503 if it cannot tell)."""
        ...


class Authenticate:
    name = "authenticate"

    def __init__(self, keys: KeyLookup) -> None:
        self.keys = keys

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        if not call.api_key:
            raise AuthenticationFailed(
                "No API key provided. Send 'Authorization: Bearer <key>' (or 'x-api-key').",
                code="missing_api_key",
            )
        call.principal = principal = self.keys.lookup(call.api_key)
        if call.endpoint in _ADMIN_ONLY and not principal.is_admin:
            raise PermissionDenied(
                "The admin API needs the master key or a key whose role is an admin role.",
                code="admin_only",
            )
        call.api_key = None  # nothing downstream needs the secret
        return await call_next(call)
