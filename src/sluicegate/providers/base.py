"""The provider interface: turn a call into upstream traffic and back. Nothing else.

A provider instance serves one deployment and owns its connections. It answers
in OpenAI shape (JSON bytes, or SSE bytes that are complete events), and raises
only ``sluicegate.errors`` classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sluicegate.types import Endpoint

if TYPE_CHECKING:
    from sluicegate.pipeline.call import Call, Reply

__all__ = ["Provider"]


class Provider(Protocol):
    #: The endpoints this deployment can serve.
    endpoints: frozenset[Endpoint]

    async def start(self) -> None:
        """Open pools, load what must be loaded before the first request."""

    async def close(self) -> None:
        """Release everything; in-flight calls may fail."""

    async def healthy(self, path: str | None = None, timeout: float = 5.0) -> bool:
        """Cheap probe; never raises. ``path`` is on the upstream's origin (``/health``);
        None means the provider's own default (an HTTP upstream's model list)."""

    async def send(self, call: Call) -> Reply:
        """Serve one call; ``call.target`` names this deployment and the upstream model."""
