"""PII in answers through a real gateway: redacted, blocked or counted, whole and streamed,
with the caller's own (masked) data left alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.config.schema import Config
from sluicegate.server.app import create_app
from sluicegate.server.gateway import MasterKey
from tests.conftest import APP_KEY, MASTER_KEY
from tests.fakes.databases import sqlite_url
from tests.fakes.openai_upstream import LEAK
from tests.fakes.servers import running

STRUCTURED = ["EMAIL_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER", "US_SSN", "IBAN_CODE"]
OWN = "ann.lee@example.com"
LEAKED = ["jane.roe@example.org", "536-90-4399", "4111 1111 1111 1111"]
REDACTED_LEAK = (
    " Also write to <EMAIL_ADDRESS_REDACTED> (SSN <US_SSN_REDACTED>, card <CREDIT_CARD_REDACTED>)."
)

Start = Callable[..., tuple[openai.OpenAI, str]]


@pytest.fixture
def start(upstream_url: str, tmp_path: Path) -> Iterator[Start]:
    with ExitStack() as stack:

        def start_gateway(**pii: Any) -> tuple[openai.OpenAI, str]:
            raw = {
                "database": {"url": sqlite_url(tmp_path)},
                "auth": {"keys": [{"name": "app", "key": APP_KEY}]},
                "safety": {"pii": {"entities": STRUCTURED, **pii}},
                "models": [
                    {
                        "name": "chat",
                        "deployments": [
                            {"provider": "openai", "base_url": f"{upstream_url}/leak/v1"}
                        ],
                    }
                ],
            }
            app = create_app(Config.model_validate(raw), MasterKey(MASTER_KEY, "test"))
            url = stack.enter_context(running(app))
            client = openai.OpenAI(base_url=url + "/v1", api_key=APP_KEY, max_retries=0)
            return client, url

        yield start_gateway


def _messages(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def _streamed(client: openai.OpenAI, text: str) -> str:
    stream = client.chat.completions.create(model="chat", messages=_messages(text), stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_redact_whole_and_streamed_keeps_the_callers_own_data(start: Start) -> None:
    client, _ = start(answers="redact")
    question = f"Reply to {OWN} about the invoice"
    whole = client.chat.completions.create(model="chat", messages=_messages(question))
    expected = f"echo: {question}{REDACTED_LEAK}"
    assert whole.choices[0].message.content == expected
    assert _streamed(client, question) == expected
    assert LEAK not in expected


def test_mask_then_redact_answers_restores_only_what_the_caller_sent(
    start: Start, seen: list[dict[str, Any]]
) -> None:
    client, _ = start(mode="mask", answers="redact")
    question = f"Reply to {OWN} about the invoice"
    # The upstream saw a placeholder, answered with it and leaked others' data: the
    # caller gets its own address back and the leak redacted.
    assert _streamed(client, question) == f"echo: {question}{REDACTED_LEAK}"
    assert OWN not in str(seen[-1]["raw"])


def test_block_refuses_a_whole_answer_and_cuts_a_stream_before_the_leak(start: Start) -> None:
    client, _ = start(answers="block")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="chat", messages=_messages("hello there"))
    assert refused.value.code == "content_policy_violation"
    assert "'pii_answer'" in refused.value.message
    assert all(value not in refused.value.message for value in LEAKED)

    got: list[str] = []
    with pytest.raises(openai.APIError) as cut:
        stream = client.chat.completions.create(
            model="chat", messages=_messages("hello there"), stream=True
        )
        for chunk in stream:
            if chunk.choices:
                got.append(chunk.choices[0].delta.content or "")
    assert "pii_answer" in str(cut.value)
    assert all(value not in "".join(got) for value in LEAKED)


def test_detect_counts_and_changes_nothing(start: Start) -> None:
    client, url = start(answers="detect")
    whole = client.chat.completions.create(model="chat", messages=_messages("hi"))
    assert whole.choices[0].message.content == f"echo: hi{LEAK}"
    assert _streamed(client, "hi") == f"echo: hi{LEAK}"
    scraped = httpx2.get(url + "/metrics", headers={"authorization": f"Bearer {MASTER_KEY}"})
    counts = {
        s.labels["check"]: s.value
        for f in text_string_to_metric_families(scraped.text)
        for s in f.samples
        if s.name == "sluicegate_guard_decisions_total" and s.labels["decision"] == "detect"
    }
    assert counts == {"pii_answer": 2}
