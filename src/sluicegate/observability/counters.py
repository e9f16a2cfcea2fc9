"""The one figure the pipeline keeps outside Prometheus: calls in progress, read at scrape time.

Everything else a call leaves behind is counted once, by ``Metrics.observe``.
"""

from __future__ import annotations

__all__ = ["Counters"]


class Counters:
    __slots__ = ("in_flight",)

    def __init__(self) -> None:
        self.in_flight = 0
