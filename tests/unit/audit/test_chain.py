"""Audit entries, their canonical bytes, the hash chain and the signatures."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import orjson
import pytest

from sluicegate.audit.chain import Checkpoint, HmacSigner, Keyring, entry_hash, genesis, seal, sign
from sluicegate.audit.entry import REQUEST_FIELDS, canonical, format_ts, make_entry, payload

KEY = b"k" * 32


def test_canonical_json_sorts_keys_without_spaces_in_utf8():
    assert canonical({"b": 1, "a": {"z": [1, 2], "é": "ü"}}) == (
        '{"a":{"z":[1,2],"é":"ü"},"b":1}'.encode()
    )


def test_ts_is_iso_8601_utc():
    assert format_ts(0.25) == "1970-01-01T00:00:00.250000Z"


def test_request_entry_has_every_standard_field():
    entry = make_entry(7, 0.0, {"org": "acme", "decisions": {"pii": "redacted"}}, keep_prompt=False)
    assert entry["seq"] == 7 and entry["kind"] == "request" and entry["org"] == "acme"
    assert set(REQUEST_FIELDS) <= set(entry)
    assert entry["model"] is None


def test_entry_ignores_reserved_fields_and_keeps_others():
    fields = {"seq": 99, "hash": "x", "ts": "then", "latency_ms": 12.5, "kind": "admin"}
    entry = make_entry(1, 0.0, fields, keep_prompt=False)
    assert entry["seq"] == 1 and "hash" not in entry and entry["ts"].startswith("1970")
    assert entry["latency_ms"] == 12.5 and entry["kind"] == "admin" and "action" in entry


def test_prompt_is_kept_only_when_configured():
    fields = {"prompt": "hello <EMAIL_1>"}
    assert "prompt" not in make_entry(1, 0.0, fields, keep_prompt=False)
    assert make_entry(1, 0.0, fields, keep_prompt=True)["prompt"] == "hello <EMAIL_1>"


class Level(StrEnum):
    CONFIDENTIAL = "confidential"


@dataclasses.dataclass
class Unsorted:
    zeta: int
    alpha: int


@pytest.mark.parametrize(
    "value",
    [
        Unsorted(1, 2),
        datetime(2025, 1, 1, tzinfo=UTC),
        (1, 2.5, "x"),
        Level.CONFIDENTIAL,
        float("nan"),
        {1: "non-str key"},
        2**70,
        np.int64(5),
        "lone \ud800 surrogate",
        {"nested": {"b": [1e300, -0.0], "a": None}},
    ],
)
def test_payload_is_what_a_reader_of_the_line_recomputes(value):
    entry = make_entry(1, 0.0, {"decisions": value}, keep_prompt=False)
    data = payload(entry)
    assert canonical(orjson.loads(data)) == data


def test_seal_hashes_prev_and_payload_and_keeps_one_json_object():
    data = payload(make_entry(1, 0.0, {"org": "a"}, keep_prompt=False))
    prev = genesis("log-a")
    digest, line = seal(prev, data)
    assert digest == hashlib.sha256(prev.encode() + data).hexdigest() == entry_hash(prev, data)
    record = orjson.loads(line)
    assert line.endswith(b"\n") and record["prev"] == prev and record["hash"] == digest
    del record["prev"], record["hash"]
    assert canonical(record) == data


def test_genesis_is_per_log():
    assert genesis("a") != genesis("b") and len(genesis("a")) == 64


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        HmacSigner(b"short")


def test_a_signed_record_checks_with_its_key_only():
    record = sign({"checkpoint": 5, "hash": "h", "log": "l", "ts": "t"}, HmacSigner(KEY))
    assert Keyring([KEY]).check(record) is None
    assert "unknown key" in str(Keyring([b"o" * 32]).check(record))
    assert Keyring([b"o" * 32, KEY]).check(record) is None  # a retired key still verifies


def test_an_altered_signed_record_fails():
    record = sign({"checkpoint": 5, "hash": "h", "log": "l", "ts": "t"}, HmacSigner(KEY))
    assert "bad signature" in str(Keyring([KEY]).check({**record, "checkpoint": 6}))
    assert "algorithm" in str(Keyring([KEY]).check({**record, "alg": "none"}))


def test_checkpoint_line_is_its_signed_record():
    checkpoint = Checkpoint.make(3, "h" * 64, "log", "t", HmacSigner(KEY))
    record = orjson.loads(checkpoint.line())
    assert record["checkpoint"] == 3 and Keyring([KEY]).check(record) is None


def test_ed25519_records_verify_with_the_public_or_private_key_only() -> None:
    from sluicegate.audit.chain import Ed25519Signer, generate_ed25519, signer_for

    private, public = generate_ed25519()
    signer = signer_for(private)
    assert isinstance(signer, Ed25519Signer) and signer.alg == "ed25519"
    assert isinstance(signer_for(KEY), HmacSigner)
    record = sign({"checkpoint": 5, "hash": "h", "log": "l", "ts": "t"}, signer)
    assert Keyring([public]).check(record) is None
    assert Keyring([private]).check(record) is None
    assert Keyring([KEY, public]).check(record) is None  # a current and a retired key
    assert "unknown key" in str(Keyring([KEY]).check(record))
    assert "unknown key" in str(Keyring([generate_ed25519()[1]]).check(record))
    forged = {**record, "hash": "other"}
    assert "bad signature" in str(Keyring([public]).check(forged))
    assert "bad signature" in str(Keyring([public]).check({**record, "sig": "zz"}))
