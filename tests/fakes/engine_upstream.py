"""A fake serving engine (vLLM or TEI) whose ``/metrics`` queue the test sets while it runs.

``/v1/chat/completions`` and ``/v1/embeddings`` answer at once and count what they
served; ``/metrics`` serves Prometheus text shaped like the engine's own (with the
histograms and counters around the figures the gateway reads, as the real ones
have), built from ``waiting``, ``running`` and ``kv_usage`` as they are at that
moment. ``metrics_status`` other than 200 answers that status instead; after
``hold()``, ``/metrics`` keeps its answers back until ``release()``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

Flavour = Literal["vllm", "vllm-old", "tei"]


class EngineUpstream:
    def __init__(self, flavour: Flavour = "vllm", model: str = "engine-model") -> None:
        self.flavour = flavour
        self.model = model
        self.waiting = 0
        self.running = 0
        self.kv_usage = 0.0
        self.metrics_status = 200
        # Set and cleared from the test's thread, waited on in the server's.
        self._released = threading.Event()
        self._released.set()
        self.served = 0
        self.scrapes = 0
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embed, methods=["POST"]),
                Route("/metrics", self._metrics),
            ]
        )

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def _chat(self, request: Request) -> JSONResponse:
        self.served += 1
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    async def _embed(self, request: Request) -> JSONResponse:
        self.served += 1
        return JSONResponse(
            {
                "object": "list",
                "model": self.model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        )

    async def _metrics(self, request: Request) -> Response:
        self.scrapes += 1
        if not self._released.is_set():
            await asyncio.to_thread(self._released.wait, 30)
        if self.metrics_status != 200:
            return PlainTextResponse("unavailable", status_code=self.metrics_status)
        text = tei_text(self) if self.flavour == "tei" else vllm_text(self)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def vllm_text(engine: EngineUpstream) -> str:
    """vLLM's exposition (V1 engine labels), the KV name by ``flavour``; two engines
    (data parallel) share the queue, so the gateway must add their figures up."""
    kv_name = (
        "vllm:gpu_cache_usage_perc" if engine.flavour == "vllm-old" else "vllm:kv_cache_usage_perc"
    )
    labels = [f'engine="{i}",model_name="{engine.model}"' for i in (0, 1)]
    first_waiting = engine.waiting // 2
    first_running = engine.running // 2
    lines = [
        "# HELP python_gc_objects_collected_total Objects collected during gc",
        "# TYPE python_gc_objects_collected_total counter",
        'python_gc_objects_collected_total{generation="0"} 12345.0',
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{labels[0]}}} {float(first_running)}",
        f"vllm:num_requests_running{{{labels[1]}}} {float(engine.running - first_running)}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{labels[0]}}} {float(first_waiting)}",
        f"vllm:num_requests_waiting{{{labels[1]}}} {float(engine.waiting - first_waiting)}",
        f"# HELP {kv_name} KV-cache usage. 1 means 100 percent usage.",
        f"# TYPE {kv_name} gauge",
        f"{kv_name}{{{labels[0]}}} {engine.kv_usage / 2}",
        f"{kv_name}{{{labels[1]}}} {engine.kv_usage}",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{labels[0]}}} 1024.0",
        "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
        "# TYPE vllm:time_to_first_token_seconds histogram",
    ]
    for bound in ("0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "+Inf"):
        lines.append(f'vllm:time_to_first_token_seconds_bucket{{{labels[0]},le="{bound}"}} 3.0')
    lines += [
        f"vllm:time_to_first_token_seconds_count{{{labels[0]}}} 3.0",
        f"vllm:time_to_first_token_seconds_sum{{{labels[0]}}} 0.0123",
    ]
    return "\n".join(lines) + "\n"


def tei_text(engine: EngineUpstream) -> str:
    """TEI's exposition (metrics-exporter-prometheus: TYPE lines, no HELP)."""
    return (
        "# TYPE te_request_count counter\n"
        'te_request_count{method="single"} 42\n'
        "# TYPE te_queue_size gauge\n"
        f"te_queue_size {engine.waiting}\n"
        "# TYPE te_batch_current_size gauge\n"
        f"te_batch_current_size {engine.running}\n"
        "# TYPE te_batch_current_max_tokens gauge\n"
        "te_batch_current_max_tokens 512\n"
        "# TYPE te_request_duration summary\n"
        'te_request_duration{quantile="0.5"} 0.01\n'
        "te_request_duration_sum 0.42\n"
        "te_request_duration_count 42\n"
    )
