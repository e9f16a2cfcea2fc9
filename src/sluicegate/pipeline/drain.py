"""Stage: refuse new calls once the gateway drains, and count the calls it must let finish.

On SIGTERM the gateway *drains* (see server/shutdown.py): ``/ready`` answers 503 at
once so the load balancer looks elsewhere, every new call is refused with 503
``shutting_down``, and the calls already past this stage, streams included, run to
their end for up to ``server.drain_timeout`` seconds. This stage is that gate and that
count. It costs one attribute check and two integer updates per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sluicegate.audit.writer import AuditLog
from sluicegate.errors import ServiceUnavailable
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next

__all__ = ["Drain", "DrainGate"]


class Drain:
    """Whether the gateway is draining, and how many admitted calls have not ended yet."""

    __slots__ = ("_clock", "deadline", "draining", "in_flight", "timeout")

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self.draining = False
        self.deadline: float | None = None
        self.in_flight = 0

    def begin(self) -> None:
        """Stop admitting calls; those in flight get ``timeout`` seconds from now. Idempotent."""
        if not self.draining:
            self.draining = True
            self.deadline = self._clock() + self.timeout

    def remaining(self) -> float:
        """Seconds the calls in flight may still take (all of ``timeout`` before the drain)."""
        if self.deadline is None:
            return self.timeout
        return max(0.0, self.deadline - self._clock())

    def finished(self) -> bool:
        """Draining, and nothing is left to wait for: every call ended, or time is up."""
        return self.draining and (self.in_flight == 0 or self.remaining() <= 0)

    def stream_ended(self, reply: Reply) -> None:
        self.in_flight -= 1


class DrainGate:
    """Refuses new calls while shutting down — and, when the audit log must not drop
    entries (``audit.on_full: refuse``), while it cannot take more."""

    name = "drain"

    def __init__(self, drain: Drain, audit: AuditLog | None = None) -> None:
        self.drain = drain
        self.audit = audit if audit is not None and audit.on_full == "refuse" else None

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        drain = self.drain
        if self.audit is not None and not self.audit.accepting:
            raise ServiceUnavailable(
                "The audit log cannot record more calls right now, and this gateway does "
                "not serve calls it cannot audit; retry shortly.",
                code="audit_unavailable",
                headers={"retry-after": "1"},
            )
        if drain.draining:
            raise ServiceUnavailable(
                "The gateway is shutting down and takes no new requests; retry, and a "
                "load balancer will send the request to another replica.",
                code="shutting_down",
                # Off this connection too, so the retry goes through the load balancer.
                headers={"connection": "close"},
            )
        drain.in_flight += 1
        try:
            reply = await call_next(call)
        except BaseException:
            drain.in_flight -= 1
            raise
        if reply.stream is None:
            drain.in_flight -= 1
        else:
            reply.on_end.append(drain.stream_ended)
        return reply
