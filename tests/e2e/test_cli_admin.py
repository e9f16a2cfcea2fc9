"""``sluicegate orgs | teams | keys | usage | db``, run as processes against a real gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

CLI = str(Path(sys.executable).parent / "sluicegate")


@pytest.fixture
def gateway(upstream_url: str, tmp_path: Path) -> Iterator[str]:
    raw: dict[str, Any] = {
        "database": {"url": sqlite_url(tmp_path)},
        "models": [
            {
                "name": "gpt-4o-mini",
                "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
            }
        ],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    with running(app) as url:
        yield url


def cli(url: str, *args: str, key: str = MASTER_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICEGATE_URL": url, "SLUICEGATE_ADMIN_KEY": key}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env=env)


def test_create_an_org_and_a_key_with_limits_then_read_the_usage_report(gateway: str) -> None:
    made = cli(gateway, "orgs", "create", "acme", "--tokens-per-day", "1000000")
    assert made.returncode == 0, made.stderr
    assert "acme" in made.stdout and "tokens_per_day=1000000" in made.stdout

    created = cli(
        gateway,
        "keys", "create", "--org", "acme", "--role", "developer",
        "--rpm", "60", "--tpm", "100000", "--budget", "50usd/month", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["limits"] == {"rpm": 60, "tpm": 100000, "budget_usd_month": 50.0}

    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key["key"], max_retries=0)
    for _ in range(3):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
        )

    deadline = time.monotonic() + 10
    while True:
        report = cli(gateway, "usage", "report", "--org", "acme", "--period", "month", "--json")
        assert report.returncode == 0, report.stderr
        if json.loads(report.stdout)["totals"]["requests"] == 3:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    table = cli(gateway, "usage", "report", "--org", "acme")
    assert table.returncode == 0 and "gpt-4o-mini" in table.stdout

    listed = cli(gateway, "keys", "list", "--org", "acme")
    assert key["id"] in listed.stdout and key["key"] not in listed.stdout

    rotated = cli(gateway, "keys", "rotate", key["id"], "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)
    revoked = cli(gateway, "keys", "revoke", new_key["id"])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway + "/v1", api_key=new_key["key"]).models.list()


def test_errors_are_one_clear_line(gateway: str) -> None:
    bad_budget = cli(gateway, "keys", "create", "--budget", "lots")
    assert bad_budget.returncode == 1
    assert "50usd/month" in bad_budget.stderr and "Traceback" not in bad_budget.stderr

    not_admin = cli(gateway, "orgs", "list", key="sk-not-a-real-key-000000")
    assert not_admin.returncode == 1 and "(HTTP 401)" in not_admin.stderr

    cli(gateway, "orgs", "create", "dup")
    again = cli(gateway, "orgs", "create", "dup")
    assert again.returncode == 1 and "already exists" in again.stderr

    nowhere = cli("http://127.0.0.1:9", "orgs", "list")
    assert nowhere.returncode == 1 and "cannot reach the gateway" in nowhere.stderr


def test_db_commands_migrate_a_database(tmp_path: Path) -> None:
    config = tmp_path / "db.yaml"
    config.write_text(
        json.dumps(
            {
                "database": {"url": sqlite_url(tmp_path)},
                "models": [
                    {
                        "name": "m",
                        "deployments": [
                            {"provider": "openai", "base_url": "http://127.0.0.1:9/v1"}
                        ],
                    }
                ],
            }
        )
    )
    up = subprocess.run(
        [CLI, "db", "--config", str(config), "upgrade"], capture_output=True, text=True
    )
    assert up.returncode == 0 and "at 0001 (latest 0001)" in up.stdout, up.stderr
    down = subprocess.run(
        [CLI, "db", "--config", str(config), "downgrade", "base"], capture_output=True, text=True
    )
    assert down.returncode == 0 and "at none" in down.stdout, down.stderr
