"""routing/breaker: when a deployment's circuit opens, half-opens and closes, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.config.routing import BreakerConfig
from sluicegate.routing.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def breaker(clock: Clock, **fields: Any) -> CircuitBreaker:
    # By default only consecutive failures count: the rate needs more calls than any test makes.
    settings: dict[str, Any] = {"failures": 3, "min_requests": 1000, "recovery": 5.0, **fields}
    return CircuitBreaker(BreakerConfig(**settings), clock=clock)


def state(b: CircuitBreaker) -> str:
    # A function, so mypy does not narrow the property's type between two reads.
    return b.state


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.record_failure()


def opened(clock: Clock, **fields: Any) -> CircuitBreaker:
    b = breaker(clock, **fields)
    fail(b, b.config.failures)
    assert state(b) == "open"
    return b


def test_starts_closed_and_admits() -> None:
    b = breaker(Clock())
    assert state(b) == "closed"
    assert all(b.allow() for _ in range(100))
    assert b.can_try()
    assert b.retry_in() == 0.0
    assert b.opened == 0


def test_consecutive_failures_open_it() -> None:
    b = breaker(Clock(), failures=3)
    fail(b, 2)
    assert state(b) == "closed"
    assert b.allow()
    b.record_failure()
    assert state(b) == "open"
    assert not b.allow()
    assert not b.can_try()
    assert b.opened == 1


def test_a_success_resets_the_consecutive_count() -> None:
    b = breaker(Clock(), failures=3)
    fail(b, 2)
    b.record_success()
    fail(b, 2)
    assert state(b) == "closed"
    b.record_failure()
    assert state(b) == "open"


def test_failure_rate_over_the_window_opens_it() -> None:
    b = breaker(Clock(), failures=100, failure_rate=0.5, min_requests=4, window=10.0)
    for ok in (True, False, True):
        if ok:
            b.record_success()
        else:
            b.record_failure()
    assert state(b) == "closed"  # 1 of 3 failed, and 3 calls are below min_requests
    b.record_failure()  # 2 of 4 = 0.5
    assert state(b) == "open"


def test_failure_rate_needs_min_requests() -> None:
    b = breaker(Clock(), failures=100, failure_rate=0.5, min_requests=10, window=10.0)
    for _ in range(4):
        b.record_success()
        b.record_failure()
    b.record_failure()  # 5 of 9 failed, but only 9 calls
    assert state(b) == "closed"
    b.record_failure()  # 6 of 10
    assert state(b) == "open"


def test_old_failures_age_out_of_the_window() -> None:
    clock = Clock()
    b = breaker(clock, failures=100, failure_rate=0.5, min_requests=4, window=10.0)
    fail(b, 3)
    clock.advance(10.5)
    for _ in range(3):
        b.record_success()
    b.record_failure()
    # 1 of the last 4 within 10 s failed; counting the aged-out ones would be 4 of 7.
    assert state(b) == "closed"
    b.record_failure()
    b.record_failure()  # 3 of 6 within the window
    assert state(b) == "open"


def test_recovery_turns_it_half_open() -> None:
    clock = Clock()
    b = opened(clock, recovery=5.0)
    clock.advance(4.9)
    assert state(b) == "open"
    assert not b.allow()
    assert b.retry_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert state(b) == "half_open"
    assert b.retry_in() == 0.0


def test_retry_in_counts_down_while_open() -> None:
    clock = Clock()
    b = opened(clock, recovery=30.0)
    assert b.retry_in() == pytest.approx(30.0)
    clock.advance(12.0)
    assert b.retry_in() == pytest.approx(18.0)
    clock.advance(20.0)
    assert b.retry_in() == 0.0


@pytest.mark.parametrize("probes", [1, 2, 3])
def test_half_open_admits_only_its_probes(probes: int) -> None:
    clock = Clock()
    b = opened(clock, half_open_probes=probes)
    clock.advance(5.0)
    assert [b.allow() for _ in range(probes + 2)] == [True] * probes + [False, False]
    assert state(b) == "half_open"
    assert not b.can_try()


def test_can_try_does_not_take_a_probe() -> None:
    clock = Clock()
    b = opened(clock, half_open_probes=1)
    clock.advance(5.0)
    assert b.can_try() and b.can_try()
    assert b.allow()
    assert not b.can_try()


def test_probe_success_closes_it() -> None:
    clock = Clock()
    b = opened(clock, failures=3)
    clock.advance(5.0)
    assert b.allow()
    b.record_success()
    assert state(b) == "closed"
    assert all(b.allow() for _ in range(10))
    # Counts start afresh: two failures do not reopen it, the third does.
    fail(b, 2)
    assert state(b) == "closed"
    b.record_failure()
    assert state(b) == "open"
    assert b.opened == 2


def test_probe_failure_reopens_it_for_a_full_recovery() -> None:
    clock = Clock()
    b = opened(clock, recovery=5.0)
    clock.advance(5.0)
    assert b.allow()
    b.record_failure()
    assert state(b) == "open"
    assert b.opened == 2
    assert not b.allow()
    assert b.retry_in() == pytest.approx(5.0)
    clock.advance(5.0)
    assert state(b) == "half_open"
    assert b.allow()


def test_a_late_failure_while_open_does_not_extend_it() -> None:
    clock = Clock()
    b = opened(clock, recovery=5.0)
    clock.advance(3.0)
    b.record_failure()  # a call that started before the breaker opened
    assert b.retry_in() == pytest.approx(2.0)
    assert b.opened == 1


def test_force_half_open_skips_the_rest_of_recovery() -> None:
    clock = Clock()
    b = opened(clock, recovery=30.0)
    clock.advance(1.0)
    b.force_half_open()
    assert state(b) == "half_open"
    assert b.retry_in() == 0.0
    assert b.allow()
    assert not b.allow()
    b.record_success()
    assert state(b) == "closed"


def test_force_half_open_then_failure_reopens() -> None:
    clock = Clock()
    b = breaker(clock)
    b.force_half_open()  # health checks saw it come back before any traffic failed
    assert state(b) == "half_open"
    assert b.allow()
    b.record_failure()
    assert state(b) == "open"
    assert b.retry_in() == pytest.approx(5.0)


def test_a_probe_without_an_outcome_does_not_wedge_it() -> None:
    clock = Clock()
    b = opened(clock, recovery=5.0, half_open_probes=1)
    clock.advance(5.0)
    assert b.allow()  # the probe goes out and its result is never recorded
    clock.advance(4.9)
    assert not b.can_try()  # still within a recovery period of the probe: it may answer
    clock.advance(0.1)
    assert b.can_try()
    assert b.allow()
    assert not b.allow()


def test_a_probe_released_without_verdict_frees_its_slot() -> None:
    clock = Clock()
    b = opened(clock, recovery=5.0, half_open_probes=1)
    clock.advance(5.0)
    assert b.allow()
    assert not b.can_try()
    b.release_probe()
    assert state(b) == "half_open"
    assert b.allow()
