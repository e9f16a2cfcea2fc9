"""The gateway's audit log: every call and admin change, verifiable, tamper-evident."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.servers import running

CLI = str(Path(sys.executable).parent / "sluicegate")
AUDIT_KEY = "audit-test-signing-key-0123456789"


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICEGATE_AUDIT_KEY": AUDIT_KEY}
    return subprocess.run(
        [CLI, "audit", "verify", str(directory)], capture_output=True, text=True, env=env
    )


def _config(upstream_url: str, tmp_path: Path, **key: str) -> Config:
    """A gateway over the fake upstream, auditing into tmp_path/audit with ``key``."""
    audit = {"enabled": True, "directory": str(tmp_path / "audit"), **key}
    return Config.model_validate(
        {
            "database": {"url": sqlite_url(tmp_path)},
            "audit": audit,
            "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
            "models": [
                {
                    "name": "fake-chat",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
                }
            ],
        }
    )


def _entries(directory: Path) -> list[dict[str, Any]]:
    lines = []
    for file in sorted(directory.glob("audit-*.jsonl")):
        lines += [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    return [line for line in lines if "seq" in line and "kind" in line]


def test_calls_and_admin_changes_are_audited_and_tampering_is_found(
    upstream_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "audit"
    app = create_app(
        _config(upstream_url, tmp_path, signing_key=AUDIT_KEY), MasterKey(MASTER_KEY, "test")
    )
    chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        auth = {"authorization": f"Bearer {APP_KEY}"}
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
        confidential = {**auth, "x-sluicegate-data-level": "confidential"}
        client.post("/v1/chat/completions", json=chat, headers=confidential)
        assert client.post("/v1/chat/completions", json=chat).status_code == 401
        created = client.post(
            "/admin/keys",
            json={"name": "audited"},
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        ).json()

    verified = _verify(directory)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    entries = _entries(directory)
    requests = [e for e in entries if e["kind"] == "request"]
    assert [e["status"] for e in requests] == [200, 503, 401]
    assert requests[0]["served_model"] == "fake-chat" and requests[0]["data_level"] == "internal"
    assert requests[1]["data_level"] == "confidential"
    assert requests[1]["decisions"]["route"] == "self-hosted-only:confidential"
    admin = [e for e in entries if e["kind"] == "admin"]
    assert admin and admin[0]["action"] == "POST /admin/keys"
    assert admin[0]["target"] == created["id"]
    everything = "".join(f.read_text() for f in directory.glob("audit-*.jsonl"))
    assert created["key"] not in everything and APP_KEY not in everything

    # Edit one field of the second entry: verify names it.
    file = sorted(directory.glob("audit-*.jsonl"))[0]
    text = file.read_text()
    file.write_text(text.replace('"status":503', '"status":200', 1))
    tampered = _verify(directory)
    assert tampered.returncode == 1
    assert "first bad seq 2" in tampered.stdout and "altered" in tampered.stdout


def test_an_ed25519_signed_log_is_verified_with_the_public_key(
    upstream_url: str, tmp_path: Path
) -> None:
    key = tmp_path / "audit.pem"
    made = subprocess.run([CLI, "audit", "keygen", str(key)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert (key.stat().st_mode & 0o777) == 0o600
    directory = tmp_path / "audit"
    config = _config(upstream_url, tmp_path, signing_key_file=str(key))
    app = create_app(config, MasterKey(MASTER_KEY, "test"))
    chat = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    with running(app) as url, httpx2.Client(base_url=url) as client:
        auth = {"authorization": f"Bearer {APP_KEY}"}
        assert client.post("/v1/chat/completions", json=chat, headers=auth).status_code == 200
    public = f"{key}.pub"
    env = {k: v for k, v in os.environ.items() if k != "SLUICEGATE_AUDIT_KEY"}
    verified = subprocess.run(
        [CLI, "audit", "verify", str(directory), "--key-file", public],
        capture_output=True,
        text=True,
        env=env,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK" in verified.stdout
    records = [
        json.loads(line)
        for file in directory.glob("audit-*.jsonl")
        for line in file.read_text().splitlines()
    ]
    assert {r["alg"] for r in records if "sig" in r} == {"ed25519"}
    # The auditor's public key can check but not sign: the private key never left.
    assert "PRIVATE" not in "".join(f.read_text() for f in directory.glob("*") if f.is_file())
