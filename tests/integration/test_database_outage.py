"""PostgreSQL stops mid-traffic: known keys keep working, unknown keys get 503, nothing is lost.

This stops and restarts the machine's PostgreSQL cluster (as `make test` may start
it: ``pg_ctlcluster``), so it always restarts it, whatever happens in the test.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import MASTER_KEY
from tests.fakes.databases import fresh_postgres
from tests.fakes.servers import running

HELLO = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
#: Well-formed, but issued by no one: the gateway cannot tell that without its database.
UNKNOWN = "sk-sg-zzzzzzzzzzzz_" + "x" * 40


def _cluster() -> list[str]:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        pytest.fail("this test needs the machine's PostgreSQL cluster (pg_ctlcluster)")
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _postgres(action: str) -> None:
    subprocess.run([*_cluster(), action, *(["-m", "fast"] if action == "stop" else [])], check=True)


def _wait_for_postgres(up: bool, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(url, connect_timeout=1):
                reached = True
        except psycopg.OperationalError:
            reached = False
        if reached == up:
            return
        assert time.monotonic() < deadline, f"PostgreSQL never became {'up' if up else 'down'}"
        time.sleep(0.2)


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_known_keys_survive_a_database_outage_and_everything_recovers(
    database: str, upstream_url: str
) -> None:
    raw: dict[str, Any] = {
        "database": {"url": database},
        "governance": {"refresh_interval": 0.3},
        "models": [
            {
                "name": "fake-chat",
                "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
            }
        ],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    with running(app) as url, httpx2.Client(base_url=url, timeout=30) as client:

        def chat(key: str) -> int:
            reply = client.post(
                "/v1/chat/completions", json=HELLO, headers={"authorization": f"Bearer {key}"}
            )
            return reply.status_code

        created = client.post("/admin/keys", json={"name": "known"}, headers=admin)
        assert created.status_code == 201
        known = created.json()["key"]
        assert chat(known) == 200
        assert chat(UNKNOWN) == 401
        calls = 2

        usage_log = app.state.gateway.usage_log
        try:
            _postgres("stop")
            _wait_for_postgres(False, database)
            _until(lambda: chat(UNKNOWN) == 503, 10, "an unknown key never got 503")
            calls += 1
            for _ in range(20):
                assert chat(known) == 200
                calls += 1
            refused = client.post("/admin/keys", json={"name": "later"}, headers=admin)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "database_unavailable"
            calls += 1
            assert usage_log.pending > 0  # held, not lost
        finally:
            _postgres("start")
            _wait_for_postgres(True, database)

        _until(lambda: chat(UNKNOWN) == 401, 15, "unknown keys never went back to 401")
        assert chat(known) == 200
        assert client.post("/admin/keys", json={"name": "after"}, headers=admin).status_code == 201
        _until(lambda: usage_log.pending == 0, 30, "usage events were never written")
        assert usage_log.dropped == 0

    with psycopg.connect(database) as connection:
        row = connection.execute("SELECT count(*) FROM usage_events").fetchone()
    assert row is not None
    # Every call above, plus the UNKNOWN polls (at least one each way), and the admin calls.
    assert row[0] >= calls + 3
