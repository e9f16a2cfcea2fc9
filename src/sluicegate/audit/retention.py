"""Retention: old files move to ``archive/`` gzipped, older ones are deleted.

Ages count from the UTC day in a file's name; the newest file is never touched.
Deletion only ever takes whole files from the oldest end, so what stays is still
one unbroken chain whose first header names the last deleted seq. Before deleting,
the store appends an ``audit.retention`` entry (``detail.through_seq``) and signs
it; a verifier that finds the chain starting after seq 1 accepts the missing
front only as far as a signed retention entry accounts for it.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from datetime import date

from sluicegate.audit.files import ARCHIVE, AuditFile, chain_files, read_header
from sluicegate.audit.store import ChainStore, fsync_dir, system_entry

__all__ = ["apply_retention", "archive_old", "delete_expired"]

log = logging.getLogger("sluicegate.audit")

RETENTION_ACTION = "audit.retention"


def _age(day: str, today: str) -> int:
    def parse(value: str) -> date:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))

    return (parse(today) - parse(day)).days


def _closed(store: ChainStore) -> list[AuditFile]:
    files = chain_files(store.directory, store.replica)
    return [file for file in files[:-1] if file.path != store.active_path]


def archive_old(store: ChainStore) -> list[str]:
    """Gzip closed hot files older than ``hot_days`` into archive/; their names."""
    hot_days = store.rotation.hot_days
    if hot_days is None:
        return []
    today = store.today()
    archive = store.directory / ARCHIVE
    moved: list[str] = []
    for file in _closed(store):
        if file.archived or _age(file.day, today) <= hot_days:
            continue
        archive.mkdir(mode=0o700, exist_ok=True)
        target = archive / (file.name + ".gz")
        if not target.exists():  # else a crash came between the gzip and the unlink
            tmp = target.with_name(target.name + ".tmp")
            with open(file.path, "rb") as source, gzip.open(tmp, "wb", compresslevel=6) as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
            with open(tmp, "rb") as done:
                os.fsync(done.fileno())
            os.replace(tmp, target)
            fsync_dir(archive)
        file.path.unlink()
        moved.append(file.name)
    if moved:
        fsync_dir(store.directory)
        log.info("audit: archived %d files: %s", len(moved), ", ".join(moved))
    return moved


def delete_expired(store: ChainStore) -> list[str]:
    """Delete the oldest files past ``archive_days``; their names."""
    archive_days = store.rotation.archive_days
    if archive_days is None:
        return []
    today = store.today()
    files = _closed(store)
    expired: list[AuditFile] = []
    for file in files:
        if _age(file.day, today) <= archive_days:
            break
        expired.append(file)
    if not expired:
        return []
    keep = chain_files(store.directory, store.replica)[len(expired)]
    through = read_header(keep.path).get("prev_seq")
    if not isinstance(through, int):
        log.error("audit: %s has no readable header; not deleting anything before it", keep.path)
        return []
    names = [file.name for file in expired]
    detail = {"deleted": names, "through_seq": through}
    store.append([(store.clock(), system_entry(RETENTION_ACTION, detail))])
    store.checkpoint()  # the record is signed and on disk before anything goes
    for file in expired:
        base = file.name.removesuffix(".gz")
        (store.directory / base).unlink(missing_ok=True)
        (store.directory / ARCHIVE / (base + ".gz")).unlink(missing_ok=True)
    fsync_dir(store.directory)
    if (store.directory / ARCHIVE).is_dir():
        fsync_dir(store.directory / ARCHIVE)
    log.info("audit: deleted %d files through seq %d: %s", len(names), through, ", ".join(names))
    return names


def apply_retention(store: ChainStore) -> tuple[list[str], list[str]]:
    """Archive, then delete; (archived, deleted) file names."""
    return archive_old(store), delete_expired(store)
