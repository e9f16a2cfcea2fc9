"""Stage: rate limits, quotas and budgets — reserve before the call, settle after it.

Before the call, every limit of the caller's key and organisation is reserved in
one atomic step (``governance.limits``): one request, the estimated tokens (input
estimate + max_tokens) and the estimated cost. After it, each counter is settled
to what the upstream reported — the tokens used and their exact cost, priced for
the model that actually answered — or, for a call that failed, to no tokens and
no cost (the request itself still counts). Streams settle when they end.

Input tokens are estimated as one token per four characters of text, plus four
per message: the documented estimate until per-model tokenizers are wired in.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sluicegate.errors import PermissionDenied
from sluicegate.governance.budget_actions import BudgetWatch
from sluicegate.governance.cost import gpu_seconds, micro_usd
from sluicegate.governance.limits import (
    InProcessLimitStore,
    Limit,
    LimitStore,
    Reservation,
    rate_limit_headers,
)
from sluicegate.governance.pricing import Catalogue
from sluicegate.governance.usage import UsageDetail
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next
from sluicegate.routing.router import Router
from sluicegate.types import Endpoint, JSONObject

__all__ = ["Admit", "estimate_input_tokens"]

log = logging.getLogger("sluicegate.governance")


class Admit:
    name = "admit"

    def __init__(
        self,
        store: LimitStore,
        catalogue: Catalogue,
        router: Router,
        default_max_tokens: int,
        watch: BudgetWatch | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.router = router
        self.default_max_tokens = default_max_tokens
        self.watch = watch
        self._settling: set[asyncio.Task[None]] = set()

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        limits = call.principal.limits if call.principal is not None else ()
        reservation: Reservation | None = None
        if limits:
            if self.watch is not None and call.model is not None:
                self._reroute(call, limits)
            reservation = await self.store.reserve(self._asks(call, limits))
            call.reply_headers.update(_tightest(reservation))
            if self.watch is not None:
                self.watch.observe(reservation)
        started = time.monotonic()
        try:
            reply = await call_next(call)
        except BaseException:
            self._settle(call, reservation, None, started)
            raise
        if reply.stream is None:
            self._settle(call, reservation, reply, started)
        else:
            reply.on_end.append(lambda ended: self._settle(call, reservation, ended, started))
        return reply

    def _reroute(self, call: Call, limits: Sequence[Limit]) -> None:
        """Past its budget's reroute share, a caller is sent to the cheaper model."""
        assert self.watch is not None
        cheaper = self.watch.reroute_for(limits)
        if cheaper is None or cheaper == call.model:
            return
        group = self.router.groups.get(call.model or "")
        if group is None or call.endpoint not in self.router.groups[cheaper].endpoints:
            return
        call.reply_headers["x-sluicegate-route"] = f"budget-reroute:{call.model}->{cheaper}"
        call.model = cheaper
        call.body = {**call.body, "model": cheaper}
        call.raw = None

    def _asks(self, call: Call, limits: Sequence[Limit]) -> list[tuple[Limit, int]]:
        tokens = 0
        money = 0
        if call.model is not None:
            inputs = estimate_input_tokens(call.endpoint, call.body)
            outputs = 0 if call.endpoint is Endpoint.EMBEDDINGS else self._max_tokens(call.body)
            tokens = inputs + outputs
            if any(limit.unit == "usd_micros" for limit in limits):
                money = self._estimated_cost(call.model, inputs, outputs)
        asks = []
        for limit in limits:
            if limit.unit == "requests":
                asks.append((limit, 1))
            elif limit.unit == "tokens":
                asks.append((limit, tokens))
            else:
                asks.append((limit, money))
        return asks

    def _max_tokens(self, body: JSONObject) -> int:
        for field in ("max_completion_tokens", "max_tokens"):
            value = body.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return self.default_max_tokens

    def _estimated_cost(self, model: str, inputs: int, outputs: int) -> int:
        price = self.catalogue.price_for(model, datetime.now(UTC))
        if price is not None:
            usage = UsageDetail(prompt_tokens=inputs, completion_tokens=outputs)
            return micro_usd(usage, price)
        group = self.router.groups.get(model)
        if group is not None and all(t.self_hosted for t in group.targets):
            return 0  # self-hosted and unpriced: counted in tokens, never blocked by dollars
        # Fail closed: a budget that a model without a price could bypass is no budget.
        raise PermissionDenied(
            f"No price is known for model '{model}', so a key with a dollar budget cannot "
            "use it. Add the model to the price catalogue (governance.pricing).",
            code="model_not_priced",
        )

    def _settle(
        self, call: Call, reservation: Reservation | None, reply: Reply | None, started: float
    ) -> None:
        usage = reply.usage if reply is not None else None
        spent: int | None = None  # micro-dollars; None: unknown (no usage, or no price)
        if usage is not None:
            priced = self._spent(call, usage, time.monotonic() - started)
            if priced is not None:
                call.cost_micros, call.gpu_seconds = priced
                spent = call.cost_micros
            elif call.target is not None and call.target.self_hosted:
                spent = 0  # self-hosted and unpriced: counted in tokens, never in dollars
        if reservation is None:
            return
        actual = self._actual(reservation, reply, spent)
        if isinstance(self.store, InProcessLimitStore):
            # Nothing to wait for in-process: settle now rather than pay for a task.
            self.store.settle_now(reservation, actual)
            return
        task = asyncio.get_running_loop().create_task(self._write(reservation, actual))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    @staticmethod
    def _actual(
        reservation: Reservation, reply: Reply | None, spent: int | None
    ) -> dict[Limit, int]:
        usage = reply.usage if reply is not None else None
        failed = reply is None or reply.error is not None
        actual: dict[Limit, int] = {}
        for held in reservation.held:
            unit = held.limit.unit
            if unit == "requests":
                continue
            if failed and usage is None:
                actual[held.limit] = 0  # nothing answered: no tokens, no cost
            elif usage is None:
                continue  # answered without reporting usage: the reservation stands
            elif unit == "tokens":
                actual[held.limit] = usage.total_tokens
            elif spent is not None:
                actual[held.limit] = spent
        return actual

    def _spent(self, call: Call, usage: Any, wall: float) -> tuple[int, float] | None:
        """Exact cost and GPU-seconds, priced for the model that answered; None if unpriced."""
        target = call.target
        names = [target.upstream_model, target.model] if target is not None else [call.model]
        now = datetime.now(UTC)
        for name in names:
            price = self.catalogue.price_for(name, now) if name else None
            if price is not None:
                seconds = gpu_seconds(wall, price) if price.gpu_hour_usd is not None else 0.0
                return micro_usd(usage.detail(), price, seconds), seconds
        return None

    async def _write(self, reservation: Reservation, actual: dict[Limit, int]) -> None:
        try:
            await self.store.settle(reservation, actual)
        except Exception:
            # The call is over; a lost settle leaves the reservation standing (over-counts).
            log.exception("settling a reservation failed")

    async def close(self) -> None:
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.store.close()


def estimate_input_tokens(endpoint: Endpoint, body: JSONObject) -> int:
    """One token per four characters of text, plus four per message (documented estimate)."""
    if endpoint is Endpoint.CHAT:
        chars = 0
        messages = body.get("messages") or []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(
                    len(part.get("text") or "") for part in content if isinstance(part, dict)
                )
        return math.ceil(chars / 4) + 4 * len(messages)
    source = body.get("prompt") if endpoint is Endpoint.COMPLETIONS else body.get("input")
    if isinstance(source, str):
        return math.ceil(len(source) / 4)
    if isinstance(source, list):
        total = 0
        for item in source:
            if isinstance(item, str):
                total += math.ceil(len(item) / 4)
            elif isinstance(item, list):
                total += len(item)  # token ids
            elif isinstance(item, int):
                total += 1
        return total
    return 0


def _tightest(reservation: Reservation) -> dict[str, str]:
    """Rate-limit headers for the limit closest to running out."""
    held = min(
        reservation.held,
        key=lambda h: (h.remaining / h.limit.limit) if h.limit.limit else 0.0,
    )
    return rate_limit_headers(held.limit, held.remaining, held.reset, time.time())
