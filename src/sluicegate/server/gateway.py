"""The app-wide objects, made once in the lifespan and reached through ``gateway(request)``."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from sluicegate.config.schema import Config
from sluicegate.observability.access_log import AccessLog
from sluicegate.observability.counters import Counters
from sluicegate.pipeline.authenticate import Authenticate, KeyRing
from sluicegate.pipeline.invoke import Invoke
from sluicegate.pipeline.parse import Parse
from sluicegate.pipeline.record import Record
from sluicegate.pipeline.route import Route
from sluicegate.pipeline.stage import Pipeline
from sluicegate.routing.router import Router

__all__ = ["Gateway", "MasterKey", "gateway", "resolve_master_key"]

log = logging.getLogger("sluicegate")

MASTER_KEY_ENV = "SLUICEGATE_MASTER_KEY"


@dataclass(frozen=True, slots=True)
class MasterKey:
    value: str
    source: str  # "config", "environment", or the file it was read from


def resolve_master_key(config: Config) -> MasterKey:
    """Config, then $SLUICEGATE_MASTER_KEY, else a key generated once under data_dir (0600)."""
    if config.auth.master_key is not None:
        return MasterKey(config.auth.master_key.get_secret_value(), "config")
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        return MasterKey(env, "environment")
    path = Path(config.server.data_dir) / "master_key"
    if path.exists():
        return MasterKey(path.read_text(encoding="utf-8").strip(), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "sk-sg-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return MasterKey(key, str(path))


class Gateway:
    """Config, router, pipeline and counters of one running gateway."""

    def __init__(self, config: Config, master_key: MasterKey) -> None:
        self.config = config
        self.max_body_bytes = config.server.max_body_bytes
        self.router = Router(config)
        self.counters = Counters()
        self.access_log = AccessLog() if config.server.access_log else None
        keys = KeyRing(
            master_key.value,
            ((k.name, k.key.get_secret_value()) for k in config.auth.keys),
        )
        self.pipeline = Pipeline(
            stages=[
                Record(self.counters, self.access_log),
                Authenticate(keys),
                Parse(),
                Route(self.router),
            ],
            terminal=Invoke(self.router),
        )
        self._ready_cache: tuple[float, dict[str, dict[str, bool]]] | None = None

    async def start(self) -> None:
        await asyncio.gather(*(target.provider.start() for target in self.router.targets()))

    async def close(self) -> None:
        await asyncio.gather(
            *(target.provider.close() for target in self.router.targets()), return_exceptions=True
        )
        if self.access_log is not None:
            self.access_log.flush()

    async def readiness(self) -> dict[str, dict[str, bool]]:
        """Health of every deployment by model; probed at most once a second."""
        loop = asyncio.get_running_loop()
        if self._ready_cache is not None and loop.time() - self._ready_cache[0] < 1.0:
            return self._ready_cache[1]
        groups = list(self.router.groups.values())
        results = await asyncio.gather(
            *(t.provider.healthy() for group in groups for t in group.targets)
        )
        report: dict[str, dict[str, bool]] = {}
        flat = iter(results)
        for group in groups:
            report[group.name] = {t.deployment_id: next(flat) for t in group.targets}
        self._ready_cache = (loop.time(), report)
        return report


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found
