"""Shared fixtures: where the read-only camera data lives, and tree fingerprints."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest

SHARED_DATA = (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


def tree_fingerprint(root: os.PathLike | str) -> dict[str, str]:
    """{relative path: sha256 (or link target)} of every file and link under ``root``."""
    result = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                result[rel] = "link:" + os.readlink(path)
            else:
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _released(start, target, args) -> None:
    start.wait()
    target(*args)


def run_together(target, argsets, timeout: float = 60) -> list:
    """Run ``target(*args)`` for each ``args`` in a process of its own, all released at once.

    Returns the exit codes, in order (None for a process still running after ``timeout``).
    """
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [context.Process(target=_released, args=(start, target, args)) for args in argsets]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout)
    return [process.exitcode for process in processes]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real camera data beside the project checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared camera data not found at {SHARED_DATA}")
    return SHARED_DATA


def _open_files() -> set[str]:
    """Regular files this process has open, SQLite databases aside."""
    files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")) \
                and not target.endswith((".sqlite3", ".sqlite3-journal", ".sqlite3-wal", ".sqlite")) \
                and os.path.isfile(target):
            files.add(target)
    return files


@pytest.fixture(autouse=True)
def no_file_left_open():
    """Every file the package opens during a test is closed by its end (SQLite aside)."""
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = _open_files()
    yield
    leaked = _open_files() - before
    assert not leaked, f"files left open: {sorted(leaked)}"
