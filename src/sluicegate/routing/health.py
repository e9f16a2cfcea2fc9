"""Active health checks: probe each deployment on a timer and take dead ones out of rotation.

One task per deployment whose ``health.enabled`` is set. ``unhealthy_after``
consecutive failed probes set ``state.healthy = False``; from then on
``healthy_after`` consecutive passes bring it back, through its breaker's half-open
probes rather than at full traffic (a deployment that just came up may still be warming).
A probe fails when the provider says so, when it takes longer than ``health.timeout``,
or when it raises; the monitor itself never raises.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sluicegate.tasks import cancel_all

if TYPE_CHECKING:
    from sluicegate.routing.router import Target

__all__ = ["HealthMonitor"]

log = logging.getLogger("sluicegate.health")


class HealthMonitor:
    def __init__(self, targets: Iterable[Target], rng: random.Random | None = None) -> None:
        self.targets = [t for t in targets if t.config.health.enabled]
        self._rng = rng or random.Random()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for target in self.targets:
            task = asyncio.create_task(self._watch(target), name=f"health:{target.deployment_id}")
            self._tasks.append(task)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    async def _watch(self, target: Target) -> None:
        health = target.config.health
        loop = asyncio.get_running_loop()
        # A random first delay spreads deployments over the interval; the fixed period
        # afterwards keeps them spread, so a restart does not probe everything at once.
        due = loop.time() + self._rng.uniform(0, health.interval)
        passes = failures = 0
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += health.interval
            failed = await self._probe(target)
            if failed is None:
                failures = 0
                passes += 1
                if not target.state.healthy and passes >= health.healthy_after:
                    target.state.healthy = True
                    target.state.breaker.force_half_open()
                    log.info(
                        "deployment back in rotation (half-open)",
                        extra={
                            "deployment": target.deployment_id,
                            "reason": f"{passes} consecutive health checks passed",
                        },
                    )
            else:
                passes = 0
                failures += 1
                if target.state.healthy and failures >= health.unhealthy_after:
                    target.state.healthy = False
                    log.warning(
                        "deployment out of rotation",
                        extra={
                            "deployment": target.deployment_id,
                            "reason": f"{failures} consecutive health checks failed; "
                            f"last: {failed}",
                        },
                    )
            # A probe slower than the interval must not make the next ones fire back to back.
            due = max(due, loop.time())

    async def _probe(self, target: Target) -> str | None:
        """None when the deployment passed; else why it failed."""
        health = target.config.health
        try:
            async with asyncio.timeout(health.timeout):
                ok = await target.provider.healthy(health.path, health.timeout)
        except TimeoutError:
            return f"no answer within {health.timeout:g}s"
        except Exception as exc:  # a probe must never end the monitor
            return f"probe raised {type(exc).__name__}"
        if ok:
            return None
        return f"GET {health.path} failed or answered 5xx" if health.path else "probe failed"
