"""The verifier against every kind of tampering, rotation and retention."""

from __future__ import annotations

import gzip
import hmac
import shutil
from hashlib import sha256
from pathlib import Path

import orjson
import pytest

from sluicegate.audit.chain import HmacSigner, entry_hash
from sluicegate.audit.entry import canonical
from sluicegate.audit.files import chain_files, head_path, read_lines
from sluicegate.audit.retention import apply_retention
from sluicegate.audit.store import ChainStore, Rotation
from sluicegate.audit.verify import KEY_ENV, main, verify, verify_all

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
DAY = 86_400.0
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def open_store(directory, key=KEY, **options) -> ChainStore:
    options.setdefault("checkpoint_every", 5)
    options.setdefault("checkpoint_seconds", 3600.0)
    store = ChainStore(directory, HmacSigner(key), **options)
    store.open()
    return store


def add(store: ChainStore, n: int, **fields) -> None:
    base = store.seq
    store.append([(store.clock(), {"org": "acme", "n": base + i + 1, **fields}) for i in range(n)])


def build(directory, n=20, **options) -> Path:
    store = open_store(directory, **options)
    add(store, n)
    store.close()
    return Path(directory)


def lines_of(path: Path) -> list[bytes]:
    return read_lines(path)[0]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def only_file(directory: Path) -> Path:
    (file,) = chain_files(directory, None)
    return file.path


def index_of(lines: list[bytes], seq: int) -> int:
    return next(i for i, line in enumerate(lines) if orjson.loads(line).get("seq") == seq)


def edit(path: Path, seq: int, **changes) -> None:
    lines = lines_of(path)
    i = index_of(lines, seq)
    lines[i] = orjson.dumps({**orjson.loads(lines[i]), **changes})
    write_lines(path, lines)


def rehash(path: Path) -> None:
    """What an attacker without the key can do: re-link every entry of the file."""
    lines = lines_of(path)
    header = orjson.loads(lines[0])
    prev = header["prev_hash"]
    for i, line in enumerate(lines[1:], 1):
        record = orjson.loads(line)
        if "seq" not in record:
            continue
        del record["prev"], record["hash"]
        digest = entry_hash(prev, canonical(record))
        lines[i] = orjson.dumps({**record, "prev": prev, "hash": digest})
        prev = digest
    write_lines(path, lines)


def hash_at(directory: Path, seq: int) -> str:
    for file in chain_files(directory, None):
        for line in lines_of(file.path):
            record = orjson.loads(line)
            if record.get("seq") == seq:
                return str(record["hash"])
    raise KeyError(seq)


def test_an_untouched_log_verifies(tmp_path):
    report = verify(build(tmp_path), KEY)
    assert report.ok, report.render()
    assert (report.first_seq, report.last_seq, report.signed_through) == (1, 20, 20)
    assert report.entries == 20 and report.checkpoints == 4 and not report.warnings


def test_an_edited_field_names_its_seq(tmp_path):
    path = only_file(build(tmp_path))
    edit(path, 7, org="evil")
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 7 and "altered" in str(report.reason)


def test_an_edit_rehashed_to_the_end_fails_at_the_next_checkpoint(tmp_path):
    path = only_file(build(tmp_path))
    edit(path, 7, org="evil")
    rehash(path)
    report = verify(tmp_path, KEY)
    # Checkpoint 5 still holds; anything from 6 to the failing checkpoint 10 may be bad.
    assert not report.ok and report.first_bad_seq == 6
    assert "6..10" in str(report.reason) and "re-hashed" in str(report.reason)


def test_a_deleted_entry_names_its_seq(tmp_path):
    path = only_file(build(tmp_path))
    lines = lines_of(path)
    del lines[index_of(lines, 7)]
    write_lines(path, lines)
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 7 and "missing" in str(report.reason)


def test_a_deleted_entry_just_before_its_checkpoint(tmp_path):
    path = only_file(build(tmp_path))
    lines = lines_of(path)
    del lines[index_of(lines, 10)]
    write_lines(path, lines)
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 10


def test_swapped_entries_name_the_first(tmp_path):
    path = only_file(build(tmp_path))
    lines = lines_of(path)
    i = index_of(lines, 7)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    write_lines(path, lines)
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 7 and "found 8" in str(report.reason)


def test_a_cut_off_end_is_caught_by_the_head_file(tmp_path):
    path = only_file(build(tmp_path))
    lines = lines_of(path)
    write_lines(path, lines[: index_of(lines, 12) + 1])
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 13 and "truncated" in str(report.reason)


def test_a_cut_off_end_with_the_head_rolled_back_needs_expect_last(tmp_path):
    path = only_file(build(tmp_path))
    last = (20, hash_at(tmp_path, 20))
    lines = lines_of(path)
    cut = index_of(lines, 10) + 1
    write_lines(path, lines[: cut + 1])  # keeps checkpoint 10
    head_path(tmp_path, None).write_bytes(lines[cut] + b"\n")
    assert verify(tmp_path, KEY).ok  # consistent in itself: files alone cannot tell
    report = verify(tmp_path, KEY, expect_last=last)
    assert not report.ok and report.first_bad_seq == 11 and "truncated" in str(report.reason)


def test_unsigned_entries_are_reported_and_checked_against_expect_last(tmp_path):
    store = open_store(tmp_path)
    add(store, 12)  # checkpoints at 5 and 10; 11 and 12 unsigned
    report = verify(tmp_path, KEY)
    assert report.ok and report.signed_through == 10
    assert any("11..12" in warning for warning in report.warnings)
    last = (12, hash_at(tmp_path, 12))
    store.close()
    path = only_file(tmp_path)
    lines = lines_of(path)
    write_lines(path, lines[: index_of(lines, 11) + 1])
    report = verify(tmp_path, KEY, expect_last=last)
    assert not report.ok and report.first_bad_seq == 12


def test_a_rehashed_tail_fails_expect_last(tmp_path):
    store = open_store(tmp_path)
    add(store, 12)
    last = (12, hash_at(tmp_path, 12))
    path = only_file(tmp_path)
    edit(path, 11, org="evil")
    rehash(path)
    report = verify(tmp_path, KEY, expect_last=last)
    assert not report.ok and report.first_bad_seq == 11
    store.close()


def test_rotation_across_files_verifies(tmp_path):
    store = open_store(tmp_path, rotation=Rotation(max_bytes=1500))
    for _ in range(10):
        add(store, 4)
    store.close()
    assert len(chain_files(tmp_path, None)) > 3
    report = verify(tmp_path, KEY)
    assert report.ok and report.last_seq == 40 and report.files > 3


def test_a_deleted_middle_file_is_caught(tmp_path):
    store = open_store(tmp_path, rotation=Rotation(max_bytes=1500))
    for _ in range(10):
        add(store, 4)
    store.close()
    files = chain_files(tmp_path, None)
    first_missing = orjson.loads(lines_of(files[2].path)[0])["prev_seq"] + 1
    files[2].path.unlink()
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == first_missing
    assert "missing" in str(report.reason)


def test_a_forged_checkpoint_is_caught(tmp_path):
    path = only_file(build(tmp_path))
    edit(path, 7, org="evil")
    rehash(path)
    lines = lines_of(path)
    kid = HmacSigner(KEY).kid
    for i, line in enumerate(lines):
        record = orjson.loads(line)
        if record.get("checkpoint", 0) >= 10:  # the ones the edit broke
            record["hash"] = hash_of_line(lines, record["checkpoint"])
            record.pop("sig")
            record["kid"] = kid  # claim the real key...
            sig = hmac.new(OTHER_KEY, canonical(record), sha256).hexdigest()  # ...not having it
            lines[i] = orjson.dumps({**record, "sig": sig})
    write_lines(path, lines)
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 6 and "bad signature" in str(report.reason)


def hash_of_line(lines: list[bytes], seq: int) -> str:
    return str(orjson.loads(lines[index_of(lines, seq)])["hash"])


def test_a_checkpoint_signed_with_another_key_is_caught(tmp_path):
    path = only_file(build(tmp_path))
    report = verify(tmp_path, OTHER_KEY)
    assert not report.ok and "unknown key" in str(report.reason)
    assert verify(path.parent, [OTHER_KEY, KEY]).ok  # retired keys verify too


def test_an_edited_header_is_caught(tmp_path):
    path = only_file(build(tmp_path))
    lines = lines_of(path)
    lines[0] = orjson.dumps({**orjson.loads(lines[0]), "prev_seq": 3})
    write_lines(path, lines)
    report = verify(tmp_path, KEY)
    assert not report.ok and "header" in str(report.reason)


def test_a_file_from_another_log_is_caught(tmp_path):
    for name in ("a", "b"):
        store = open_store(tmp_path / name, rotation=Rotation(max_bytes=1500))
        for _ in range(6):
            add(store, 4)
        store.close()
    mine, theirs = chain_files(tmp_path / "a", None), chain_files(tmp_path / "b", None)
    shutil.copy(theirs[1].path, mine[1].path)
    report = verify(tmp_path / "a", KEY)
    assert not report.ok and "another log" in str(report.reason)


def test_a_forged_head_file_is_caught(tmp_path):
    build(tmp_path)
    head = head_path(tmp_path, None)
    head.write_bytes(orjson.dumps({**orjson.loads(head.read_bytes()), "checkpoint": 25}))
    report = verify(tmp_path, KEY)
    assert not report.ok and "head file" in str(report.reason)


def forty_days(directory: Path) -> ChainStore:
    clock = Clock()
    rotation = Rotation(hot_days=7, archive_days=30)
    store = open_store(directory, clock=clock, rotation=rotation, checkpoint_every=1000)
    for _ in range(40):
        add(store, 3)
        apply_retention(store)
        clock.now += DAY
    add(store, 1)
    return store


@pytest.fixture(scope="module")
def forty_day_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("forty-days")
    forty_days(directory).close()
    return directory


@pytest.fixture
def retained(forty_day_log, tmp_path) -> Path:
    """A copy of a log written over forty days with retention running daily."""
    return Path(shutil.copytree(forty_day_log, tmp_path / "log"))


def test_retention_archives_and_deletes_and_the_rest_still_verifies(retained):
    tmp_path = retained
    files = chain_files(tmp_path, None)
    hot = [f for f in files if not f.archived]
    assert len(hot) == 9  # the last 7 days, the day of the retention run, and the new day
    archived = [f for f in files if f.archived]
    assert len(archived) == 23
    with gzip.open(archived[0].path) as stream:
        assert b"sluicegate-audit/1" in stream.readline()
    report = verify(tmp_path, KEY)
    assert report.ok, report.render()
    assert report.first_seq == orjson.loads(lines_of(files[0].path)[0])["prev_seq"] + 1 > 1
    assert report.last_seq == 40 * 3 + 1 + 9  # plus one retention entry per deleting day


def test_files_deleted_beyond_retention_are_caught(retained):
    tmp_path = retained
    oldest = chain_files(tmp_path, None)[0]
    expected = orjson.loads(read_lines(oldest.path)[0][0])["prev_seq"] + 1
    oldest.path.unlink()
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == expected
    assert "retention" in str(report.reason)


def test_a_deleted_first_file_without_retention_is_caught(tmp_path):
    store = open_store(tmp_path, rotation=Rotation(max_bytes=1500))
    for _ in range(10):
        add(store, 4)
    store.close()
    chain_files(tmp_path, None)[0].path.unlink()
    report = verify(tmp_path, KEY)
    assert not report.ok and report.first_bad_seq == 1


def test_each_replica_is_its_own_chain(tmp_path):
    for replica in ("pod-a", "pod-b"):
        build(tmp_path, replica=replica)
    reports = verify_all(tmp_path, KEY)
    assert [(r.replica, r.ok, r.last_seq) for r in reports] == [
        ("pod-a", True, 20),
        ("pod-b", True, 20),
    ]
    assert verify(tmp_path, KEY, replica="pod-b").ok
    with pytest.raises(ValueError, match="several chains"):
        verify(tmp_path, KEY)


def test_an_empty_directory_does_not_verify(tmp_path):
    report = verify(tmp_path, KEY)
    assert not report.ok and "no audit files" in str(report.reason)


# -- the command ----------------------------------------------------------------


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    directory = build(tmp_path / "log")
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main([str(directory)]) == 2  # no key
    assert main([str(directory), "--key-file", str(key_file)]) == 0
    assert "OK" in capsys.readouterr().out
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    assert main([str(directory), "--expect-last", f"20:{hash_at(directory, 20)}"]) == 0
    assert main([str(directory), "--expect-last", "21:" + "0" * 64]) == 1
    assert main([str(directory), "--expect-last", "nonsense"]) == 2
    edit(only_file(directory), 4, status=500)
    capsys.readouterr()
    assert main([str(directory)]) == 1
    assert "TAMPERED: first bad seq 4" in capsys.readouterr().out
    assert main([str(directory), "--json"]) == 1
    (report,) = orjson.loads(capsys.readouterr().out)
    assert report["first_bad_seq"] == 4 and report["ok"] is False


def test_an_ed25519_log_verifies_with_the_public_key_alone(tmp_path):
    from sluicegate.audit.chain import Ed25519Signer, generate_ed25519

    private, public = generate_ed25519()
    store = ChainStore(tmp_path, Ed25519Signer(private), checkpoint_every=5)
    store.open()
    add(store, 12)
    store.close()
    report = verify(tmp_path, public)
    assert report.ok and report.signed_through == 12, report.render()
    # Another key pair, or the HMAC key, does not vouch for it.
    assert not verify(tmp_path, generate_ed25519()[1]).ok
    assert "unknown key" in str(verify(tmp_path, KEY).reason)
    # An edit re-hashed to the end cannot be re-signed without the private key: a
    # checkpoint forged with any other key is caught.
    path = only_file(tmp_path)
    edit(path, 3, org="evil")
    rehash(path)
    tampered = verify(tmp_path, public)
    assert not tampered.ok and tampered.first_bad_seq == 1
