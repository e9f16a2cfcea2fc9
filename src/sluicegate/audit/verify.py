"""``sluicegate audit verify DIR``: check a log's chain, signatures and files.

The verifier walks a chain from its oldest remaining file to its newest and stops
at the first problem, naming the first sequence number that cannot be trusted and
why. What it detects:

- an entry edited, deleted, duplicated or moved (hashes and ``seq`` stop adding up);
- an edit re-hashed to the end of the chain: the next signed checkpoint or file
  header no longer matches (the report names the first seq after the last good
  signature, since any entry from there on may be the altered one);
- a file deleted from the middle (the next header's ``prev_seq`` skips), a file
  header or checkpoint forged or copied from another log (signatures, log id);
- files deleted from the front: accepted only as far as a signed
  ``audit.retention`` entry says retention deleted them.

**Truncation.** Cutting entries off the *end* leaves a shorter chain that is
consistent in itself, so it can only be seen against a record kept elsewhere: the
head file (``audit[-REPLICA].head``, the latest checkpoint, rewritten on every
checkpoint) catches it unless the head is rolled back too, and ``expect_last``
(a seq and hash taken from somewhere the writer of the files cannot reach: the
gateway logs every checkpoint, so a log shipper or a copied head file serves)
catches it always. Entries after the last checkpoint are chained but not signed:
the report lists them, since anyone able to write the files can rewrite them.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sluicegate.audit.chain import FORMAT, Keyring, entry_hash, genesis
from sluicegate.audit.entry import canonical
from sluicegate.audit.files import (
    ARCHIVE,
    AuditFile,
    chain_files,
    head_path,
    read_lines,
    replicas,
)
from sluicegate.audit.retention import RETENTION_ACTION

__all__ = ["Report", "main", "verify", "verify_all"]

KEY_ENV = "SLUICEGATE_AUDIT_KEY"
Keys = bytes | Sequence[bytes]


@dataclass
class Report:
    """What ``verify`` found in one chain; ``ok`` False names the first bad seq."""

    directory: str
    replica: str | None
    ok: bool = True
    log_id: str | None = None
    first_seq: int | None = None  # the first entry still kept (earlier ones retired)
    last_seq: int = 0
    last_hash: str | None = None
    signed_through: int = 0  # the last seq a valid signature covers
    files: int = 0
    entries: int = 0
    checkpoints: int = 0
    first_bad_seq: int | None = None
    reason: str | None = None
    file: str | None = None  # the file the problem was found in
    warnings: list[str] = field(default_factory=list)

    def render(self) -> str:
        name = self.directory + (f" (replica {self.replica})" if self.replica else "")
        lines = [f"audit log {name}, log id {self.log_id or '-'}"]
        span = f"seq {self.first_seq}..{self.last_seq}" if self.entries else "no entries"
        lines.append(
            f"  {self.files} files, {self.entries} entries ({span}), {self.checkpoints}"
            f" checkpoints, signed through seq {self.signed_through}"
        )
        if self.ok:
            lines.append("  OK")
        else:
            at = f" in {self.file}" if self.file else ""
            seq = f"first bad seq {self.first_bad_seq}" if self.first_bad_seq else "bad"
            lines.append(f"  TAMPERED: {seq}{at}: {self.reason}")
        lines.extend(f"  warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)


class _Bad(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


class _Walker:
    def __init__(self, report: Report, keyring: Keyring, wanted: set[int]) -> None:
        self.report = report
        self.keyring = keyring
        self.wanted = wanted
        self.hash_at: dict[int, str] = {}
        self.log_id = ""
        self.seq = 0
        self.hash = ""
        self.start = 0  # the seq before the first kept entry
        self.file_start = 0
        self.signed: list[int] = []  # seqs a valid signature covers, ascending
        self.retention: list[tuple[int, int]] = []  # (seq of the record, through_seq)

    def _at(self, seq: int, digest: str) -> None:
        self.seq, self.hash = seq, digest
        if seq in self.wanted:
            self.hash_at[seq] = digest

    @property
    def signed_through(self) -> int:
        return self.signed[-1] if self.signed else self.start

    def walk(self, files: list[AuditFile]) -> None:
        for index, file in enumerate(files):
            newest = index == len(files) - 1
            self.report.file = file.name
            self.report.files = index + 1
            try:
                lines, torn = _read(file)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise _Bad(self.seq + 1, f"unreadable file: {exc}") from exc
            if torn or (not lines and newest):
                if not (newest and not file.archived):
                    raise _Bad(self.seq + 1, "file cut off in the middle of a line")
                self.report.warnings.append(
                    f"{file.name} ends in a torn line or is empty (a crash while writing)"
                )
            if not lines:
                if newest:
                    continue
                raise _Bad(self.seq + 1, "empty file")
            self._header(_parse(lines[0], self.seq), first=index == 0)
            for line in lines[1:]:
                record = _parse(line, self.seq)
                if "seq" in record:
                    self._entry(record)
                elif "checkpoint" in record:
                    self._checkpoint(record)
                else:
                    raise _Bad(self.seq + 1, "a line that is neither an entry nor a checkpoint")

    def _header(self, header: dict[str, Any], *, first: bool) -> None:
        prev_seq, prev_hash = header.get("prev_seq"), header.get("prev_hash")
        if header.get("audit") != FORMAT or type(prev_seq) is not int or type(prev_hash) is not str:
            raise _Bad(self.seq + 1, "the file has no valid header")
        why = self.keyring.check(header)
        if why is not None:
            raise _Bad(prev_seq + 1, f"file header: {why}")
        if first:
            self.log_id = str(header.get("log"))
            self.report.log_id = self.log_id
            self.start = prev_seq
            if prev_seq == 0 and prev_hash != genesis(self.log_id):
                raise _Bad(1, "the first header's prev_hash is not this log's genesis hash")
        else:
            if header.get("log") != self.log_id:
                raise _Bad(self.seq + 1, "the file belongs to another log (log id differs)")
            if prev_seq > self.seq:
                raise _Bad(
                    self.seq + 1,
                    f"entries {self.seq + 1}..{prev_seq} are missing"
                    " (a file was deleted or cut short before this one)",
                )
            if prev_seq < self.seq:
                raise _Bad(prev_seq + 1, f"the file repeats entries from seq {prev_seq + 1}")
            if prev_hash != self.hash:
                raise _Bad(
                    self.seq + 1, "the header does not link to the previous file's last entry"
                )
        self._at(prev_seq, prev_hash)
        self.file_start = prev_seq
        # A signed header vouches for prev_seq's hash just as a checkpoint does.
        self._signed(prev_seq)

    def _entry(self, record: dict[str, Any]) -> None:
        seq, expected = record["seq"], self.seq + 1
        if type(seq) is not int:
            raise _Bad(expected, "an entry without a valid seq")
        if seq > expected:
            raise _Bad(expected, f"expected seq {expected}, found {seq}: entries missing or moved")
        if seq < expected:
            raise _Bad(expected, f"expected seq {expected}, found {seq} again: entries moved")
        prev, digest = record.pop("prev", None), record.pop("hash", None)
        if not isinstance(prev, str) or entry_hash(prev, canonical(record)) != digest:
            raise _Bad(seq, "the entry's content does not match its hash (altered)")
        if prev != self.hash:
            # The entry before was re-hashed after an edit, or this one was.
            culprit = seq - 1 if seq - 1 > self.file_start else seq
            raise _Bad(culprit, f"entry {seq} does not link to entry {seq - 1} (altered)")
        self._at(seq, digest)
        self.report.entries += 1
        if record.get("kind") == "admin" and record.get("action") == RETENTION_ACTION:
            detail = record.get("detail")
            through = detail.get("through_seq") if isinstance(detail, dict) else None
            if type(through) is int:
                self.retention.append((seq, through))

    def _checkpoint(self, record: dict[str, Any]) -> None:
        after = self.signed_through + 1
        point = record["checkpoint"]
        why = self.keyring.check(record)
        if why is not None:
            raise _Bad(after, f"checkpoint for seq {point}: {why}")
        if record.get("log") != self.log_id:
            raise _Bad(after, f"checkpoint for seq {point} belongs to another log")
        if type(point) is not int or point > self.seq:
            raise _Bad(
                self.seq + 1, f"entries {self.seq + 1}..{point} before their checkpoint are missing"
            )
        if point < self.seq:
            raise _Bad(point + 1, f"checkpoint for seq {point} found after seq {self.seq} (moved)")
        if record.get("hash") != self.hash:
            raise _Bad(
                after,
                f"entries {after}..{point} do not match the signed checkpoint for seq {point}"
                " (altered and re-hashed)",
            )
        self.report.checkpoints += 1
        self._signed(point)

    def _signed(self, seq: int) -> None:
        if not self.signed or seq > self.signed[-1]:
            self.signed.append(seq)

    def last_signed_before(self, seq: int) -> int:
        return max((s for s in self.signed if s < seq), default=self.start)

    def check_front(self) -> None:
        """Files gone from the front must be ones a signed retention record deleted."""
        if self.start == 0:
            return
        covered = max((t for s, t in self.retention if s <= self.signed_through), default=0)
        if self.start > covered:
            raise _Bad(
                covered + 1,
                f"entries {covered + 1}..{self.start} are missing from the front of the log"
                " and no signed retention record accounts for them",
            )

    def check_anchor(self, seq: int, digest: str, source: str) -> None:
        if seq > self.seq:
            raise _Bad(
                self.seq + 1,
                f"truncated: {source} records seq {seq}, the chain ends at seq {self.seq}",
            )
        if seq < self.start:
            self.report.warnings.append(f"{source} (seq {seq}) is older than the kept files")
        elif self.hash_at.get(seq) != digest:
            first = self.last_signed_before(seq) + 1
            raise _Bad(
                first, f"the hash at seq {seq} differs from {source} (altered and re-hashed)"
            )


def verify(
    directory: str | os.PathLike[str],
    signing_key: Keys,
    *,
    expect_last: tuple[int, str] | None = None,
    replica: str | None = None,
) -> Report:
    """Verify one chain in ``directory`` (the only one there, or ``replica``'s).

    ``signing_key`` may be a list: the current key and retired ones.
    ``expect_last`` is a (seq, hash) the chain must contain (normally its end as last
    seen by someone the file writer cannot reach); later entries are fine.
    """
    directory = Path(directory)
    if replica is None:
        chains = replicas(directory)
        if len(chains) > 1:
            raise ValueError(f"{directory} holds several chains; name one of {chains}")
        replica = chains[0] if chains else None
    keyring = Keyring([signing_key] if isinstance(signing_key, bytes) else signing_key)
    report = Report(str(directory), replica)
    try:
        _verify(directory, replica, keyring, expect_last, report)
    except _Bad as bad:
        report.ok = False
        report.first_bad_seq = bad.seq
        report.reason = bad.reason
    return report


def verify_all(directory: str | os.PathLike[str], signing_key: Keys) -> list[Report]:
    """One report per chain (replica) in ``directory``."""
    chains = replicas(Path(directory)) or [None]
    return [verify(directory, signing_key, replica=name) for name in chains]


def _verify(
    directory: Path,
    replica: str | None,
    keyring: Keyring,
    expect_last: tuple[int, str] | None,
    report: Report,
) -> None:
    files = chain_files(directory, replica)
    if not files:
        raise _Bad(None, "no audit files found")
    head = _read_head(head_path(directory, replica), keyring)
    wanted = {anchor[0] for anchor in (head, expect_last) if anchor is not None}
    walker = _Walker(report, keyring, wanted)
    try:
        walker.walk(files)
        report.file = None
    finally:
        report.first_seq = walker.start + 1
        report.last_seq, report.last_hash = walker.seq, walker.hash or None
        report.signed_through = walker.signed_through
    walker.check_front()
    if head is not None:
        if head[2] != walker.log_id:
            raise _Bad(None, "the head file belongs to another log")
        walker.check_anchor(head[0], head[1], "the head file")
    else:
        report.warnings.append(
            "no head file: a cut-off end is only detected with an expected last seq and hash"
        )
    if expect_last is not None:
        walker.check_anchor(expect_last[0], expect_last[1], "the expected last entry")
    if walker.seq > walker.signed_through:
        report.warnings.append(
            f"entries {walker.signed_through + 1}..{walker.seq} are not yet covered by a signed"
            " checkpoint: anyone able to write the files could rewrite them unnoticed"
        )


def _read_head(path: Path, keyring: Keyring) -> tuple[int, str, str] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _Bad(None, "the head file is unreadable") from exc
    if not isinstance(record, dict) or type(record.get("checkpoint")) is not int:
        raise _Bad(None, "the head file is not a checkpoint")
    why = keyring.check(record)
    if why is not None:
        raise _Bad(None, f"the head file: {why}")
    return record["checkpoint"], str(record.get("hash")), str(record.get("log"))


def _read(file: AuditFile) -> tuple[list[bytes], bytes]:
    try:
        return read_lines(file.path)
    except FileNotFoundError:
        if file.archived:
            raise
        # Retention archived it while we were reading the files before it.
        return read_lines(file.path.parent / ARCHIVE / (file.name + ".gz"))


def _parse(line: bytes, seq: int) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _Bad(seq + 1, "an unreadable line") from exc
    if not isinstance(record, dict):
        raise _Bad(seq + 1, "a line that is not a JSON object")
    return record


# -- the command ----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``sluicegate audit verify DIR``: 0 when every chain verifies, 1 when not, 2 on misuse."""
    parser = argparse.ArgumentParser(
        prog="sluicegate audit verify",
        description="Verify an audit log's hash chain, signatures and files.",
    )
    parser.add_argument("directory", help="the audit directory (audit.directory)")
    parser.add_argument(
        "--key-file",
        help=f"file holding the HMAC signing key, or the Ed25519 public key (default: ${KEY_ENV})",
    )
    parser.add_argument(
        "--old-key-file", action="append", default=[], help="a retired key (repeatable)"
    )
    parser.add_argument("--replica", help="verify only this replica's chain")
    parser.add_argument(
        "--expect-last",
        metavar="SEQ:HASH",
        help="a checkpoint recorded elsewhere that the chain must still contain",
    )
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    args = parser.parse_args(argv)

    try:
        keys = [_key(args.key_file)] + [_key_file(path) for path in args.old_key_file]
        expect = _expectation(args.expect_last)
        if not Path(args.directory).is_dir():
            raise ValueError(f"{args.directory} is not a directory")
        if args.replica is not None or expect is not None:
            reports = [verify(args.directory, keys, expect_last=expect, replica=args.replica)]
        else:
            reports = verify_all(args.directory, keys)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps([asdict(report) for report in reports]).decode())
    else:
        print("\n".join(report.render() for report in reports))
    return 0 if all(report.ok for report in reports) else 1


def _key(path: str | None) -> bytes:
    if path is not None:
        return _key_file(path)
    value = os.environ.get(KEY_ENV)
    if not value:
        raise ValueError(f"no signing key: pass --key-file or set ${KEY_ENV}")
    return value.encode()


def _key_file(path: str) -> bytes:
    # The file holds the same text as audit.signing_key; an editor's newline is not part of it.
    return Path(path).read_bytes().rstrip(b"\r\n")


def _expectation(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, sep, digest = value.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise ValueError("--expect-last takes SEQ:HASH (a seq and a 64-hex-digit hash)")
    return int(seq), digest.lower()
