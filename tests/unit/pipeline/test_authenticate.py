"""pipeline/authenticate: the key ring and the stage that refuses a call without a known key."""

from __future__ import annotations

import asyncio

import pytest

from sluicegate.errors import AuthenticationFailed
from sluicegate.pipeline.authenticate import Authenticate, KeyRing
from sluicegate.pipeline.call import Call, Principal, Reply
from sluicegate.types import Endpoint

MASTER = "sk-master-0123456789abcdef"
APP = "sk-app-0123456789abcdef"
OTHER = "sk-other-0123456789abcdef"


def ring() -> KeyRing:
    return KeyRing(MASTER, [("app", APP), ("other", OTHER)])


def test_master_key_is_admin() -> None:
    assert ring().lookup(MASTER) == Principal(name="master", is_admin=True)


def test_static_keys_are_named() -> None:
    keys = ring()
    assert keys.lookup(APP) == Principal(name="app", is_admin=False)
    assert keys.lookup(OTHER) == Principal(name="other", is_admin=False)


@pytest.mark.parametrize("key", ["", "sk-wrong", MASTER + " ", MASTER[:-1], APP.upper()])
def test_unknown_keys(key: str) -> None:
    assert ring().find(key) is None


def test_plain_keys_are_not_kept() -> None:
    keys = ring()
    held = repr(vars(keys))
    assert MASTER not in held and APP not in held


def test_master_only_ring() -> None:
    keys = KeyRing(MASTER)
    assert keys.lookup(MASTER) is not None
    assert keys.find(APP) is None


def new_call(api_key: str | None) -> Call:
    return Call(
        request_id="r1", endpoint=Endpoint.CHAT, body={}, raw=None, model="m", api_key=api_key
    )


def run(api_key: str | None) -> tuple[Call, list[Call]]:
    reached: list[Call] = []

    async def terminal(call: Call) -> Reply:
        reached.append(call)
        return Reply(body=b"{}")

    call = new_call(api_key)
    asyncio.run(Authenticate(ring())(call, terminal))
    return call, reached


def test_known_key_passes_and_the_secret_is_dropped() -> None:
    call, reached = run(APP)
    assert reached == [call]
    assert call.principal == Principal(name="app")
    assert call.api_key is None


@pytest.mark.parametrize("api_key", [None, ""])
def test_missing_key(api_key: str | None) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        run(api_key)
    assert caught.value.body() == {
        "error": {
            "message": "No API key provided. Send 'Authorization: Bearer <key>' (or 'x-api-key').",
            "type": "authentication_error",
            "param": None,
            "code": "missing_api_key",
        }
    }
    assert caught.value.status == 401


def test_wrong_key() -> None:
    reached: list[Call] = []

    async def terminal(call: Call) -> Reply:
        reached.append(call)
        return Reply()

    with pytest.raises(AuthenticationFailed) as caught:
        asyncio.run(Authenticate(ring())(new_call("sk-wrong"), terminal))
    assert caught.value.body() == {
        "error": {
            "message": "Incorrect API key provided.",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert reached == []
