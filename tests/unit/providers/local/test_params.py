"""providers/local/params: OpenAI bodies → llama-cpp-python arguments, or a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.errors import InvalidRequest
from sluicegate.providers.local.params import chat_kwargs, chat_messages, completion_kwargs

HELLO = [{"role": "user", "content": "hello"}]


def refused(build: Any, body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        build(body)
    return caught.value


def test_sampling_fields_pass_and_absent_ones_keep_llama_defaults() -> None:
    kwargs = chat_kwargs(
        {
            "messages": HELLO,
            "temperature": 0.5,
            "top_p": 0.9,
            "presence_penalty": 0.1,
            "frequency_penalty": 0.2,
            "stop": "\n\n",
            "seed": 7,
            "user": "ignored-by-design",
        }
    )
    assert kwargs == {
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "stop": ["\n\n"],
        "seed": 7,
    }


def test_64_bit_seeds_fold_into_llama_cpp_32_bit_seeds() -> None:
    assert chat_kwargs({"messages": HELLO, "seed": -1})["seed"] == 2**32 - 1
    assert chat_kwargs({"messages": HELLO, "seed": 2**40 + 5})["seed"] == 5


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    body = {"messages": HELLO, "max_tokens": 50, "max_completion_tokens": 9}
    assert chat_kwargs(body)["max_tokens"] == 9
    assert chat_kwargs({"messages": HELLO, "max_tokens": 50})["max_tokens"] == 50
    assert "max_tokens" not in chat_kwargs({"messages": HELLO})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("functions", [{"name": "f"}]),
        ("logprobs", True),
        ("top_logprobs", 3),
    ],
)
def test_what_the_model_cannot_do_is_refused_by_name(field: str, value: Any) -> None:
    exc = refused(chat_kwargs, {"messages": HELLO, field: value})
    assert exc.param == field
    assert exc.status == 400


def test_empty_tools_and_n_1_are_fine() -> None:
    assert chat_kwargs({"messages": HELLO, "tools": [], "n": 1, "logprobs": False})


def test_messages_become_plain_text_with_template_roles() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "!"}],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "42", "tool_call_id": "1"},
        {"role": "function", "content": "x", "name": "f"},
    ]
    assert chat_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi !"},
        {"role": "assistant", "content": ""},
        {"role": "tool", "content": "42"},
        {"role": "tool", "content": "x"},
    ]


def test_an_image_part_is_refused_with_its_position() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    body = {
        "messages": [HELLO[0], {"role": "user", "content": [{"type": "text", "text": "a"}, image]}]
    }
    exc = refused(chat_kwargs, body)
    assert exc.param == "messages[1].content[1]"
    assert "text only" in exc.message


def test_response_formats() -> None:
    assert "response_format" not in chat_kwargs(
        {"messages": HELLO, "response_format": {"type": "text"}}
    )
    kwargs = chat_kwargs({"messages": HELLO, "response_format": {"type": "json_object"}})
    assert kwargs["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    kwargs = chat_kwargs(
        {
            "messages": HELLO,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        }
    )
    assert "response_format" not in kwargs
    assert '"\\"a\\""' in kwargs["grammar"]._grammar  # the grammar names the required key


@pytest.mark.parametrize("schema", [None, {"type": "nonsense"}])
def test_a_schema_the_grammar_cannot_express_is_a_400(schema: Any) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    exc = refused(chat_kwargs, {"messages": HELLO, "response_format": fmt})
    assert exc.param == "response_format.json_schema.schema"


def test_logit_bias_keys_become_token_ids() -> None:
    assert chat_kwargs({"messages": HELLO, "logit_bias": {"2": -100}})["logit_bias"] == {2: -100.0}
    assert refused(chat_kwargs, {"messages": HELLO, "logit_bias": {"eos": 1}}).param == "logit_bias"


def test_completion_prompts() -> None:
    assert completion_kwargs({"prompt": "Once"}) == {"prompt": "Once", "max_tokens": 16}
    assert completion_kwargs({"prompt": ["Once"], "max_tokens": 3})["prompt"] == "Once"
    assert completion_kwargs({"prompt": [1, 2, 3]})["prompt"] == [1, 2, 3]
    assert completion_kwargs({"prompt": [[1, 2]]})["prompt"] == [1, 2]
    kwargs = completion_kwargs({"prompt": "a", "echo": True, "suffix": "z", "stop": ["."]})
    assert (kwargs["echo"], kwargs["suffix"], kwargs["stop"]) == (True, "z", ["."])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "a", "best_of": 2}, "best_of"),
        ({"prompt": "a", "n": 3}, "n"),
        ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ],
)
def test_completion_refusals(body: dict[str, Any], field: str) -> None:
    assert refused(completion_kwargs, body).param == field
