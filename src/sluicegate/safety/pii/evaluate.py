"""Entity-level precision, recall and F1 of the PII detector on labelled data.

Data: presidio-evaluator's JSON, ``[{full_text, spans: [{entity_type, start_position,
end_position}, ...]}, ...]`` (``../shared/data/pii/`` and what its generator writes).

Labels are mapped to the supported types by :data:`LABEL_MAP`, which follows
presidio-evaluator's entity hierarchy: street addresses, cities, countries, states
and postcodes (``ADDRESS``, ``STREET_ADDRESS``, ``GPE``, ``ZIP_CODE``...) all count as
``LOCATION``; name parts count as ``PERSON``. Other labels (``DATE_TIME``, ``TITLE``,
``NRP``, ``AGE``, ``DOMAIN_NAME``, ``US_DRIVER_LICENSE``...) are not scored, only listed.

Spans are compared after the normalisation presidio-evaluator's ``SpanEvaluator``
also applies, on gold and predicted spans alike: punctuation and whitespace at a span's
edges are dropped, and spans of one type separated only by punctuation and whitespace
are merged (the generator labels ``12 Main St, Springfield`` as three spans).
Two matchings are reported:

* ``exact`` — same type and the same normalised offsets;
* ``overlap`` — same type and at least one character in common, each span used once.

presidio-evaluator's ``SpanEvaluator`` matches at character IoU >= 0.9 after dropping
skip words, which sits between the two and close to ``exact``: the quality target is
stated on ``exact``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sluicegate.safety.pii.entities import (
    CREDIT_CARD,
    EMAIL_ADDRESS,
    IBAN_CODE,
    IP_ADDRESS,
    LOCATION,
    ORGANIZATION,
    PERSON,
    PHONE_NUMBER,
    SUPPORTED_TYPES,
    US_SSN,
    Entity,
)

__all__ = [
    "LABEL_MAP",
    "Counts",
    "Example",
    "Report",
    "Span",
    "evaluate",
    "load_examples",
    "main",
    "normalise",
    "score",
]

Match = Literal["exact", "overlap"]

#: Dataset label -> supported type; labels not here are excluded from scoring.
LABEL_MAP: dict[str, str] = {
    **{t: t for t in SUPPORTED_TYPES},
    "EMAIL": EMAIL_ADDRESS,
    "PHONE": PHONE_NUMBER,
    "SSN": US_SSN,
    "CREDIT_CARD_NUMBER": CREDIT_CARD,
    "IBAN": IBAN_CODE,
    "IP": IP_ADDRESS,
    "NAME": PERSON,
    "FIRST_NAME": PERSON,
    "LAST_NAME": PERSON,
    "ADDRESS": LOCATION,
    "STREET_ADDRESS": LOCATION,
    "GPE": LOCATION,
    "CITY": LOCATION,
    "STATE": LOCATION,
    "COUNTRY": LOCATION,
    "ZIP_CODE": LOCATION,
    "POSTCODE": LOCATION,
    "ORG": ORGANIZATION,
    "COMPANY": ORGANIZATION,
}


@dataclass(frozen=True, slots=True, order=True)
class Span:
    start: int
    end: int
    type: str


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    #: Gold spans of supported types, not yet normalised.
    spans: tuple[Span, ...]


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(slots=True)
class Report:
    #: Per supported type, plus ``"ALL"`` (micro average over the supported types).
    exact: dict[str, Counts]
    overlap: dict[str, Counts]
    #: Labels in the data that are not scored, with their span counts.
    excluded: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    seconds: float = 0.0

    def format(self) -> str:
        lines = [
            f"{self.rows} rows, {self.seconds:.1f} s",
            f"{'type':<14} {'gold':>5}  {'exact P':>7} {'R':>5} {'F1':>5}"
            f"  {'overlap P':>9} {'R':>5} {'F1':>5}",
        ]
        for name in [*sorted(t for t in self.exact if t != "ALL"), "ALL"]:
            e, o = self.exact[name], self.overlap[name]
            lines.append(
                f"{name:<14} {e.tp + e.fn:>5}  {e.precision:>7.3f} {e.recall:>5.3f} {e.f1:>5.3f}"
                f"  {o.precision:>9.3f} {o.recall:>5.3f} {o.f1:>5.3f}"
            )
        if self.excluded:
            listed = ", ".join(f"{k} {v}" for k, v in sorted(self.excluded.items()))
            lines.append(f"not scored: {listed}")
        return "\n".join(lines)


def load_examples(path: str | Path) -> tuple[list[Example], Counter[str]]:
    """Read a presidio-evaluator JSON file; returns the examples and the excluded labels."""
    rows: list[dict[str, Any]] = json.loads(Path(path).read_text(encoding="utf-8"))
    examples: list[Example] = []
    excluded: Counter[str] = Counter()
    for row in rows:
        spans = []
        for s in row["spans"]:
            kind = LABEL_MAP.get(s["entity_type"])
            if kind is None:
                excluded[s["entity_type"]] += 1
                continue
            spans.append(Span(s["start_position"], s["end_position"], kind))
        examples.append(Example(row["full_text"], tuple(spans)))
    return examples, excluded


def _is_filler(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] == "P"


def normalise(text: str, spans: Iterable[Span]) -> list[Span]:
    """Trim punctuation and whitespace at span edges; merge same-type neighbours."""
    trimmed = []
    for span in spans:
        start, end = span.start, span.end
        while start < end and _is_filler(text[start]):
            start += 1
        while end > start and _is_filler(text[end - 1]):
            end -= 1
        if start < end:
            trimmed.append(Span(start, end, span.type))
    merged: list[Span] = []
    for span in sorted(trimmed):
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.type == span.type
            and all(_is_filler(c) for c in text[last.end : span.start])
        ):
            merged[-1] = Span(last.start, max(last.end, span.end), span.type)
        else:
            merged.append(span)
    return merged


def score(gold: Sequence[Span], predicted: Sequence[Span], match: Match) -> dict[str, Counts]:
    """Per-type counts for one text; both span lists already normalised."""
    counts: dict[str, Counts] = {}
    for kind in {s.type for s in gold} | {s.type for s in predicted}:
        g = [s for s in gold if s.type == kind]
        p = [s for s in predicted if s.type == kind]
        if match == "exact":
            tp = len(set(g) & set(p))
        else:
            # Greedy on overlap length: one-to-one, so a single long prediction that
            # covers two gold spans earns one hit, not two.
            pairs = sorted(
                (
                    (min(a.end, b.end) - max(a.start, b.start), i, j)
                    for i, a in enumerate(g)
                    for j, b in enumerate(p)
                    if min(a.end, b.end) > max(a.start, b.start)
                ),
                reverse=True,
            )
            used_g: set[int] = set()
            used_p: set[int] = set()
            for _, i, j in pairs:
                if i not in used_g and j not in used_p:
                    used_g.add(i)
                    used_p.add(j)
            tp = len(used_g)
        counts[kind] = Counts(tp, len(p) - tp, len(g) - tp)
    return counts


def _add(total: dict[str, Counts], part: dict[str, Counts]) -> None:
    for kind, c in part.items():
        for key in (kind, "ALL"):
            t = total.setdefault(key, Counts())
            t.tp += c.tp
            t.fp += c.fp
            t.fn += c.fn


def evaluate(detect: Callable[[str], Sequence[Entity]], examples: Sequence[Example]) -> Report:
    """Run ``detect`` on every example and score it; unsupported predictions are ignored."""
    exact: dict[str, Counts] = {t: Counts() for t in SUPPORTED_TYPES} | {"ALL": Counts()}
    overlap: dict[str, Counts] = {t: Counts() for t in SUPPORTED_TYPES} | {"ALL": Counts()}
    started = time.perf_counter()
    for example in examples:
        gold = normalise(example.text, example.spans)
        found = (Span(e.start, e.end, e.type) for e in detect(example.text))
        predicted = normalise(example.text, (s for s in found if s.type in SUPPORTED_TYPES))
        _add(exact, score(gold, predicted, "exact"))
        _add(overlap, score(gold, predicted, "overlap"))
    seconds = time.perf_counter() - started
    return Report(exact, overlap, rows=len(examples), seconds=seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """``sluicegate eval pii DATA...``: print per-type figures for each file and overall."""
    parser = argparse.ArgumentParser(prog="sluicegate eval pii", description=main.__doc__)
    parser.add_argument("data", nargs="+", help="presidio-evaluator JSON files")
    parser.add_argument("--limit", type=int, help="only the first N rows of each file")
    args = parser.parse_args(argv)

    from sluicegate.safety.pii.detector import PiiDetector

    detector = PiiDetector()
    everything: list[Example] = []
    excluded: Counter[str] = Counter()
    for path in args.data:
        examples, skipped = load_examples(path)
        examples = examples[: args.limit] if args.limit else examples
        report = evaluate(detector.detect, examples)
        report.excluded = skipped
        print(f"== {path}\n{report.format()}\n")
        everything += examples
        excluded += skipped
    if len(args.data) > 1:
        report = evaluate(detector.detect, everything)
        report.excluded = excluded
        print(f"== all files\n{report.format()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
