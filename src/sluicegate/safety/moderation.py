"""Checks backed by an external moderation service, each answering a ``Verdict``.

    OpenAIModeration     POST {base_url}/moderations                       OpenAI moderation API
    AzureContentSafety   POST {endpoint}/contentsafety/text:analyze        Azure AI Content Safety

Fail closed: a service that errors, times out, answers non-2xx or nonsense, or
whose circuit breaker is open gives ``unknown``, which the pipeline blocks on
unless configured otherwise. Upstream failures (transport, timeout, 429, 5xx,
malformed answers) count against the breaker; a 4xx says our request or key is
wrong, not that the service is down, so it gives ``unknown`` without tripping it.

Neither the text nor the API key is ever logged or put in a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from sluicegate import __version__
from sluicegate.config.moderation import (
    AzureContentSafetyConfig,
    ModerationConfig,
    OpenAIModerationConfig,
)
from sluicegate.providers.transport import Pool, TransportError
from sluicegate.routing.breaker import CircuitBreaker
from sluicegate.safety.verdict import Decision, Verdict

__all__ = [
    "AzureContentSafety",
    "AzureContentSafetyConfig",
    "ModerationAdapter",
    "ModerationConfig",
    "OpenAIModeration",
    "OpenAIModerationConfig",
    "build_moderation",
]

log = logging.getLogger("sluicegate")


class _Failed(Exception):
    """The service failed (transport, 429, 5xx, malformed answer): counts against the breaker."""


class _Rejected(Exception):
    """The service refused our request (4xx): our config is wrong, the service is up."""


class ModerationAdapter(ABC):
    """One moderation service behind a circuit breaker and a timeout.

    Subclasses say how a text becomes requests (``_requests``) and how the
    decoded answers become a verdict (``_judge``, raising ``_Failed`` on nonsense).
    """

    name: str

    def __init__(
        self,
        config: OpenAIModerationConfig | AzureContentSafetyConfig,
        base_url: str,
        auth: tuple[str, str] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.base_url = base_url
        self.breaker = CircuitBreaker(config.breaker, clock)
        lines = [
            ("Content-Type", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", f"sluicegate/{__version__}"),
        ]
        if auth is not None:
            lines.append(auth)
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in lines).encode("latin-1")
        self._pool: Pool | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    async def start(self) -> None:
        self._pool = Pool(
            self.base_url,
            max_connections=self.config.max_connections,
            connect_timeout=self.config.timeout,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def check(self, text: str) -> Verdict:
        """Allow or block ``text``; ``unknown`` with a reason when the service cannot say."""
        if not text.strip():
            return Verdict(self.name, Decision.ALLOW, 0.0, "empty text")
        chunks = split_text(text, self.config.max_chars)
        if len(chunks) > self.config.max_chunks:
            return self._unknown(f"text too long to moderate ({len(chunks)} chunks)")
        pool = self._pool
        if pool is None:
            return self._unknown("adapter not started")
        if not self.breaker.allow():
            return self._unknown(f"circuit open, retry in {self.breaker.retry_in():.0f}s")
        try:
            async with asyncio.timeout(self.config.timeout):
                answers = await self._send(pool, self._requests(chunks))
            verdict = self._judge(answers, len(chunks))
        except _Rejected as exc:
            self.breaker.release_probe()
            log.warning("%s refused the request: %s", self.name, exc)
            return self._unknown(f"service refused the request ({exc})")
        except _Failed as exc:
            return self._failed(str(exc))
        except TransportError as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            return self._failed(f"no answer within {self.config.timeout:g}s")
        except Exception:
            # A bug here must not turn into "allow", nor take the request down with a 500.
            self.breaker.release_probe()
            log.exception("%s could not judge the answer", self.name)
            return self._unknown("internal error")
        except BaseException:
            self.breaker.release_probe()
            raise
        self.breaker.record_success()
        return verdict

    @abstractmethod
    def _requests(self, chunks: Sequence[str]) -> list[tuple[str, bytes]]:
        """(path, body) of the request(s) that moderate these chunks."""

    @abstractmethod
    def _judge(self, answers: Sequence[dict[str, Any]], chunks: int) -> Verdict:
        """The verdict from the decoded answers; raises ``_Failed`` on nonsense."""

    async def _send(self, pool: Pool, requests: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        if len(requests) == 1:
            return [await self._post(pool, *requests[0])]
        tasks = [asyncio.ensure_future(self._post(pool, path, body)) for path, body in requests]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            # The first failure decides; the rest need not finish.
            for task in tasks:
                task.cancel()

    async def _post(self, pool: Pool, path: str, body: bytes) -> dict[str, Any]:
        timeout = self.config.timeout
        resp = await pool.request("POST", path, self._headers, body, first_byte=timeout)
        data = await resp.read(timeout)
        status = resp.status
        if status == 429 or status >= 500:
            raise _Failed(f"HTTP {status}")
        if status != 200:
            raise _Rejected(f"HTTP {status}{_error_code(data)}")
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise _Failed("the answer is not JSON") from exc
        if not isinstance(decoded, dict):
            raise _Failed("the answer is not a JSON object")
        return decoded

    def _failed(self, reason: str) -> Verdict:
        opened = self.breaker.opened
        self.breaker.record_failure()
        if self.breaker.opened != opened:
            log.warning(
                "%s unavailable (%s): circuit open for %gs, its checks are unknown",
                self.name,
                reason,
                self.config.breaker.recovery,
            )
        return self._unknown(reason)

    def _unknown(self, reason: str) -> Verdict:
        return Verdict(self.name, Decision.UNKNOWN, None, reason)


class OpenAIModeration(ModerationAdapter):
    name = "moderation:openai"

    def __init__(
        self, config: OpenAIModerationConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        key = config.api_key
        auth = ("Authorization", f"Bearer {key.get_secret_value()}") if key else None
        super().__init__(config, config.base_url, auth, clock)
        self.settings = config

    def _requests(self, chunks: Sequence[str]) -> list[tuple[str, bytes]]:
        # Several chunks go in one call: the API takes a list and answers one result each.
        data: str | Sequence[str] = chunks[0] if len(chunks) == 1 else list(chunks)
        body = orjson.dumps({"model": self.settings.model, "input": data})
        return [("/moderations", body)]

    def _judge(self, answers: Sequence[dict[str, Any]], chunks: int) -> Verdict:
        results = answers[0].get("results")
        if not isinstance(results, list) or len(results) != chunks:
            raise _Failed("malformed answer: no result per input")
        thresholds = self.settings.thresholds
        hits: set[str] = set()
        top = 0.0
        for result in results:
            if not isinstance(result, dict):
                raise _Failed("malformed answer: a result is not an object")
            flagged = result.get("flagged")
            scores = result.get("category_scores")
            if not isinstance(flagged, bool) or not isinstance(scores, dict):
                raise _Failed("malformed answer: no flagged or category_scores")
            for category, score in scores.items():
                if not isinstance(score, int | float) or isinstance(score, bool):
                    raise _Failed("malformed answer: a score is not a number")
                top = max(top, float(score))
                limit = thresholds.get(category)
                if limit is not None and score >= limit:
                    hits.add(category)
            if flagged and self.settings.use_flagged:
                categories = result.get("categories")
                named = (
                    [c for c, on in categories.items() if on is True]
                    if isinstance(categories, dict)
                    else []
                )
                hits.update(named or ["flagged"])
        if hits:
            return Verdict(self.name, Decision.BLOCK, top, "flagged: " + ", ".join(sorted(hits)))
        return Verdict(self.name, Decision.ALLOW, top, "clean")


class AzureContentSafety(ModerationAdapter):
    name = "moderation:azure"

    def __init__(
        self, config: AzureContentSafetyConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        key = config.api_key
        auth = ("Ocp-Apim-Subscription-Key", key.get_secret_value()) if key else None
        super().__init__(config, config.endpoint, auth, clock)
        self.settings = config
        self._path = f"/contentsafety/text:analyze?api-version={quote(config.api_version)}"

    def _requests(self, chunks: Sequence[str]) -> list[tuple[str, bytes]]:
        settings = self.settings
        base: dict[str, Any] = {
            "categories": list(settings.categories),
            "outputType": settings.output_type,
        }
        if settings.blocklists:
            base["blocklistNames"] = list(settings.blocklists)
            base["haltOnBlocklistHit"] = False
        return [(self._path, orjson.dumps({"text": chunk, **base})) for chunk in chunks]

    def _judge(self, answers: Sequence[dict[str, Any]], chunks: int) -> Verdict:
        worst: dict[str, int] = {}
        blocklisted = False
        for answer in answers:
            analysis = answer.get("categoriesAnalysis")
            if not isinstance(analysis, list):
                raise _Failed("malformed answer: no categoriesAnalysis")
            for item in analysis:
                category = item.get("category") if isinstance(item, dict) else None
                severity = item.get("severity") if isinstance(item, dict) else None
                if (
                    not isinstance(category, str)
                    or not isinstance(severity, int)
                    or isinstance(severity, bool)
                ):
                    raise _Failed("malformed answer: a category without a severity")
                worst[category] = max(worst.get(category, 0), severity)
            if answer.get("blocklistsMatch"):
                blocklisted = True
        missing = [c for c in self.settings.categories if c not in worst]
        if missing:
            # A category we asked about and got no severity for was not judged: fail closed.
            raise _Failed(f"malformed answer: no severity for {', '.join(missing)}")
        thresholds = self.settings.thresholds
        default = self.settings.default_threshold
        hits = sorted(
            f"{c} {s}"
            for c, s in worst.items()
            if c in self.settings.categories and s >= thresholds.get(c, default)
        )
        if blocklisted:
            hits.append("blocklist")
        top = float(max(worst.values(), default=0))
        if hits:
            return Verdict(self.name, Decision.BLOCK, top, "severity: " + ", ".join(hits))
        return Verdict(self.name, Decision.ALLOW, top, "clean")


def build_moderation(
    config: OpenAIModerationConfig | AzureContentSafetyConfig,
    clock: Callable[[], float] = time.monotonic,
) -> ModerationAdapter:
    if isinstance(config, OpenAIModerationConfig):
        return OpenAIModeration(config, clock)
    return AzureContentSafety(config, clock)


def split_text(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, cut at whitespace where there is some."""
    if len(text) <= size:
        return [text]
    pieces = []
    start = 0
    while len(text) - start > size:
        end = start + size
        # Cut after the last whitespace in the second half, so words stay whole.
        cut = max(text.rfind(c, start + size // 2, end) for c in " \n\t")
        if cut > start:
            end = cut + 1
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def _error_code(body: bytes) -> str:
    """The service's short error code, if it gave one (never its message: it may quote us)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = decoded.get("error") if isinstance(decoded, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and 0 < len(code) <= 64 and code.replace("_", "").isalnum():
        return f", {code}"
    return ""
