"""Hashed character and word n-grams, computed with numpy alone.

The training script and the gateway call this same code, so the features a model
was trained on are exactly the features it sees at run time (no scikit-learn
vectorizer to keep in step). Each n-gram is a polynomial hash of its code points,
computed for every position at once: characters 3 to 5 long, and word unigrams and
bigrams. A text becomes the set of buckets its n-grams fall in (returned with
repeats: the model de-duplicates them without a sort); each block, chars and words,
is scaled by 1/sqrt(its distinct bucket count) so that a long text does not
outweigh a short one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "CHAR_BITS",
    "DIMENSIONS",
    "MAX_CHARS",
    "MAX_SCAN",
    "WORD_BITS",
    "Hashed",
    "Indices",
    "Prepared",
    "codes_of",
    "hashed",
    "prepare",
]

CHAR_BITS = 18
WORD_BITS = 17
#: Char buckets come first, word buckets after them.
DIMENSIONS = (1 << CHAR_BITS) + (1 << WORD_BITS)
#: Longer texts are featurised by their first and last halves of this budget.
MAX_CHARS = 8192
#: The most any layer reads of one text (the pattern layer; its first and last halves).
MAX_SCAN = 65_536

_P = 1_000_003
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits become the bucket
_SALT_WORD = np.uint64(0x51ED27)
_SALT_BIGRAM = np.uint64(0xB16B00B5)
_P64 = np.uint64(_P)

Indices = npt.NDArray[np.int64]
Codes = npt.NDArray[np.uint64]


@dataclass(frozen=True, slots=True)
class Hashed:
    """The buckets a text's n-grams fall in, repeats included: chars, then words."""

    chars: Indices
    words: Indices


@dataclass(frozen=True, slots=True)
class Prepared:
    """A lower-cased text with its code points and word spans, shared by the layers."""

    text: str
    codes: Codes
    starts: Indices
    ends: Indices

    @property
    def beginnings(self) -> Codes:
        """A hash of each word's first five letters (all of a shorter word)."""
        return _substring_hashes(self.codes, self.starts, np.minimum(self.ends, self.starts + 5))


def prepare(text: str, limit: int = MAX_CHARS) -> Prepared:
    """``text`` lower-cased; past ``limit`` characters, its first and last halves of it."""
    limit = min(limit, MAX_SCAN)
    text = text.lower()
    if len(text) > limit:
        text = f"{text[: limit // 2]} {text[-(limit // 2) :]}"
    codes = codes_of(text)
    starts, ends = _word_spans(codes)
    return Prepared(text, codes, starts, ends)


def hashed(text: str | Prepared) -> Hashed:
    """The buckets of ``text`` (already normalised)."""
    prepared = text if isinstance(text, Prepared) and len(text.text) <= MAX_CHARS else None
    if prepared is None:
        prepared = prepare(text.text if isinstance(text, Prepared) else text)
    chars = _buckets(_char_hashes(prepared.codes), CHAR_BITS)
    words = _buckets(_word_hashes(prepared), WORD_BITS) + (1 << CHAR_BITS)
    return Hashed(chars, words)


def codes_of(text: str) -> Codes:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _buckets(hashes: Codes, bits: int) -> Indices:
    return ((hashes * _MIX) >> np.uint64(64 - bits)).astype(np.int64)


def _char_hashes(codes: Codes) -> Codes:
    # Pad with spaces so the first and last characters start and end n-grams too.
    padded = np.concatenate(([np.uint64(32)], codes, [np.uint64(32)]))
    n = len(padded)
    if n < 3:
        return np.empty(0, dtype=np.uint64)
    h3 = (padded[: n - 2] * _P64 + padded[1 : n - 1]) * _P64 + padded[2:]
    h4 = h3[:-1] * _P64 + padded[3:]
    h5 = h4[:-1] * _P64 + padded[4:]
    # n is folded in so that a 3-gram and a 5-gram with equal sums stay apart.
    return np.concatenate((h3, h4 + np.uint64(1), h5 + np.uint64(2)))


def _word_hashes(prepared: Prepared) -> Codes:
    """Unigram and bigram hashes."""
    unigrams = _substring_hashes(prepared.codes, prepared.starts, prepared.ends) + _SALT_WORD
    bigrams = unigrams[:-1] * _P64 + unigrams[1:] + _SALT_BIGRAM
    return np.concatenate((unigrams, bigrams))


@cache
def _word_table() -> npt.NDArray[np.bool_]:
    """Code point (capped at 0x3100) -> is it part of a word."""
    table = np.zeros(0x3101, dtype=np.bool_)
    table[ord("0") : ord("9") + 1] = True
    table[ord("a") : ord("z") + 1] = True
    table[0xC0:] = True
    # Some non-ASCII code points are punctuation (quotes, dashes): treat them as breaks.
    table[0x2000:0x2070] = False
    table[0x3000:0x3040] = False
    return table


def _word_spans(codes: Codes) -> tuple[Indices, Indices]:
    """Where words start and end; a word is a run of ASCII alphanumerics or non-ASCII."""
    is_word = _word_table()[np.minimum(codes, 0x3100)]
    edges = np.diff(is_word, prepend=False, append=False)
    bounds = np.flatnonzero(edges)
    return bounds[0::2], bounds[1::2]


@cache
def _powers() -> tuple[Codes, Codes]:
    """P**i and P**-i modulo 2**64 for every position a clipped text can have."""
    size = max(MAX_CHARS, MAX_SCAN) + 2
    inverse = pow(_P, -1, 1 << 64)  # P is odd, so it has an inverse modulo 2**64
    forward = np.ones(size, dtype=np.uint64)
    backward = np.ones(size, dtype=np.uint64)
    # Array products wrap modulo 2**64 silently, which is what a hash wants.
    forward[1:] = np.cumprod(np.full(size - 1, _P, dtype=np.uint64))
    backward[1:] = np.cumprod(np.full(size - 1, inverse, dtype=np.uint64))
    return forward, backward


def _substring_hashes(codes: Codes, starts: Indices, ends: Indices) -> Codes:
    """sum(codes[j] * P**(end-1-j) for j in [start, end)) for each span, from one prefix sum."""
    if not len(starts):
        return np.empty(0, dtype=np.uint64)
    forward, backward = _powers()
    prefix = np.empty(len(codes) + 1, dtype=np.uint64)
    prefix[0] = 0
    np.cumsum(codes * backward[: len(codes)], out=prefix[1:])
    result: Codes = (prefix[ends] - prefix[starts]) * forward[ends - 1]
    return result
