"""Gen2 semantics of construction, put and parents, over real repositories in temporary directories."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from butler import Butler, Mapper, RepositoryArgs, RepositoryCfg
from butler.errors import MapperError, MissingParentError, ParentCycleError, RepositoryError
from butler.test import EmptyTestMapper, MapperForTestWriting, TestObject

from conftest import tree_fingerprint

WRITING = "butler.test.MapperForTestWriting"


def put_foo(root: Path, value, **dataId) -> None:
    Butler(outputs=RepositoryArgs(root=str(root), mapper=WRITING)).put(TestObject(value), "foo", dataId)


def write_cfg(root: Path, parents=(), mapper=WRITING, mapperArgs=None) -> Path:
    """A repository whose cfg records ``parents`` as given (paths relative to it, or absolute)."""
    root.mkdir(parents=True, exist_ok=True)
    RepositoryCfg(mapper=mapper, mapperArgs=mapperArgs, parents=[str(p) for p in parents]).write(str(root))
    return root


def read_pickle(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


# -- one repository, two spellings -------------------------------------------------------------

def test_output_symlinked_to_an_input_is_refused_and_the_input_untouched(tmp_path):
    put_foo(tmp_path / "IN", "original", k=1)
    os.symlink(tmp_path / "IN", tmp_path / "IN_link")
    before = tree_fingerprint(tmp_path)
    with pytest.raises(RepositoryError, match="both an input and an output"):
        Butler(inputs=str(tmp_path / "IN"), outputs=str(tmp_path / "IN_link"))
    with pytest.raises(RepositoryError, match="both an input and an output"):
        Butler(inputs=str(tmp_path / "IN_link"), outputs=RepositoryArgs(root=str(tmp_path / "IN"), mode="rw"))
    assert tree_fingerprint(tmp_path) == before


def test_two_spellings_of_one_output_are_refused_and_nothing_is_written(tmp_path):
    put_foo(tmp_path / "a", 1, k=1)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    before = tree_fingerprint(tmp_path)
    with pytest.raises(RepositoryError, match="one repository"):
        Butler(inputs=str(tmp_path / "a"),
               outputs=[str(tmp_path / "real" / "out"), str(tmp_path / "link" / "out")])
    assert tree_fingerprint(tmp_path) == before
    assert not (tmp_path / "real" / "out").exists()


def test_two_spellings_of_one_input_open_one_repository(tmp_path):
    put_foo(tmp_path / "a", 1, k=1)
    os.symlink(tmp_path / "a", tmp_path / "a_link")
    b = Butler(inputs=[str(tmp_path / "a"), str(tmp_path / "a_link")])
    assert [r.root for r in b.repositories()] == [str(tmp_path / "a")]


# -- cycles and depth --------------------------------------------------------------------------

def test_repository_that_is_its_own_parent_is_named(tmp_path):
    write_cfg(tmp_path / "self", parents=["."])
    with pytest.raises(ParentCycleError) as err:
        Butler(inputs=str(tmp_path / "self"))
    assert err.value.roots == [str(tmp_path / "self")] * 2


def test_two_repositories_that_are_each_others_parent_are_named(tmp_path):
    write_cfg(tmp_path / "A", parents=["../B"])
    write_cfg(tmp_path / "B", parents=["../A"])
    with pytest.raises(ParentCycleError) as err:
        Butler(inputs=str(tmp_path / "A"))
    assert err.value.roots == [str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "A")]
    assert f"{tmp_path / 'A'} -> {tmp_path / 'B'} -> {tmp_path / 'A'}" in str(err.value)


def test_legacy_parent_link_to_itself_is_named(tmp_path):
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "_mapper").write_text(WRITING + "\n")
    os.symlink(".", v1 / "_parent")
    with pytest.raises(ParentCycleError, match=str(v1)):
        Butler(inputs=str(v1))


def test_output_that_is_an_ancestor_of_its_input_is_refused(tmp_path):
    put_foo(tmp_path / "base", 1, k=1)
    Butler(inputs=str(tmp_path / "base"), outputs=str(tmp_path / "rerun"))
    before = tree_fingerprint(tmp_path)
    with pytest.raises(ParentCycleError):
        Butler(inputs=str(tmp_path / "rerun"), outputs=RepositoryArgs(root=str(tmp_path / "base"), mode="rw"))
    assert tree_fingerprint(tmp_path) == before


def test_a_chain_of_two_thousand_opens_and_reads_through(tmp_path):
    depth = 2000
    put_foo(tmp_path / "c0", "deep", k=1)
    for i in range(1, depth):
        write_cfg(tmp_path / f"c{i}", parents=[f"../c{i - 1}"])
    start = time.perf_counter()
    b = Butler(inputs=str(tmp_path / f"c{depth - 1}"))
    assert b.get("foo", k=1) == TestObject("deep")
    elapsed = time.perf_counter() - start
    assert len(b.repositories()) == depth
    assert elapsed < 10, f"opening and reading through {depth} repositories took {elapsed:.1f} s"


# -- put ---------------------------------------------------------------------------------------

class NoFooMapper(Mapper):
    """Has no location for ``foo`` (as a Gen2 mapper declining a dataset type)."""

    def __init__(self, root=None, **kwargs):
        self.root = root

    def map_foo(self, dataId, write):
        return None


class FailingMapper(Mapper):
    """Its mapping of ``foo`` fails with an error."""

    def __init__(self, root=None, **kwargs):
        self.root = root

    def map_foo(self, dataId, write):
        raise MapperError("cannot map foo here")


def outputs_butler(tmp_path: Path, *mappers) -> Butler:
    return Butler(outputs=[RepositoryArgs(root=str(tmp_path / f"out{i}"), mapper=m)
                           for i, m in enumerate(mappers)])


def test_put_skips_an_output_without_a_location_for_the_dataset(tmp_path):
    b = outputs_butler(tmp_path, NoFooMapper, MapperForTestWriting)
    b.put(TestObject(1), "foo", k=1)
    assert read_pickle(tmp_path / "out1" / "filename_k1.txt") == TestObject(1)
    assert sorted(os.listdir(tmp_path / "out0")) == ["repositoryCfg.yaml"]


def test_put_that_no_output_takes_is_an_error(tmp_path):
    b = outputs_butler(tmp_path, NoFooMapper, NoFooMapper)
    before = tree_fingerprint(tmp_path)
    with pytest.raises(MapperError, match=r"no output takes 'foo' \{'k': 1\}.*out0.*out1"):
        b.put(TestObject(1), "foo", k=1)
    assert tree_fingerprint(tmp_path) == before


def test_put_writes_nothing_when_one_outputs_mapping_fails(tmp_path):
    b = outputs_butler(tmp_path, MapperForTestWriting, FailingMapper)
    before = tree_fingerprint(tmp_path)
    with pytest.raises(MapperError, match="cannot map foo here.*out1"):
        b.put(TestObject(1), "foo", k=1)
    assert tree_fingerprint(tmp_path) == before
    assert not (tmp_path / "out0" / "filename_k1.txt").exists()


# -- construction ------------------------------------------------------------------------------

def test_output_without_a_mapper_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(MapperError, match=f"{tmp_path / 'new'}.*has no mapper"):
        Butler(outputs=str(tmp_path / "new"))
    assert os.listdir(tmp_path) == []


def test_butler_without_arguments_writes_nothing_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MapperError, match="no mapper"):
        Butler()
    assert os.listdir(tmp_path) == []


def test_missing_input_root_is_named_at_construction(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(RepositoryError, match=str(missing)):
        Butler(inputs=str(missing))
    with pytest.raises(RepositoryError, match=str(missing)):
        Butler(inputs=RepositoryCfg(root=str(missing), mapper=WRITING))
    assert os.listdir(tmp_path) == []


def test_reopening_an_output_with_other_mapper_args_or_policy_raises(tmp_path):
    out = tmp_path / "out"
    Butler(outputs=RepositoryArgs(root=str(out), mapper=EmptyTestMapper, mapperArgs={"calib": "A"},
                                  policy={"x": 1}))
    before = tree_fingerprint(tmp_path)
    with pytest.raises(MapperError, match="records mapper"):
        Butler(outputs=RepositoryArgs(root=str(out), mapper=WRITING))
    with pytest.raises(RepositoryError, match="records mapperArgs"):
        Butler(root=str(out), calib="B")
    with pytest.raises(RepositoryError, match="policy"):
        Butler(outputs=RepositoryArgs(root=str(out), policy={"x": 2}))
    assert tree_fingerprint(tmp_path) == before
    again = Butler(root=str(out), calib="A")  # the recorded arguments, and none at all, reopen it
    assert again.outputRepositories()[0].mapper.kwargs == {"calib": "A"}
    assert Butler(root=str(out)).outputRepositories()[0].mapper.kwargs == {"calib": "A"}


def test_parents_given_on_an_output_are_refused(tmp_path):
    put_foo(tmp_path / "a", 1, k=1)
    with pytest.raises(RepositoryError, match="given with parents"):
        Butler(outputs=RepositoryCfg(root=str(tmp_path / "out"), mapper=WRITING,
                                     parents=[str(tmp_path / "a")]))
    with pytest.raises(RepositoryError, match=f"{tmp_path / 'out'}.*given with parents"):
        Butler(outputs={"root": str(tmp_path / "out"), "mapper": WRITING, "parents": [str(tmp_path / "a")]})
    assert not (tmp_path / "out").exists()


def test_output_cfg_is_written_at_its_cfg_root(tmp_path):
    put_foo(tmp_path / "a", "in-a", k=1)
    cfgs, data = tmp_path / "cfgs", tmp_path / "data"
    b = Butler(inputs=str(tmp_path / "a"), outputs=RepositoryArgs(cfgRoot=str(cfgs), root=str(data)))
    b.put(TestObject("out"), "foo", k=2)
    assert (cfgs / "repositoryCfg.yaml").exists() and not (data / "repositoryCfg.yaml").exists()
    assert read_pickle(data / "filename_k2.txt") == TestObject("out")
    cfg = RepositoryCfg.read(str(cfgs))
    assert cfg.root == str(data) and cfg.parents == [str(tmp_path / "a")]
    reader = Butler(inputs=str(cfgs))
    assert [r.root for r in reader.repositories()] == [str(data), str(tmp_path / "a")]
    assert reader.get("foo", k=2) == TestObject("out") and reader.get("foo", k=1) == TestObject("in-a")


# -- missing parents ---------------------------------------------------------------------------

def test_read_reaching_a_missing_parent_raises_and_never_answers_from_past_it(tmp_path):
    put_foo(tmp_path / "base", "old", k=1)
    put_foo(tmp_path / "mid", "new", k=1)
    write_cfg(tmp_path / "top", parents=["../mid", "../base"])
    with open(tmp_path / "top" / "filename_k3.txt", "wb") as f:
        pickle.dump(TestObject("top"), f)
    assert Butler(inputs=str(tmp_path / "top")).get("foo", k=1) == TestObject("new")
    for name in os.listdir(tmp_path / "mid"):
        os.remove(tmp_path / "mid" / name)
    os.rmdir(tmp_path / "mid")
    b = Butler(inputs=str(tmp_path / "top"))
    assert b.get("foo", k=3) == TestObject("top")  # answered before the search reaches the gap
    with pytest.raises(MissingParentError) as err:
        b.get("foo", k=1)  # "old" from base would be the wrong answer
    message = str(err.value)
    assert str(tmp_path / "mid") in message and f"recorded by repository {tmp_path / 'top'}" in message
    assert "'k': 1" in message and "foo" in message
    assert err.value.searched == [str(tmp_path / "top")]  # the repositories before the gap, no more
    with pytest.raises(MissingParentError):
        b.datasetExists("foo", k=1)
    with pytest.raises(MissingParentError):
        b.get("foo", k=1, immediate=False)


def test_dangling_legacy_parent_link_is_a_missing_parent(tmp_path):
    child = tmp_path / "child"
    child.mkdir()
    (child / "_mapper").write_text(WRITING + "\n")
    os.symlink(tmp_path / "gone", child / "_parent")
    with open(child / "filename_k1.txt", "wb") as f:
        pickle.dump(TestObject("here"), f)
    b = Butler(inputs=str(child))
    assert b.get("foo", k=1) == TestObject("here")
    with pytest.raises(MissingParentError, match=str(tmp_path / "gone")):
        b.get("foo", k=2)


def test_rw_output_reopened_alone_stops_at_its_missing_parent(tmp_path):
    put_foo(tmp_path / "a", 1, k=1)
    out = tmp_path / "out"
    Butler(inputs=str(tmp_path / "a"), outputs=str(out))
    os.rename(tmp_path / "a", tmp_path / "a_moved")
    b = Butler(outputs=RepositoryArgs(root=str(out), mode="rw"))
    b.put(TestObject(2), "foo", k=2)
    assert b.get("foo", k=2) == TestObject(2)
    with pytest.raises(MissingParentError, match=f"{tmp_path / 'a'} recorded by repository {out}"):
        b.get("foo", k=1)


# -- Gen2 cfgs that record a V1 parent by path --------------------------------------------------

@pytest.mark.parametrize("mapperArgs", [{}, {"calib": "foo"}])
def test_v1_parent_recorded_by_path_opens_with_the_childs_mapper_args(tmp_path, mapperArgs):
    repoA, repoB = tmp_path / "repoA", tmp_path / "repoB"
    repoA.mkdir()
    (repoA / "_mapper").write_text("butler.test.EmptyTestMapper")
    repoB.mkdir()
    (repoB / "repositoryCfg.yaml").write_text(
        "!RepositoryCfg_v1\n_mapper: 'butler.test.EmptyTestMapper'\n"
        f"_mapperArgs: {mapperArgs!r}\n_parents: ['../repoA']\n_policy: null\n_root: null\ndirty: true\n")
    before = tree_fingerprint(tmp_path)
    for b in (Butler(str(repoB)), Butler(inputs=str(repoB))):
        (first, second) = b._repos.inputs()
        assert (first.repo._mapper.root, second.repo._mapper.root) == (str(repoB), str(repoA))
        assert first.repo._mapper.kwargs == mapperArgs and second.repo._mapper.kwargs == mapperArgs
    assert tree_fingerprint(tmp_path) == before
