"""One llama.cpp model instance and the one thread allowed to touch it.

A ``Llama`` object is not thread-safe, so each instance owns a single-thread
executor and every call on it (load, generate, unload) runs there, in order.
The model loads on first use (or at start with ``preload``), once; a failed load
is remembered so that health checks report it and requests fail fast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sluicegate.errors import UpstreamTimeout

__all__ = ["LlamaInstance", "ModelLoadFailed", "Progress"]

log = logging.getLogger("sluicegate")


_guarded = False


def _avoid_amx_repacking() -> None:
    """On CPUs with AMX, load weights without llama.cpp's extra buffer types.

    llama.cpp repacks quantised weights into an AMX buffer there, and its AMX matrix
    multiply segfaults on the first batch of more than one token (ggml-org/llama.cpp
    #20824, seen here with SmolLM2 Q4_1 on a Sapphire Rapids-class CPU). Without the
    extra buffer types the plain CPU kernels (AVX-512/AVX2) run instead. Other CPUs
    keep the repacked kernels. llama-cpp-python has no argument for this, so its
    default model parameters are wrapped, once, before the first load.
    """
    global _guarded
    if _guarded:
        return
    _guarded = True
    import llama_cpp

    if b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info():
        return
    defaults = llama_cpp.llama_cpp.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_cpp.llama_model_default_params = without_extra_buffers
    log.info("AMX CPU: llama.cpp weight repacking off (llama.cpp#20824)")


class ModelLoadFailed(RuntimeError):
    """The GGUF file would not load; the cause is chained."""


class Progress:
    """Counts what llama.cpp samples and stops it when asked, one token at a time.

    ``Llama.generate`` is wrapped on the instance: every completion path (chat or
    text, streamed or not) draws its tokens through it, so one check per token
    serves a client that left, a deadline, and exact usage for streams, which
    llama-cpp-python only reports for whole answers.
    """

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        self._generate = llama.generate
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        llama.generate = self.generate
        self.begin(threading.Event(), float("inf"))

    def begin(self, cancel: threading.Event, deadline: float) -> None:
        self.cancel = cancel
        self.deadline = deadline
        self.prompt_tokens = 0
        self.sampled = 0
        self.last_was_eog = False
        self.timed_out = False

    def generate(self, tokens: list[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        self.prompt_tokens = len(tokens)
        inner = self._generate(tokens, *args, **kwargs)
        try:
            for token in inner:
                if self.cancel.is_set():
                    return
                if time.monotonic() > self.deadline:
                    self.timed_out = True
                    return
                self.sampled += 1
                self.last_was_eog = bool(self._is_eog(self._vocab, token))
                yield token
        finally:
            inner.close()

    @property
    def completion_tokens(self) -> int:
        # llama-cpp-python stops at an end-of-generation token without counting it.
        return self.sampled - int(self.last_was_eog)

    def check(self, seconds: float) -> None:
        if self.timed_out:
            raise UpstreamTimeout(f"The local model did not finish within {seconds:g}s.")


class LlamaInstance:
    def __init__(self, file: Path, context_length: int, threads: int, label: str) -> None:
        self.file = file
        self.context_length = context_length
        self.threads = threads
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=label)
        self._lock = threading.Lock()
        self._llama: Any = None
        self.progress: Progress | None = None
        self.load_error: ModelLoadFailed | None = None

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    def load(self) -> Any:
        """The Llama object, loaded on first call. Runs on ``executor``."""
        with self._lock:
            if self._llama is not None:
                return self._llama
            if self.load_error is not None:
                raise self.load_error
            try:
                from llama_cpp import Llama

                _avoid_amx_repacking()
                llama = Llama(
                    model_path=str(self.file),
                    n_ctx=self.context_length,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    verbose=False,
                )
            except Exception as exc:
                # Logged here, once: the path and the cause are for the operator, not clients.
                log.error("local model %s failed to load", self.file, exc_info=exc)
                self.load_error = ModelLoadFailed(f"{self.file}: {exc}")
                raise self.load_error from exc
            self.progress = Progress(llama)
            self._llama = llama
            return llama

    def unload(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
                self.progress = None
