"""Shared fixtures: real servers on 127.0.0.1 — fake upstreams and the gateway itself."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.fakes import openai_upstream
from tests.fakes.servers import running

# Every gateway a test starts (in-process or as a child process) keeps its local state
# (the default SQLite database) here, never in the checkout's ./.sluicegate.
_DATA_DIR = tempfile.mkdtemp(prefix="sluicegate-tests-")
os.environ["SLUICEGATE_DATA_DIR"] = _DATA_DIR
atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)

MASTER_KEY = "sk-test-master-key-0123456789"
APP_KEY = "sk-test-app-key-0123456789abc"


@pytest.fixture(scope="session")
def upstream_url() -> Iterator[str]:
    """The fake OpenAI-compatible upstream; ``{upstream_url}/{mode}/v1`` picks a behaviour."""
    with running(openai_upstream.app) as url:
        yield url


@pytest.fixture
def seen() -> Iterator[list[dict[str, Any]]]:
    """What the fake upstream received during this test."""
    openai_upstream.SEEN.clear()
    yield openai_upstream.SEEN


GatewayFactory = Callable[[dict[str, Any]], str]


@pytest.fixture
def start_gateway() -> Iterator[GatewayFactory]:
    """Start a gateway for a config dict; returns its base URL (without /v1)."""
    with ExitStack() as stack:

        def start(raw: dict[str, Any]) -> str:
            raw = {"auth": {"keys": [{"name": "app", "key": APP_KEY}]}, **raw}
            config = Config.model_validate(raw)
            app = create_app(config, MasterKey(MASTER_KEY, "test"))
            return stack.enter_context(running(app))

        yield start


@pytest.fixture
def gateway_url(start_gateway: GatewayFactory, upstream_url: str) -> str:
    """A gateway over the fake upstream: chat model 'fake-chat', embeddings 'fake-embed'."""
    return start_gateway({"models": fake_upstream_models(upstream_url)})


def fake_upstream_models(upstream_url: str) -> list[dict[str, Any]]:
    """The models of ``gateway_url`` and ``shared_gateway_url``."""
    return [
        {
            "name": "fake-chat",
            "deployments": [
                {
                    "provider": "openai",
                    "base_url": f"{upstream_url}/ok/v1",
                    "model": "upstream-chat",
                    "api_key": "sk-upstream-secret",
                }
            ],
        },
        {
            "name": "fake-embed",
            "kind": "embedding",
            "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
        },
    ]


@pytest.fixture(scope="session")
def shared_gateway_url(upstream_url: str) -> Iterator[str]:
    """``gateway_url``'s gateway, started once per session (a gateway costs ~0.2 s to stop).

    Only for tests that leave nothing behind that another test could see: one
    deployment per model, so no round-robin position, and no counter assertions.
    """
    raw = {
        "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
        "models": fake_upstream_models(upstream_url),
    }
    app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
    with running(app) as url:
        yield url
