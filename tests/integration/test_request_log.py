"""The request log: one JSON line per request, who and what and why, never the prompt or PII."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

SECRET_WORDS = "tangerine-submarine-quartz"
EMAIL = "alice.liddell@example.com"


def _lines(
    prompts: bool, upstream_url: str, tmp_path: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    config = Config.model_validate(
        {
            "database": {"url": sqlite_url(tmp_path)},
            "safety": {"pii": {"mode": "redact", "entities": ["EMAIL_ADDRESS"]}},
            "observability": {"logs": {"prompts": prompts}},
            "models": [
                {
                    "name": "chat",
                    "deployments": [
                        {"provider": "openai", "base_url": f"{upstream_url}/ok/v1", "id": "d1"}
                    ],
                }
            ],
        }
    )
    app = create_app(config, MasterKey(MASTER_KEY, "test"))
    out = io.BytesIO()
    app.state.gateway.access_log.out = out
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        assert client.post("/admin/orgs", json={"name": "acme"}, headers=admin).status_code == 201
        created = client.post(
            "/admin/keys", json={"name": "k", "org": "acme", "role": "developer"}, headers=admin
        ).json()
        auth = {"authorization": f"Bearer {created['key']}"}
        content = f"Write to {EMAIL} about {SECRET_WORDS}."
        body = {"model": "chat", "messages": [{"role": "user", "content": content}]}
        assert client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
        missing = {"model": "nope", "messages": [{"role": "user", "content": SECRET_WORDS}]}
        assert client.post("/v1/chat/completions", json=missing, headers=auth).status_code == 404
    text = out.getvalue().decode()
    return [orjson.loads(line) for line in text.splitlines()], created


@pytest.mark.parametrize("prompts", [False, True])
def test_one_json_line_per_request_without_prompt_or_pii(
    prompts: bool, upstream_url: str, tmp_path: Path
) -> None:
    lines, created = _lines(prompts, upstream_url, tmp_path)
    calls = [line for line in lines if line["endpoint"] == "chat"]
    assert len(calls) == 2
    served, refused = calls
    assert served["msg"] == "request" and served["status"] == 200
    assert served["org"] == "acme"
    assert served["key"] == created["prefix"]
    assert served["model"] == "chat" and served["deployment"] == "d1"
    assert served["attempts"] == 1
    assert served["prompt_tokens"] == 11
    assert served["decisions"]["pii"].startswith("redact")
    assert served["request_id"] and served["ts"].endswith("Z")
    assert refused["status"] == 404 and refused["error"] == "model_not_found"
    dumped = "\n".join(orjson.dumps(line).decode() for line in lines)
    # The key's secret never; the raw email never — redaction happened before logging.
    assert EMAIL not in dumped
    assert created["key"] not in dumped and MASTER_KEY not in dumped
    if prompts:
        logged = orjson.dumps(served["request"]).decode()
        assert SECRET_WORDS in logged and "<EMAIL_1>" in logged
    else:
        assert SECRET_WORDS not in dumped
        assert "request" not in served
