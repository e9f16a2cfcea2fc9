"""The input check: normalise, decode, match patterns, classify; the worst view decides.

Layers, cheapest first:

1. ``normalize``: NFKC, invisible characters, look-alike letters (ASCII text skips it);
2. views: the normalised text, plus any base64 / hex payload decoded from it, plus its
   rot13 reading when rot13 markers appear ("gur", "vtaber"...);
3. patterns (``heuristics``) on every view, with spaced letters and leetspeak folded;
   an override or exfiltration pattern blocks on its own;
4. the classifier on every view (pattern hits are among its features);
5. optionally (``injection_model: minilm``), logistic regression on MiniLM embeddings
   of each view's 256-token windows, stacked with the classifier (``embedding``).
   It costs a MiniLM forward pass, so ``slow`` is set and callers run the check on
   a worker thread.

Long inputs: patterns and decoding read the first and last 32 K characters
(``heuristics.SCAN_CHARS``); the classifier reads the first and last 4 K
(``features.MAX_CHARS``). Callers that
hold a conversation pass each user message separately to ``check_messages``, so one
long message cannot hide another.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sluicegate.safety.injection import heuristics
from sluicegate.safety.injection.features import hashed, prepare
from sluicegate.safety.injection.model import MODEL_FILE, LinearModel
from sluicegate.safety.injection.normalize import (
    fold_obfuscation,
    normalize,
    payloads,
    rot13_view,
)
from sluicegate.safety.verdict import Decision, Verdict

if TYPE_CHECKING:
    from sluicegate.safety.injection.embedding import EmbeddingModel, WindowEncoder

__all__ = ["CHECK_NAME", "STRONG_SCORE", "Assessment", "InjectionCheck", "ModelKind"]

#: ngram: patterns and the n-gram classifier (sub-millisecond); minilm: plus the
#: embedding classifier stacked on it (a MiniLM forward pass per 256-token window).
ModelKind = Literal["ngram", "minilm"]

log = logging.getLogger("sluicegate")

CHECK_NAME = "injection"
#: The score of a text a strong pattern matched, whatever the classifier says.
STRONG_SCORE = 0.99

_ROT13_MARKERS = ("gur ", " lbh", "lbhe ", " naq ", "vtaber", "cerivbhf", "vafgehpgvba", "flfgrz")


@dataclass(frozen=True, slots=True)
class Assessment:
    #: The classifier's highest probability over the views.
    probability: float
    #: Pattern families matched in any view.
    families: tuple[str, ...]
    #: Whether the worst finding came from a decoded payload rather than the text itself.
    decoded: bool

    @property
    def strong(self) -> tuple[str, ...]:
        return tuple(name for name in self.families if name in heuristics.STRONG)

    @property
    def score(self) -> float:
        return max(self.probability, STRONG_SCORE) if self.strong else self.probability


class InjectionCheck:
    """Prompt injection and jailbreak detection; build once at start-up, then call freely."""

    name = CHECK_NAME

    def __init__(
        self,
        model: LinearModel | None = None,
        threshold: float | None = None,
        embedding: EmbeddingModel | None = None,
        encoder: WindowEncoder | None = None,
    ) -> None:
        self.model = model if model is not None else LinearModel.load(MODEL_FILE)
        self.embedding = embedding
        self.encoder = encoder
        if embedding is not None and encoder is None:
            from sluicegate.safety.injection.embedding import WindowEncoder

            self.encoder = WindowEncoder()
        default = embedding.threshold if embedding is not None else self.model.threshold
        #: Block at or above this score; the model's own (picked on training data) by default.
        self.threshold = default if threshold is None else threshold

    @classmethod
    def build(cls, kind: ModelKind = "ngram", threshold: float | None = None) -> InjectionCheck:
        """The shipped check of that kind, its models loaded (call at start-up)."""
        if kind == "ngram":
            return cls(threshold=threshold)
        from sluicegate.safety.injection.embedding import EmbeddingModel, WindowEncoder

        encoder = WindowEncoder()
        encoder.load()
        return cls(threshold=threshold, embedding=EmbeddingModel.load(), encoder=encoder)

    @property
    def slow(self) -> bool:
        """Whether a check costs milliseconds of CPU (run it off the event loop)."""
        return self.embedding is not None

    def assess(self, text: str) -> Assessment:
        half = heuristics.SCAN_CHARS // 2
        if len(text) > 2 * half:
            text = f"{text[:half]}\n{text[-half:]}"
        base = normalize(text)
        views = payloads(base)
        if any(marker in base.lower() for marker in _ROT13_MARKERS):
            rotated = rot13_view(base)
            if rotated is not None:
                views.append(rotated)
        texts = [base, *views]
        layers = [self._layers(view) for view in texts]
        margins = [margin for _, margin in layers]
        if self.embedding is not None and self.encoder is not None:
            vectors = self.encoder.vectors(texts)
            embedding = self.embedding
            scores = [
                embedding.probability(m, embedding.margin(v))
                for m, v in zip(margins, vectors, strict=True)
            ]
        else:
            scores = [_sigmoid(m) for m in margins]
        families, probability = layers[0][0], scores[0]
        worst_decoded = False
        for (found, _), p in zip(layers[1:], scores[1:], strict=True):
            if found - families or p > probability:
                worst_decoded = True
            families |= found
            probability = max(probability, p)
        ordered = tuple(name for name in heuristics.FAMILIES if name in families)
        return Assessment(probability, ordered, worst_decoded)

    def score(self, text: str) -> float:
        """The classifier's probability, raised to STRONG_SCORE when a strong pattern matched."""
        return self.assess(text).score

    def check(self, text: str) -> Verdict:
        """allow / block with score and reason; unknown if the check itself failed."""
        try:
            found = self.assess(text)
        except Exception as exc:  # the pipeline fails closed on unknown
            log.exception("injection check failed")
            return Verdict(CHECK_NAME, Decision.UNKNOWN, None, f"error: {type(exc).__name__}")
        decision = Decision.BLOCK if found.score >= self.threshold else Decision.ALLOW
        where = " (decoded)" if found.decoded else ""
        if found.strong:
            reason = f"heuristic: {found.strong[0]}{where}"
        else:
            reason = f"classifier {found.probability:.2f}{where}"
        return Verdict(CHECK_NAME, decision, round(found.score, 4), reason)

    def check_messages(self, texts: Iterable[str]) -> Verdict:
        """Each text (e.g. each user message) checked on its own; the first block wins."""
        worst: Verdict | None = None
        for text in texts:
            verdict = self.check(text)
            if verdict.decision is not Decision.ALLOW:
                return verdict
            if worst is None or (verdict.score or 0.0) > (worst.score or 0.0):
                worst = verdict
        return worst or Verdict(CHECK_NAME, Decision.ALLOW, 0.0, "no text")

    def _layers(self, view: str) -> tuple[set[str], float]:
        """Pattern families and the n-gram classifier's margin (log-odds) for one view."""
        folded = fold_obfuscation(view)
        prepared = prepare(folded, heuristics.SCAN_CHARS)
        families = set(heuristics.hits(prepared))
        # The usual case: nothing to fold, so the classifier reuses the prepared text.
        features = hashed(prepared if folded is view else view)
        return families, self.model.margin(features, families)


def _sigmoid(margin: float) -> float:
    # Written out rather than with numpy: one scalar, and no overflow warning at -1000.
    if margin >= 0:
        return 1.0 / (1.0 + math.exp(-margin))
    z = math.exp(margin)
    return z / (1.0 + z)
