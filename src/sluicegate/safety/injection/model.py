"""The shipped logistic regression over hashed n-grams and pattern flags, numpy only.

``model.npz`` beside this file holds the non-zero weights (bucket index and value),
the bias, the decision threshold the training script picked, and the feature
layout it was trained with; scripts/train_injection.py writes it. Scoring a text
is one gather and one sum over the buckets it hits.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sluicegate.safety.injection import features
from sluicegate.safety.injection.features import Hashed, Indices

__all__ = ["MODEL_FILE", "LinearModel", "ModelMismatch"]

MODEL_FILE = Path(__file__).with_name("model.npz")


class ModelMismatch(ValueError):
    """The model file was trained with another feature layout than this code computes."""


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare by identity
class LinearModel:
    #: One weight per hashed bucket, then one per pattern family.
    weights: npt.NDArray[np.float32]
    bias: float
    #: Block at or above this probability; chosen on training data only.
    threshold: float
    families: tuple[str, ...]
    #: Training facts for logs and the eval command: seed, rows, data sets.
    info: dict[str, str] = field(default_factory=dict)
    _scratch: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> LinearModel:
        with np.load(path, allow_pickle=False) as data:
            layout = (int(data["char_bits"]), int(data["word_bits"]))
            if layout != (features.CHAR_BITS, features.WORD_BITS):
                raise ModelMismatch(
                    f"{path} was trained with hash sizes {layout}, this code computes "
                    f"{(features.CHAR_BITS, features.WORD_BITS)}: retrain it with "
                    "scripts/train_injection.py."
                )
            families = tuple(str(name) for name in data["families"])
            weights = np.zeros(features.DIMENSIONS + len(families), dtype=np.float32)
            weights[data["index"]] = data["value"]
            info = {
                str(k): str(v) for k, v in zip(data["info_keys"], data["info_values"], strict=True)
            }
            return cls(weights, float(data["bias"]), float(data["threshold"]), families, info)

    def save(self, path: Path, index: Indices) -> None:
        """Write the weights at ``index`` (the buckets training saw) and the rest."""
        np.savez_compressed(
            path,
            index=index.astype(np.uint32),
            value=self.weights[index].astype(np.float32),
            bias=np.float64(self.bias),
            threshold=np.float64(self.threshold),
            families=np.array(self.families),
            char_bits=np.int64(features.CHAR_BITS),
            word_bits=np.int64(features.WORD_BITS),
            info_keys=np.array(list(self.info)),
            info_values=np.array(list(self.info.values())),
        )

    def probability(self, hashed: Hashed, families: Collection[str]) -> float:
        """P(attack) for a text's buckets and the pattern families it matched."""
        return float(1.0 / (1.0 + np.exp(-self.margin(hashed, families))))

    def margin(self, hashed: Hashed, families: Collection[str]) -> float:
        """The log-odds behind ``probability`` (what the stacked embedding model reads)."""
        margin = self.bias
        margin += self._unique_sum(hashed.chars)
        margin += self._unique_sum(hashed.words)
        base = features.DIMENSIONS
        for k, name in enumerate(self.families):
            if name in families:
                margin += float(self.weights[base + k])
        return margin

    def _unique_sum(self, buckets: Indices) -> float:
        """Sum of the weights of the distinct buckets, over sqrt(how many are distinct).

        The same value as de-duplicating with np.unique, without its sort: each bucket
        remembers the last position written to it, and a position counts only if it
        is the one remembered, so each distinct bucket counts exactly once.
        """
        if not len(buckets):
            return 0.0
        scratch: npt.NDArray[np.int32] | None = getattr(self._scratch, "array", None)
        if scratch is None:
            scratch = np.empty(len(self.weights), dtype=np.int32)
            self._scratch.array = scratch
        positions = np.arange(len(buckets), dtype=np.int32)
        scratch[buckets] = positions
        first = scratch[buckets] == positions
        distinct = int(np.count_nonzero(first))
        return float(self.weights[buckets[first]].sum()) / float(np.sqrt(distinct))
