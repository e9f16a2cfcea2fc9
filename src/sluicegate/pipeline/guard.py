"""Stages: per-IP rate and in-flight caps before authentication, per-key caps after it.

``ClientGuard`` runs before ``authenticate``, so a flood of bad keys is limited
like any other: the client IP's requests per second (GCRA, ``governance.ip_limits``)
and then its calls in progress (a lease, ``governance.concurrency``). A call with
no client IP is not limited. ``Concurrency`` runs after ``authenticate`` and takes
a lease in each of the principal's in-flight scopes (key, team, org) at once.

Both give their leases back when the call is done: a whole reply when the next
stage returns or raises, a stream when it ends (``Reply.on_end``). Lease ids are
made here, never taken from the request id, which a client may choose and so
reuse to make several calls count as one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

from sluicegate.config.governance import GovernanceConfig
from sluicegate.governance.concurrency import Caps, InflightStore, InProcessInflight
from sluicegate.governance.ip_limits import InProcessIpRate, IpRateStore, build_ip_rate
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next

__all__ = ["ClientGuard", "Concurrency", "build_client_guard"]


class _Leases:
    """Lease ids unique across replicas (a random prefix and a counter), and the
    take/give-back around one call, synchronous when the store is in-process."""

    __slots__ = ("_acquire_now", "_prefix", "_serial", "store")

    def __init__(self, store: InflightStore) -> None:
        self.store = store
        self._acquire_now = store.acquire_now if isinstance(store, InProcessInflight) else None
        self._prefix = os.urandom(6).hex() + ":"
        self._serial = itertools.count(1)

    def next_id(self) -> str:
        return f"{self._prefix}{next(self._serial):x}"

    async def around(self, call: Call, call_next: Next, caps: Caps) -> Reply:
        lease = self.next_id()
        if self._acquire_now is not None:
            self._acquire_now(caps, lease)
        else:
            await self.store.acquire(caps, lease)
        release = self.store.release
        try:
            reply = await call_next(call)
        except BaseException:
            release(caps, lease)
            raise
        if reply.stream is None or reply.finished:
            release(caps, lease)
        else:
            reply.on_end.append(lambda _ended: release(caps, lease))
        return reply


class ClientGuard:
    name = "client_guard"

    def __init__(
        self,
        ip_rate: IpRateStore | None,
        inflight: InflightStore | None,
        max_inflight_per_ip: int | None,
    ) -> None:
        self.ip_rate = ip_rate
        self.max_inflight_per_ip = max_inflight_per_ip
        self._allow_now: Callable[[str], None] | None = (
            ip_rate.allow_now if isinstance(ip_rate, InProcessIpRate) else None
        )
        self._leases = (
            _Leases(inflight) if inflight is not None and max_inflight_per_ip is not None else None
        )

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        ip = call.client
        if ip is None:
            return await call_next(call)
        if self._allow_now is not None:
            self._allow_now(ip)
        elif self.ip_rate is not None:
            await self.ip_rate.allow(ip)
        leases = self._leases
        if leases is None:
            return await call_next(call)
        cap = self.max_inflight_per_ip
        assert cap is not None
        return await leases.around(call, call_next, (("ip:" + ip, cap),))

    async def close(self) -> None:
        """Close the stores (the in-flight one may be shared: its close is idempotent)."""
        if self.ip_rate is not None:
            await self.ip_rate.close()
        if self._leases is not None:
            await self._leases.store.close()


class Concurrency:
    name = "concurrency"

    def __init__(self, inflight: InflightStore) -> None:
        self._leases = _Leases(inflight)

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        principal = call.principal
        caps = principal.inflight if principal is not None else ()
        if not caps:
            return await call_next(call)
        return await self._leases.around(call, call_next, caps)

    async def close(self) -> None:
        await self._leases.store.close()


def build_client_guard(config: GovernanceConfig, inflight: InflightStore) -> ClientGuard | None:
    """The guard ``governance.ip_limits`` asks for, or None when it sets no limit.

    ``inflight`` is the gateway's one in-flight store (``build_inflight_store``),
    shared with ``Concurrency``.
    """
    limits = config.ip_limits
    if limits.rps is None and limits.max_inflight is None:
        return None
    ip_rate = (
        build_ip_rate(config.state, limits.rps, limits.burst, config.redis_prefix)
        if limits.rps
        else None
    )
    return ClientGuard(ip_rate, inflight, limits.max_inflight)
