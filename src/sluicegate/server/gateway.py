"""The app-wide objects, made once in the lifespan and reached through ``gateway(request)``."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace.export import SpanExporter
from starlette.requests import Request

from sluicegate.audit.store import AuditError, Rotation
from sluicegate.audit.writer import AuditLog
from sluicegate.config.loader import ConfigError
from sluicegate.config.schema import Config
from sluicegate.governance.admin import Admin
from sluicegate.governance.budget_actions import BudgetWatch, RedisDedupe
from sluicegate.governance.concurrency import build_inflight_store
from sluicegate.governance.directory import Directory
from sluicegate.governance.limits import build_limit_store
from sluicegate.governance.pricing import CatalogueError, load_catalogue
from sluicegate.governance.principals import principal_for
from sluicegate.governance.usage_log import UsageLog
from sluicegate.observability.access_log import AccessLog
from sluicegate.observability.counters import Counters
from sluicegate.observability.metrics import Metrics
from sluicegate.observability.tracing import build_tracing
from sluicegate.pipeline.admit import Admit
from sluicegate.pipeline.authenticate import Authenticate, KeyRing
from sluicegate.pipeline.drain import Drain, DrainGate
from sluicegate.pipeline.guard import Concurrency, build_client_guard
from sluicegate.pipeline.inspect import Inspect
from sluicegate.pipeline.invoke import Invoke
from sluicegate.pipeline.parse import Parse
from sluicegate.pipeline.record import Record
from sluicegate.pipeline.route import Route
from sluicegate.pipeline.stage import Pipeline
from sluicegate.routing.engine_load import EngineLoadMonitor
from sluicegate.routing.health import HealthMonitor
from sluicegate.routing.router import Router
from sluicegate.storage.database import Database, database_url

__all__ = ["Gateway", "MasterKey", "gateway", "resolve_master_key"]

log = logging.getLogger("sluicegate")

MASTER_KEY_ENV = "SLUICEGATE_MASTER_KEY"
AUDIT_KEY_ENV = "SLUICEGATE_AUDIT_KEY"


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

    def __init__(
        self, config: Config, master_key: MasterKey, span_exporter: SpanExporter | None = None
    ) -> None:
        self.config = config
        self.max_body_bytes = config.server.max_body_bytes
        self.router = Router(config)
        self.counters = Counters()
        self.access_log = AccessLog() if config.server.access_log else None
        self.drain = Drain(config.server.drain_timeout)
        keys = KeyRing(
            master_key.value,
            (
                (k.name, k.key.get_secret_value(), principal_for(k, config))
                for k in config.auth.keys
            ),
        )
        governance = config.governance
        self.database = Database(
            database_url(config.database.url, config.server.data_dir),
            pool_size=config.database.pool_size,
        )
        shared = governance.state if governance.state != "memory" else None
        self.directory = Directory(
            keys,
            self.database,
            refresh_interval=governance.refresh_interval,
            redis_url=shared,
            channel=governance.redis_prefix + "directory",
            prepare=self.database.upgrade if config.database.migrate else None,
        )
        self.admin = Admin(reserved_orgs=[org.name for org in governance.orgs])
        self.usage_log = UsageLog(self.database, capacity=governance.usage_queue)
        self.audit = build_audit_log(config)
        try:
            catalogue = load_catalogue(governance.pricing.catalogue, governance.pricing.models)
        except CatalogueError as exc:
            raise ConfigError(str(exc)) from exc
        self.budget_watch = BudgetWatch(
            governance.budget_actions,
            dedupe=(
                RedisDedupe(shared, prefix=governance.redis_prefix + "alert:")
                if shared is not None
                else None
            ),
        )
        self.admit = Admit(
            build_limit_store(governance.state, governance.redis_prefix),
            catalogue,
            self.router,
            governance.default_max_tokens,
            self.budget_watch,
        )
        # One in-flight store for both stages: per client IP, and per key, team and org.
        self.inflight = build_inflight_store(governance.state, prefix=governance.redis_prefix)
        self.client_guard = build_client_guard(governance, self.inflight)
        self.trust_forwarded_for = governance.ip_limits.trust_forwarded_for
        self.level_header = config.safety.sensitivity.header
        self.inspect = Inspect(config.safety)
        self.metrics = Metrics(
            self.router,
            self.counters,
            usage_log=self.usage_log,
            audit=self.audit,
            budget_watch=self.budget_watch,
            directory=self.directory,
            per_key=config.observability.metrics.per_key,
        )
        self.tracing = build_tracing(config.observability.tracing, span_exporter)
        self.pipeline = Pipeline(
            stages=[
                *([self.tracing.root()] if self.tracing is not None else []),
                Record(
                    self.counters,
                    self.access_log,
                    self.usage_log,
                    self.audit,
                    self.metrics,
                    log_prompts=config.observability.logs.prompts,
                ),
                DrainGate(self.drain, self.audit),
                *([self.client_guard] if self.client_guard is not None else []),
                Authenticate(self.directory),
                Concurrency(self.inflight),
                Parse(),
                Route(self.router),
                self.admit,
                self.inspect,
            ],
            terminal=Invoke(self.router),
            wrap=self.tracing.wrap if self.tracing is not None else None,
        )
        self.health = HealthMonitor(list(self.router.targets()))
        self.engine_load = EngineLoadMonitor(list(self.router.targets()))
        self._ready_cache: tuple[float, dict[str, dict[str, bool]]] | None = None

    async def start(self) -> None:
        # Config keys work even if the database is down; database keys get 503 until
        # it can be read (and migrated, on a first start), retried in the background.
        if self.audit is not None:
            try:
                await self.audit.start()
            except AuditError as exc:
                raise ConfigError(f"audit log: {exc}") from exc
        await self.directory.start()
        await self.usage_log.start()
        await self.inspect.start()
        await asyncio.gather(*(target.provider.start() for target in self.router.targets()))
        # Providers first: one not yet started would look unhealthy and leave rotation.
        await self.health.start()
        await self.engine_load.start()
        # Everything made so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it cost ~15 ms pauses under load.
        gc.collect()
        gc.freeze()

    async def close(self) -> None:
        await self.health.close()
        await self.engine_load.close()
        await asyncio.gather(
            *(target.provider.close() for target in self.router.targets()), return_exceptions=True
        )
        await self.admit.close()
        await self.inspect.close()
        await self.budget_watch.close()
        if self.client_guard is not None:
            await self.client_guard.close()
        await self.inflight.close()
        await self.directory.close()
        await self.usage_log.close()
        if self.audit is not None:
            await self.audit.close()
        self.database.close()
        if self.access_log is not None:
            self.access_log.flush()
        if self.tracing is not None:
            await self.tracing.close()

    async def readiness(self) -> dict[str, dict[str, bool]]:
        """Which deployments can serve, by model: a live probe (cached for a second) passes
        and the breaker is not open."""
        loop = asyncio.get_running_loop()
        if self._ready_cache is not None and loop.time() - self._ready_cache[0] < 1.0:
            probes = self._ready_cache[1]
        else:
            groups = list(self.router.groups.values())
            results = await asyncio.gather(
                *(
                    t.provider.healthy(t.config.health.path, t.config.health.timeout)
                    for group in groups
                    for t in group.targets
                )
            )
            probes = {}
            flat = iter(results)
            for group in groups:
                probes[group.name] = {t.deployment_id: next(flat) for t in group.targets}
            self._ready_cache = (loop.time(), probes)
        return {
            name: {
                t.deployment_id: probes[name][t.deployment_id] and t.state.breaker.state != "open"
                for t in group.targets
            }
            for name, group in self.router.groups.items()
        }

    def breakers(self) -> dict[str, str]:
        return {t.deployment_id: t.state.breaker.state for t in self.router.targets()}


def build_audit_log(config: Config) -> AuditLog | None:
    """The audit log the config asks for, or None; its key from config or the environment."""
    audit = config.audit
    if not audit.enabled:
        return None
    key = audit.signing_key.get_secret_value() if audit.signing_key is not None else None
    if audit.signing_key_file is not None:
        try:
            # An editor's final newline is not part of a secret (a PEM keeps its own).
            key = Path(audit.signing_key_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"audit.signing_key_file: cannot read it ({exc})") from exc
    key = key or os.environ.get(AUDIT_KEY_ENV)
    if not key or len(key) < 16:
        raise ConfigError(
            "audit.enabled needs a signing key of at least 16 characters: set "
            f"audit.signing_key (e.g. ${{{AUDIT_KEY_ENV}}}), audit.signing_key_file "
            f"(an Ed25519 key from `sluicegate audit keygen`) or ${AUDIT_KEY_ENV}"
        )
    try:
        return AuditLog(
            audit.directory or str(Path(config.server.data_dir) / "audit"),
            signing_key=key.encode("utf-8"),
            replica=audit.replica or socket.gethostname(),
            capacity=audit.capacity,
            checkpoint_every=audit.checkpoint_every,
            checkpoint_seconds=audit.checkpoint_seconds,
            on_full=audit.on_full,
            record_prompts=audit.record_prompts,
            rotation=Rotation(
                max_bytes=audit.max_file_mb * 1024 * 1024,
                hot_days=audit.hot_days,
                archive_days=audit.archive_days,
            ),
        )
    except ValueError as exc:  # a key that is neither an HMAC secret nor an Ed25519 PEM
        raise ConfigError(f"audit signing key: {exc}") from exc


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found
