"""Stage: count every call and write one access-log line, streams included."""

from __future__ import annotations

import time
from collections.abc import Callable

from sluicegate.errors import SluicegateError
from sluicegate.observability.access_log import AccessLog
from sluicegate.observability.counters import Counters
from sluicegate.pipeline.call import Call, Reply
from sluicegate.pipeline.stage import Next

__all__ = ["Record"]


class Record:
    name = "record"

    def __init__(self, counters: Counters, access_log: AccessLog | None) -> None:
        self.counters = counters
        self.access_log = access_log

    async def __call__(self, call: Call, call_next: Next) -> Reply:
        self.counters.in_flight += 1
        try:
            reply = await call_next(call)
        except SluicegateError as exc:
            self.counters.in_flight -= 1
            self._done(call, exc.status, exc.code)
            raise
        except BaseException:
            self.counters.in_flight -= 1
            self._done(call, 500, "internal_error")
            raise
        if reply.stream is None:
            self.counters.in_flight -= 1
            self._done(call, reply.status, None, reply)
        else:
            reply.on_end.append(self._stream_done(call))
        return reply

    def _stream_done(self, call: Call) -> Callable[[Reply], None]:
        def done(reply: Reply) -> None:
            self.counters.in_flight -= 1
            self._done(call, reply.status, reply.error, reply)

        return done

    def _done(self, call: Call, status: int, error: str | None, reply: Reply | None = None) -> None:
        model = call.model or "-"
        self.counters.count(call.endpoint.value, model, status)
        if self.access_log is None:
            return
        usage = reply.usage if reply is not None else None
        self.access_log.write(
            {
                "msg": "request",
                "request_id": call.request_id,
                "endpoint": call.endpoint.value,
                "model": model,
                "served_model": call.target.model if call.target else None,
                "deployment": call.target.deployment_id if call.target else None,
                "principal": call.principal.name if call.principal else None,
                "status": status,
                "error": error,
                "stream": call.stream,
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
                "latency_ms": round((time.perf_counter() - call.started) * 1000, 2),
            }
        )
