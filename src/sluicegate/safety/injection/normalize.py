"""Undo the cheap disguises before anything reads the text.

Attackers hide an instruction from filters that read raw text: full-width or
mathematical letters (NFKC folds them), Cyrillic or Greek look-alikes mixed into
Latin words, zero-width and other invisible characters between letters, Unicode
"tag" characters that spell ASCII invisibly, and payloads encoded as base64, hex
or rot13 for the model to decode. ``normalize`` undoes the first group;
``payloads`` finds and decodes the second, so the layers above can read both.
"""

# ruff: noqa: RUF001 (the look-alike table is Cyrillic and Greek on purpose)
from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from functools import cache

import numpy as np
import numpy.typing as npt

__all__ = ["fold_obfuscation", "normalize", "payloads", "rot13_view"]

# Format (Cf) characters an attacker slips between letters: zero-width space, joiners,
# word joiner, BOM, soft hyphen, bidi controls, invisible operators, variation selectors,
# plus blank-looking letters (Hangul fillers, braille blank, Mongolian separator).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f"
    "\U000e0100-\U000e01ef]"
)
# Tag characters U+E0020..E007E mirror printable ASCII ("ASCII smuggling"): read them.
_TAGS = re.compile("[\U000e0020-\U000e007e]+")

_LATIN_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g", "ո": "n", "ս": "u",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D",
    # Greek
    "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ε": "e", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
_FOLD = str.maketrans(_LATIN_LOOKALIKES)
_LOOKALIKE_CLASS = "".join(_LATIN_LOOKALIKES)
_HAS_LOOKALIKE = re.compile(f"[{_LOOKALIKE_CLASS}]")
# A word that mixes Latin letters with look-alikes; words wholly in Cyrillic or Greek
# are real Russian or Greek and stay as they are (the mixed-script rule of UTS #39).
_MIXED_WORD = re.compile(
    f"[A-Za-z{_LOOKALIKE_CLASS}]*[{_LOOKALIKE_CLASS}][A-Za-z{_LOOKALIKE_CLASS}]*"
)
_LATIN = re.compile("[A-Za-z]")

# Letters spaced or dotted apart ("i g n o r e", "I.G.N.O.R.E"): four or more in a row.
_SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_][ .\-_*]){3,}[^\W\d_](?![^\W\d_])")
_SPACED_SEP = re.compile(r"[ .\-_*]")
# Cheap test first: a literal space to anchor on makes it a fast scan.
_SPACED_HINT = re.compile(r" [^\W\d_][ .\-_*][^\W\d_][ .\-_*][^\W\d_]")
# A leet digit next to a letter; starting with a small character class keeps the scan fast.
_LEET_HINT = re.compile(r"[013457@$](?<=[a-zA-Z][013457@$])|[013457@$](?=[a-zA-Z])")
_LEET = str.maketrans("013457@$", "oieastas")
_LEET_WORD_CHARS = frozenset("0123456789@$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: Encoded runs shorter than this are left alone: too short to hold an instruction.
MIN_ENCODED = 16
_HEX_ESCAPES = re.compile(r"(?:\\x|0x)([0-9A-Fa-f]{2})")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: At most this many encoded candidates are decoded per text, so a text full of
#: base64-looking tokens costs a bounded amount.
MAX_PAYLOADS = 8

_COMMON = frozenset((
    "the", "a", "an", "and", "or", "to", "of", "in", "on", "is", "are", "you", "your", "i",
    "me", "my", "it", "this", "that", "for", "with", "be", "all", "as", "not", "do", "what",
    "how", "from", "now", "will", "can", "please", "ignore", "instructions", "previous", "say",
    "tell", "print", "write", "system", "prompt", "rules",
))  # fmt: skip
_WORD = re.compile(f"[A-Za-z{_LOOKALIKE_CLASS}]*[{_LOOKALIKE_CLASS}][A-Za-z{_LOOKALIKE_CLASS}]*")
_LATIN = re.compile("[A-Za-z]")

# Letters spaced or dotted apart ("i g n o r e", "I.G.N.O.R.E"): four or more in a row.
_SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_][ .\-_*]){3,}[^\W\d_](?![^\W\d_])")
_SPACED_SEP = re.compile(r"[ .\-_*]")
# Cheap test first: a literal space to anchor on makes it a fast scan.
_SPACED_HINT = re.compile(r" [^\W\d_][ .\-_*][^\W\d_][ .\-_*][^\W\d_]")
# A leet digit next to a letter; starting with a small character class keeps the scan fast.
_LEET_HINT = re.compile(r"[013457@$](?<=[a-zA-Z][013457@$])|[013457@$](?=[a-zA-Z])")
_LEET = str.maketrans("013457@$", "oieastas")
_LEET_WORD_CHARS = frozenset("0123456789@$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

#: Encoded runs shorter than this are left alone: too short to hold an instruction.
MIN_ENCODED = 16
_HEX_ESCAPES = re.compile(r"(?:\\x|0x)([0-9A-Fa-f]{2})")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: At most this many encoded candidates are decoded per text, so a text full of
#: base64-looking tokens costs a bounded amount.
MAX_PAYLOADS = 8

_COMMON = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "to",
        "of",
        "in",
        "on",
        "is",
        "are",
        "you",
        "your",
        "i",
        "me",
        "my",
        "it",
        "this",
        "that",
        "for",
        "with",
        "be",
        "all",
        "as",
        "not",
        "do",
        "what",
        "how",
        "from",
        "now",
        "will",
        "can",
        "please",
        "ignore",
        "instructions",
        "previous",
        "say",
        "tell",
        "print",
        "write",
        "system",
        "prompt",
        "rules",
    ]
)
_WORD = re.compile(r"[a-z]+")


def normalize(text: str) -> str:
    """NFKC, tags read as ASCII, invisibles dropped, look-alikes folded."""
    if text.isascii():
        return text  # nothing to undo, and most traffic: one C call
    text = unicodedata.normalize("NFKC", text)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if not _suspicious()[np.minimum(codes, 0x10000)].any():
        return text  # accents, CJK, most emoji-free text: nothing hidden
    if _TAGS.search(text):
        text = _TAGS.sub(lambda m: "".join(chr(ord(c) - 0xE0000) for c in m.group()), text)
    text = _INVISIBLE.sub("", text)
    if _HAS_LOOKALIKE.search(text):
        text = _MIXED_WORD.sub(_fold_word, text)
    return text


@cache
def _suspicious() -> npt.NDArray[np.bool_]:
    """Code point (capped at 0x10000) -> may it hide or disguise something."""
    table = np.zeros(0x10001, dtype=np.bool_)
    everything = "".join(map(chr, range(0x10000)))
    for match in _INVISIBLE.finditer(everything):
        table[match.start()] = True
    for ch in _LATIN_LOOKALIKES:
        table[ord(ch)] = True
    table[0x10000] = True  # anything astral: tag characters, variation selectors
    return table


def _fold_word(match: re.Match[str]) -> str:
    word = match.group()
    return word.translate(_FOLD) if _LATIN.search(word) else word


def fold_obfuscation(text: str) -> str:
    """Spaced-out letters joined and leetspeak read as letters: for the pattern layer only."""
    if _SPACED_HINT.search(text):
        text = _SPACED.sub(lambda m: _SPACED_SEP.sub("", m.group()), text)
    if _LEET_HINT.search(text):
        text = _fold_leet(text)
    return text


def _fold_leet(text: str) -> str:
    """Leet digits read as letters in the words that mix them with letters."""
    parts: list[str] = []
    done = 0
    for match in _LEET_HINT.finditer(text):
        start = end = match.start()
        if start < done:
            continue
        while start > done and text[start - 1] in _LEET_WORD_CHARS:
            start -= 1
        while end < len(text) and text[end] in _LEET_WORD_CHARS:
            end += 1
        parts += (text[done:start], text[start:end].translate(_LEET))
        done = end
    parts.append(text[done:])
    return "".join(parts)


def payloads(text: str) -> list[str]:
    """The readable text inside base64 or hex runs of ``text``, decoded (at most a few)."""
    if "\\x" in text or "0x" in text:
        text = _HEX_ESCAPES.sub(r"\1", text)
    found: list[str] = []
    for run in _encoded_runs(text):
        decoded = _from_hex(run) if set(run) <= _HEX_DIGITS else _from_base64(run)
        if decoded is not None:
            found.append(decoded)
            if len(found) >= MAX_PAYLOADS:
                break
    return found


@cache
def _base64_table() -> npt.NDArray[np.bool_]:
    table = np.zeros(129, dtype=np.bool_)
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=":
        table[ord(ch)] = True
    return table


def _encoded_runs(text: str) -> list[str]:
    """Runs of base64 alphabet at least MIN_ENCODED long, found with one numpy pass."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    inside = _base64_table()[np.minimum(codes, 128)]
    bounds = np.flatnonzero(np.diff(inside, prepend=False, append=False))
    starts, ends = bounds[0::2], bounds[1::2]
    keep = np.flatnonzero(ends - starts >= MIN_ENCODED)[: 4 * MAX_PAYLOADS]
    return [text[starts[k] : ends[k]] for k in keep.tolist()]


def rot13_view(text: str) -> str | None:
    """``text`` in rot13, where that reads as more English than the original does."""
    before = _common_share(text)
    if before > 0.25:
        return None  # already reads as English: the common case, decided in one pass
    rotated = codecs.encode(text, "rot13")
    return rotated if _common_share(rotated) > max(0.25, before * 2) else None


def _common_share(text: str) -> float:
    words = _WORD.findall(text.lower())
    if len(words) < 3:
        return 0.0
    return sum(word in _COMMON for word in words) / len(words)


def _from_base64(token: str) -> str | None:
    if token.isalpha() and (token.islower() or token.isupper()):
        return None  # a long plain word, not an encoding
    raw = token.replace("-", "+").replace("_", "/").rstrip("=")
    raw += "=" * (-len(raw) % 4)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(data)


def _from_hex(token: str) -> str | None:
    return _readable(bytes.fromhex(token[: len(token) // 2 * 2]))


def _readable(data: bytes) -> str | None:
    """The bytes as text when they are mostly letters and spaces, else None."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 6:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in decoded)
    letters = sum(ch.isalpha() or ch == " " for ch in decoded)
    if printable < 0.95 * len(decoded) or letters < 0.6 * len(decoded):
        return None
    return normalize(decoded)
