"""In-process request counters: cheap enough to bump on every call."""

from __future__ import annotations

from collections import Counter

__all__ = ["Counters"]


class Counters:
    def __init__(self) -> None:
        self.in_flight = 0
        self.requests: Counter[tuple[str, str, int]] = Counter()

    def count(self, endpoint: str, model: str, status: int) -> None:
        self.requests[(endpoint, model, status)] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "in_flight": self.in_flight,
            "requests": [
                {"endpoint": e, "model": m, "status": s, "count": n}
                for (e, m, s), n in sorted(self.requests.items())
            ],
        }
