"""``sluicegate top`` against a real gateway: exact figures around known traffic, the
command as a process (JSON, a rich frame, the live view) and its errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from sluicegate.cli.top import fetch
from sluicegate.config.schema import Config
from sluicegate.observability.rates import compute, parse
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

CLI = str(Path(sys.executable).parent / "sluicegate")


@pytest.fixture
def gateway(upstream_url: str, tmp_path: Path) -> Iterator[str]:
    raw: dict[str, Any] = {
        "database": {"url": sqlite_url(tmp_path)},
        "auth": {"keys": [{"name": "app", "key": APP_KEY, "limits": {"rpm": 4}}]},
        "models": [
            {
                "name": "gpt-4o-mini",
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "id": "mini"}
                ],
            }
        ],
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    with running(app) as url:
        yield url


def top(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "top", *args], capture_output=True, text=True, timeout=60, env=_env(**env)
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    env["SLUICEGATE_DATA_DIR"] = os.environ["SLUICEGATE_DATA_DIR"]
    return {**env, **extra}


def test_two_scrapes_around_known_traffic_give_exact_figures(gateway: str) -> None:
    auth = {"authorization": f"Bearer {APP_KEY}"}
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    before = parse(fetch(gateway, MASTER_KEY))
    started = time.monotonic()
    with httpx2.Client(base_url=gateway) as client:
        for body, status in (
            (chat, 200),
            (chat, 200),
            ({**chat, "model": "no-such-model"}, 404),
            (chat, 200),
        ):
            assert (
                client.post("/v1/chat/completions", json=body, headers=auth).status_code == status
            )
        streamed = {**chat, "stream": True, "stream_options": {"include_usage": True}}
        with client.stream("POST", "/v1/chat/completions", json=streamed, headers=auth) as s:
            assert s.status_code == 200 and b"[DONE]" in s.read()
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 429
    after = parse(fetch(gateway, MASTER_KEY))
    seconds = time.monotonic() - started

    figures = compute(before, after, seconds)
    models = {m.model: m for m in figures.models}
    mini = models["gpt-4o-mini"]
    assert mini.requests == 5 and mini.by_class == {"2xx": 4, "4xx": 1}
    assert mini.requests_per_s == pytest.approx(5 / seconds)
    assert mini.error_percent == 0.0
    assert mini.prompt_tokens_per_s == pytest.approx(4 * 11 / seconds)  # 11 per fake reply
    assert mini.completion_tokens_per_s == pytest.approx(4 * 2 / seconds)  # "echo: hi"
    assert mini.p50_seconds is not None and 0 < mini.p50_seconds <= mini.p95_seconds  # type: ignore[operator]
    assert mini.ttft_p95_seconds is not None  # the one stream
    assert models["-"].by_class == {"4xx": 1}  # the made-up name is not a label
    assert figures.total.requests == 6
    assert figures.total.requests_per_s == pytest.approx(6 / seconds)
    assert figures.refusals == {"model_not_found": 1, "rate_limit_exceeded": 1}
    assert figures.in_flight == 0
    (deployment,) = figures.deployments
    assert (deployment.model, deployment.deployment) == ("gpt-4o-mini", "mini")
    assert deployment.healthy and deployment.breaker == "closed" and deployment.in_flight == 0
    usage = {q.name: q for q in figures.queues}["usage"]
    assert usage.dropped == 0 and usage.dropped_total == 0


def test_once_json_and_once_frame(gateway: str) -> None:
    as_json = top("--url", gateway, "--key", MASTER_KEY, "--once", "--json", "--interval", "0.3")
    assert as_json.returncode == 0, as_json.stderr
    figures = json.loads(as_json.stdout)
    assert figures["seconds"] >= 0.3
    # Nothing was sent between the two scrapes: zero, exactly, and the scrapes are no calls.
    assert figures["total"]["requests"] == 0 and figures["total"]["error_percent"] is None
    assert figures["deployments"] == [
        {
            "model": "gpt-4o-mini",
            "deployment": "mini",
            "healthy": True,
            "breaker": "closed",
            "in_flight": 0.0,
            "engine_waiting": None,
            "engine_running": None,
            "kv_cache_usage": None,
        }
    ]
    assert [m["model"] for m in figures["models"]] == ["gpt-4o-mini"]  # its queue depth gauge

    # The key from $SLUICEGATE_MASTER_KEY, the URL from $SLUICEGATE_URL.
    frame = top(
        "--once", "--interval", "0.2", SLUICEGATE_URL=gateway, SLUICEGATE_MASTER_KEY=MASTER_KEY
    )
    assert frame.returncode == 0, frame.stderr
    for expected in ("sluicegate top", "req/s", "gpt-4o-mini", "mini", "up", "closed", "usage"):
        assert expected in frame.stdout, frame.stdout


def test_the_key_from_the_master_key_file(gateway: str, tmp_path: Path) -> None:
    (tmp_path / "master_key").write_text(MASTER_KEY + "\n")
    done = top(
        "--url", gateway, "--once", "--json", "--interval", "0.1", SLUICEGATE_DATA_DIR=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"]["requests"] == 0


@pytest.mark.parametrize(
    ("key", "url", "message"),
    [
        ("sk-not-a-real-key-000000", None, "did not accept the key (HTTP 401)"),
        (APP_KEY, None, "not an admin key (HTTP 403)"),
        (MASTER_KEY, "http://127.0.0.1:9", "cannot reach the gateway at http://127.0.0.1:9"),
    ],
)
def test_a_failed_scrape_is_one_line_and_exit_2(
    gateway: str, key: str, url: str | None, message: str
) -> None:
    done = top("--url", url or gateway, "--key", key, "--once", "--interval", "0.1")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def test_no_key_anywhere_is_exit_2(gateway: str, tmp_path: Path) -> None:
    done = top("--url", gateway, "--once", SLUICEGATE_DATA_DIR=str(tmp_path))
    assert done.returncode == 2 and "no admin key" in done.stderr


def test_the_live_view_keeps_scraping_through_errors_until_interrupted(gateway: str) -> None:
    for key, expected in ((MASTER_KEY, "gpt-4o-mini"), ("sk-wrong-key-0000000000", "HTTP 401")):
        live = subprocess.Popen(
            [CLI, "top", "--url", gateway, "--key", key, "--interval", "0.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        time.sleep(3)  # start-up, then several scrapes
        assert live.poll() is None, live.communicate()  # still running, errors or not
        live.send_signal(signal.SIGINT)
        out, err = live.communicate(timeout=30)
        # Piped, rich's live view prints its last frame when it stops.
        assert live.returncode == 0, err
        assert expected in out and "Traceback" not in err
