"""Start and stop the processes under test, and read their CPU time and memory from /proc."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "CLK_TCK",
    "Managed",
    "OtherLoad",
    "RssSampler",
    "cpu_seconds",
    "free_port",
    "memory_kib",
    "pinned",
    "wait_http",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpus: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run on ``cpus`` (a taskset list such as "0"), or as is when not pinning."""
    if cpus is None:
        return list(argv)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SystemExit("taskset is missing (Debian package util-linux); or run with --no-pin")
    return [taskset, "-c", cpus, *argv]


class Managed:
    """A child process with its output in a log file, stopped with SIGTERM (then SIGKILL)."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._file = log.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._file.close()

    def __enter__(self) -> Managed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_http(url: str, proc: Managed, timeout: float = 30.0) -> float:
    """Poll ``url`` until it answers 200; returns the seconds it took."""
    start = time.monotonic()
    while True:
        proc.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() - start > timeout:
            raise SystemExit(
                f"{proc.name} did not answer {url} within {timeout:g}s; see {proc.log}"
            )
        time.sleep(0.05)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(_descendants(child))
    return found


def _own_cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # The command name may hold spaces; fields are counted after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return utime + stime + cutime + cstime


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads), its reaped children and live descendants."""
    ticks = _own_cpu_ticks(pid) + sum(_own_cpu_ticks(child) for child in _descendants(pid))
    return ticks / CLK_TCK


class OtherLoad:
    """CPU time the rest of the machine used while a phase ran: everything busy in
    /proc/stat minus this process (with its reaped children, such as wrk) and ``pids``.
    A busy neighbour disturbs latency and RPS far more than CPU-per-request."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.seconds = 0.0
        self.share = 0.0

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        # user, nice, system: process time. Interrupt and softirq time (much of loopback TCP)
        # is charged to no process, so it is left out rather than blamed on others.
        busy = sum(fields[:3]) / CLK_TCK
        me = os.times()
        ours = me.user + me.system + me.children_user + me.children_system
        ours += sum(cpu_seconds(pid) for pid in self.pids)
        return busy, ours, time.monotonic()

    def __enter__(self) -> OtherLoad:
        self._start = self._sample()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        busy, ours, now = self._sample()
        self.seconds = max(0.0, (busy - self._start[0]) - (ours - self._start[1]))
        wall = now - self._start[2]
        self.share = self.seconds / (wall * (os.cpu_count() or 1)) if wall > 0 else 0.0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class RssSampler:
    """Samples VmRSS of a process in a thread while a phase runs; keeps the maximum."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid = pid
        self.every = every
        self.max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.max_kib = max(self.max_kib, memory_kib(self.pid).get("VmRSS", 0))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
