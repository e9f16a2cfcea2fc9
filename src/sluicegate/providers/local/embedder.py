"""Embeddings from the bundled all-MiniLM-L6-v2, run in-process with onnxruntime.

The int8 ONNX graph was measured against the fp32 weights (bench/EMBEDDINGS.md):
the same retrieval quality, and faster. One onnxruntime session serves every
request (sessions are thread-safe); ``max_concurrency`` worker threads run it, and
the rest wait in the bounded queue. Each session run uses all cores unless
``threads`` says otherwise, with idle spinning off so that two runs sharing the
cores do not burn them waiting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import orjson

from sluicegate.config.schema import LocalDeployment, ModelConfig
from sluicegate.errors import InvalidRequest, ServiceUnavailable, SluicegateError, UpstreamError
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.providers.local import threads
from sluicegate.providers.local.encoder import DIMENSIONS, Encoded, OnnxEncoder
from sluicegate.providers.local.paths import embedder_files
from sluicegate.providers.local.slots import Slots
from sluicegate.types import Endpoint, JSONObject

__all__ = ["EmbeddingProvider", "parse_input"]

log = logging.getLogger("sluicegate")


def parse_input(body: JSONObject) -> list[str]:
    """The texts to embed, or InvalidRequest naming the field the model cannot honour."""
    data = body["input"]
    texts = [data] if isinstance(data, str) else data
    if not all(isinstance(text, str) for text in texts):
        raise InvalidRequest(
            "The local embedding model takes text, not token ids: its vocabulary is not "
            "OpenAI's, so ids from another tokenizer would embed the wrong words.",
            param="input",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != DIMENSIONS:
        raise InvalidRequest(
            f"This model's vectors have {DIMENSIONS} dimensions and cannot be shortened; "
            f"'dimensions' must be {DIMENSIONS} or left out, got {dimensions}.",
            param="dimensions",
        )
    return texts


def render(encoded: Encoded, model: str, encoding_format: str) -> bytes:
    if encoding_format == "base64":
        # OpenAI's base64 form: the raw little-endian float32 bytes of each vector.
        little = encoded.vectors.astype("<f4", copy=False)
        vectors: list[object] = [base64.b64encode(row.tobytes()).decode() for row in little]
    else:
        vectors = list(encoded.vectors)
    data = [
        {"object": "embedding", "index": index, "embedding": vector}
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": encoded.tokens, "total_tokens": encoded.tokens}
    body: bytes = orjson.dumps(
        {"object": "list", "data": data, "model": model, "usage": usage},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    return body


class EmbeddingProvider:
    def __init__(self, model: ModelConfig, deployment: LocalDeployment) -> None:
        self.endpoints = frozenset({Endpoint.EMBEDDINGS})
        self.name = deployment.id or model.name
        self.model_name = model.name
        self.deployment = deployment
        files = embedder_files()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.encoder = OnnxEncoder(files.onnx, files.tokenizer, deployment.threads or cores or 1)
        self.executor = ThreadPoolExecutor(
            max_workers=deployment.max_concurrency, thread_name_prefix="embed"
        )
        self.slots = Slots(
            deployment.max_concurrency,
            # Routing's fair queue admits at most max_concurrency calls, so a call waits
            # here only for a worker thread still finishing a call whose client left.
            deployment.max_concurrency,
            model.routing.queue.timeout,
            name=self.name,
            typical_hold=0.2,
        )

    async def start(self) -> None:
        if self.deployment.preload:
            # A failure is logged by the encoder and shows in /ready; the gateway serves on.
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self.executor, self.encoder.load)

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def healthy(self, path: str | None = None, timeout: float = 5.0) -> bool:
        return self.encoder.healthy

    async def send(self, call: Call) -> Reply:
        if call.endpoint is not Endpoint.EMBEDDINGS:
            raise InvalidRequest(f"'{self.name}' serves /embeddings only.")
        texts = parse_input(call.body)
        model = call.model or self.model_name
        encoding_format = call.body.get("encoding_format") or "float"
        lease = await self.slots.acquire()

        def work() -> tuple[bytes, int]:
            encoded = self.encoder.encode(texts)
            return render(encoded, model, encoding_format), encoded.tokens

        body, tokens = await threads.call(
            self.executor, work, done=lease.release, cancel=threading.Event(), errors=self._error
        )
        return Reply(body=body, usage=Usage(tokens, 0), served_model=model)

    def _error(self, exc: BaseException) -> SluicegateError:
        if exc is self.encoder.load_error:
            return ServiceUnavailable(
                f"The local model '{self.name}' failed to load; the gateway log says why."
            )
        log.error("local embedding model failed", exc_info=exc)
        return UpstreamError(
            f"The local model '{self.name}' failed ({type(exc).__name__}).",
            code="local_model_error",
        )
