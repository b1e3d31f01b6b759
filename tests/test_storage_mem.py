"""RFC-184 repository scenarios with every repository on ``mem://``, and roots that are URIs.

The repositories live in this process's memory: one Butler writes, a later
one reads, and nothing touches the disk.
"""

from __future__ import annotations

import os

import pytest

from butler import Butler, DataId, RepositoryArgs
from butler.cfg import RepositoryCfg
from butler.errors import NoResults, ParentCycleError, UnknownStorageError
from butler.storage import MemStorage, mem
from butler.test import MapperForTestWriting, TestObject


@pytest.fixture(autouse=True)
def in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI taken for a path would show up here
    mem.clear()
    yield
    mem.clear()
    assert os.listdir(tmp_path) == []


def put_foo(root, value, **dataId):
    butler = Butler(outputs=RepositoryArgs(root=root, mapper=MapperForTestWriting))
    butler.put(TestObject(value), "foo", dataId)
    return butler


def test_outputs_are_mem_storages_and_cfgs_live_there():
    butler = put_foo("mem://a", 1, k=1)
    repo = butler.outputRepositories()[0]
    assert isinstance(repo.storage, MemStorage) and repo.root == "mem://a"
    assert repo.storage.listNames() == ["filename_k1.txt", "repositoryCfg.yaml"]
    cfg = RepositoryCfg.read("mem://a")
    assert cfg.root == "mem://a" and cfg.mapper == "butler.test.MapperForTestWriting"


def test_several_inputs_and_outputs():
    put_foo("mem://in/a", "a", k=1)
    put_foo("mem://in/b", "b", k=2)
    butler = Butler(inputs=["mem://in/a", "mem://in/b"], outputs=["mem://out/1", "mem://out/2"])
    for out in ("mem://out/1", "mem://out/2"):
        assert RepositoryCfg.read(out).parents == ["mem://in/a", "mem://in/b"]
    butler.put(TestObject("new"), "foo", k=3)
    assert butler.get("foo", k=1) == TestObject("a") and butler.get("foo", k=2) == TestObject("b")
    for out in ("mem://out/1", "mem://out/2"):
        assert Butler(inputs=out).get("foo", k=3) == TestObject("new")  # a later Butler reads it


def test_chained_reruns_and_masking():
    put_foo("mem://base", "old", visit=1)
    put_foo("mem://base", "only-in-base", visit=2)
    rerun = Butler(inputs="mem://base", outputs=RepositoryArgs(root="mem://rerun/v1", mode="rw"))
    rerun.put(TestObject("new"), "foo", visit=1)
    assert rerun.get("foo", visit=1) == TestObject("new")
    chained = Butler(inputs="mem://rerun/v1", outputs="mem://rerun/v2")
    assert chained.get("foo", visit=1) == TestObject("new") and chained.get("foo", visit=2) == TestObject(
        "only-in-base")
    reopened = Butler(outputs=RepositoryArgs(root="mem://rerun/v1", mode="rw"))  # parents come back
    assert [r.root for r in reopened.repositories()] == ["mem://rerun/v1", "mem://base"]
    with pytest.raises(ParentCycleError, match="mem://rerun/v1 -> mem://rerun/v2 -> mem://rerun/v1"):
        Butler(inputs="mem://rerun/v2", outputs="mem://rerun/v1")  # v1 is an ancestor of v2


def test_diamond_parents_are_searched_once_depth_first():
    put_foo("mem://a", "a", k=0)
    Butler(inputs="mem://a", outputs="mem://b")
    Butler(inputs="mem://a", outputs="mem://c")
    Butler(inputs=["mem://b", "mem://c"], outputs="mem://d")
    butler = Butler(inputs="mem://d")
    assert [r.root for r in butler.repositories()] == ["mem://d", "mem://b", "mem://a", "mem://c"]
    assert butler.get("foo", k=0) == TestObject("a")


def test_tags_select_versions():
    put_foo("mem://base", "raw", visit=1)
    for version in ("v1", "v2"):
        Butler(inputs="mem://base", outputs=f"mem://{version}").put(TestObject(version), "foo", visit=2)
    both = Butler(inputs=[RepositoryArgs(root="mem://v1", tags="v1"), {"root": "mem://v2", "tags": ["v2"]}])
    assert both.get("foo", DataId({"visit": 2}, tag="v1")) == TestObject("v1")
    assert both.get("foo", DataId({"visit": 2}, tag="v2")) == TestObject("v2")
    assert both.get("foo", DataId(visit=1, tag="v2")) == TestObject("raw")
    with pytest.raises(NoResults, match="mem://v1"):
        both.get("foo", DataId(visit=3))


def test_a_missing_mem_input_is_an_error():
    with pytest.raises(RuntimeError, match="mem://nothing"):
        Butler(inputs="mem://nothing")


@pytest.mark.parametrize("uri, scheme", [("gs://b/x", "gs"), ("foo://x", "foo")])
def test_an_unknown_scheme_raises_and_creates_nothing(uri, scheme):
    with pytest.raises(UnknownStorageError, match=f"'{scheme}'.*known schemes"):
        Butler(outputs=uri)
    with pytest.raises(UnknownStorageError, match=f"'{scheme}'"):
        Butler(inputs=uri)
    with pytest.raises(UnknownStorageError, match=f"'{scheme}'"):
        Butler(root=uri, mapper=MapperForTestWriting)
    # the fixture checks that no "gs:" or "foo:" directory was made
