"""Scrape each engine's own metrics (vLLM, TEI) so routing sees its whole queue.

A gateway only knows the calls it sent itself; an engine shared by several gateway
replicas (or other clients) may hold a long queue this gateway never saw. One task
per deployment whose ``engine_metrics.path`` (or ``url``) is set GETs that path on
the upstream's origin (or that URL) every ``interval`` seconds and writes what it
found into the deployment's ``DeploymentState`` (``engine_scraped``), where the
balancer reads it as plain attributes: nothing is parsed per request.

What is read (every label set summed, e.g. several ``model_name`` or ``engine``
labels; the KV-cache ratio is the fullest engine's, since ratios do not add):

=========  ===============================================  ========================
figure     vLLM                                             TEI
=========  ===============================================  ========================
waiting    ``vllm:num_requests_waiting``                    ``te_queue_size``
running    ``vllm:num_requests_running``                    ``te_batch_current_size``
KV cache   ``vllm:kv_cache_usage_perc`` (newer), else
           ``vllm:gpu_cache_usage_perc`` (older), 0..1      —
=========  ===============================================  ========================

An endpoint with none of these (another engine) gives no figures, which is not an
error. A failed scrape (refused, timed out, non-200, unparsable) drops the figures
at once, so routing falls back to the gateway's own counts; so does a scraper that
has stopped, once ``stale_after`` passes. The monitor never raises.

Scrapes use their own one-connection pool per deployment rather than the
provider's: a saturated deployment, whose figures matter most, has every provider
connection busy, and a scrape must not queue behind its calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from sluicegate import __version__
from sluicegate.config.schema import LocalDeployment, OpenAIDeployment
from sluicegate.providers.transport import Pool
from sluicegate.tasks import cancel_all

if TYPE_CHECKING:
    from sluicegate.routing.router import Target

__all__ = ["EngineFigures", "EngineLoadMonitor", "parse_engine_metrics"]

log = logging.getLogger("sluicegate.engine_load")

_WAITING = ("vllm:num_requests_waiting", "te_queue_size")
_RUNNING = ("vllm:num_requests_running", "te_batch_current_size")
_KV_NEW = "vllm:kv_cache_usage_perc"
_KV_OLD = "vllm:gpu_cache_usage_perc"

_NAMES = (*_WAITING, *_RUNNING, _KV_NEW, _KV_OLD)
_MAX_BODY = 8 << 20  # bytes; a metrics page past this is not an engine's


@dataclass(frozen=True, slots=True)
class EngineFigures:
    waiting: float
    running: float
    kv_usage: float | None


def parse_engine_metrics(text: str) -> EngineFigures | None:
    """The engine's queue from Prometheus text; None when it reports none of it.

    Raises ValueError on text the Prometheus parser cannot read.
    """
    totals: dict[str, float] = {}
    highest: dict[str, float] = {}
    for family in text_string_to_metric_families(_sample_lines(text)):
        for sample in family.samples:
            value = sample.value
            if sample.name != family.name or not math.isfinite(value):
                continue
            totals[family.name] = totals.get(family.name, 0.0) + value
            highest[family.name] = max(highest.get(family.name, value), value)
    waiting = [totals[n] for n in _WAITING if n in totals]
    running = [totals[n] for n in _RUNNING if n in totals]
    if not waiting and not running:
        return None
    kv = highest.get(_KV_NEW, highest.get(_KV_OLD))
    return EngineFigures(
        waiting=sum(waiting, 0.0),
        running=sum(running, 0.0),
        kv_usage=None if kv is None else min(max(kv, 0.0), 1.0),
    )


def _sample_lines(text: str) -> str:
    """The sample lines of the families read here, the rest of the page left out.

    vLLM's page runs to thousands of lines of histograms and the Prometheus parser
    is pure Python (about 100 ms for 250 kB); finding the few lines wanted with
    ``str.find`` takes well under a millisecond, on the event loop's time. HELP and
    TYPE lines go too: the samples read the same without them.
    """
    text = "\n" + text
    lines: list[str] = []
    for name in _NAMES:
        needle = "\n" + name
        at = text.find(needle)
        while at >= 0:
            start = at + 1
            end = text.find("\n", start)
            if end < 0:
                end = len(text)
            after = start + len(name)
            if after < end and text[after] in " \t{":  # not a longer name
                lines.append(text[start:end])
            at = text.find(needle, end)
    return "\n".join(lines)


class EngineLoadMonitor:
    def __init__(self, targets: Iterable[Target], rng: random.Random | None = None) -> None:
        self.targets = [t for t in targets if t.config.engine_metrics.enabled]
        self._rng = rng or random.Random()
        self._tasks: list[asyncio.Task[None]] = []
        self._pools: list[Pool] = []

    async def start(self) -> None:
        for target in self.targets:
            config = target.config
            if isinstance(config, LocalDeployment):
                continue  # refused by config: an in-process model has no origin
            where = config.engine_metrics
            # TEI serves its metrics on a port of their own: then the url names them.
            base, path = (
                _split(where.url) if where.url is not None else (config.base_url, where.path)
            )
            assert path is not None
            pool = Pool(base, max_connections=1, connect_timeout=where.timeout)
            self._pools.append(pool)
            task = asyncio.create_task(
                self._watch(target, pool, path), name=f"engine-load:{target.deployment_id}"
            )
            self._tasks.append(task)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        pools, self._pools = self._pools, []
        for pool in pools:
            await pool.close()
        for target in self.targets:
            target.state.engine_lost()  # nobody refreshes them any more

    async def _watch(self, target: Target, pool: Pool, path: str) -> None:
        config = target.config.engine_metrics
        loop = asyncio.get_running_loop()
        headers = _headers(target)
        # Spread deployments over the interval, then keep the fixed period (as health does).
        due = loop.time() + self._rng.uniform(0, config.interval)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += config.interval
            await self._scrape(target, pool, path, headers)
            due = max(due, loop.time())

    async def _scrape(self, target: Target, pool: Pool, path: str, headers: bytes) -> None:
        """One scrape into ``target.state``; never raises."""
        config = target.config.engine_metrics
        state = target.state
        try:
            async with asyncio.timeout(config.timeout):
                text = await _fetch(pool, path, headers, config.timeout)
            figures = parse_engine_metrics(text) if text is not None else None
        except TimeoutError:
            why = f"no answer within {config.timeout:g}s"
        except Exception as exc:  # transport errors, unparsable text: never end the monitor
            why = f"{type(exc).__name__}: {exc}"
        else:
            if figures is not None:
                state.engine_scraped(
                    figures.waiting, figures.running, figures.kv_usage, time.monotonic()
                )
                return
            why = "no engine metrics found" if text is not None else "not a 200 answer"
        state.engine_lost()
        log.debug(
            "engine metrics unavailable",
            extra={"deployment": target.deployment_id, "reason": why},
        )


async def _fetch(pool: Pool, path: str, headers: bytes, timeout: float) -> str | None:
    """The body of ``GET path`` on the origin; None unless it answers 200."""
    resp = await pool.request("GET", path, headers, b"", first_byte=timeout, on_origin=True)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.iter_chunks(timeout):
        size += len(chunk)
        if size > _MAX_BODY:
            raise ValueError(f"metrics page larger than {_MAX_BODY} bytes")
        chunks.append(chunk)
    if resp.status != 200:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def _split(url: str) -> tuple[str, str]:
    """(origin, path with its query) of an absolute URL."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}", path + (f"?{parts.query}" if parts.query else "")


def _headers(target: Target) -> bytes:
    lines = [
        ("Accept", "text/plain"),
        ("Accept-Encoding", "identity"),
        ("User-Agent", f"sluicegate/{__version__}"),
    ]
    config = target.config
    # An engine behind an API-key check may guard /metrics too; send what calls send.
    if isinstance(config, OpenAIDeployment) and config.api_key is not None:
        lines.append(("Authorization", "Bearer " + config.api_key.get_secret_value()))
    return "".join(f"{k}: {v}\r\n" for k, v in lines).encode("latin-1")
