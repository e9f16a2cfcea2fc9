"""What happens as a dollar budget runs down: alerts at set shares, then rerouting (seed 001).

``BudgetWatch.observe`` sees every reservation. For each dollar limit it keeps
the latest spent share of the live window and which ``alert_at`` thresholds
that window has already crossed, so each threshold alerts once per window
(a new window, or a changed limit value, re-arms them). An alert is a WARNING
log line, a count in ``alerts`` and, when configured, a JSON POST to a webhook
sent from a background task with retries; nothing of it can fail the request.

With several replicas each one sees the shares of the calls it serves, so each
would alert on its own; an ``AlertDedupe`` shared by all of them (``RedisDedupe``)
lets the first replica to claim a (window, threshold) send the alert and the
others drop it.

``reroute_for`` answers, from those remembered shares, whether a caller is past
``reroute_at`` of some budget and should be sent to ``reroute_to`` instead of
being refused once the budget is spent. A share counts reservations in flight,
and once a window has crossed ``reroute_at`` the reroute holds until the window
resets (or the limit changes): a mode switch, like seed 001's "switch to the
local LLM", not a decision that flaps with every settle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
from redis.asyncio import Redis

from sluicegate.config.governance import BudgetActionsConfig
from sluicegate.governance.limits import Held, Limit, Reservation
from sluicegate.providers.transport import Pool, TransportError

__all__ = ["AlertDedupe", "BudgetAlert", "BudgetWatch", "InProcessDedupe", "RedisDedupe"]

log = logging.getLogger("sluicegate.governance")

_RETRIES = 2
_SWEEP_EVERY = 60.0
# Dedupe keys outlive their window a little so replicas whose clocks lag still see them.
_KEY_GRACE = 60.0


class AlertDedupe(Protocol):
    """Claims an alert key for ``ttl`` seconds; only the first claimant sends the alert."""

    async def first(self, key: str, ttl: float) -> bool: ...

    async def close(self) -> None: ...


class InProcessDedupe:
    """Claimed keys in a dict with expiry: for replicas that share one process (and tests)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._next_sweep = 0.0

    async def first(self, key: str, ttl: float) -> bool:
        return self.first_now(key, ttl, time.time())

    def first_now(self, key: str, ttl: float, now: float) -> bool:
        """``first`` without the coroutine, so ``observe`` can decide on the spot."""
        if now >= self._next_sweep:
            self._until = {k: t for k, t in self._until.items() if t > now}
            self._next_sweep = now + _SWEEP_EVERY
        until = self._until.get(key)
        if until is not None and until > now:
            return False
        self._until[key] = now + ttl
        return True

    async def close(self) -> None:
        self._until.clear()


class RedisDedupe:
    """``SET key NX EX``: the replica whose SET succeeds sends the alert."""

    def __init__(self, url: str, *, prefix: str = "sg:alert:") -> None:
        self._redis: Redis = Redis.from_url(url)
        self._prefix = prefix

    async def first(self, key: str, ttl: float) -> bool:
        claimed = await self._redis.set(
            self._prefix + key, b"1", nx=True, ex=max(1, math.ceil(ttl))
        )
        return bool(claimed)

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    scope: str
    budget: str
    limit_micros: int
    spent_micros: int
    share: float
    threshold: float
    reset: float

    @property
    def key(self) -> str:
        """One (window, limit value, threshold); the same on every replica."""
        return f"{self.scope}|{self.budget}|{self.reset:.0f}|{self.limit_micros}|{self.threshold:g}"

    def fields(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "budget": self.budget,
            "limit_usd": self.limit_micros / 1_000_000,
            "spent_usd": self.spent_micros / 1_000_000,
            "share": round(self.share, 4),
            "threshold": self.threshold,
            "resets_at": datetime.fromtimestamp(self.reset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class _Window:
    """One budget's live window: its latest share and how many thresholds it crossed."""

    __slots__ = ("crossed", "limit", "reset", "share")

    def __init__(self, reset: float, limit: int) -> None:
        self.reset = reset
        self.limit = limit
        self.share = 0.0
        self.crossed = 0


class BudgetWatch:
    """Alerts and reroute decisions from the dollar limits of every reservation."""

    def __init__(
        self,
        config: BudgetActionsConfig,
        *,
        dedupe: AlertDedupe | None = None,
        webhook_timeout: float = 5.0,
        webhook_backoff: float = 0.5,
    ) -> None:
        self.config = config
        self.alerts: Counter[tuple[str, str, float]] = Counter()
        self._thresholds = tuple(config.alert_at)
        self._reroute_at = config.reroute_at
        self._dedupe = dedupe
        self._timeout = webhook_timeout
        self._backoff = webhook_backoff
        self._windows: dict[tuple[str, str], _Window] = {}
        self._next_sweep = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: Pool | None = None
        self._origin = self._target = ""
        if config.webhook is not None:
            parts = urlsplit(config.webhook)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"budget webhook must be an http(s) URL: {config.webhook}")
            self._origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
            self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def observe(self, reservation: Reservation, now: float | None = None) -> None:
        """Note the share of each dollar budget; alert on thresholds crossed first now."""
        at: float | None = now
        for held in reservation.held:
            limit = held.limit
            if limit.unit != "usd_micros":
                continue
            if at is None:
                at = time.time()
            if at >= self._next_sweep:
                self._sweep(at)
            share = (limit.limit - held.remaining) / limit.limit if limit.limit > 0 else 1.0
            ident = (limit.scope, limit.name)
            window = self._windows.get(ident)
            if window is None or window.reset != held.reset or window.limit != limit.limit:
                window = self._windows[ident] = _Window(held.reset, limit.limit)
            window.share = max(window.share, share)
            thresholds = self._thresholds
            while window.crossed < len(thresholds) and share >= thresholds[window.crossed]:
                self._alert(held, share, thresholds[window.crossed], at)
                window.crossed += 1

    def reroute_for(
        self, principal_limits: Sequence[Limit], now: float | None = None
    ) -> str | None:
        """``reroute_to`` when one of these dollar budgets is past ``reroute_at``, else None."""
        reroute_at = self._reroute_at
        if reroute_at is None:
            return None
        windows = self._windows
        for limit in principal_limits:
            if limit.unit != "usd_micros":
                continue
            window = windows.get((limit.scope, limit.name))
            if window is None or window.share < reroute_at:
                continue
            if window.reset > (time.time() if now is None else now):
                return self.config.reroute_to
        return None

    async def close(self) -> None:
        """Give pending webhooks ``webhook_timeout`` to finish, cancel the rest, close clients."""
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._dedupe is not None:
            await self._dedupe.close()

    def _sweep(self, now: float) -> None:
        self._windows = {k: w for k, w in self._windows.items() if w.reset > now}
        self._next_sweep = now + _SWEEP_EVERY

    def _alert(self, held: Held, share: float, threshold: float, now: float) -> None:
        limit = held.limit
        alert = BudgetAlert(
            scope=limit.scope,
            budget=limit.name,
            limit_micros=limit.limit,
            spent_micros=limit.limit - held.remaining,
            share=share,
            threshold=threshold,
            reset=held.reset,
        )
        ttl = max(1.0, held.reset - now) + _KEY_GRACE
        dedupe = self._dedupe
        if dedupe is None:
            self._emit(alert)
        elif isinstance(dedupe, InProcessDedupe):
            if dedupe.first_now(alert.key, ttl, now):
                self._emit(alert)
        elif not self._spawn(self._claim_and_emit(dedupe, alert, ttl)):
            self._emit(alert)  # no event loop to ask the others: a duplicate beats a lost alert

    async def _claim_and_emit(self, dedupe: AlertDedupe, alert: BudgetAlert, ttl: float) -> None:
        try:
            first = await dedupe.first(alert.key, ttl)
        except Exception as exc:
            log.warning(
                "budget alert dedupe failed; sending anyway",
                extra={"alert": alert.key, "reason": f"{type(exc).__name__}: {exc}"},
            )
            first = True
        if first:
            self._emit(alert, in_task=True)
            if self.config.webhook is not None:
                await self._post(alert)

    def _emit(self, alert: BudgetAlert, *, in_task: bool = False) -> None:
        log.warning("budget alert", extra=alert.fields())
        self.alerts[(alert.scope, alert.budget, alert.threshold)] += 1
        if self.config.webhook is not None and not in_task and not self._spawn(self._post(alert)):
            log.warning("budget alert webhook skipped: no event loop", extra={"alert": alert.key})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            return False
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _post(self, alert: BudgetAlert) -> None:
        body = orjson.dumps({"type": "budget_alert", **alert.fields()})
        failure = ""
        for attempt in range(_RETRIES + 1):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                async with asyncio.timeout(self._timeout):
                    status = await self._send(body)
            except TimeoutError:
                failure = f"no answer within {self._timeout:g}s"
                continue
            except TransportError as exc:
                failure = str(exc)
                continue
            except Exception as exc:  # a webhook must never take the gateway down
                failure = f"{type(exc).__name__}: {exc}"
                break
            if status < 400:
                return
            failure = f"HTTP {status}"
            if status < 500:
                break  # the receiver refuses this alert; asking again would not change that
        log.warning(
            "budget alert webhook failed",
            extra={"alert": alert.key, "webhook": self._origin, "reason": failure},
        )

    async def _send(self, body: bytes) -> int:
        pool = self._pool
        if pool is None or pool.loop is not asyncio.get_running_loop():
            pool = self._pool = Pool(self._origin, max_connections=4, connect_timeout=self._timeout)
        response = await pool.request(
            "POST",
            self._target,
            b"Content-Type: application/json\r\nUser-Agent: sluicegate\r\n",
            body,
            first_byte=self._timeout,
            on_origin=True,
        )
        await response.read(self._timeout)
        return response.status
