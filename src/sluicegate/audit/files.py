"""Where a log's files live and how they are named and read.

``DIR/audit[-REPLICA]-YYYYMMDD-NNN.jsonl`` are the hot files, ``DIR/archive/`` holds
the same names gzipped (``.jsonl.gz``). Each replica writes its own chain: the
replica part keeps their files apart. ``DIR/audit[-REPLICA].head`` holds the chain's
latest checkpoint; ``DIR/.audit[-REPLICA].lock`` keeps a second writer off the chain.
Files sort into chain order by (day, number).
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "ARCHIVE",
    "AuditFile",
    "chain_files",
    "file_name",
    "head_path",
    "lock_path",
    "read_header",
    "read_lines",
    "replica_name",
    "replicas",
]

ARCHIVE = "archive"
_NAME = re.compile(r"^audit-(?:(?P<replica>.+)-)?(?P<day>\d{8})-(?P<n>\d{3,})\.jsonl(?P<gz>\.gz)?$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class AuditFile:
    day: str  # YYYYMMDD, UTC
    number: int
    path: Path
    archived: bool

    @property
    def name(self) -> str:
        return self.path.name


def replica_name(replica: str | None) -> str | None:
    """``replica`` made safe for a file name (hostname, pod name, hostname-pid...)."""
    if replica is None:
        return None
    safe = _UNSAFE.sub("_", replica)
    if not safe:
        raise ValueError("replica id must not be empty")
    return safe


def _prefix(replica: str | None) -> str:
    return "audit" if replica is None else f"audit-{replica}"


def file_name(replica: str | None, day: str, number: int) -> str:
    return f"{_prefix(replica)}-{day}-{number:03d}.jsonl"


def head_path(directory: Path, replica: str | None) -> Path:
    return directory / f"{_prefix(replica)}.head"


def lock_path(directory: Path, replica: str | None) -> Path:
    return directory / f".{_prefix(replica)}.lock"


def _scan(directory: Path) -> list[tuple[str | None, AuditFile]]:
    found: list[tuple[str | None, AuditFile]] = []
    for folder, archived in ((directory, False), (directory / ARCHIVE, True)):
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        for name in names:
            match = _NAME.match(name)
            if match is None or bool(match["gz"]) != archived:
                continue
            file = AuditFile(match["day"], int(match["n"]), folder / name, archived)
            found.append((match["replica"], file))
    return found


def replicas(directory: Path) -> list[str | None]:
    """The chains in ``directory``, by replica id (None: the unnamed one)."""
    names = {replica for replica, _ in _scan(directory)}
    return sorted(names, key=lambda name: name or "")


def chain_files(directory: Path, replica: str | None) -> list[AuditFile]:
    """One chain's files in chain order; a file both hot and archived counts once, hot.

    Both exist only for a moment while a file is archived (the gzip is complete
    before the hot file goes).
    """
    chosen: dict[tuple[str, int], AuditFile] = {}
    for name, file in _scan(directory):
        if name != replica:
            continue
        key = (file.day, file.number)
        if key not in chosen or chosen[key].archived:
            chosen[key] = file
    return [chosen[key] for key in sorted(chosen)]


def read_lines(path: Path) -> tuple[list[bytes], bytes]:
    """The complete lines of ``path`` (without newlines) and any torn bytes after them.

    A torn last line (no newline) is what a crash in the middle of a write leaves.
    """
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    else:
        data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop()
    return lines, torn


def read_header(path: Path) -> dict[str, Any]:
    """The first line of ``path`` as an object ({} when it is not one)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        first = stream.readline()
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}
