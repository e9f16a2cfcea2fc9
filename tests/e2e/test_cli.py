"""The sluicegate command, run as a user runs it: a real process."""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai
import pytest

from tests.fakes.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "sluicegate")
EXAMPLE_ENV = {
    "SLUICEGATE_MASTER_KEY": "sk-example-master-key-000",
    "OPENAI_API_KEY": "sk-example",
    "ANTHROPIC_API_KEY": "sk-ant-example",
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_every_example_config_passes_check(example: str) -> None:
    result = run_cli("config", "check", f"examples/{example}", env=EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    assert f"examples/{example}: OK" in result.stdout


def test_config_check_names_file_field_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n"
        "  - name: a\n"
        "    deployments:\n"
        "      - provider: openai\n"
        "        base_url: http://127.0.0.1:9/v1\n"
        "        wieght: 2\n"
        "  - name: b\n"
        "    deployments:\n"
        "      - provider: vllm\n"
    )
    result = run_cli("config", "check", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "models[0](a).deployments[0].wieght: unknown field. Fix:" in result.stderr
    assert "models[1](b).deployments[0]: unknown provider. Fix: use one of" in result.stderr


def test_config_check_reports_missing_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "env.yaml"
    cfg.write_text(
        "models:\n  - name: a\n    deployments:\n"
        "      - provider: openai\n"
        "        base_url: http://127.0.0.1:9/v1\n"
        "        api_key: ${NO_SUCH_VAR_X}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_VAR_X"}
    result = subprocess.run(
        [CLI, "config", "check", str(cfg)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert "NO_SUCH_VAR_X" in result.stderr and "not set" in result.stderr


def test_models_lists_deployments() -> None:
    result = run_cli("models", "--config", "examples/platform-vllm-tei.yaml", env=EXAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["qwen2.5-7b-instruct", "chat", "chat0"] for line in lines)
    assert any(
        line.split()[:3] == ["snowflake-arctic-embed", "embedding", "tei0"] for line in lines
    )


def test_serve_refuses_several_workers_with_in_process_state() -> None:
    result = run_cli("serve", "--config", "examples/embedded.yaml", "--workers", "2")
    assert result.returncode == 2
    assert "--workers" in result.stderr


def _read_until(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"no {needle!r} in output: {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 65536)
    return seen.decode()


def test_serve_prints_how_to_use_it_and_serves(tmp_path: Path, upstream_url: str) -> None:
    port = free_port()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"server: {{port: {port}}}\n"
        "models:\n  - name: fake-chat\n    deployments:\n"
        f"      - {{provider: openai, base_url: '{upstream_url}/ok/v1'}}\n"
    )
    # The default data directory (./.sluicegate under cwd), as a user would have it.
    hidden = {"SLUICEGATE_MASTER_KEY", "SLUICEGATE_DATA_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    proc = subprocess.Popen(
        [CLI, "serve", "--config", str(cfg)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        banner = _read_until(proc, "curl", timeout=30)
        assert f"http://127.0.0.1:{port}/v1" in banner
        assert "fake-chat (chat)" in banner
        key_file = tmp_path / ".sluicegate" / "master_key"
        assert f"master key in {Path('.sluicegate') / 'master_key'}" in banner
        key = key_file.read_text().strip()
        assert key not in banner  # the key itself is never printed
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        reply = client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "hello"}]
        )
        assert reply.choices[0].message.content == "echo: hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
