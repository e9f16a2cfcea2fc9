"""Applying detection to the texts of OpenAI chat, completions and embeddings bodies."""

from __future__ import annotations

import copy
import re
from typing import Any

from sluicegate.safety.pii import Entity, protect_body

EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")


def detect(text: str) -> list[Entity]:
    """A stand-in detector: e-mail addresses only, so each test states its own truth."""
    return [
        Entity("EMAIL_ADDRESS", m.start(), m.end(), 1.0, m.group()) for m in EMAIL.finditer(text)
    ]


CHAT: dict[str, Any] = {
    "model": "m",
    "temperature": 0.2,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am ann@x.org, cc bob@y.org", "name": "ann@x.org"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "again ann@x.org"},
                {"type": "image_url", "image_url": {"url": "https://h/ann@x.org.png"}},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
    ],
    "metadata": {"email": "ann@x.org"},
}


def test_chat_texts_are_redacted_and_nothing_else() -> None:
    original = copy.deepcopy(CHAT)
    result = protect_body(CHAT, detect, "redact")
    assert original == CHAT  # the given body is never modified
    messages = result.body["messages"]
    assert messages[1]["content"] == "I am <EMAIL_1>, cc <EMAIL_2>"
    assert messages[1]["name"] == "ann@x.org"
    assert messages[2]["content"][0] == {"type": "text", "text": "again <EMAIL_1>"}
    assert messages[2]["content"][1] is CHAT["messages"][2]["content"][1]
    assert messages[0] is CHAT["messages"][0] and messages[3] is CHAT["messages"][3]
    assert result.body["metadata"] is CHAT["metadata"]
    assert {k: v for k, v in result.body.items() if k != "messages"} == {
        k: v for k, v in CHAT.items() if k != "messages"
    }
    assert result.found == {"EMAIL_ADDRESS": 3}
    assert result.mask.originals == {}


def test_mask_mode_restores_the_answer() -> None:
    result = protect_body(CHAT, detect, "mask")
    assert result.mask.restore("Hello <EMAIL_1>, and <EMAIL_2>") == "Hello ann@x.org, and bob@y.org"


def test_detect_mode_counts_without_changing() -> None:
    result = protect_body(CHAT, detect, "detect")
    assert result.body is CHAT
    assert result.found == {"EMAIL_ADDRESS": 3}


def test_completions_prompt_and_embeddings_input() -> None:
    completions = {"model": "m", "prompt": ["to ann@x.org", [1, 2, 3]], "max_tokens": 5}
    result = protect_body(completions, detect)
    assert result.body == {"model": "m", "prompt": ["to <EMAIL_1>", [1, 2, 3]], "max_tokens": 5}
    embeddings = {"model": "e", "input": "ann@x.org"}
    assert protect_body(embeddings, detect).body == {"model": "e", "input": "<EMAIL_1>"}
    tokens = {"model": "e", "input": [[5, 6], [7]]}
    assert protect_body(tokens, detect).body is tokens


def test_clean_body_is_passed_through() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    result = protect_body(body, detect)
    assert result.body is body
    assert not result.found
