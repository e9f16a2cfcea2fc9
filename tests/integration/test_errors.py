"""Bad input: every refusal has the right status, an OpenAI error body and a request id.

Never a 500 for a client's mistake, never a traceback in the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory

# Generated ids are opaque; the middleware accepts the same alphabet from clients.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{16,128}$")
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
USER = {"role": "user", "content": "hi"}
LIMIT = 1024


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


def check_error(
    r: httpx2.Response,
    status: int,
    *,
    type: str,
    code: str | None,
    param: str | None = None,
    message: str | None = None,
) -> str:
    """Assert the OpenAI error shape and return the message for further checks."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert REQUEST_ID.match(r.headers["x-request-id"])
    assert "Traceback" not in r.text
    body = r.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert list(error) == ["message", "type", "param", "code"]
    assert (error["type"], error["param"], error["code"]) == (type, param, code)
    assert isinstance(error["message"], str) and error["message"]
    if message is not None:
        assert error["message"] == message
    return str(error["message"])


def bad_request(r: httpx2.Response, param: str | None, message: str | None = None) -> str:
    return check_error(
        r, 400, type="invalid_request_error", code=None, param=param, message=message
    )


def post(http: httpx2.Client, url: str, path: str = "/v1/chat/completions", **kw: Any) -> Any:
    kw.setdefault("headers", AUTH)
    return http.post(url + path, **kw)


def test_invalid_json(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = post(http, shared_gateway_url, content=b'{"model": "fake-chat", "messages": [')
    message = bad_request(r, None)
    assert message.startswith("The request body is not valid JSON: ")


def test_json_array_body(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = post(http, shared_gateway_url, json=[{"model": "fake-chat"}])
    bad_request(r, None, "The request body must be a JSON object.")


@pytest.mark.parametrize("content", [b"", b"  \n "])
def test_empty_body(http: httpx2.Client, shared_gateway_url: str, content: bytes) -> None:
    r = post(http, shared_gateway_url, content=content)
    bad_request(r, None, "The request body is empty; expected a JSON object.")


def test_missing_model(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = post(http, shared_gateway_url, json={"messages": [USER]})
    bad_request(r, "model", "'model' is required.")


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"messages": "hi"}, "messages", "'messages' must be a list, got str."),
        ({"messages": []}, "messages", "'messages' must hold at least one message."),
        ({"temperature": "hot"}, "temperature", "'temperature' must be a number, got str."),
        ({"max_tokens": True}, "max_tokens", "'max_tokens' must be an integer, got bool."),
        ({"stream": "yes"}, "stream", "'stream' must be a boolean, got str."),
        (
            {"messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "'messages[0].role' must be one of assistant, developer, function, system, tool, "
            "user, got 'wizard'.",
        ),
        (
            {"stream_options": {"include_usage": True}},
            "stream_options",
            "'stream_options' is only allowed when 'stream' is true.",
        ),
        ({"model": 7}, "model", "'model' must be a non-empty string, got int."),
    ],
)
def test_chat_field_errors(
    http: httpx2.Client,
    shared_gateway_url: str,
    seen: list[dict[str, Any]],
    fields: dict[str, Any],
    param: str,
    message: str,
) -> None:
    body = {"model": "fake-chat", "messages": [USER], **fields}
    bad_request(post(http, shared_gateway_url, json=body), param, message)
    assert seen == []  # refused before any upstream call


def test_unhashable_role_is_a_400(http: httpx2.Client, shared_gateway_url: str) -> None:
    body = {"model": "fake-chat", "messages": [{"role": ["user"], "content": "x"}]}
    bad_request(post(http, shared_gateway_url, json=body), "messages[0].role")


def test_completion_and_embedding_field_errors(
    http: httpx2.Client, shared_gateway_url: str
) -> None:
    r = post(http, shared_gateway_url, "/v1/completions", json={"model": "fake-chat"})
    bad_request(r, "prompt", "'prompt' is required.")
    r = post(http, shared_gateway_url, "/v1/embeddings", json={"model": "fake-embed", "input": 3})
    bad_request(r, "input", "'input' must be a string or a list, got int.")


def test_unknown_model(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = post(http, shared_gateway_url, json={"model": "gpt-9", "messages": [USER]})
    check_error(
        r,
        404,
        type="invalid_request_error",
        code="model_not_found",
        param="model",
        message="The model 'gpt-9' does not exist. Available models: fake-chat, fake-embed.",
    )


def test_unknown_model_through_sdk(shared_gateway_url: str) -> None:
    base = shared_gateway_url + "/v1"
    with (
        openai.OpenAI(base_url=base, api_key=MASTER_KEY, max_retries=0) as c,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        c.embeddings.create(model="nope", input="x")
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert caught.value.request_id is not None


def test_embeddings_on_a_chat_model(
    http: httpx2.Client, shared_gateway_url: str, seen: list[dict[str, Any]]
) -> None:
    r = post(http, shared_gateway_url, "/v1/embeddings", json={"model": "fake-chat", "input": "x"})
    check_error(
        r,
        400,
        type="invalid_request_error",
        code="model_not_supported",
        param="model",
        message="The model 'fake-chat' is a chat model and does not serve /embeddings.",
    )
    assert seen == []


def test_chat_on_an_embedding_model(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = post(http, shared_gateway_url, json={"model": "fake-embed", "messages": [USER]})
    check_error(r, 400, type="invalid_request_error", code="model_not_supported", param="model")


@pytest.fixture
def small_gateway(start_gateway: GatewayFactory, upstream_url: str) -> str:
    return start_gateway(
        {
            "server": {"max_body_bytes": LIMIT},
            "models": [
                {
                    "name": "fake-chat",
                    "deployments": [{"provider": "openai", "base_url": f"{upstream_url}/ok/v1"}],
                }
            ],
        }
    )


def body_of_size(size: int) -> bytes:
    head = b'{"model":"fake-chat","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_body_at_the_limit_passes(
    http: httpx2.Client, small_gateway: str, seen: list[dict[str, Any]]
) -> None:
    body = body_of_size(LIMIT)
    assert len(body) == LIMIT
    r = post(http, small_gateway, content=body)
    assert r.status_code == 200, r.text
    assert seen[0]["raw"] == body


def test_oversized_body(
    http: httpx2.Client, small_gateway: str, seen: list[dict[str, Any]]
) -> None:
    r = post(http, small_gateway, content=body_of_size(LIMIT + 1))
    check_error(
        r,
        413,
        type="invalid_request_error",
        code="request_too_large",
        message=f"The request body exceeds the limit of {LIMIT} bytes.",
    )
    assert seen == []


def test_oversized_chunked_body(
    http: httpx2.Client, small_gateway: str, seen: list[dict[str, Any]]
) -> None:
    body = body_of_size(3 * LIMIT)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    r = post(http, small_gateway, content=pieces())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    check_error(
        r,
        413,
        type="invalid_request_error",
        code="request_too_large",
        message=f"The request body exceeds the limit of {LIMIT} bytes.",
    )
    assert seen == []


def test_missing_key(
    http: httpx2.Client, shared_gateway_url: str, seen: list[dict[str, Any]]
) -> None:
    r = http.post(
        shared_gateway_url + "/v1/chat/completions", json={"model": "fake-chat", "messages": [USER]}
    )
    check_error(
        r,
        401,
        type="authentication_error",
        code="missing_api_key",
        message="No API key provided. Send 'Authorization: Bearer <key>' (or 'x-api-key').",
    )
    assert seen == []


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer sk-wrong-key-0123456789"},
        {"x-api-key": "sk-wrong-key-0123456789"},
        {"authorization": f"Bearer {MASTER_KEY}x"},
    ],
    ids=["bearer", "x-api-key", "near-miss"],
)
def test_wrong_key(
    http: httpx2.Client,
    shared_gateway_url: str,
    seen: list[dict[str, Any]],
    headers: dict[str, str],
) -> None:
    body = {"model": "fake-chat", "messages": [USER]}
    r = http.post(shared_gateway_url + "/v1/chat/completions", json=body, headers=headers)
    check_error(
        r,
        401,
        type="authentication_error",
        code="invalid_api_key",
        message="Incorrect API key provided.",
    )
    assert seen == []


def test_non_bearer_scheme_is_no_key(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = http.get(
        shared_gateway_url + "/v1/models", headers={"authorization": f"Basic {MASTER_KEY}"}
    )
    check_error(r, 401, type="authentication_error", code="missing_api_key")


def test_wrong_key_through_sdk(shared_gateway_url: str) -> None:
    base = shared_gateway_url + "/v1"
    with (
        openai.OpenAI(base_url=base, api_key="sk-nope", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        c.models.list()
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_error_keeps_the_clients_request_id(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = http.get(shared_gateway_url + "/v1/models", headers={"x-request-id": "trace-42"})
    assert r.status_code == 401
    assert r.headers.get_list("x-request-id") == ["trace-42"]


def test_unknown_route(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = http.get(shared_gateway_url + "/v1/nope", headers=AUTH)
    check_error(r, 404, type="not_found_error", code=None, message="Unknown route: GET /v1/nope")


def test_wrong_method(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = http.get(shared_gateway_url + "/v1/chat/completions", headers=AUTH)
    check_error(
        r,
        405,
        type="invalid_request_error",
        code="method_not_allowed",
        message="Method GET is not allowed on /v1/chat/completions.",
    )


def test_wrong_method_names_the_allowed_one(http: httpx2.Client, shared_gateway_url: str) -> None:
    r = http.delete(shared_gateway_url + "/v1/embeddings", headers=AUTH)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
