"""Context words on both sides of a finding, counted from its edges.

Presidio's ``LemmaContextAwareEnhancer`` counts the words after a match from the
match's *first* token, so for ``0494 41 18 24 office`` the window after the number is
spent inside the number itself. This one looks ``prefix`` words before the first token
and ``suffix`` words after the last.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts

__all__ = ["EdgeContextEnhancer"]


class EdgeContextEnhancer(LemmaContextAwareEnhancer):
    def __init__(self, prefix: int = 5, suffix: int = 2) -> None:
        super().__init__(
            context_similarity_factor=0.35,
            min_score_with_context_similarity=0.4,
            context_prefix_count=prefix,
            context_suffix_count=suffix,
        )

    def _extract_surrounding_words(
        self, nlp_artifacts: NlpArtifacts, word: str, start: int
    ) -> list[str]:
        if not nlp_artifacts.tokens:
            return [""]
        indices: list[int] = nlp_artifacts.tokens_indices
        lemmas: list[str] = nlp_artifacts.lemmas
        keywords = set(nlp_artifacts.keywords)
        end = start + len(word)
        first = max(0, bisect_right(indices, start) - 1)
        last = max(first, bisect_left(indices, end) - 1)
        # The edge tokens count too: "24-Office" is one token.
        before = lemmas[max(0, first - 2 * self.context_prefix_count) : first + 1]
        after = lemmas[last : last + 1 + 2 * self.context_suffix_count]
        window = [w for w in before if w in keywords][-(self.context_prefix_count + 1) :]
        window += [w for w in after if w in keywords][: self.context_suffix_count + 1]
        return list(set(window))
