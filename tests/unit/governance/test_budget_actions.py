"""Budget alerts (once per threshold per window) and reroute decisions, on the in-process store."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from sluicegate.config.governance import BudgetActionsConfig
from sluicegate.governance.budget_actions import AlertDedupe, BudgetWatch, InProcessDedupe
from sluicegate.governance.limits import InProcessLimitStore, Limit, Reservation


def ts(year: int, month: int, day: int, hour: int = 0) -> float:
    return datetime(year, month, day, hour, tzinfo=UTC).timestamp()


MARCH = ts(2026, 3, 5, 10)
APRIL = ts(2026, 4, 2, 10)
DOLLAR = 1_000_000

ORG = Limit("org:acme", "budget_usd_month", "usd_micros", "month", 100 * DOLLAR)
KEY_DAY = Limit("key:app", "budget_usd_day", "usd_micros", "day", 10 * DOLLAR)
RPM = Limit("key:app", "rpm", "requests", "minute", 1000)
REROUTE = BudgetActionsConfig(reroute_at=0.9, reroute_to="local-small")


class Spender:
    """A limit store and a watch, as the admit stage drives them."""

    def __init__(
        self, config: BudgetActionsConfig | None = None, dedupe: AlertDedupe | None = None
    ) -> None:
        self.now = MARCH
        self.store = InProcessLimitStore(clock=lambda: self.now)
        self.watch = BudgetWatch(config or BudgetActionsConfig(), dedupe=dedupe)

    def spend(self, dollars: float, now: float = MARCH, *limits: Limit) -> Reservation:
        asks = [(RPM, 1), *((limit, round(dollars * DOLLAR)) for limit in (limits or (ORG,)))]
        self.now = now
        reservation = self.store.reserve_now(asks, now)
        self.watch.observe(reservation, now)
        return reservation


def test_each_threshold_alerts_once_per_window() -> None:
    s = Spender()
    s.spend(79)
    assert not s.watch.alerts
    s.spend(1)  # exactly 80 %
    assert s.watch.alerts == {("org:acme", "budget_usd_month", 0.8): 1}
    s.spend(5)
    s.spend(14)
    assert sum(s.watch.alerts.values()) == 1
    s.spend(1)  # 100 %
    s.spend(0)
    assert s.watch.alerts == {
        ("org:acme", "budget_usd_month", 0.8): 1,
        ("org:acme", "budget_usd_month", 1.0): 1,
    }


def test_one_jump_past_several_thresholds_alerts_for_each() -> None:
    s = Spender(BudgetActionsConfig(alert_at=[0.5, 0.8, 1.0]))
    s.spend(95)
    assert sorted(t for _, _, t in s.watch.alerts) == [0.5, 0.8]


def test_a_new_window_rearms_the_thresholds() -> None:
    s = Spender()
    s.spend(85)
    s.spend(10, APRIL)  # a fresh bucket: 10 %
    assert sum(s.watch.alerts.values()) == 1
    s.spend(75, APRIL)
    assert s.watch.alerts[("org:acme", "budget_usd_month", 0.8)] == 2


def test_a_share_that_falls_back_does_not_alert_again() -> None:
    s = Spender()
    reservation = s.spend(85)
    s.store.settle_now(reservation, {ORG: 70 * DOLLAR})  # the call cost less than reserved
    s.spend(0)
    s.spend(5)
    assert sum(s.watch.alerts.values()) == 1


def test_a_changed_limit_rearms_the_thresholds() -> None:
    s = Spender()
    s.spend(85)
    raised = Limit(ORG.scope, ORG.name, ORG.unit, ORG.window, 200 * DOLLAR)
    s.spend(0, MARCH, raised)  # the same bucket, now 42.5 % of the new limit
    assert sum(s.watch.alerts.values()) == 1
    s.spend(80, MARCH, raised)
    assert s.watch.alerts[("org:acme", "budget_usd_month", 0.8)] == 2


def test_each_budget_counts_on_its_own() -> None:
    s = Spender()
    s.spend(8.5, MARCH, ORG, KEY_DAY)  # 8.5 % of the org's month, 85 % of the key's day
    assert s.watch.alerts == {("key:app", "budget_usd_day", 0.8): 1}


def test_a_zero_budget_counts_as_spent() -> None:
    zero = Limit("org:free", "budget_usd_month", "usd_micros", "month", 0)
    s = Spender(REROUTE)
    s.spend(0, MARCH, zero)
    assert s.watch.alerts == {
        ("org:free", "budget_usd_month", 0.8): 1,
        ("org:free", "budget_usd_month", 1.0): 1,
    }
    assert s.watch.reroute_for([zero], MARCH) == "local-small"


def test_requests_and_tokens_are_ignored() -> None:
    s = Spender(REROUTE)
    full = Limit("key:app", "rpm", "requests", "minute", 1)
    s.store.reserve_now([(full, 1)], MARCH)
    s.watch.observe(s.store.reserve_now([(full, 0)], MARCH), MARCH)
    assert not s.watch.alerts
    assert s.watch.reroute_for([full], MARCH) is None


def test_the_alert_is_logged_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.governance")
    s = Spender()
    s.spend(80)
    (record,) = [r for r in caplog.records if r.getMessage() == "budget alert"]
    assert record.levelno == logging.WARNING
    fields = {k: getattr(record, k) for k in ("scope", "budget", "limit_usd", "spent_usd")}
    assert fields == {
        "scope": "org:acme",
        "budget": "budget_usd_month",
        "limit_usd": 100.0,
        "spent_usd": 80.0,
    }
    assert (record.share, record.threshold) == (0.8, 0.8)  # type: ignore[attr-defined]
    assert record.resets_at == "2026-04-01T00:00:00Z"  # type: ignore[attr-defined]


def test_reroute_past_the_share_until_the_window_resets() -> None:
    s = Spender(REROUTE)
    assert s.watch.reroute_for([RPM, ORG], MARCH) is None  # never seen: no reroute
    s.spend(89)
    assert s.watch.reroute_for([RPM, ORG], MARCH) is None
    s.spend(1)
    assert s.watch.reroute_for([RPM, ORG], MARCH) == "local-small"
    assert s.watch.reroute_for([RPM, KEY_DAY], MARCH) is None  # another budget
    assert s.watch.reroute_for([ORG], ts(2026, 4, 1)) is None  # the month is over


def test_reroute_holds_for_the_rest_of_the_window_once_crossed() -> None:
    s = Spender(REROUTE)
    reservation = s.spend(95)
    assert s.watch.reroute_for([ORG], MARCH) == "local-small"
    s.store.settle_now(reservation, {ORG: 50 * DOLLAR})
    s.spend(0)  # the rerouted call costs nothing and sees a lower share
    assert s.watch.reroute_for([ORG], MARCH) == "local-small"


def test_no_reroute_unless_configured() -> None:
    s = Spender()
    s.spend(100)
    assert s.watch.reroute_for([ORG], MARCH) is None


def test_a_shared_dedupe_lets_one_replica_alert() -> None:
    dedupe = InProcessDedupe()
    one, two = Spender(dedupe=dedupe), Spender(dedupe=dedupe)
    one.spend(85)
    two.spend(90)
    assert sum(one.watch.alerts.values()) == 1
    assert not two.watch.alerts
    two.spend(85, APRIL)  # a new window: whoever sees it first alerts
    assert sum(two.watch.alerts.values()) == 1


def test_the_in_process_dedupe_forgets_after_its_ttl() -> None:
    dedupe = InProcessDedupe()
    assert dedupe.first_now("k", 10, 100.0)
    assert not dedupe.first_now("k", 10, 105.0)
    assert dedupe.first_now("k", 10, 111.0)
    assert asyncio.run(dedupe.first("other", 10))


def test_finished_windows_are_swept() -> None:
    s = Spender()
    for day in range(1, 4):
        scoped = Limit(f"key:{day}", "budget_usd_day", "usd_micros", "day", DOLLAR)
        s.spend(0.1, ts(2026, 3, day, 12), scoped)
    assert len(s.watch._windows) == 1


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http"):
        BudgetWatch(BudgetActionsConfig(webhook="ftp://example.com/x"))


def test_without_an_event_loop_the_alert_is_still_logged() -> None:
    s = Spender(BudgetActionsConfig(webhook="http://127.0.0.1:9/hook"))
    s.spend(80)  # no running loop: the webhook is skipped, never raised into the call
    assert sum(s.watch.alerts.values()) == 1
