"""Issue #12, the put path: what the faster write must still guarantee.

The containment check resolves a write's directory only (a link at the file's
name is replaced by the rename, never followed); temporary names come from a
per-process prefix and a counter, unique across threads and forks; the
formatter's answer on a put's type is asked once per (format, type, policy
type) where it depends on nothing else; a recorded put digests the bytes it
writes and records them before the rename.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading

import pytest

from butler import Butler, RepositoryArgs
from butler.errors import UnsafePathError, UnwritableObjectError
from butler.provenance.recording import canonical_data_id
from butler.registry.provenance import _journal_line
from butler.safeio import _TEMPORARY, atomic_write, contained_destination, write_bytes
from butler.test import MapperForTestWriting, TestObject


def test_a_link_at_the_file_name_is_replaced_and_its_target_never_written(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"keep")
    (root / "a.bin").symlink_to(outside / "victim.txt")
    (root / "sub").mkdir()
    (root / "sub" / "b.bin").symlink_to(outside / "victim.txt")
    write_bytes("a.bin", b"new", root=str(root))
    with atomic_write("sub/b.bin", root=str(root)) as tmp:
        with open(tmp, "wb") as stream:
            stream.write(b"newer")
    assert (outside / "victim.txt").read_bytes() == b"keep"
    assert not (root / "a.bin").is_symlink() and (root / "a.bin").read_bytes() == b"new"
    assert not (root / "sub" / "b.bin").is_symlink() and (root / "sub" / "b.bin").read_bytes() == b"newer"


@pytest.mark.parametrize("path", ["..", ".", "sub/..", "sub/../..", ""])
def test_a_path_naming_the_root_or_above_it_writes_nothing(tmp_path, path):
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    with pytest.raises(UnsafePathError):
        write_bytes(path, b"x", root=str(root))
    assert sorted(os.listdir(tmp_path)) == ["repo"] and os.listdir(root) == ["sub"]


def test_the_destination_directory_is_resolved_inside_the_root(tmp_path):
    real = tmp_path / "real"
    (real / "d").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(real)
    assert contained_destination(str(tmp_path / "alias"), "d/x.bin") == str(real / "d" / "x.bin")
    assert contained_destination(str(tmp_path / "alias"), "x.bin") == str(real / "x.bin")
    (real / "out").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        contained_destination(str(real), "out/x.bin")


def _temporary_names(directory, count):
    """The temporaries ``count`` writes leave in ``directory`` when each is kept (a failing block)."""
    names = []
    for _ in range(count):
        with pytest.raises(RuntimeError), atomic_write("f.bin", root=str(directory)) as tmp:
            names.append(os.path.basename(tmp))
            raise RuntimeError("abandon the write")
    return names


def test_temporary_names_are_unique_across_threads_and_a_fork(tmp_path):
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.extend(_temporary_names(tmp_path, 200))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child draws names too: its pid and its prefix differ from the parent's
        try:
            os.write(write, "\n".join(_temporary_names(tmp_path, 50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        child = stream.read().decode().split("\n")
    os.waitpid(pid, 0)
    names += child + _temporary_names(tmp_path, 50)
    assert len(names) == 4 * 200 + 50 + 50 == len(set(names))
    assert all(_TEMPORARY.fullmatch(name) for name in names)  # the sweep of dead writers still knows them
    parent_prefix = {name.rsplit(".", 2)[1][:8] for name in names if f".{os.getpid()}." in name}
    child_prefix = {name.rsplit(".", 2)[1][:8] for name in child}
    assert len(parent_prefix) == len(child_prefix) == 1 and parent_prefix != child_prefix
    assert os.listdir(tmp_path) == []  # every abandoned temporary was removed


def test_a_pickle_put_of_an_unpicklable_object_is_refused_and_writes_nothing(tmp_path):
    """The pickle format's type question is not asked (it takes anything it can write): the write still refuses."""
    butler = Butler(outputs=RepositoryArgs(root=str(tmp_path), mapper=MapperForTestWriting, mode="rw"),
                    recordProvenance=False)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UnwritableObjectError, match="PickleStorage cannot write a builtins.function"):
        butler.put(lambda: None, "foo", visit=1, ccd=2)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("record", [False, True])
def test_a_put_leaves_nothing_for_the_cycle_collector(tmp_path, record):
    """Every object a put makes is freed when the put returns (a cycle per put made the collector run often)."""
    butler = Butler(outputs=RepositoryArgs(root=str(tmp_path), mapper=MapperForTestWriting, mode="rw"),
                    recordProvenance=record)
    butler.put(TestObject(0), "foo", visit=0, ccd=1)  # the store and the run are made by the first put
    gc.collect()
    gc.disable()
    try:
        for visit in range(1, 40):
            butler.put(TestObject(visit), "foo", visit=visit, ccd=1)
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert butler.get("foo", visit=39, ccd=1) == TestObject(39)
    if record:
        record_ = butler.provenance("foo", visit=39, ccd=1)
        data = (tmp_path / "filename_ccd1_visit39.txt").read_bytes()
        assert record_.sha256 == hashlib.sha256(data).hexdigest() and record_.size == len(data)


@pytest.mark.parametrize("dataId", [
    {"visit": 12, "ccd": 3}, {"filter": 'g"\\é\n', "visit": -1}, {}, {"b": 1, "a": 2, "A": 3},
    {"visit": True, "x": 1.5, "y": None}, {"visit": 2**70}, {3: "three"},
])
def test_a_data_id_joined_by_hand_is_the_encoders_canonical_text(dataId):
    expected = json.dumps({str(key): value for key, value in dataId.items()}, sort_keys=True)
    assert canonical_data_id(dataId) == expected
    assert json.loads(canonical_data_id(dataId)) == json.loads(expected)


@pytest.mark.parametrize("entry", [
    {"d": ["u-1", "r-1", None, "foo", '{"ccd": 1, "visit": 2}', "a/b\\c\u00e9.txt", 120, "ab" * 32, "t", None,
           "pending"]},
    {"d": ["u-2", "r-1", "q", "foo", "{}", "x.txt", 1.5, "s", "t", "set", "pending"]},  # a float: the encoder
    {"d": ["u-3", "r-1", None, "foo", "{}", "x.txt", 1, "s", "t", "set", "pending"], "s": ["set", None], "e": []},
])
def test_a_journal_line_joined_by_hand_is_the_encoders_line(entry):
    line = _journal_line(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line == (json.dumps(entry, separators=(",", ":")) + "\n").encode()
