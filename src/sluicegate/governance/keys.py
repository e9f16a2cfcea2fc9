"""API keys issued from the database: their format, and how they are stored and checked.

A key reads ``sk-sg-<id>_<secret>``: a 12-character public id (which is also the
key's display prefix, ``sk-sg-<id>``, and its name in the admin API) and a
40-character secret of 238 random bits. The database keeps a random salt and
``SHA-256(salt + key)``; the key itself is shown once, when it is created.

A fast hash is the right one here: slow hashes defend guessable passwords, and a
238-bit secret cannot be guessed, while every request must check its key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

__all__ = ["PREFIX", "IssuedKey", "digest", "issue", "key_id_of", "matches"]

PREFIX = "sk-sg-"
_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LEN = 12
_SECRET_BYTES = 30  # 40 URL-safe characters


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    key: str  # shown once; never stored
    salt: str
    digest: str

    @property
    def display(self) -> str:
        return PREFIX + self.key_id


def digest(salt: str, key: str) -> str:
    return hashlib.sha256(salt.encode("ascii") + key.encode("utf-8")).hexdigest()


def issue() -> IssuedKey:
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LEN))
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    salt = secrets.token_hex(16)
    return IssuedKey(key_id, key, salt, digest(salt, key))


def key_id_of(key: str) -> str | None:
    """The public id inside a database-issued key, or None for any other string."""
    end = len(PREFIX) + _ID_LEN
    if len(key) <= end or not key.startswith(PREFIX) or key[end] != "_":
        return None
    return key[len(PREFIX) : end]


def matches(salt: str, stored: str, key: str) -> bool:
    return hmac.compare_digest(digest(salt, key), stored)
