"""The hash chain and the signed records that anchor it.

Each entry's hash is ``SHA-256(prev_hex + canonical_json(entry))``, where ``prev``
is the previous entry's hash; the stored line is the entry with ``prev`` and
``hash`` added. Changing, removing or moving one entry changes every hash after it.

SHA-256 has no key, so anyone who can write the files can also recompute the chain
after an edit. What they cannot do without the signing key is make a **checkpoint**
``{"checkpoint": seq, "hash": ..., "log": ..., "ts": ..., "kid", "alg", "sig"}``
(``sig`` = a signature over the record's canonical JSON without ``sig``) agree
with the edited chain. File headers are signed the same way.

Two kinds of signature: HMAC-SHA256 (``hmac-sha256``) with a shared secret, and
Ed25519 (``ed25519``) with a private key only the gateway holds. With HMAC, whoever
can verify can also forge; with Ed25519 an auditor verifies with the public key
alone and cannot sign anything.

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
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from sluicegate.audit.entry import canonical

__all__ = [
    "FORMAT",
    "Checkpoint",
    "Ed25519Signer",
    "HmacSigner",
    "Keyring",
    "Signer",
    "entry_hash",
    "generate_ed25519",
    "genesis",
    "seal",
    "sign",
    "signer_for",
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


class Signer(Protocol):
    alg: str
    kid: str

    def sign(self, data: bytes) -> str: ...


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


_PRIVATE_PEM = b"-----BEGIN PRIVATE KEY-----"
_PUBLIC_PEM = b"-----BEGIN PUBLIC KEY-----"


def _ed25519_kid(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(b"sluicegate-audit kid ed25519 " + raw).hexdigest()[:16]


class Ed25519Signer:
    """Ed25519 with a private key (PEM, PKCS#8); anyone with the public key can verify."""

    alg = "ed25519"

    def __init__(self, private_pem: bytes) -> None:
        key = load_pem_private_key(private_pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key is a PEM private key, but not an Ed25519 one")
        self._key = key
        self.public = _Ed25519Verifier(key.public_key())
        self.kid = self.public.kid

    def sign(self, data: bytes) -> str:
        return self._key.sign(data).hex()


class _Ed25519Verifier:
    alg = "ed25519"

    def __init__(self, public: Ed25519PublicKey) -> None:
        self._key = public
        self.kid = _ed25519_kid(public)

    def verify(self, data: bytes, sig: str) -> bool:
        try:
            self._key.verify(bytes.fromhex(sig), data)
        except (InvalidSignature, ValueError):
            return False
        return True

    def pem(self) -> bytes:
        return self._key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def signer_for(key: bytes) -> Signer:
    """An Ed25519 signer for a PEM private key; an HMAC signer for any other secret."""
    if key.lstrip().startswith(_PRIVATE_PEM):
        return Ed25519Signer(key)
    return HmacSigner(key)


def generate_ed25519() -> tuple[bytes, bytes]:
    """A new key pair: (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private, public


def sign(record: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """``record`` with ``alg``, ``kid`` and ``sig`` added."""
    record = {**record, "alg": signer.alg, "kid": signer.kid}
    record["sig"] = signer.sign(canonical(record))
    return record


class Keyring:
    """The keys a verifier accepts: the current one and any retired ones.

    Each is an HMAC secret, an Ed25519 public key (PEM: all an auditor needs), or an
    Ed25519 private key (PEM; its public half is used)."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._verifiers: dict[tuple[str, str], HmacSigner | _Ed25519Verifier] = {}
        for key in keys:
            verifier = _verifier(key)
            self._verifiers[(verifier.alg, verifier.kid)] = verifier
        if not self._verifiers:
            raise ValueError("no audit signing key given")

    def check(self, record: Mapping[str, Any]) -> str | None:
        """None when ``record``'s signature is valid, else why not."""
        sig = record.get("sig")
        alg = record.get("alg")
        if alg not in (HmacSigner.alg, Ed25519Signer.alg) or not isinstance(sig, str):
            return f"unsupported or missing signature algorithm {alg!r}"
        signer = self._verifiers.get((str(alg), str(record.get("kid"))))
        if signer is None:
            return f"signed with an unknown key ({alg}, kid {record.get('kid')})"
        unsigned = {k: v for k, v in record.items() if k != "sig"}
        if not signer.verify(canonical(unsigned), sig):
            return "bad signature (forged or altered)"
        return None


def _verifier(key: bytes) -> HmacSigner | _Ed25519Verifier:
    stripped = key.lstrip()
    if stripped.startswith(_PUBLIC_PEM):
        public = load_pem_public_key(stripped)
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError("the audit public key is not an Ed25519 key")
        return _Ed25519Verifier(public)
    if stripped.startswith(_PRIVATE_PEM):
        return Ed25519Signer(stripped).public
    return HmacSigner(key)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that entry ``seq`` of log ``log_id`` has hash ``hash``."""

    seq: int
    hash: str
    log_id: str
    ts: str
    record: Mapping[str, Any]

    @classmethod
    def make(cls, seq: int, digest: str, log_id: str, ts: str, signer: Signer) -> Checkpoint:
        record = sign({"checkpoint": seq, "hash": digest, "log": log_id, "ts": ts}, signer)
        return cls(seq, digest, log_id, ts, record)

    def line(self) -> bytes:
        return canonical(self.record) + b"\n"
