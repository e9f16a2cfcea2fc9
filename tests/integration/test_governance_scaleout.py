"""Scale-out: 4 real ``sluicegate serve`` processes share one key's limits exactly via Redis,
and one PostgreSQL database for keys and usage events.

200 concurrent clients, spread round-robin over the 4 gateways, hit one key with an
RPM limit, a TPM limit and a dollar budget (one key per limit, so counters never
mix). The gateways count in a dedicated Redis database (7) under the default key
prefix (``governance.redis_prefix``, ``sg:``), flushed before and after this
module; key names carry a per-run suffix as well.

The token and budget scenarios go through an upstream that answers after
``HOLD`` seconds, so every admitted call still holds its reservation while the
others are refused: the admitted count is then the limit divided by one
reservation, and an overshoot would show as an extra admission.

The key directory refreshes only once a minute here, so a key issued on one
gateway and working at once on the others shows the Redis change channel.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sluicegate.governance.cost import cost
from sluicegate.governance.limits import BucketKeys, Limit, window_span
from sluicegate.governance.pricing import load_catalogue
from sluicegate.governance.usage import UsageDetail
from tests.conftest import MASTER_KEY
from tests.fakes.databases import fresh_postgres
from tests.fakes.servers import free_port

STATE = "redis://127.0.0.1:6379/7"
CLI = str(Path(sys.executable).parent / "sluicegate")
GATEWAYS = 4
CLIENTS = 200
#: Seconds the slow upstream holds each admitted call: longer than the burst takes.
HOLD = 2.0
SUFFIX = uuid.uuid4().hex[:8]
#: 64 characters and 4 per message: the documented estimate makes 20 input tokens.
CONTENT = "x" * 64
INPUT_ESTIMATE = 20

RPM = 50
TPM = 5000
TPM_MAX_TOKENS = 480  # 20 + 480: one reservation is 500 tokens
BUDGET_USD = 0.0005  # 500 micro-dollars
BUDGET_MAX_TOKENS = 100  # gpt-4o-mini: 20 * 0.15 + 100 * 0.60 = 63 micro-dollars reserved


async def _redis_up() -> bool:
    client = Redis.from_url(STATE)
    try:
        return bool(await client.ping())
    except (OSError, RedisError):
        return False
    finally:
        await client.aclose()


async def _flush() -> None:
    client = Redis.from_url(STATE)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def _key(name: str) -> str:
    return f"sk-scaleout-{name}-{SUFFIX}-0123456789"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, upstream_url: str, database: str
) -> Iterator[list[str]]:
    """4 gateway processes over one Redis state and one database; their base URLs."""
    if not asyncio.run(_redis_up()):
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is unreachable (CI is set: `make services`)")
        pytest.skip("Redis on 127.0.0.1:6379 is unreachable")
    asyncio.run(_flush())
    config: dict[str, Any] = {
        "database": {"url": database},
        "governance": {"state": STATE, "refresh_interval": 60},
        "auth": {
            "keys": [
                {"name": f"rpm-{SUFFIX}", "key": _key("rpm"), "limits": {"rpm": RPM}},
                {"name": f"tpm-{SUFFIX}", "key": _key("tpm"), "limits": {"tpm": TPM}},
                {
                    "name": f"budget-{SUFFIX}",
                    "key": _key("budget"),
                    "limits": {"budget_usd_day": BUDGET_USD},
                },
            ]
        },
        "models": [
            {
                "name": "gpt-4o-mini",
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/sleep-{HOLD}/v1"}
                ],
            },
            {
                "name": "fast-chat",
                "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
            },
        ],
    }
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    urls: list[str] = []
    try:
        for index in range(GATEWAYS):
            home = tmp_path_factory.mktemp(f"gw{index}")
            port = free_port()
            # JSON is YAML: the config file needs no YAML writer.
            raw = {**config, "server": {"port": port, "access_log": False}}
            (home / "gw.yaml").write_bytes(orjson.dumps(raw))
            log = home / "gateway.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [CLI, "serve", "--config", str(home / "gw.yaml"), "--log-level", "warning"],
                    cwd=home,
                    env={**os.environ, "SLUICEGATE_MASTER_KEY": MASTER_KEY},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            procs.append((proc, log))
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        for (proc, log), url in zip(procs, urls, strict=True):
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if httpx2.get(f"{url}/health").status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{url} never became healthy"
                time.sleep(0.05)
        yield urls
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        asyncio.run(_flush())


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    headers: httpx2.Headers
    body: dict[str, Any]


def _clear_of_window_end() -> None:
    """Start a burst well inside one minute, so that all of it counts in one bucket."""
    into = time.time() % 60
    if into > 50:
        time.sleep(60.5 - into)


async def _burst(urls: list[str], key: str, body: dict[str, Any]) -> list[Result]:
    clients = [
        httpx2.AsyncClient(
            base_url=url,
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
            limits=httpx2.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS),
        )
        for url in urls
    ]
    gate = asyncio.Event()

    async def one(index: int) -> Result:
        await gate.wait()
        reply = await clients[index % len(clients)].post("/v1/chat/completions", json=body)
        return Result(reply.status_code, reply.headers, reply.json())

    try:
        tasks = [asyncio.create_task(one(i)) for i in range(CLIENTS)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


def _bucket(limit: Limit, now: float) -> str:
    return BucketKeys("sg:lim:").key(limit, window_span(limit.window, now)[2])


async def _settled(key: str, expected: int) -> int | None:
    """The bucket's value once it equals ``expected``, or its last value after 2 s."""
    client = Redis.from_url(STATE)
    try:
        deadline = time.monotonic() + 2.0
        while True:
            raw = await client.get(key)
            value = None if raw is None else int(raw)
            if value == expected or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


def _split(results: list[Result], code: str, name: str) -> list[Result]:
    """The admitted results, after checking that every other one is a proper 429."""
    admitted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status != 200]
    for result in refused:
        assert result.status == 429, result
        assert result.body["error"]["code"] == code, result.body
        assert result.headers["x-ratelimit-name"] == name
        assert int(result.headers["retry-after"]) >= 0
    return admitted


def _chat(model: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": CONTENT}],
    }


def test_rpm_admits_exactly_the_limit_across_four_gateways(gateways: list[str]) -> None:
    _clear_of_window_end()
    started = time.monotonic()
    results = asyncio.run(_burst(gateways, _key("rpm"), _chat("fast-chat", 16)))
    elapsed = time.monotonic() - started
    admitted = _split(results, "rate_limit_exceeded", "rpm")
    assert len(admitted) == RPM, f"{len(admitted)} admitted in {elapsed:.2f} s"
    assert len(results) - len(admitted) == CLIENTS - RPM
    limit = Limit(f"key:rpm-{SUFFIX}", "rpm", "requests", "minute", RPM)
    assert asyncio.run(_settled(_bucket(limit, time.time()), RPM)) == RPM


def test_tpm_admits_at_most_the_limit_and_settles_to_usage(gateways: list[str]) -> None:
    reservation = INPUT_ESTIMATE + TPM_MAX_TOKENS
    _clear_of_window_end()
    now = time.time()
    results = asyncio.run(_burst(gateways, _key("tpm"), _chat("gpt-4o-mini", TPM_MAX_TOKENS)))
    admitted = _split(results, "rate_limit_exceeded", "tpm")
    # Every admitted call held its reservation for HOLD s while the rest were refused.
    assert TPM // reservation <= len(admitted) <= TPM // reservation + 1, len(admitted)
    used = sum(r.body["usage"]["total_tokens"] for r in admitted)
    limit = Limit(f"key:tpm-{SUFFIX}", "tpm", "tokens", "minute", TPM)
    assert asyncio.run(_settled(_bucket(limit, now), used)) == used


def test_budget_stops_admitting_and_settles_to_exact_cost(gateways: list[str]) -> None:
    catalogue = load_catalogue(None, {})
    price = catalogue.price_for("gpt-4o-mini", datetime.now(UTC))
    assert price is not None
    reserved = cost(
        UsageDetail(prompt_tokens=INPUT_ESTIMATE, completion_tokens=BUDGET_MAX_TOKENS), price
    ).micro_usd
    budget = round(BUDGET_USD * 1_000_000)
    _clear_of_window_end()
    now = time.time()
    results = asyncio.run(_burst(gateways, _key("budget"), _chat("gpt-4o-mini", BUDGET_MAX_TOKENS)))
    admitted = _split(results, "budget_exceeded", "budget_usd_day")
    assert budget // reserved <= len(admitted) <= budget // reserved + 1, len(admitted)
    spent = sum(
        cost(
            UsageDetail(
                prompt_tokens=r.body["usage"]["prompt_tokens"],
                completion_tokens=r.body["usage"]["completion_tokens"],
            ),
            price,
        ).micro_usd
        for r in admitted
    )
    assert spent > 0
    limit = Limit(f"key:budget-{SUFFIX}", "budget_usd_day", "usd_micros", "day", budget)
    assert asyncio.run(_settled(_bucket(limit, now), spent)) == spent


def _recorded(database: str, key_id: str, expected: int) -> tuple[int, int]:
    """(events, summed cost) of a key's usage events, once ``expected`` events are in."""
    import psycopg

    deadline = time.monotonic() + 10
    with psycopg.connect(database, autocommit=True) as connection:
        while True:
            row = connection.execute(
                "SELECT count(*), coalesce(sum(cost_micros), 0) FROM usage_events "
                "WHERE key_id = %s",
                (key_id,),
            ).fetchone()
            assert row is not None
            if row[0] >= expected or time.monotonic() > deadline:
                return int(row[0]), int(row[1])
            time.sleep(0.1)


def test_every_call_is_recorded_and_the_spend_matches_the_settled_budget(
    gateways: list[str], database: str
) -> None:
    """Runs after the budget burst: its admitted and refused calls are all in the database."""
    events, recorded = _recorded(database, f"budget-{SUFFIX}", CLIENTS)
    assert events == CLIENTS
    budget = round(BUDGET_USD * 1_000_000)
    limit = Limit(f"key:budget-{SUFFIX}", "budget_usd_day", "usd_micros", "day", budget)
    assert asyncio.run(_settled(_bucket(limit, time.time()), recorded)) == recorded


def test_a_key_issued_on_one_gateway_works_at_once_on_every_other(gateways: list[str]) -> None:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    created = httpx2.post(f"{gateways[0]}/admin/keys", json={"name": "fresh"}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    body = _chat("fast-chat", 5)
    deadline = time.monotonic() + 3  # the refresh interval is 60 s: only the channel is this fast
    for url in gateways[1:]:
        while True:
            reply = httpx2.post(
                f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            if reply.status_code == 200:
                break
            assert reply.status_code == 401 and time.monotonic() < deadline, reply.text
            time.sleep(0.05)
    key_id = created.json()["id"]
    assert httpx2.post(f"{gateways[0]}/admin/keys/{key_id}/revoke", headers=admin).is_success
    for url in gateways[1:]:
        while True:
            reply = httpx2.post(
                f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            if reply.status_code == 401:
                break
            assert time.monotonic() < deadline, "a revoked key still works"
            time.sleep(0.05)
