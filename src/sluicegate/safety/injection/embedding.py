"""The optional second classifier: logistic regression on MiniLM sentence embeddings.

The bundled all-MiniLM-L6-v2 (int8 ONNX, ``providers.local.encoder``) turns each
256-token window of a text into a vector; a linear model scores each window and
the highest window counts, because an injection hidden in a long document lives
in one window and would be averaged away otherwise. A stacked logistic
regression then combines that margin with the n-gram model's margin, so one
threshold decides.

``embedding_model.npz`` beside this file holds the weights, the stacking
coefficients and the threshold (picked on training rows only); scoring is a dot
product per window. The cost is the MiniLM forward pass, tens of milliseconds of
CPU per 500 tokens, so callers run it on a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sluicegate.providers.local.encoder import DIMENSIONS, OnnxEncoder, Tokenized, load_tokenizer
from sluicegate.providers.local.paths import EmbedderFiles, embedder_files

__all__ = [
    "EMBEDDING_FILE",
    "MAX_WINDOWS",
    "WINDOW_TOKENS",
    "EmbeddingModel",
    "WindowEncoder",
]

EMBEDDING_FILE = Path(__file__).with_name("embedding_model.npz")
#: The encoder's own limit; [CLS] and [SEP] included.
WINDOW_TOKENS = 256
#: Tokens shared by neighbouring windows, so an instruction cut by a boundary is whole in one.
STRIDE_TOKENS = 32
#: Past this many windows, the first and last halves are read (as the other layers do).
MAX_WINDOWS = 8
#: Characters tokenised at most: the first and last halves; beyond MAX_WINDOWS anyway.
MAX_CHARS = 16_384
_BATCH = 16

Matrix = npt.NDArray[np.float32]


class WindowEncoder:
    """MiniLM vectors of each text's token windows, with the local embedder's own code.

    Thread-safe once loaded; ``threads`` is onnxruntime's per-run thread count (one
    keeps a guard call from taking every core from the event loop and other calls).
    """

    def __init__(self, threads: int = 1, files: EmbedderFiles | None = None) -> None:
        self.files = files if files is not None else embedder_files()
        self.encoder = OnnxEncoder(self.files.onnx, self.files.tokenizer, threads)
        self._lock = threading.Lock()
        self._tokenizer: Any = None

    def load(self) -> None:
        self.encoder.load()
        with self._lock:
            if self._tokenizer is None:
                tokenizer = load_tokenizer(self.files.tokenizer, WINDOW_TOKENS)
                # Overflowing windows are kept, not dropped; no padding: batches pad below.
                tokenizer.enable_truncation(max_length=WINDOW_TOKENS, stride=STRIDE_TOKENS)
                tokenizer.no_padding()
                self._tokenizer = tokenizer

    def windows(self, text: str) -> list[list[int]]:
        """Token ids of each window of ``text``, at most MAX_WINDOWS of them."""
        self.load()
        if len(text) > MAX_CHARS:
            text = f"{text[: MAX_CHARS // 2]}\n{text[-MAX_CHARS // 2 :]}"
        encoding = self._tokenizer.encode(text)
        pieces = [encoding.ids, *(o.ids for o in encoding.overflowing)]
        if len(pieces) > MAX_WINDOWS:
            half = MAX_WINDOWS // 2
            pieces = pieces[:half] + pieces[-half:]
        return pieces

    def vectors(self, texts: Sequence[str]) -> list[Matrix]:
        """One (windows, 384) matrix per text, unit-length rows."""
        owners: list[int] = []
        pieces: list[list[int]] = []
        for k, text in enumerate(texts):
            for window in self.windows(text):
                owners.append(k)
                pieces.append(window)
        out = np.empty((len(pieces), DIMENSIONS), dtype=np.float32)
        # Similar lengths share a batch so little compute goes to padding.
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        for start in range(0, len(order), _BATCH):
            picked = order[start : start + _BATCH]
            width = max(len(pieces[i]) for i in picked)
            ids = np.zeros((len(picked), width), dtype=np.int64)
            mask = np.zeros((len(picked), width), dtype=np.int64)
            for row, i in enumerate(picked):
                ids[row, : len(pieces[i])] = pieces[i]
                mask[row, : len(pieces[i])] = 1
            out[picked] = self.encoder.forward(Tokenized(ids, mask))
        where = np.array(owners, dtype=np.int64)
        return [out[where == k] for k in range(len(texts))]


@dataclass(frozen=True, slots=True, eq=False)  # arrays: compare by identity
class EmbeddingModel:
    weights: Matrix  # (384,)
    bias: float
    #: p = sigmoid(ngram * n-gram margin + embedding * best window margin + intercept)
    stack: tuple[float, float, float]
    #: Block at or above this stacked probability; chosen on training data only.
    threshold: float
    info: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = EMBEDDING_FILE) -> EmbeddingModel:
        with np.load(path, allow_pickle=False) as data:
            stack = tuple(float(v) for v in data["stack"])
            info = {
                str(k): str(v) for k, v in zip(data["info_keys"], data["info_values"], strict=True)
            }
            return cls(
                data["weights"].astype(np.float32),
                float(data["bias"]),
                (stack[0], stack[1], stack[2]),
                float(data["threshold"]),
                info,
            )

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            weights=self.weights.astype(np.float32),
            bias=np.float64(self.bias),
            stack=np.array(self.stack, dtype=np.float64),
            threshold=np.float64(self.threshold),
            info_keys=np.array(list(self.info)),
            info_values=np.array(list(self.info.values())),
        )

    def margin(self, vectors: Matrix) -> float:
        """The highest window's margin; a text with no window scores as neutral text."""
        if not len(vectors):
            return self.bias
        return float(np.max(vectors @ self.weights)) + self.bias

    def probability(self, ngram_margin: float, embedding_margin: float) -> float:
        a, b, c = self.stack
        z = a * ngram_margin + b * embedding_margin + c
        return float(1.0 / (1.0 + np.exp(-z)))
