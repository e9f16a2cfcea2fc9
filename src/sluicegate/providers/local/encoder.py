"""all-MiniLM-L6-v2 as sentence-transformers runs it: WordPiece, BERT, mean pooling, L2 norm.

Synchronous and thread-safe (an onnxruntime session may run from several threads
at once); the provider calls it from worker threads, and the benchmark calls it
directly, so both measure the same code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DIMENSIONS", "MAX_TOKENS", "Encoded", "OnnxEncoder", "Tokenized", "mean_pool"]

DIMENSIONS = 384
#: sentence-transformers' max_seq_length for this model (its tokenizer.json says 128).
MAX_TOKENS = 256
#: Texts per forward pass: big enough to amortise the call, small enough that one
#: long text does not pad a whole large batch.
BATCH = 32

Matrix = npt.NDArray[np.float32]

log = logging.getLogger("sluicegate")


@dataclass(frozen=True, slots=True)
class Tokenized:
    input_ids: npt.NDArray[np.int64]
    attention_mask: npt.NDArray[np.int64]

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


@dataclass(frozen=True, slots=True)
class Encoded:
    vectors: Matrix  # (n, 384), unit length
    tokens: int  # real tokens seen, [CLS] and [SEP] included


def load_tokenizer(path: Path, max_tokens: int = MAX_TOKENS) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_tokens)
    # Pad to the longest text of each batch, not to the file's fixed 128.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: Any, texts: Sequence[str]) -> Tokenized:
    encodings = tokenizer.encode_batch(list(texts))
    return Tokenized(
        input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
        attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
    )


def mean_pool(hidden: Matrix, mask: npt.NDArray[np.int64]) -> Matrix:
    """Average the token vectors the mask keeps, then scale each row to unit length."""
    weights = mask[:, :, None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: Matrix = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


class OnnxEncoder:
    """The int8 ONNX graph; loads on first use, once."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, threads: int) -> None:
        self.onnx_path = onnx_path
        self.tokenizer_path = tokenizer_path
        self.threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self.load_error: BaseException | None = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    @property
    def healthy(self) -> bool:
        """Files in place and no failed load; never loads anything."""
        return self.onnx_path.is_file() and self.tokenizer_path.is_file() and not self.load_error

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            if self.load_error is not None:
                raise self.load_error
            try:
                self._tokenizer = load_tokenizer(self.tokenizer_path)
                self._session = _session(self.onnx_path, self.threads)
            except Exception as exc:
                log.error("embedding model %s failed to load", self.onnx_path, exc_info=exc)
                self.load_error = exc
                raise

    def encode(self, texts: Sequence[str]) -> Encoded:
        self.load()
        # Similar lengths share a batch so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        tokens = 0
        for start in range(0, len(order), BATCH):
            picked = order[start : start + BATCH]
            batch = tokenize(self._tokenizer, [texts[i] for i in picked])
            out[picked] = self.forward(batch)
            tokens += batch.tokens
        return Encoded(out, tokens)

    def forward(self, batch: Tokenized) -> Matrix:
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "token_type_ids": np.zeros_like(batch.input_ids),
            },
        )
        return mean_pool(hidden, batch.attention_mask)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning idle threads would steal the cores the event loop and llama.cpp need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not ours to show
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
