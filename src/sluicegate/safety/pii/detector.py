"""``PiiDetector``: Presidio's analyzer with offline recognizers and spaCy NER.

Build one at start-up (loading the model takes about a second) and share it: ``detect``
keeps no per-call state. Overlapping findings are settled by how much each kind of
evidence is worth: a checksum-validated number beats an address, an address beats a
phone-shaped digit run, and all of them beat a guess of the statistical NER model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import regex
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from sluicegate.safety.pii.address import AddressRecognizer
from sluicegate.safety.pii.context import EdgeContextEnhancer
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
from sluicegate.safety.pii.ner import (
    CompanyRecognizer,
    NameContextRecognizer,
    NerEngine,
    default_model_path,
)
from sluicegate.safety.pii.recognizers import pattern_recognizers

__all__ = ["PiiDetector"]

#: Findings below this score are dropped (Presidio scores are 0..1).
DEFAULT_THRESHOLD = 0.4

_VALIDATED = {EMAIL_ADDRESS, IBAN_CODE, CREDIT_CARD, IP_ADDRESS}
_STRUCTURED = {*_VALIDATED, US_SSN, PHONE_NUMBER}
_DIGIT_OR_AT = regex.compile(r"[\d@]")
_NER = "SpacyRecognizer"
_LEADING_WORDS = ("the ", "The ", "THE ")
# Words of PII prompts that NER takes for organisations: "my IBAN is ...".
_NOT_NAMES = frozenset({"IBAN", "SSN", "CVV", "PIN", "ZIP", "ATM", "ID", "DOB", "SWIFT", "BIC"})
_INITIAL = regex.compile(r"(?<= )\p{Lu}\.?$")
_AFTER_INITIAL = regex.compile(r" \p{Lu}[\p{Ll}\p{M}'\u2019-]+")
_TRAILING_WORDS = ("'s", "\u2019s")
# Where people go is a place: "flew to X", "moved to X", "the city of X".
_PLACE_CUE = regex.compile(
    # not "turned to" or "returned to": people are turned and returned to as well
    r"(?i:\b(?:fl(?:ew|y|ies|ying|own)|(?:mov|relocat)(?:e|es|ed|ing)|"
    r"travell?(?:ed|ing|s)?|drove|driv(?:e|es|ing)|arriv(?:e|es|ed|ing)|"
    r"head(?:ed|ing)|emigrat(?:e|es|ed|ing)) (?:to|at|in|into)"
    r"|\b(?:city|town|village|county|province|capital) of) $"
)
# First name, a middle initial, last name: how people, not companies, are written.
_NAME_WORD = r"\p{Lu}[\p{Ll}\p{M}'\u2019-]+"
_INITIALLED_NAME = regex.compile(rf"{_NAME_WORD} \p{{Lu}}\.? {_NAME_WORD}")


class PiiDetector:
    """Finds PII in text. ``detect`` keeps no per-call state; with NER it costs tens of
    milliseconds of CPU, so call it from a worker thread, not on the event loop."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        types: Iterable[str] = SUPPORTED_TYPES,
    ) -> None:
        self.types = sorted(set(types) & SUPPORTED_TYPES)
        self.threshold = threshold
        # Every structured type has a digit or an "@" in it; names and places need not.
        self._needs = None if set(self.types) - _STRUCTURED else _DIGIT_OR_AT
        # Without a type that needs it, spaCy only tokenizes: about a hundred times cheaper.
        ner = bool({PERSON, LOCATION, ORGANIZATION} & set(self.types))
        engine = NerEngine(model_path or default_model_path(), ner=ner)
        engine.load()
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in [
            *pattern_recognizers(),
            AddressRecognizer(),
            NameContextRecognizer(),
            CompanyRecognizer(),
            SpacyRecognizer(supported_entities=[PERSON, LOCATION, ORGANIZATION], name=_NER),
        ]:
            registry.add_recognizer(recognizer)
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=engine,
            supported_languages=["en"],
            # Context after a number counts too: "(555) 123-4567 office".
            context_aware_enhancer=EdgeContextEnhancer(prefix=5, suffix=2),
        )

    def detect(self, text: str) -> list[Entity]:
        """Entities in ``text``, non-overlapping, in text order."""
        if not text.strip() or (self._needs is not None and not self._needs.search(text)):
            return []
        results = self._analyzer.analyze(
            text, language="en", entities=self.types, score_threshold=self.threshold
        )
        candidates: list[_Candidate] = []
        for result in results:
            rank = _rank(result)
            kind = _retype(text, result)
            for start, end in _clean(text, result):
                candidates.append((start, end, kind, result.score, rank))
        candidates = _agree_on_people(text, candidates)
        # Strongest evidence first, then longest, then highest score.
        candidates.sort(key=lambda c: (-c[4], c[0] - c[1], -c[3], c[0]))
        taken: list[_Candidate] = []
        for cand in candidates:
            if all(cand[1] <= t[0] or cand[0] >= t[1] for t in taken):
                taken.append(cand)
        return [
            Entity(kind, start, end, round(score, 3), text[start:end])
            for start, end, kind, score, _ in sorted(taken)
        ]


_Candidate = tuple[int, int, str, float, int]


def _agree_on_people(text: str, candidates: list[_Candidate]) -> list[_Candidate]:
    """A model "organisation" named like a person found elsewhere in the text is that
    person: "my name is Ann Lee but everyone calls me Ann" (NER reads the second as an ORG)."""
    people = [set(text[c[0] : c[1]].split()) for c in candidates if c[2] == PERSON]
    if not people:
        return candidates
    agreed = []
    for cand in candidates:
        if cand[2] == ORGANIZATION and cand[4] == 0:
            words = set(text[cand[0] : cand[1]].split())
            if any(words <= person for person in people):
                cand = (cand[0], cand[1], PERSON, cand[3], cand[4])
        agreed.append(cand)
    return agreed


def _rank(result: RecognizerResult) -> int:
    if result.entity_type in _VALIDATED:
        return 5
    if result.entity_type == US_SSN:
        return 4
    recognizer = (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY)
    if recognizer == "AddressRecognizer":
        return 3
    if result.entity_type == PHONE_NUMBER:
        return 2
    if recognizer != _NER:
        return 1
    return 0


def _retype(text: str, result: RecognizerResult) -> str:
    """A name right after "in" or "near" (a person also after "from"), or where someone
    travels to, is a place; an "organisation" shaped like ``Ann B. Lee`` is a person."""
    kind = result.entity_type
    recognizer = (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY)
    if recognizer != _NER or kind not in (PERSON, ORGANIZATION):
        return kind
    cues = (" in ", " near ", " from ") if kind == PERSON else (" in ", " near ")
    if not text.startswith(("'s", "\u2019s"), result.end):
        before = text[max(0, result.start - 6) : result.start].lower()
        travel = _PLACE_CUE.search(text, max(0, result.start - 40), result.start)
        if before.endswith(cues) or travel:
            return LOCATION
    if kind == ORGANIZATION and _INITIALLED_NAME.fullmatch(text, result.start, result.end):
        return PERSON
    return kind


def _clean(text: str, result: RecognizerResult) -> list[tuple[int, int]]:
    """NER spans split at line breaks, without a leading "the" or a trailing "'s"."""
    recognizer = (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY)
    if recognizer != _NER:
        return [(result.start, result.end)]
    spans = []
    start = result.start
    for piece in text[result.start : result.end].split("\n"):
        s, e = start, start + len(piece)
        start = e + 1
        while s < e and not text[s].isalnum():
            s += 1
        while e > s and not (text[e - 1].isalnum() or text[e - 1] == "."):
            e -= 1
        for word in _LEADING_WORDS:
            if text.startswith(word, s, e):
                s += len(word)
        for word in _TRAILING_WORDS:
            if text.endswith(word, s, e):
                e -= len(word)
        if result.entity_type == PERSON:
            # NER often stops at a middle initial: "Bela A" of "Bela A Sisneros".
            surname = _AFTER_INITIAL.match(text, e) if _INITIAL.search(text, s, e) else None
            if surname:
                e = surname.end()
        if any(c.isalpha() for c in text[s:e]) and text[s:e] not in _NOT_NAMES:
            spans.append((s, e))
            if result.entity_type != LOCATION:
                # A name does not go on over a line break: what follows is an address
                # or a job title ("Ann Lee\nAccounting clerk"), a field label ("Address").
                break
    return spans
