"""Graceful shutdown: on SIGTERM or SIGINT, drain, then let uvicorn close up.

    signal ─▶ drain begins: /ready 503 "draining", new calls 503 shutting_down
           ─▶ the calls in flight, streams included, run on (the listener stays open,
              so a load balancer that has not yet seen /ready gets a clear refusal,
              not a refused connection)
           ─▶ once none is left, or ``server.drain_timeout`` has passed: uvicorn's own
              graceful shutdown (stop listening, close idle keep-alive connections, wait
              for the last responses for what is left of the drain time, then cancel
              whatever still runs: a stream cut there ends without ``[DONE]``)
           ─▶ lifespan shutdown, and uvicorn re-raises the signal, so the exit status
              says how the process ended.

A second SIGINT forces the exit at once, as uvicorn's does (Ctrl+C twice).
"""

from __future__ import annotations

import logging
import math
import socket
from types import FrameType

import uvicorn

from sluicegate.pipeline.drain import Drain

__all__ = ["DrainingServer"]

log = logging.getLogger("sluicegate")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: only flags here (uvicorn's records the signal to re-raise).
        super().handle_exit(sig, frame)
        self.drain.begin()

    async def on_tick(self, counter: int) -> bool:
        if not await super().on_tick(counter):
            return False
        if self.force_exit or not self.drain.draining:
            return True
        if not self._announced:
            self._announced = True
            log.info(
                "draining: %d calls in flight get up to %g s to finish; new calls are refused",
                self.drain.in_flight,
                self.drain.timeout,
            )
        return self.drain.finished()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.drain.in_flight:
            log.warning("shutting down with %d calls still in flight: cut", self.drain.in_flight)
        # What is left of the drain bounds uvicorn's wait for the last bytes to go out.
        self.config.timeout_graceful_shutdown = math.ceil(self.drain.remaining())
        await super().shutdown(sockets)
