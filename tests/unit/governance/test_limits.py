"""The in-process limit store: windows, all-or-nothing reservations, settling, messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from sluicegate.errors import RateLimited
from sluicegate.governance.limits import (
    InProcessLimitStore,
    Limit,
    LimitExceeded,
    Reservation,
    build_limit_store,
    window_span,
)


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


RPM = Limit("key:app", "rpm", "requests", "minute", 3)
TPM = Limit("key:app", "tpm", "tokens", "minute", 1000)
DAY = Limit("org:acme", "requests_per_day", "requests", "day", 10)
BUDGET = Limit("org:acme", "budget_month", "usd_micros", "month", 50_000_000)


def store_at(now: float) -> tuple[InProcessLimitStore, Clock]:
    clock = Clock(now)
    return InProcessLimitStore(clock=clock), clock


def reserve(store: InProcessLimitStore, *asks: tuple[Limit, int]) -> Reservation:
    return asyncio.run(store.reserve(asks))


def refusal(store: InProcessLimitStore, *asks: tuple[Limit, int]) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as caught:
        reserve(store, *asks)
    return caught.value


def used(store: InProcessLimitStore, limit: Limit) -> int:
    """The bucket's count, seen through a zero-amount check."""
    return limit.limit - reserve(store, (limit, 0)).held[0].remaining


@pytest.mark.parametrize(
    ("window", "now", "start", "end", "label"),
    [
        ("minute", ts(2026, 3, 5, 10, 7, 59), ts(2026, 3, 5, 10, 7), ts(2026, 3, 5, 10, 8), None),
        ("minute", ts(2026, 3, 5, 10, 8), ts(2026, 3, 5, 10, 8), ts(2026, 3, 5, 10, 9), None),
        ("day", ts(2026, 3, 5, 23, 59, 59), ts(2026, 3, 5), ts(2026, 3, 6), "2026-03-05"),
        ("day", ts(2026, 3, 6), ts(2026, 3, 6), ts(2026, 3, 7), "2026-03-06"),
        ("day", ts(2026, 12, 31, 12), ts(2026, 12, 31), ts(2027, 1, 1), "2026-12-31"),
        ("month", ts(2026, 2, 28, 23, 59), ts(2026, 2, 1), ts(2026, 3, 1), "2026-02"),
        ("month", ts(2028, 2, 29, 12), ts(2028, 2, 1), ts(2028, 3, 1), "2028-02"),
        ("month", ts(2026, 4, 30, 23), ts(2026, 4, 1), ts(2026, 5, 1), "2026-04"),
        ("month", ts(2026, 12, 31, 23, 59, 59), ts(2026, 12, 1), ts(2027, 1, 1), "2026-12"),
        ("month", ts(2027, 1, 1), ts(2027, 1, 1), ts(2027, 2, 1), "2027-01"),
    ],
)
def test_windows_align_to_utc(window, now, start, end, label) -> None:
    got = window_span(window, now)
    assert got[:2] == (start, end)
    assert got[2] == (label if label is not None else str(int(start // 60)))


def test_month_lengths() -> None:
    days = [
        (window_span("month", ts(2026, m, 15))[1] - window_span("month", ts(2026, m, 15))[0])
        / 86400
        for m in range(1, 13)
    ]
    assert days == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_exact_refusal_at_the_boundary() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7, 1))
    remaining = [reserve(store, (RPM, 1)).held[0].remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    error = refusal(store, (RPM, 1))
    assert (error.limit, error.remaining, error.reset) == (RPM, 0, ts(2026, 3, 5, 10, 8))
    assert error.retry_after == 59
    assert error.headers["retry-after"] == "59"
    assert error.headers["x-ratelimit-remaining"] == "0"
    assert error.headers["x-ratelimit-limit"] == "3"


def test_next_window_starts_afresh() -> None:
    store, clock = store_at(ts(2026, 3, 5, 10, 7, 59))
    for _ in range(3):
        reserve(store, (RPM, 1))
    refusal(store, (RPM, 1))
    clock.now = ts(2026, 3, 5, 10, 8)
    assert reserve(store, (RPM, 1)).held[0].remaining == 2


def test_all_or_nothing() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    reserve(store, (TPM, 900))
    error = refusal(store, (RPM, 1), (TPM, 200), (DAY, 1))
    assert error.limit == TPM
    assert error.remaining == 100
    assert used(store, RPM) == 0
    assert used(store, DAY) == 0
    assert used(store, TPM) == 900
    held = reserve(store, (RPM, 1), (TPM, 100), (DAY, 1)).held
    assert [h.remaining for h in held] == [2, 0, 9]


def test_refusal_names_the_limit_that_resets_last() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    day = Limit("org:acme", "tokens_per_day", "tokens", "day", 100)
    error = refusal(store, (TPM, 2000), (day, 200))
    assert error.limit == day
    assert error.reset == ts(2026, 3, 6)
    assert error.retry_after == ts(2026, 3, 6) - ts(2026, 3, 5, 10, 7)


def test_same_bucket_asked_twice_counts_both() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    refusal(store, (RPM, 2), (RPM, 2))
    assert used(store, RPM) == 0
    held = reserve(store, (RPM, 1), (RPM, 2)).held
    assert [h.remaining for h in held] == [2, 0]


def test_zero_amount_only_checks() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    check = reserve(store, (RPM, 0))
    assert check.held[0].remaining == 3
    assert len(store) == 0
    for _ in range(3):
        reserve(store, (RPM, 1))
    assert reserve(store, (RPM, 0)).held[0].remaining == 0
    assert used(store, RPM) == 3


def test_zero_limit_refuses_any_positive_ask() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    closed = Limit("key:app", "rpm", "requests", "minute", 0)
    refusal(store, (closed, 1))
    assert reserve(store, (closed, 0)).held[0].remaining == 0


def test_negative_amounts_are_rejected() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    with pytest.raises(ValueError, match="negative"):
        reserve(store, (RPM, -1))


def test_settle_up_and_down() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    first = reserve(store, (RPM, 1), (TPM, 500))
    assert first.held[1].remaining == 500
    asyncio.run(store.settle(first, {TPM: 120}))
    assert used(store, TPM) == 120
    assert used(store, RPM) == 1  # missing from `actual`: keeps its reservation
    second = reserve(store, (TPM, 300))
    asyncio.run(store.settle(second, {TPM: 700}))
    assert used(store, TPM) == 820
    refusal(store, (TPM, 181))


def test_settle_never_goes_below_zero() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    first = reserve(store, (TPM, 500))
    second = reserve(store, (TPM, 100))
    asyncio.run(store.settle(second, {TPM: 0}))
    # Another reservation settling below what the bucket holds: floor at zero.
    asyncio.run(store.settle(first, {TPM: 0}))
    asyncio.run(store.settle(first, {TPM: 0}))
    assert used(store, TPM) == 0


def test_settle_after_the_window_ended_is_a_no_op() -> None:
    store, clock = store_at(ts(2026, 3, 5, 10, 7, 30))
    late = reserve(store, (TPM, 500))
    clock.now = ts(2026, 3, 5, 10, 8, 10)
    current = reserve(store, (TPM, 100))
    asyncio.run(store.settle(late, {TPM: 900}))
    assert used(store, TPM) == 100
    assert current.held[0].bucket != late.held[0].bucket


def test_settle_in_a_later_window_adjusts_the_original_bucket() -> None:
    store, clock = store_at(ts(2026, 3, 5, 10, 7, 30))
    held = reserve(store, (DAY, 4))
    clock.now = ts(2026, 3, 5, 23, 59, 59)
    asyncio.run(store.settle(held, {DAY: 1}))
    assert used(store, DAY) == 1


def test_expired_buckets_are_swept() -> None:
    clock = Clock(ts(2026, 3, 5, 10, 7))
    store = InProcessLimitStore(clock=clock, sweep_every=60)
    for n in range(1000):
        reserve(store, (Limit(f"ip:10.0.{n // 256}.{n % 256}", "rps", "requests", "minute", 5), 1))
    reserve(store, (DAY, 1))
    assert len(store) == 1001
    clock.now += 30
    reserve(store, (RPM, 1))
    assert len(store) == 1002  # not yet: one sweep a minute at most
    clock.now += 60
    reserve(store, (RPM, 1))
    assert len(store) == 2  # the day bucket and this minute's rpm


def test_bucket_keys_keep_limits_apart() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7))
    limits = [
        Limit("key:a|b", "rpm", "requests", "minute", 1),
        Limit("key:a", "b|rpm", "requests", "minute", 1),
        Limit("key:a", "rpm", "tokens", "minute", 1),
        Limit("key:a", "rpm", "requests", "day", 1),
        Limit("key:a", "rpm", "requests", "minute", 1),
    ]
    held = reserve(store, *((limit, 1) for limit in limits)).held
    assert len({h.bucket for h in held}) == len(limits)
    assert all(h.remaining == 0 for h in held)


def test_rate_limit_message_and_code() -> None:
    store, _ = store_at(ts(2026, 3, 5, 10, 7, 37))
    rpm = Limit("key:app", "rpm", "requests", "minute", 60)
    reserve(store, (rpm, 60))
    error = refusal(store, (rpm, 1))
    assert isinstance(error, RateLimited)
    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    assert error.message == (
        "Rate limit 'rpm' of key:app reached (60 requests per minute); resets in 23 s."
    )
    tpd = Limit("org:acme", "tokens_per_day", "tokens", "day", 100_000)
    error = refusal(store, (tpd, 100_001))
    assert error.message == (
        "Rate limit 'tokens_per_day' of org:acme reached (100,000 tokens per day); resets in 14 h."
    )


def test_budget_message_and_code() -> None:
    store, _ = store_at(ts(2026, 11, 23, 17, 0))
    reserve(store, (BUDGET, 49_990_000))
    error = refusal(store, (BUDGET, 20_000))
    assert error.code == "budget_exceeded"
    assert error.status == 429
    assert error.remaining == 10_000
    assert error.message == (
        "Budget 'budget_month' of org:acme ($50.00 per month) is spent; resets 2026-12-01."
    )
    assert error.body()["error"]["code"] == "budget_exceeded"  # type: ignore[index]
    daily = Limit("team:ml", "budget_day", "usd_micros", "day", 1_234_500)
    error = refusal(store, (daily, 2_000_000))
    assert error.message == (
        "Budget 'budget_day' of team:ml ($1.2345 per day) is spent; resets 2026-11-24."
    )


def test_build_limit_store() -> None:
    assert isinstance(build_limit_store(None), InProcessLimitStore)
    assert isinstance(build_limit_store("memory"), InProcessLimitStore)
    with pytest.raises(ValueError, match="unsupported"):
        build_limit_store("postgresql://localhost/x")
