"""A circuit breaker per deployment: stop sending to one that keeps failing, probe it later.

    closed ──(N consecutive failures, or failure rate ≥ r over the window)──▶ open
    open ──(recovery seconds)──▶ half_open ──(probe succeeds)──▶ closed
                                   └──────(probe fails)──────▶ open

Only upstream failures are recorded here (connection errors, timeouts, 5xx, 429);
a client's bad request says nothing about the deployment's health.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from sluicegate.config.routing import BreakerConfig

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._open_until: float | None = None
        self._half_open = False
        self._probes = 0
        self._probe_started = 0.0
        self._consecutive = 0
        # (time, ok) of recent calls and how many failed, for the rate over the window.
        self._recent: deque[tuple[float, bool]] = deque()
        self._failed = 0
        self.opened = 0  # times it opened, for metrics and tests

    @property
    def state(self) -> BreakerState:
        if self._half_open:
            return "half_open"
        if self._open_until is None:
            return "closed"
        if self.clock() >= self._open_until:
            self._half_open = True
            self._open_until = None
            self._probes = 0
            return "half_open"
        return "open"

    def can_try(self) -> bool:
        """Would ``allow()`` admit a call now? No side effects but forgetting lost probes."""
        state = self.state
        if state == "closed":
            return True
        return state == "half_open" and self._probe_free()

    def allow(self) -> bool:
        """Admit a call now; in half-open, each admitted call is one of the few probes."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and self._probe_free():
            self._probes += 1
            self._probe_started = self.clock()
            return True
        return False

    def release_probe(self) -> None:
        """A probe ended with no verdict (the caller left, or its request was bad)."""
        if self._half_open and self._probes:
            self._probes -= 1

    def _probe_free(self) -> bool:
        if self._probes < self.config.half_open_probes:
            return True
        # A probe whose outcome never came back (a hung call) must not wedge the breaker.
        if self.clock() - self._probe_started >= self.config.recovery:
            self._probes = 0
            return True
        return False

    def record_success(self) -> None:
        self._consecutive = 0
        if self._half_open:
            self._close()
            return
        self._note(True)

    def record_failure(self) -> None:
        if self._half_open:
            self._open()
            return
        if self._open_until is not None:
            return  # a call that started before it opened
        self._consecutive += 1
        self._note(False)
        if self._consecutive >= self.config.failures or self._rate_exceeded():
            self._open()

    def retry_in(self) -> float:
        if self.state != "open" or self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self.clock())

    def force_half_open(self) -> None:
        """Active health checks saw it recover: let a probe through now."""
        self._open_until = None
        self._half_open = True
        self._probes = 0

    def _note(self, ok: bool) -> None:
        now = self.clock()
        recent = self._recent
        recent.append((now, ok))
        if not ok:
            self._failed += 1
        horizon = now - self.config.window
        while recent and recent[0][0] < horizon:
            if not recent.popleft()[1]:
                self._failed -= 1

    def _rate_exceeded(self) -> bool:
        total = len(self._recent)
        if total < self.config.min_requests:
            return False
        return self._failed / total >= self.config.failure_rate

    def _open(self) -> None:
        self._half_open = False
        self._probes = 0
        self._open_until = self.clock() + self.config.recovery
        self.opened += 1

    def _close(self) -> None:
        self._half_open = False
        self._open_until = None
        self._probes = 0
        self._consecutive = 0
        self._recent.clear()
        self._failed = 0
