"""SIGTERM drains the gateway: readiness drops at once, new calls are refused, open streams
finish (up to ``server.drain_timeout``), then the process exits. A real ``sluicegate serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import orjson

from tests.conftest import MASTER_KEY
from tests.fakes.servers import free_port

CLI = str(Path(sys.executable).parent / "sluicegate")
#: Time for the process to close up after the drain: a tick of uvicorn's loop, closing
#: connections and providers, interpreter exit.
SLACK = 3.0


@contextmanager
def serve(
    tmp_path: Path, base_url: str, drain_timeout: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"server: {{port: {port}, drain_timeout: {drain_timeout}}}\n"
        "models:\n  - name: slow-chat\n    deployments:\n"
        f"      - {{provider: openai, base_url: '{base_url}'}}\n"
    )
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [CLI, "serve", "--config", str(cfg)],
        cwd=tmp_path,
        env={**os.environ, "SLUICEGATE_MASTER_KEY": MASTER_KEY},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            try:
                if httpx2.get(f"{url}/ready").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        log.close()


class Stream(threading.Thread):
    """One streamed chat completion, read in the background, bytes and failure kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.received = b""
        self.failure: Exception | None = None
        self.started = threading.Event()

    def run(self) -> None:
        body = {
            "model": "slow-chat",
            "stream": True,
            "messages": [{"role": "user", "content": "one two three"}],
        }
        headers = {"authorization": f"Bearer {MASTER_KEY}"}
        try:
            with (
                httpx2.Client(timeout=30) as client,
                client.stream(
                    "POST", f"{self.url}/v1/chat/completions", json=body, headers=headers
                ) as response,
            ):
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    self.received += chunk
                    if b"echo:" in self.received:
                        self.started.set()
        except Exception as exc:
            self.failure = exc
        finally:
            self.started.set()

    def text(self) -> str:
        words = []
        for line in self.received.split(b"\n\n"):
            payload = line.removeprefix(b"data: ")
            if payload.startswith(b"{"):
                for choice in orjson.loads(payload)["choices"]:
                    words.append(choice["delta"].get("content") or "")
        return "".join(words)


def open_streams(url: str, count: int) -> list[Stream]:
    streams = [Stream(url) for _ in range(count)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.started.wait(10) and stream.failure is None, stream.failure
        # Still open (the upstream idles now) and not failed.
        assert stream.is_alive() and b'"error"' not in stream.received, stream.received[-400:]
    return streams


def test_sigterm_drains_open_streams_then_exits(tmp_path: Path, upstream_url: str) -> None:
    stall = 2.0
    with serve(tmp_path, f"{upstream_url}/stall-{stall:g}/v1", drain_timeout=20) as (url, proc):
        streams = open_streams(url, 3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        # Readiness drops at once, on the same port, while the streams drain.
        deadline = sent + 1.0
        while (ready := httpx2.get(f"{url}/ready")).status_code == 200:
            assert time.monotonic() < deadline, "/ready still says ready after SIGTERM"
            time.sleep(0.005)
        assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
        assert time.monotonic() - sent < 1.0

        # A new call is refused with an OpenAI error body and told to leave the connection.
        refused = httpx2.post(
            f"{url}/v1/chat/completions",
            json={"model": "slow-chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {MASTER_KEY}"},
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "shutting_down"
        assert refused.json()["error"]["type"] == "service_unavailable"
        assert refused.headers["connection"] == "close"
        assert proc.poll() is None  # still draining

        # The open streams finish whole, then the process goes without waiting out the drain.
        for stream in streams:
            stream.join(timeout=20 + SLACK)
            assert stream.failure is None, stream.failure
            assert stream.received.endswith(b"data: [DONE]\n\n")
            assert stream.text() == "echo: one two three"
        returncode = proc.wait(timeout=20 + SLACK)
        took = time.monotonic() - sent
        assert returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
        assert took < stall + SLACK, took  # gone once the streams ended, not after 20 s


def test_a_stream_that_outlives_the_drain_is_cut_without_done(
    tmp_path: Path, upstream_url: str
) -> None:
    drain_timeout = 1.0
    # The upstream idles 6 s mid-stream: far past the drain.
    with serve(tmp_path, f"{upstream_url}/stall-6/v1", drain_timeout) as (url, proc):
        (stream,) = open_streams(url, 1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=drain_timeout + SLACK)
        took = time.monotonic() - sent
        assert returncode in (0, -signal.SIGTERM)
        assert drain_timeout - 0.1 < took < drain_timeout + SLACK, took
        stream.join(timeout=5)
        assert not stream.is_alive()
        # Cut: the client saw the start of the answer and never a clean end.
        assert b"echo:" in stream.received
        assert b"[DONE]" not in stream.received
        assert isinstance(stream.failure, httpx2.TransportError) or b'"error"' in stream.received
        log = (tmp_path / "gateway.log").read_text()
        assert "still in flight" in log
