"""UsageDetail: OpenAI (inclusive) and Anthropic (exclusive) usage, streamed and whole, and junk."""

from __future__ import annotations

import orjson
import pytest

from sluicegate.governance.usage import UsageDetail
from sluicegate.protocol.sse import data_payloads

OPENAI_USAGE = {
    "prompt_tokens": 10_000,
    "completion_tokens": 2_000,
    "total_tokens": 12_000,
    "prompt_tokens_details": {"cached_tokens": 4_000, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 500,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def test_openai_counts_cached_and_reasoning_inside_the_totals():
    usage = UsageDetail.from_openai(OPENAI_USAGE)
    assert usage == UsageDetail(10_000, 4_000, 0, 2_000, 500)
    assert usage is not None
    assert usage.uncached_input_tokens == 6_000
    assert usage.visible_output_tokens == 1_500
    assert usage.total_tokens == 12_000


def test_openai_streamed_final_chunk_reads_the_same_as_the_whole_response():
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
            "usage": None,
        },
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": None,
        },
        {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": OPENAI_USAGE},
    ]
    stream = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    payloads = [orjson.loads(p) for p in data_payloads(stream) if p != b"[DONE]"]
    found = [UsageDetail.from_openai(p.get("usage")) for p in payloads]
    assert found[:2] == [None, None]
    whole = {"object": "chat.completion", "choices": [], "usage": OPENAI_USAGE}
    assert found[2] == UsageDetail.from_openai(whole["usage"])
    assert found[2] == UsageDetail(10_000, 4_000, 0, 2_000, 500)


def test_openai_responses_api_spelling():
    usage = {
        "input_tokens": 900,
        "input_tokens_details": {"cached_tokens": 100},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 200},
        "total_tokens": 1_200,
    }
    assert UsageDetail.from_openai(usage) == UsageDetail(900, 100, 0, 300, 200)


def test_openai_compatible_cache_writes_are_part_of_the_prompt():
    usage = {
        "prompt_tokens": 1_000,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 300},
    }
    detail = UsageDetail.from_openai(usage)
    assert detail == UsageDetail(1_000, 200, 300, 10, 0)
    assert detail is not None and detail.uncached_input_tokens == 500


def test_anthropic_input_tokens_exclude_cache_reads_and_writes():
    usage = {
        "input_tokens": 1_200,
        "cache_read_input_tokens": 50_000,
        "cache_creation_input_tokens": 8_000,
        "output_tokens": 700,
        "service_tier": "standard",
    }
    detail = UsageDetail.from_anthropic(usage)
    assert detail == UsageDetail(59_200, 50_000, 8_000, 700, 0)
    assert detail is not None and detail.uncached_input_tokens == 1_200


def test_anthropic_null_cache_fields():
    usage = {
        "input_tokens": 12,
        "output_tokens": 5,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
    }
    assert UsageDetail.from_anthropic(usage) == UsageDetail(12, 0, 0, 5, 0)


@pytest.mark.parametrize("junk", [None, "usage", 3, [], {}, {"id": "x"}, {"usage": {}}])
def test_not_usage_at_all_is_none(junk):
    assert UsageDetail.from_openai(junk) is None
    assert UsageDetail.from_anthropic(junk) is None


def test_junk_counts_read_as_zero_and_parts_are_cut_to_their_totals():
    usage = {
        "prompt_tokens": "10",
        "completion_tokens": True,
        "prompt_tokens_details": None,
        "completion_tokens_details": "x",
    }
    assert UsageDetail.from_openai(usage) == UsageDetail()
    lying = {
        "prompt_tokens": 100,
        "completion_tokens": 20.0,
        "prompt_tokens_details": {"cached_tokens": 150, "cache_write_tokens": 9},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert UsageDetail.from_openai(lying) == UsageDetail(100, 100, 0, 20, 20)
    negative = {"input_tokens": -5, "output_tokens": 2.5, "cache_read_input_tokens": -1}
    assert UsageDetail.from_anthropic(negative) == UsageDetail()


def test_usage_adds_up():
    a = UsageDetail(10, 2, 1, 5, 1)
    b = UsageDetail(1, 0, 0, 3, 2)
    assert a + b == UsageDetail(11, 2, 1, 8, 3)
