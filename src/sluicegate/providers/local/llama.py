"""Chat and text completions from a GGUF model run in-process with llama.cpp.

The deployment's ``max_concurrency`` is the number of model instances, each with
its own thread (a ``Llama`` is not thread-safe) and ``cores / max_concurrency``
llama.cpp threads unless ``threads`` says otherwise. The weights are mmap'd, so
extra instances cost only their KV cache (about 50 MB at 2048 tokens for
SmolLM2-135M). One instance with all cores gives the lowest latency per request;
several let short requests through while a long one generates. Requests beyond
the instances wait in a bounded queue (``slots``), then get 429.

Generation never runs on the event loop: whole answers come back from the
instance's thread, streams arrive chunk by chunk through ``threads.stream``, and
JSON is serialised there too. A client that leaves stops generation within one
token (``instance.Progress``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from sluicegate.config.schema import LocalDeployment, ModelConfig
from sluicegate.errors import InvalidRequest, ServiceUnavailable, SluicegateError, UpstreamError
from sluicegate.pipeline.call import Call, Reply, Usage
from sluicegate.protocol.sse import DONE, event
from sluicegate.providers.local import threads
from sluicegate.providers.local.instance import LlamaInstance, ModelLoadFailed
from sluicegate.providers.local.params import chat_kwargs, completion_kwargs
from sluicegate.providers.local.paths import chat_model_file
from sluicegate.providers.local.slots import Slots
from sluicegate.types import Endpoint

__all__ = ["LlamaProvider"]

log = logging.getLogger("sluicegate")

_TOO_LONG = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class LlamaProvider:
    def __init__(self, model: ModelConfig, deployment: LocalDeployment) -> None:
        self.endpoints = frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS})
        self.name = deployment.id or model.name
        self.model_name = model.name
        self.deployment = deployment
        self.file = chat_model_file(deployment.path)
        count = deployment.max_concurrency
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        per_instance = deployment.threads or max(1, (cores or 1) // count)
        self.instances = [
            LlamaInstance(self.file, deployment.context_length, per_instance, f"llama-{i}")
            for i in range(count)
        ]
        self._idle = list(self.instances)
        self.slots = Slots(
            count,
            # Routing's fair queue admits at most max_concurrency calls, so a call waits
            # here only for a worker thread still finishing a call whose client left.
            count,
            model.routing.queue.timeout,
            name=self.name,
            typical_hold=2.0,
        )
        self._running: set[threading.Event] = set()

    async def start(self) -> None:
        if not self.deployment.preload:
            return
        loop = asyncio.get_running_loop()
        # A failure is logged where it happens and shows in /ready; the gateway serves on.
        await asyncio.gather(
            *(loop.run_in_executor(i.executor, i.load) for i in self.instances),
            return_exceptions=True,
        )

    async def close(self) -> None:
        for cancel in self._running:
            cancel.set()
        loop = asyncio.get_running_loop()
        for instance in self.instances:
            try:
                async with asyncio.timeout(10):
                    await loop.run_in_executor(instance.executor, instance.unload)
            except Exception as exc:
                log.warning("local model did not unload cleanly", exc_info=exc)
            instance.executor.shutdown(wait=False, cancel_futures=True)

    async def healthy(self, path: str | None = None, timeout: float = 5.0) -> bool:
        return self.file.is_file() and not any(i.load_error for i in self.instances)

    async def send(self, call: Call) -> Reply:
        if call.endpoint is Endpoint.CHAT:
            kwargs, method, field = chat_kwargs(call.body), "create_chat_completion", "messages"
        elif call.endpoint is Endpoint.COMPLETIONS:
            kwargs, method, field = completion_kwargs(call.body), "create_completion", "prompt"
        else:
            raise InvalidRequest(f"'{self.name}' does not serve /{call.endpoint.value}.")
        # Unseeded, llama-cpp-python reuses one fixed seed; unseeded OpenAI calls vary.
        kwargs.setdefault("seed", random.getrandbits(32))
        options = call.body.get("stream_options") or {}
        job = _Job(
            self,
            method,
            kwargs,
            call.model or self.model_name,
            include_usage=call.stream and bool(options.get("include_usage")),
        )
        errors = self._error_mapper(field)

        lease = await self.slots.acquire()
        instance = self._idle.pop()
        self._running.add(job.cancel)

        def done() -> None:
            self._running.discard(job.cancel)
            self._idle.append(instance)
            lease.release()

        if not call.stream:
            body, usage = await threads.call(
                instance.executor,
                lambda: job.whole(instance),
                done=done,
                cancel=job.cancel,
                errors=errors,
            )
            return Reply(body=body, usage=usage, served_model=job.model)
        reply = Reply(served_model=job.model)
        reply.stream = await threads.stream(
            instance.executor,
            lambda: job.events(instance, reply),
            done=done,
            cancel=job.cancel,
            errors=errors,
        )
        return reply

    def _error_mapper(self, field: str) -> threads.ErrorMapper:
        def to_error(exc: BaseException) -> SluicegateError:
            import jinja2

            if isinstance(exc, ValueError) and (match := _TOO_LONG.search(str(exc))):
                asked, limit = match.groups()
                return InvalidRequest(
                    f"This model's maximum context length is {limit} tokens, but the request "
                    f"has {asked} tokens of input. Shorten the '{field}'.",
                    param=field,
                    code="context_length_exceeded",
                )
            if isinstance(exc, jinja2.TemplateError):
                return InvalidRequest(
                    f"The model's chat template rejected the messages: {exc}", param=field
                )
            if isinstance(exc, ModelLoadFailed):
                return ServiceUnavailable(
                    f"The local model '{self.name}' failed to load; the gateway log says why."
                )
            log.error("local model failed", exc_info=exc)
            return UpstreamError(
                f"The local model '{self.name}' failed ({type(exc).__name__}).",
                code="local_model_error",
            )

        return to_error


class _Job:
    """One request's work on a model thread: generate, count, serialise."""

    def __init__(
        self,
        provider: LlamaProvider,
        method: str,
        kwargs: dict[str, Any],
        model: str,
        *,
        include_usage: bool,
    ) -> None:
        self.method = method
        self.kwargs = kwargs
        self.model = model
        self.include_usage = include_usage
        self.cancel = threading.Event()
        self.total = provider.deployment.timeouts.total

    def _begin(self, instance: LlamaInstance) -> Any:
        llama = instance.load()
        assert instance.progress is not None
        instance.progress.begin(self.cancel, time.monotonic() + self.total)
        return llama

    def whole(self, instance: LlamaInstance) -> tuple[bytes, Usage]:
        llama = self._begin(instance)
        result = getattr(llama, self.method)(**self.kwargs)
        assert instance.progress is not None
        instance.progress.check(self.total)
        result["model"] = self.model
        counts = result["usage"]
        return orjson.dumps(result), Usage(counts["prompt_tokens"], counts["completion_tokens"])

    def events(self, instance: LlamaInstance, reply: Reply) -> Iterator[bytes]:
        llama = self._begin(instance)
        progress = instance.progress
        assert progress is not None
        last: dict[str, Any] = {}
        for chunk in getattr(llama, self.method)(stream=True, **self.kwargs):
            chunk["model"] = self.model
            last = chunk
            yield event(chunk)
        progress.check(self.total)
        usage = Usage(progress.prompt_tokens, progress.completion_tokens)
        reply.usage = usage
        if self.include_usage:
            yield event(
                {
                    "id": last.get("id"),
                    "object": last.get("object"),
                    "created": last.get("created"),
                    "model": self.model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "total_tokens": usage.total_tokens,
                    },
                }
            )
        yield DONE
