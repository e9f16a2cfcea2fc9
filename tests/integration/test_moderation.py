"""Moderation adapters against a real fake service on 127.0.0.1: both shapes, failing closed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from sluicegate.safety.moderation import (
    AzureContentSafetyConfig,
    ModerationAdapter,
    ModerationConfig,
    OpenAIModerationConfig,
    build_moderation,
    split_text,
)
from sluicegate.safety.verdict import Decision, Verdict
from tests.fakes import moderation_upstream
from tests.fakes.servers import free_port, running

KEY = "sk-moderation-key-0123456789"
TEXT = "A perfectly ordinary sentence about the weather."


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    with running(moderation_upstream.app) as url:
        yield url


@pytest.fixture
def seen() -> Iterator[list[dict[str, Any]]]:
    moderation_upstream.SEEN.clear()
    moderation_upstream.STATE["failing"] = True
    yield moderation_upstream.SEEN


def openai(service: str, mode: str, **settings: Any) -> OpenAIModerationConfig:
    return OpenAIModerationConfig(
        **{"base_url": f"{service}/{mode}/v1", "api_key": KEY, "timeout": 0.3, **settings}
    )


def azure(service: str, mode: str, **settings: Any) -> AzureContentSafetyConfig:
    return AzureContentSafetyConfig(
        **{"endpoint": f"{service}/{mode}", "api_key": KEY, "timeout": 0.3, **settings}
    )


def check(config: OpenAIModerationConfig | AzureContentSafetyConfig, *texts: str) -> list[Verdict]:
    async def main() -> list[Verdict]:
        adapter = build_moderation(config)
        await adapter.start()
        try:
            return [await adapter.check(text) for text in texts]
        finally:
            await adapter.close()

    return asyncio.run(main())


def state(adapter: ModerationAdapter) -> str:
    return adapter.breaker.state


def test_openai_clean_and_what_it_sends(service: str, seen: list[dict[str, Any]]) -> None:
    [verdict] = check(openai(service, "clean"), TEXT)
    assert verdict.check == "moderation:openai"
    assert verdict.decision is Decision.ALLOW
    assert verdict.score == pytest.approx(0.001)
    [request] = seen
    assert request["path"] == "/clean/v1/moderations"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["body"] == {"model": "omni-moderation-latest", "input": TEXT}


def test_openai_flagged_blocks(service: str, seen: list[dict[str, Any]]) -> None:
    [verdict] = check(openai(service, "flagged"), TEXT)
    assert verdict.decision is Decision.BLOCK
    assert verdict.reason == "flagged: violence"
    assert verdict.score == pytest.approx(0.91)


def test_openai_per_category_thresholds(service: str, seen: list[dict[str, Any]]) -> None:
    # Not flagged by the service: self-harm 0.3, harassment 0.12.
    [plain] = check(openai(service, "scored"), TEXT)
    assert plain.decision is Decision.ALLOW
    assert plain.score == pytest.approx(0.3)
    [strict] = check(openai(service, "scored", thresholds={"self-harm": 0.2}), TEXT)
    assert strict.decision is Decision.BLOCK
    assert strict.reason == "flagged: self-harm"
    [lax] = check(openai(service, "scored", thresholds={"self-harm": 0.5}), TEXT)
    assert lax.decision is Decision.ALLOW


def test_openai_can_ignore_the_services_flag(service: str, seen: list[dict[str, Any]]) -> None:
    [verdict] = check(openai(service, "flagged", use_flagged=False), TEXT)
    assert verdict.decision is Decision.ALLOW
    [verdict] = check(
        openai(service, "flagged", use_flagged=False, thresholds={"violence": 0.9}), TEXT
    )
    assert verdict.decision is Decision.BLOCK


def test_azure_clean_and_what_it_sends(service: str, seen: list[dict[str, Any]]) -> None:
    [verdict] = check(azure(service, "clean"), TEXT)
    assert verdict.check == "moderation:azure"
    assert verdict.decision is Decision.ALLOW
    assert verdict.score == 0
    [request] = seen
    assert request["path"] == "/clean/contentsafety/text:analyze"
    assert request["headers"]["ocp-apim-subscription-key"] == KEY
    assert "authorization" not in request["headers"]
    assert request["body"] == {
        "text": TEXT,
        "categories": ["Hate", "SelfHarm", "Sexual", "Violence"],
        "outputType": "FourSeverityLevels",
    }


def test_azure_flagged_blocks(service: str, seen: list[dict[str, Any]]) -> None:
    [verdict] = check(azure(service, "flagged"), TEXT)
    assert verdict.decision is Decision.BLOCK
    assert verdict.reason == "severity: Violence 6"
    assert verdict.score == 6


def test_azure_severity_thresholds(service: str, seen: list[dict[str, Any]]) -> None:
    # Hate 2 and SelfHarm 2: the defaults (seed 003) block self-harm from low severity on.
    [default] = check(azure(service, "scored"), TEXT)
    assert default.decision is Decision.BLOCK
    assert default.reason == "severity: SelfHarm 2"
    [lax] = check(azure(service, "scored", thresholds={"SelfHarm": 4}), TEXT)
    assert lax.decision is Decision.ALLOW
    assert lax.score == 2
    [strict] = check(azure(service, "scored", thresholds={"SelfHarm": 4, "Hate": 2}), TEXT)
    assert strict.decision is Decision.BLOCK
    assert strict.reason == "severity: Hate 2"
    # A category left out of the thresholds falls back to default_threshold.
    [fallback] = check(
        azure(service, "scored", thresholds={"SelfHarm": 4}, default_threshold=2), TEXT
    )
    assert fallback.decision is Decision.BLOCK


def test_azure_blocklist_match_blocks(service: str, seen: list[dict[str, Any]]) -> None:
    config = azure(service, "clean", blocklists=("house-terms",))
    allowed, blocked = check(config, TEXT, "please BLOCKME now")
    assert allowed.decision is Decision.ALLOW
    assert blocked.decision is Decision.BLOCK
    assert blocked.reason == "severity: blocklist"
    assert seen[0]["body"]["blocklistNames"] == ["house-terms"]


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_long_text_is_checked_in_chunks(shape: str, service: str, seen: list[dict[str, Any]]):
    words = ["word"] * 600 + ["BADWORD"]
    text = " ".join(words)  # 3,007 characters: 3 chunks of at most 1,200
    make = openai if shape == "openai" else azure
    [verdict] = check(make(service, "keyword", max_chars=1200), text)
    assert verdict.decision is Decision.BLOCK
    sent = seen[0]["body"]["input"] if shape == "openai" else [s["body"]["text"] for s in seen]
    assert len(sent) == 3
    assert "".join(sent) == text
    [clean] = check(make(service, "keyword", max_chars=1200), " ".join(["word"] * 600))
    assert clean.decision is Decision.ALLOW


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_too_long_and_empty_texts_send_nothing(
    shape: str, service: str, seen: list[dict[str, Any]]
) -> None:
    make = openai if shape == "openai" else azure
    too_long, empty = check(make(service, "clean", max_chars=100, max_chunks=2), "x " * 200, " ")
    assert too_long.decision is Decision.UNKNOWN
    assert "too long" in too_long.reason
    assert empty.decision is Decision.ALLOW
    assert seen == []


@pytest.mark.parametrize("shape", ["openai", "azure"])
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("slow", "no answer within 0.3s"),
        ("status-500", "HTTP 500"),
        ("status-503", "HTTP 503"),
        ("status-429", "HTTP 429"),
        ("garbage", "not JSON"),
        ("partial", "malformed answer"),
    ],
)
def test_failures_are_unknown(
    shape: str, mode: str, reason: str, service: str, seen: list[dict[str, Any]]
) -> None:
    make = openai if shape == "openai" else azure
    started = time.monotonic()
    [verdict] = check(make(service, mode), TEXT)
    assert time.monotonic() - started < 0.9  # the slow service answers after 1 s
    assert verdict.decision is Decision.UNKNOWN
    assert reason in verdict.reason
    assert verdict.score is None


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_unreachable_service_is_unknown(shape: str, seen: list[dict[str, Any]]) -> None:
    make = openai if shape == "openai" else azure
    [verdict] = check(make(f"http://127.0.0.1:{free_port()}", "clean"), TEXT)
    assert verdict.decision is Decision.UNKNOWN
    assert "ConnectError" in verdict.reason


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_refused_request_is_unknown_without_tripping_the_breaker(
    shape: str, service: str, seen: list[dict[str, Any]]
) -> None:
    make = openai if shape == "openai" else azure
    config = make(service, "status-401", breaker={"failures": 1})

    async def main() -> tuple[Verdict, str]:
        adapter = build_moderation(config)
        await adapter.start()
        try:
            return await adapter.check(TEXT), adapter.breaker.state
        finally:
            await adapter.close()

    verdict, state = asyncio.run(main())
    assert verdict.decision is Decision.UNKNOWN
    assert verdict.reason == "service refused the request (HTTP 401, FakeError)"
    assert state == "closed"


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_breaker_opens_short_circuits_and_recovers(
    shape: str, service: str, seen: list[dict[str, Any]]
) -> None:
    make = openai if shape == "openai" else azure
    config = make(service, "flaky", breaker={"failures": 2, "recovery": 30})
    now = [1000.0]

    async def main() -> None:
        adapter = build_moderation(config, clock=lambda: now[0])
        await adapter.start()
        try:
            for _ in range(2):
                assert (await adapter.check(TEXT)).reason == "HTTP 500"
            assert state(adapter) == "open"
            # Open: unknown at once, and the service is not called.
            verdict = await adapter.check(TEXT)
            assert verdict.decision is Decision.UNKNOWN
            assert verdict.reason == "circuit open, retry in 30s"
            assert len(seen) == 2
            # Half-open while still failing: one probe, which opens it again.
            now[0] += 30
            assert (await adapter.check(TEXT)).reason == "HTTP 500"
            assert state(adapter) == "open"
            assert len(seen) == 3
            assert (await adapter.check(TEXT)).reason.startswith("circuit open")
            # The service recovers: the next probe closes the breaker.
            moderation_upstream.STATE["failing"] = False
            now[0] += 30
            assert (await adapter.check(TEXT)).decision is Decision.ALLOW
            assert state(adapter) == "closed"
            assert (await adapter.check(TEXT)).decision is Decision.ALLOW
            assert len(seen) == 5
        finally:
            await adapter.close()

    asyncio.run(main())


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_timeouts_open_the_breaker(shape: str, service: str, seen: list[dict[str, Any]]) -> None:
    make = openai if shape == "openai" else azure
    config = make(service, "slow", timeout=0.1, breaker={"failures": 2})
    first, second, third = check(config, TEXT, TEXT, TEXT)
    assert first.reason == second.reason == "no answer within 0.1s"
    assert third.reason.startswith("circuit open")
    assert len(seen) == 2


def test_concurrent_checks_share_the_pool(service: str, seen: list[dict[str, Any]]) -> None:
    async def main() -> list[Verdict]:
        adapter = build_moderation(azure(service, "keyword", max_connections=4))
        await adapter.start()
        try:
            texts = [f"text {i} BADWORD" if i % 2 else f"text {i}" for i in range(20)]
            return list(await asyncio.gather(*(adapter.check(t) for t in texts)))
        finally:
            await adapter.close()

    verdicts = asyncio.run(main())
    assert [v.decision for v in verdicts] == [Decision.ALLOW, Decision.BLOCK] * 10


def test_not_started_is_unknown() -> None:
    adapter: ModerationAdapter = build_moderation(OpenAIModerationConfig(api_key=KEY))
    verdict = asyncio.run(adapter.check(TEXT))
    assert verdict.decision is Decision.UNKNOWN
    assert verdict.reason == "adapter not started"


@pytest.mark.parametrize("shape", ["openai", "azure"])
def test_neither_text_nor_key_reaches_reasons_or_logs(
    shape: str, service: str, seen: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    make = openai if shape == "openai" else azure
    secret_text = "my secret diagnosis is 1234"
    caplog.set_level(logging.DEBUG)
    verdicts = [
        *check(make(service, "status-500", breaker={"failures": 1}), secret_text, secret_text),
        *check(make(service, "status-400"), secret_text),
        *check(make(service, "flagged"), secret_text),
    ]
    assert any("unavailable" in record.getMessage() for record in caplog.records)
    said = caplog.text + " ".join(v.reason for v in verdicts) + repr(make(service, "clean"))
    for secret in (secret_text, KEY, "the text was"):
        assert secret not in said


def test_configs_parse_by_kind_and_reject_unknown_categories() -> None:
    adapter = TypeAdapter(ModerationConfig)
    parsed = adapter.validate_python({"kind": "azure", "endpoint": "https://x", "api_key": KEY})
    assert isinstance(parsed, AzureContentSafetyConfig)
    assert parsed.thresholds == {"Hate": 4, "SelfHarm": 2, "Sexual": 4, "Violence": 4}
    assert KEY not in repr(parsed)
    assert isinstance(adapter.validate_python({"kind": "openai"}), OpenAIModerationConfig)
    with pytest.raises(ValidationError, match="unknown OpenAI moderation categories"):
        OpenAIModerationConfig(thresholds={"self_harm": 0.5})
    with pytest.raises(ValidationError, match="unknown Azure category"):
        AzureContentSafetyConfig(endpoint="https://x", thresholds={"Selfharm": 2})
    with pytest.raises(ValidationError, match="must be 1-7"):
        AzureContentSafetyConfig(endpoint="https://x", thresholds={"Hate": 0})


def test_split_text_cuts_at_whitespace() -> None:
    text = "alpha beta gamma delta " * 20
    pieces = split_text(text, 50)
    assert "".join(pieces) == text
    assert all(len(p) <= 50 for p in pieces)
    assert all(p.endswith(" ") for p in pieces[:-1])
    unbroken = "x" * 120
    assert split_text(unbroken, 50) == ["x" * 50, "x" * 50, "x" * 20]
    assert split_text("short", 50) == ["short"]
