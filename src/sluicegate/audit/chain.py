"""The hash chain and the signed records that anchor it.

Each entry's hash is ``SHA-256(prev_hex + canonical_json(entry))``, where ``prev``
is the previous entry's hash; the stored line is the entry with ``prev`` and
``hash`` added. Changing, removing or moving one entry changes every hash after it.

SHA-256 has no key, so anyone who can write the files can also recompute the chain
after an edit. What they cannot do without the signing key is make a **checkpoint**
``{"checkpoint": seq, "hash": ..., "log": ..., "ts": ..., "kid", "alg", "sig"}``
(``sig`` = HMAC-SHA256 over the record's canonical JSON without ``sig``) agree
with the edited chain. File headers are signed the same way.

The first entry's ``prev`` is not a fixed string but ``SHA-256("sluicegate-audit/1
genesis " + log_id)``, where ``log_id`` is 128 random bits chosen when the log is
created and named in every header and checkpoint. Two logs signed with one key
(replicas, or a log wiped and restarted) therefore never share a hash, and a file
or checkpoint copied from one into another never verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sluicegate.audit.entry import canonical

__all__ = [
    "FORMAT",
    "Checkpoint",
    "HmacSigner",
    "Keyring",
    "entry_hash",
    "genesis",
    "seal",
    "sign",
]

#: The value of every file header's ``audit`` field.
FORMAT = "sluicegate-audit/1"
MIN_KEY_BYTES = 16


def genesis(log_id: str) -> str:
    """The ``prev`` of entry 1 of the log ``log_id``."""
    return hashlib.sha256(f"{FORMAT} genesis {log_id}".encode()).hexdigest()


def entry_hash(prev: str, entry_payload: bytes) -> str:
    return hashlib.sha256(prev.encode("ascii") + entry_payload).hexdigest()


def seal(prev: str, entry_payload: bytes) -> tuple[str, bytes]:
    """(hash, stored line with newline) for an entry's canonical payload."""
    digest = entry_hash(prev, entry_payload)
    # The payload is a JSON object; appending two keys keeps it one.
    line = b'%s,"prev":"%s","hash":"%s"}\n' % (entry_payload[:-1], prev.encode(), digest.encode())
    return digest, line


class HmacSigner:
    """HMAC-SHA256 with a secret key; ``kid`` names the key without revealing it."""

    alg = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"audit signing key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.kid = hashlib.sha256(b"sluicegate-audit kid " + key).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, sig: str) -> bool:
        return hmac.compare_digest(self.sign(data), sig)


def sign(record: dict[str, Any], signer: HmacSigner) -> dict[str, Any]:
    """``record`` with ``alg``, ``kid`` and ``sig`` added."""
    record = {**record, "alg": signer.alg, "kid": signer.kid}
    record["sig"] = signer.sign(canonical(record))
    return record


class Keyring:
    """The keys a verifier accepts: the current one and any retired ones."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._signers = {signer.kid: signer for signer in map(HmacSigner, keys)}
        if not self._signers:
            raise ValueError("no audit signing key given")

    def check(self, record: Mapping[str, Any]) -> str | None:
        """None when ``record``'s signature is valid, else why not."""
        sig = record.get("sig")
        if record.get("alg") != HmacSigner.alg or not isinstance(sig, str):
            return f"unsupported or missing signature algorithm {record.get('alg')!r}"
        signer = self._signers.get(str(record.get("kid")))
        if signer is None:
            return f"signed with an unknown key (kid {record.get('kid')})"
        unsigned = {k: v for k, v in record.items() if k != "sig"}
        if not signer.verify(canonical(unsigned), sig):
            return "bad signature (forged or altered)"
        return None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that entry ``seq`` of log ``log_id`` has hash ``hash``."""

    seq: int
    hash: str
    log_id: str
    ts: str
    record: Mapping[str, Any]

    @classmethod
    def make(cls, seq: int, digest: str, log_id: str, ts: str, signer: HmacSigner) -> Checkpoint:
        record = sign({"checkpoint": seq, "hash": digest, "log": log_id, "ts": ts}, signer)
        return cls(seq, digest, log_id, ts, record)

    def line(self) -> bytes:
        return canonical(self.record) + b"\n"
