"""promtool for the monitoring checks: Debian's, unpacked into .venv/bin by `make
promtool` (a step of `make test`). Without it these checks fail rather than skip."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

Promtool = Callable[..., None]


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    """Runs promtool with these arguments and fails the test with its output unless it
    succeeds."""
    local = ROOT / ".venv" / "bin" / "promtool"
    found = str(local) if local.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make promtool` unpacks it into .venv/bin")

    def run(*args: str) -> None:
        done = subprocess.run(
            [found, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr

    return run
