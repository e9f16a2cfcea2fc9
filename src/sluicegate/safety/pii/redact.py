"""Replace findings with typed placeholders (``<EMAIL_1>``) and, for masks, put them back.

One :class:`Mask` per request numbers the placeholders, so a value that appears in
several messages gets the same placeholder everywhere. A reversible mask also keeps
the originals, to restore them in the answer sent back to the same caller — in one
piece with :meth:`Mask.restore`, or chunk by chunk for a stream with
:meth:`Mask.stream_restorer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sluicegate.safety.pii.entities import (
    CREDIT_CARD,
    EMAIL_ADDRESS,
    IBAN_CODE,
    IP_ADDRESS,
    LOCATION,
    ORGANIZATION,
    PERSON,
    PHONE_NUMBER,
    US_SSN,
    Entity,
)

__all__ = ["PLACEHOLDER", "Mask", "Mode", "StreamRestorer", "redact"]

#: "redact": placeholders only, originals forgotten; "mask": originals kept to restore.
Mode = Literal["redact", "mask"]

_LABELS = {
    EMAIL_ADDRESS: "EMAIL",
    PHONE_NUMBER: "PHONE",
    US_SSN: "SSN",
    CREDIT_CARD: "CREDIT_CARD",
    IBAN_CODE: "IBAN",
    IP_ADDRESS: "IP_ADDRESS",
    PERSON: "PERSON",
    LOCATION: "LOCATION",
    ORGANIZATION: "ORG",
}

#: What a placeholder looks like; the label is upper-case letters and underscores.
PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")


@dataclass
class Mask:
    """Placeholder numbering for one request; with ``reversible``, the originals too."""

    reversible: bool = True
    #: placeholder -> original text (empty unless ``reversible``).
    originals: dict[str, str] = field(default_factory=dict)
    _issued: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    def placeholder(self, entity_type: str, value: str, text: str = "") -> str:
        """The placeholder for ``value``; a new one unless this value has one already.

        Numbers whose placeholder already occurs in ``text`` are skipped, so restoring
        never rewrites something the user typed.
        """
        key = (entity_type, value)
        if key in self._issued:
            return self._issued[key]
        label = _LABELS.get(entity_type, entity_type)
        n = self._counts.get(label, 0)
        while True:
            n += 1
            candidate = f"<{label}_{n}>"
            if candidate not in text:
                break
        self._counts[label] = n
        self._issued[key] = candidate
        if self.reversible:
            self.originals[candidate] = value
        return candidate

    def restore(self, text: str) -> str:
        """``text`` with every placeholder of this mask replaced by its original."""
        if not self.originals or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self.originals.get(m.group(), m.group()), text)

    def stream_restorer(self) -> StreamRestorer:
        """A restorer for text that arrives in chunks (one per stream, per choice)."""
        return StreamRestorer(self.originals)


def redact(
    text: str, entities: Sequence[Entity], mode: Mode = "redact", mask: Mask | None = None
) -> tuple[str, Mask]:
    """``text`` with each entity replaced by its placeholder, and the mask used.

    Pass the same ``mask`` for every text of one request. ``entities`` must not
    overlap (what :meth:`PiiDetector.detect` returns).
    """
    if mask is None:
        mask = Mask(reversible=mode == "mask")
    if not entities:
        return text, mask
    parts: list[str] = []
    at = 0
    for entity in sorted(entities, key=lambda e: e.start):
        parts.append(text[at : entity.start])
        parts.append(mask.placeholder(entity.type, text[entity.start : entity.end], text))
        at = entity.end
    parts.append(text[at:])
    return "".join(parts), mask


class StreamRestorer:
    """Restores placeholders in a stream whose chunks may split a placeholder anywhere.

    ``feed`` returns what can be sent now; a tail that could still grow into a
    placeholder (``"<PER"``) is held back until the next chunk settles it, and
    ``flush`` returns whatever is left when the stream ends.
    """

    def __init__(self, originals: Mapping[str, str]) -> None:
        self._originals = originals
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        cut = text.rfind("<")
        if cut >= 0 and self._could_grow(text[cut:]):
            self._held = text[cut:]
            text = text[:cut]
        else:
            self._held = ""
        return self._restore(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._restore(text)

    def _could_grow(self, tail: str) -> bool:
        return ">" not in tail and any(p.startswith(tail) for p in self._originals)

    def _restore(self, text: str) -> str:
        if not self._originals or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._originals.get(m.group(), m.group()), text)
