"""Backups (`put(doBackup=True)`): contained, locked, made of whole files; ``~1`` is the newest."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time

import pytest

from butler import Butler, RepositoryArgs
from butler.errors import UnsafePathError
from butler.test import TestObject

from conftest import run_together

WRITING = "butler.test.MapperForTestWriting"
NAME = "filename_k1.txt"


def _make_repository(root) -> Butler:
    return Butler(outputs=RepositoryArgs(root=str(root), mapper=WRITING, mode="rw"))


def _versions(root) -> dict[int, str]:
    """{0: the dataset, k: its ~k backup} for every version on disk."""
    found = {}
    for name in os.listdir(root):
        if name == NAME:
            found[0] = os.path.join(root, name)
        elif name.startswith(NAME + "~"):
            found[int(name[len(NAME) + 1:])] = os.path.join(root, name)
    return found


def _load(path):
    with open(path, "rb") as stream:
        return pickle.load(stream)


def test_planted_symlink_backup_name_is_refused_and_the_outside_file_kept(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    butler = _make_repository(root)
    butler.put(TestObject(1), "foo", k=1)
    os.symlink(outside, root / f"{NAME}~1")
    with pytest.raises(UnsafePathError, match=r"symbolic link.*datasetType: foo") as info:
        butler.put(TestObject(2), "foo", k=1, doBackup=True)
    assert isinstance(info.value, ValueError)
    assert outside.read_bytes() == b"precious"
    assert butler.get("foo", k=1) == TestObject(1)  # the refusal came before anything was touched
    assert os.readlink(root / f"{NAME}~1") == str(outside)


def test_dangling_symlink_as_the_next_backup_name_is_refused(tmp_path):
    root, target = tmp_path / "repo", tmp_path / "would-be-created.txt"
    butler = _make_repository(root)
    butler.put(TestObject(1), "foo", k=1)
    butler.put(TestObject(2), "foo", k=1, doBackup=True)
    os.symlink(target, root / f"{NAME}~2")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        butler.put(TestObject(3), "foo", k=1, doBackup=True)
    assert not target.exists()
    assert _load(root / f"{NAME}~1") == TestObject(1) and butler.get("foo", k=1) == TestObject(2)


def test_backup_of_a_mem_repository(tmp_path):
    from butler.storage import mem

    try:
        butler = _make_repository("mem://backups/repo")
        for value in (1, 2, 3):
            butler.put(TestObject(value), "foo", k=1, doBackup=True)
        storage = butler.outputRepositories()[0].storage
        assert [pickle.loads(storage.readBytes(f"{NAME}~{k}")) for k in (1, 2)] == [TestObject(2), TestObject(1)]
        assert not storage.exists(f"{NAME}~3")
    finally:
        mem.clear()


def _backed_up_puts(root: str, process: int) -> None:
    butler = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    for i in range(20):
        butler.put(TestObject((process, i)), "foo", k=1, doBackup=True)


def test_concurrent_backed_up_puts_keep_every_version(tmp_path):
    root = str(tmp_path / "repo")
    _make_repository(root)
    assert run_together(_backed_up_puts, [(root, 0), (root, 1)], timeout=120) == [0, 0]
    versions = _versions(root)
    assert sorted(versions) == list(range(40))
    assert all(os.path.getsize(path) > 0 for path in versions.values())
    values = [_load(versions[k]).data for k in range(39, -1, -1)]  # oldest first
    assert sorted(values) == sorted((p, i) for p in (0, 1) for i in range(20))
    for process in (0, 1):  # each process's puts appear in the order it made them
        assert [i for p, i in values if p == process] == list(range(20))


def _put_forever(root: str, first: int) -> None:
    butler = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    value = first
    while True:
        butler.put(TestObject(value), "foo", k=1, doBackup=True)
        value += 1


def test_sigkill_during_backed_up_puts_leaves_no_torn_backup(tmp_path):
    root = str(tmp_path / "repo")
    _make_repository(root)
    context = multiprocessing.get_context("fork")
    for round_ in range(3):
        child = context.Process(target=_put_forever, args=(root, round_ * 1_000_000))
        child.start()
        time.sleep(1.0)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        versions = _versions(root)
        assert sorted(versions) == list(range(len(versions))), "a gap in the backups"
        for path in versions.values():
            assert isinstance(_load(path), TestObject), f"{path} is torn"
        visible = [n for n in os.listdir(root) if not n.startswith((".", "provenance.sqlite3"))]
        assert sorted(visible) == sorted(["repositoryCfg.yaml", *map(os.path.basename, versions.values())])
    assert len(_versions(root)) > 3
    # the temporaries of killed writers are hidden, and the next backed-up put removes them
    _make_repository(root).put(TestObject("last"), "foo", k=1, doBackup=True)
    assert [n for n in os.listdir(root) if n.endswith(".tmp")] == []
    assert _load(_versions(root)[1]) != TestObject("last")


def test_backup_takes_missing_versions_from_old_style_parents(tmp_path):
    from butler.storage import Storage

    parent, child = tmp_path / "parent", tmp_path / "child"
    (parent / "d").mkdir(parents=True)
    (parent / "d" / "v.txt").write_bytes(b"parent-now")
    (parent / "d" / "v.txt~1").write_bytes(b"parent-old")
    child.mkdir()
    (child / "_parent").symlink_to(parent)
    storage = Storage.makeFromURI(str(child), create=False)
    assert storage.backup("d/v.txt") == ["d/v.txt~1", "d/v.txt~2"]
    assert (child / "d" / "v.txt~1").read_bytes() == b"parent-now"
    assert (child / "d" / "v.txt~2").read_bytes() == b"parent-old"
    assert sorted(os.listdir(parent / "d")) == ["v.txt", "v.txt~1"]  # the parent is only read
