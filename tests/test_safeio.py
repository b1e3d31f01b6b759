"""Tests of butler.safeio: atomic writes, containment, write-once files, cross-process locks, stale temporaries."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from butler.errors import FileContentMismatch, UnsafePathError
from butler.safeio import (
    FileForWriteOnceCompareSame,
    SafeLockedFileForRead,
    SafeLockedFileForWrite,
    atomic_write,
    ensure_within,
    locked_directory,
    remove_stale_temporaries,
    safeMakeDir,
)

from conftest import run_together

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning",
                                        "error::pytest.PytestUnraisableExceptionWarning")

_mp = multiprocessing.get_context("fork")


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as stream:
        stream.write(text)


def _read_text(path: str) -> str:
    with open(path) as stream:
        return stream.read()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


# -- atomic_write -------------------------------------------------------------------------------


def test_atomic_write_publishes_only_on_success(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    with atomic_write(str(target)) as tmp:
        assert os.path.dirname(tmp) == str(target.parent)
        _write_text(tmp, "hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_write_mode_follows_umask(tmp_path, umask_027):
    target = tmp_path / "out.txt"
    with atomic_write(str(target)) as tmp:
        _write_text(tmp, "x")
    assert _mode(target) == 0o640


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with pytest.raises(ZeroDivisionError):
        with atomic_write(str(target)) as tmp:
            _write_text(tmp, "partial")
            1 / 0
    assert not target.exists()
    assert os.listdir(target.parent) == []


def test_failed_rewrite_keeps_old_content(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target)) as tmp:
            _write_text(tmp, "new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_threads_writing_one_file_leave_one_complete_version(tmp_path):
    target = str(tmp_path / "out.txt")
    errors = []

    def writer(n: int) -> None:
        try:
            for _ in range(20):
                with atomic_write(target) as tmp:
                    _write_text(tmp, str(n) * 10000)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    text = _read_text(target)
    assert len(text) == 10000 and len(set(text)) == 1
    assert os.listdir(tmp_path) == ["out.txt"]


# -- containment --------------------------------------------------------------------------------


def test_ensure_within_resolves_missing_tail(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    assert ensure_within(str(root), "x/y/../z.txt") == str(root / "x" / "z.txt")
    assert ensure_within(str(root), str(root / "a.txt")) == str(root / "a.txt")


def test_ensure_within_refuses_dotdot(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    with pytest.raises(UnsafePathError) as info:
        ensure_within(str(root), "x/../../escape.txt")
    assert str(root) in str(info.value) and "escape.txt" in str(info.value)
    with pytest.raises(UnsafePathError):
        ensure_within(str(root), str(tmp_path / "repo2" / "a.txt"))  # a sibling sharing the prefix


def test_write_outside_root_via_dotdot_creates_nothing(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    with pytest.raises(UnsafePathError):
        with atomic_write("sub/../../outside/evil.txt", root=str(root)) as tmp:
            _write_text(tmp, "x")  # pragma: no cover - never reached
    assert sorted(os.listdir(tmp_path)) == ["repo"]
    assert os.listdir(root) == []


def test_write_through_symlink_out_of_root_creates_nothing(tmp_path):
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        with atomic_write(str(root / "link" / "deep" / "evil.txt"), root=str(root)) as tmp:
            _write_text(tmp, "x")  # pragma: no cover - never reached
    assert os.listdir(outside) == []
    assert os.listdir(root) == ["link"]


def test_root_that_is_a_symlink_is_fine(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    with atomic_write("a/b.txt", root=str(tmp_path / "alias")) as tmp:
        _write_text(tmp, "ok")
    assert (real / "a" / "b.txt").read_text() == "ok"


def test_safe_make_dir_is_idempotent(tmp_path):
    target = tmp_path / "a" / "b"
    safeMakeDir(str(target))
    safeMakeDir(str(target))
    assert target.is_dir()


# -- FileForWriteOnceCompareSame ----------------------------------------------------------------


def test_write_once_creates_file_with_umask_mode_and_no_temp(tmp_path, umask_027):
    target = tmp_path / "once.txt"
    with FileForWriteOnceCompareSame(str(target)) as stream:
        stream.write("content")
    assert target.read_text() == "content"
    assert _mode(target) == 0o640
    assert os.listdir(tmp_path) == ["once.txt"]


def test_write_once_same_content_is_a_noop(tmp_path):
    target = tmp_path / "once.txt"
    with FileForWriteOnceCompareSame(str(target)) as stream:
        stream.write("content")
    inode = os.stat(target).st_ino
    with FileForWriteOnceCompareSame(str(target)) as stream:
        stream.write("content")
    assert os.stat(target).st_ino == inode
    assert os.listdir(tmp_path) == ["once.txt"]


def test_write_once_different_content_raises(tmp_path):
    target = tmp_path / "once.txt"
    with FileForWriteOnceCompareSame(str(target)) as stream:
        stream.write("content")
    with pytest.raises(RuntimeError) as info:
        with FileForWriteOnceCompareSame(str(target)) as stream:
            stream.write("other")
    assert isinstance(info.value, FileContentMismatch)
    assert target.read_text() == "content"
    assert os.listdir(tmp_path) == ["once.txt"]


def _write_once_worker(path: str) -> None:
    with FileForWriteOnceCompareSame(path) as stream:
        stream.write("same\n" * 1000)


def test_write_once_from_three_processes(tmp_path):
    target = str(tmp_path / "once.txt")
    assert run_together(_write_once_worker, [(target,)] * 3, timeout=10) == [0, 0, 0]
    assert _read_text(target) == "same\n" * 1000
    assert os.listdir(tmp_path) == ["once.txt"]


# -- SafeLockedFileForWrite / SafeLockedFileForRead ---------------------------------------------


def test_locked_write_reads_and_replaces(tmp_path):
    target = tmp_path / "cfg.yaml"
    target.write_text("old\n")
    with SafeLockedFileForWrite(str(target)) as locked:
        assert locked.read() == "old\n"
        locked.write("new\n")
        locked.write("more\n")
    assert target.read_text() == "new\nmore\n"
    with SafeLockedFileForRead(str(target)) as locked:
        assert locked.read() == "new\nmore\n"


def test_locked_write_without_writing_leaves_file_unchanged(tmp_path):
    target = tmp_path / "cfg.yaml"
    target.write_text("old\n")
    before = os.stat(target)
    with SafeLockedFileForWrite(str(target)) as locked:
        assert locked.read() == "old\n"
    after = os.stat(target)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    missing = tmp_path / "missing.yaml"
    with SafeLockedFileForWrite(str(missing)) as locked:
        assert locked.read() == ""
    assert not missing.exists()


def test_locked_write_error_in_block_discards_writes(tmp_path):
    target = tmp_path / "cfg.yaml"
    target.write_text("old\n")
    with pytest.raises(KeyError):
        with SafeLockedFileForWrite(str(target)) as locked:
            locked.write("new\n")
            raise KeyError("x")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["cfg.yaml"]


def test_locked_write_keeps_mode_and_creates_new_file(tmp_path, umask_027):
    target = tmp_path / "new" / "cfg.yaml"
    with SafeLockedFileForWrite(str(target)) as locked:
        locked.write("x")
    assert target.read_text() == "x"
    assert _mode(target) == 0o640
    os.chmod(target, 0o600)
    with SafeLockedFileForWrite(str(target)) as locked:
        locked.write("y")
    assert _mode(target) == 0o600


def test_locked_read_of_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        with SafeLockedFileForRead(str(tmp_path / "missing")):
            pass  # pragma: no cover - never reached


def _hold_write_lock(path: str, locked, hold: float) -> None:
    with SafeLockedFileForWrite(path) as handle:
        locked.set()
        time.sleep(hold)
        handle.write("written by the writer")


def test_reader_blocks_while_another_process_holds_the_write_lock(tmp_path):
    target = str(tmp_path / "cfg.yaml")
    _write_text(target, "before")
    locked = _mp.Event()
    writer = _mp.Process(target=_hold_write_lock, args=(target, locked, 0.6))
    writer.start()
    try:
        assert locked.wait(10)
        start = time.monotonic()
        with SafeLockedFileForRead(target) as handle:
            waited = time.monotonic() - start
            text = handle.read()
    finally:
        writer.join(10)
    assert writer.exitcode == 0
    assert waited > 0.4
    assert text == "written by the writer"


def _append_worker(path: str, n: int) -> None:
    for i in range(15):
        with SafeLockedFileForWrite(path) as handle:
            text = handle.read()
            handle.write(text + f"{n}-{i}\n")


def test_three_processes_read_modify_write_without_lost_updates(tmp_path):
    target = str(tmp_path / "cfg.yaml")
    assert run_together(_append_worker, [(target, n) for n in range(3)], timeout=20) == [0, 0, 0]
    lines = _read_text(target).splitlines()
    assert sorted(lines) == sorted(f"{n}-{i}" for n in range(3) for i in range(15))
    assert os.listdir(tmp_path) == ["cfg.yaml"]


_BIG = 2_000_000


def _rewrite_worker(path: str, rounds: int) -> None:
    for i in range(rounds):
        with atomic_write(path) as tmp, open(tmp, "wb") as stream:
            stream.write(bytes([ord("a") + i % 26]) * _BIG)


def test_reader_never_sees_a_partial_file(tmp_path):
    target = str(tmp_path / "big.bin")
    with open(target, "wb") as stream:
        stream.write(b"z" * _BIG)
    writer = _mp.Process(target=_rewrite_worker, args=(target, 40))
    writer.start()
    reads = 0
    versions = set()
    while writer.is_alive() or reads == 0:
        with open(target, "rb") as stream:
            data = stream.read()
        reads += 1
        assert len(data) == _BIG
        assert data.count(data[:1]) == _BIG
        versions.add(data[:1])
    writer.join(10)
    assert writer.exitcode == 0
    assert len(versions) > 1  # the reader really overlapped the rewrites
    assert os.listdir(tmp_path) == ["big.bin"]


# -- directory locks and the temporaries of killed writers -------------------------------------


def _hold_directory_lock(directory: str, log: str, tag: str) -> None:
    with locked_directory(directory):
        with open(log, "a") as stream:
            stream.write(f"{tag}+")
        time.sleep(0.2)
        with open(log, "a") as stream:
            stream.write(f"{tag}-")


def test_locked_directory_excludes_other_processes_and_leaves_nothing(tmp_path):
    locked = tmp_path / "d"
    locked.mkdir()
    log = str(tmp_path / "log")
    assert run_together(_hold_directory_lock, [(str(locked), log, t) for t in "ab"], timeout=20) == [0, 0]
    with open(log) as stream:
        events = stream.read().split("+")
    assert len(events) == 3 and events[1][:2] in ("a-", "b-")  # one holder at a time
    assert os.listdir(locked) == []


def test_remove_stale_temporaries_only_of_dead_writers(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    names = [f".data.txt.{dead_pid}.0123456789ab.tmp", f".data.txt~2.{dead_pid}.0123456789ab.tmp",
             f".data.txt.{os.getpid()}.0123456789ab.tmp", f".other.txt.{dead_pid}.0123456789ab.tmp",
             "data.txt"]
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(str(tmp_path), "data.txt")
    assert sorted(os.path.basename(p) for p in removed) == sorted(names[:2])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:])
