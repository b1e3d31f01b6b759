"""The Butler over real repositories in temporary directories (gen2-contract section 5)."""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import warnings
from pathlib import Path

import pytest
import yaml

import butler as dp
from butler import (
    Butler,
    ButlerLocation,
    DataId,
    Mapper,
    NoResults,
    ParentsMismatch,
    ReadProxy,
    RepositoryArgs,
    RepositoryCfg,
)
from butler.test import EmptyTestMapper, MapperForTestWriting, TestObject

from conftest import run_together, tree_fingerprint

WRITING = "butler.test.MapperForTestWriting"


def put_foo(root, value, mapper=MapperForTestWriting, **dataId):
    b = Butler(outputs=RepositoryArgs(root=str(root), mapper=mapper))
    b.put(TestObject(value), "foo", dataId)
    return b


# -- construction ----------------------------------------------------------------------------

def test_old_form_is_one_read_write_repository(tmp_path):
    b = Butler(root=str(tmp_path), mapper=MapperForTestWriting)
    b.put(TestObject(1), "foo", {"a": 1})
    assert b.get("foo", a=1) == TestObject(1)
    assert (tmp_path / "filename_a1.txt").exists()
    assert b._repos.outputs()[0].mode == "rw"


def test_old_and_new_forms_cannot_be_mixed(tmp_path):
    with pytest.raises(RuntimeError, match="mixed"):
        Butler(root=str(tmp_path), inputs=str(tmp_path))
    with pytest.raises(RuntimeError):
        Butler(outputs=str(tmp_path), calibRoot="x")


def test_empty_inputs_and_outputs_are_valid():
    b = Butler(inputs=[], outputs=[])
    assert b._repos.inputs() == [] and b._repos.outputs() == []


def test_missing_input_raises_runtime_error(tmp_path):
    with pytest.raises(RuntimeError, match="no repository"):
        Butler(inputs=str(tmp_path / "missing"))
    with pytest.raises(RuntimeError):
        Butler(inputs=str(tmp_path))  # exists, but is not a repository


def test_new_output_cfg_is_written_at_construction(tmp_path):
    out = tmp_path / "out"
    Butler(outputs={"root": str(out), "mapper": MapperForTestWriting})
    text = (out / "repositoryCfg.yaml").read_text()
    assert text.startswith("!RepositoryCfg_v1")
    assert "!!python" not in text
    cfg = RepositoryCfg.read(str(out))
    assert cfg.root == str(out)
    assert cfg.parents == []
    assert yaml.load(text.replace("!RepositoryCfg_v1", ""), Loader=yaml.SafeLoader)["_mapper"] == \
        "butler.test.MapperForTestWriting"


@pytest.mark.parametrize("form", ["path", "uri", "args", "dict", "cfg", "list"])
def test_inputs_in_every_form(tmp_path, form):
    root = tmp_path / "in"
    put_foo(root, "x", a=1)
    given = {"path": str(root), "uri": "file://" + str(root), "args": RepositoryArgs(root=str(root)),
             "dict": {"root": str(root)}, "cfg": RepositoryCfg.read(str(root)),
             "list": [str(root)]}[form]
    assert Butler(inputs=given).get("foo", a=1) == TestObject("x")


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put_foo("rel", 3, a=1)
    b = Butler(inputs="rel")
    assert b._repos.inputs()[0].cfg.root == str(tmp_path / "rel")
    assert b.get("foo", a=1) == TestObject(3)


# -- parents, search order, masking ------------------------------------------------------------

def test_inputs_become_parents_of_every_output_in_order(tmp_path):
    a, b_, o1, o2 = (tmp_path / n for n in ("a", "b", "o1", "o2"))
    put_foo(a, "a", k=1)
    put_foo(b_, "b", k=2)
    butler = Butler(inputs=[str(a), str(b_)], outputs=[str(o1), str(o2)])
    for out in (o1, o2):
        assert RepositoryCfg.read(str(out)).parents == [str(a), str(b_)]
    butler.put(TestObject("new"), "foo", k=3)
    assert (o1 / "filename_k3.txt").exists() and (o2 / "filename_k3.txt").exists()
    assert butler.get("foo", k=1) == TestObject("a")
    assert butler.get("foo", k=2) == TestObject("b")
    with pytest.raises(NoResults):
        butler.get("foo", k=3)  # 'w' outputs are not read


def test_rfc184_chain_and_masking(tmp_path):
    base, v1 = tmp_path / "base", tmp_path / "v1"
    put_foo(base, "old", visit=1)
    put_foo(base, "only-in-base", visit=2)
    b = Butler(inputs=str(base), outputs=RepositoryArgs(root=str(v1), mode="rw"))
    b.put(TestObject("new"), "foo", visit=1)
    assert b.get("foo", visit=1) == TestObject("new")  # the output masks the input
    assert b.get("foo", visit=2) == TestObject("only-in-base")
    reopened = Butler(outputs=RepositoryArgs(root=str(v1), mode="rw"))  # parents come back
    assert reopened.get("foo", visit=2) == TestObject("only-in-base")
    assert [r.cfg.root for r in reopened._repos.inputs()] == [str(v1), str(base)]


def test_diamond_parents_are_searched_once_depth_first(tmp_path):
    a, b_, c, d = (tmp_path / n for n in "abcd")
    put_foo(a, "a", k=0)
    Butler(inputs=str(a), outputs=str(b_))
    Butler(inputs=str(a), outputs=str(c))
    Butler(inputs=[str(b_), str(c)], outputs=str(d))
    butler = Butler(inputs=str(d))
    assert [r.cfg.root for r in butler._repos.inputs()] == [str(d), str(b_), str(a), str(c)]
    assert butler.get("foo", k=0) == TestObject("a")


def test_tagged_data_id_compares_two_versions(tmp_path):
    base, v1, v2 = tmp_path / "base", tmp_path / "v1", tmp_path / "v2"
    put_foo(base, "raw", visit=1)
    for version in (v1, v2):
        out = Butler(inputs=str(base), outputs=str(version))
        out.put(TestObject(version.name), "foo", visit=2)
    both = Butler(inputs=[RepositoryArgs(root=str(v1), tags="v1"), {"root": str(v2), "tags": ["v2"]}])
    assert both.get("foo", DataId({"visit": 2}, tag="v1")) == TestObject("v1")
    assert both.get("foo", DataId({"visit": 2}, tag="v2")) == TestObject("v2")
    assert both.get("foo", {"visit": 2}) == TestObject("v1")  # untagged: everything, in order
    assert both.get("foo", DataId(visit=1, tag="v2")) == TestObject("raw")  # parents of tagged inputs
    with pytest.raises(NoResults) as err:
        both.get("foo", DataId(visit=2, tag="v3"))
    assert "v3" in str(err.value)


def test_no_results_names_type_data_id_tags_and_every_repository(tmp_path):
    a, b_ = tmp_path / "a", tmp_path / "b"
    put_foo(a, 1, k=1)
    put_foo(b_, 2, k=2)
    butler = Butler(inputs=[RepositoryArgs(root=str(a), tags="x"), RepositoryArgs(root=str(b_), tags="x")])
    with pytest.raises(NoResults) as err:
        butler.get("foo", DataId(k=9, tag="x"))
    message = str(err.value)
    assert "foo" in message and "'k': 9" in message and "'x'" in message
    assert message.index(str(a)) < message.index(str(b_))
    assert isinstance(err.value, RuntimeError)
    assert err.value.repositories == [str(a), str(b_)]


# -- legacy (V1) repositories ---------------------------------------------------------------

def make_v1(root: Path, mapper=WRITING, parent: Path | None = None) -> Path:
    root.mkdir(parents=True)
    if mapper:
        (root / "_mapper").write_text(mapper + "\n")
    if parent is not None:
        os.symlink(parent, root / "_parent")
    return root


def test_v1_repositories_as_inputs_parents_and_outputs(tmp_path):
    old = make_v1(tmp_path / "old")
    with open(old / "filename_v1.txt", "wb") as f:
        pickle.dump(TestObject("legacy"), f)
    child = make_v1(tmp_path / "child", mapper=None, parent=old)
    butler = Butler(inputs=str(child))
    assert butler.get("foo", v=1) == TestObject("legacy")
    assert not (child / "repositoryCfg.yaml").exists() and not (old / "repositoryCfg.yaml").exists()
    # as an old-form rw output
    rw = Butler(root=str(child))
    rw.put(TestObject("written"), "foo", v=2)
    assert (child / "filename_v2.txt").exists()
    assert not (child / "repositoryCfg.yaml").exists()


def test_v1_parent_with_mapper_args_is_recorded_as_nested_cfg(tmp_path):
    old = make_v1(tmp_path / "old", mapper="butler.test.EmptyTestMapper")
    out = tmp_path / "out"
    Butler(inputs=RepositoryArgs(root=str(old), mapperArgs={"calibRoot": "CALIB"}), outputs=str(out))
    (parent,) = RepositoryCfg.read(str(out)).parents
    assert isinstance(parent, RepositoryCfg)
    assert parent.root == str(old) and parent.mapperArgs == {"calibRoot": "CALIB"}
    again = Butler(inputs=str(out))
    mapper = again._repos.inputs()[1].repo._mapper
    assert isinstance(mapper, EmptyTestMapper)
    assert mapper.kwargs == {"calibRoot": "CALIB"}
    assert not (old / "repositoryCfg.yaml").exists()


# -- moving, symlinks, reopening ---------------------------------------------------------------

def test_relocated_repositories_still_find_their_parents(tmp_path):
    put_foo(tmp_path / "site" / "a", "in-a", k=1)
    Butler(inputs=str(tmp_path / "site" / "a"), outputs=str(tmp_path / "site" / "b"))
    shutil.move(str(tmp_path / "site"), str(tmp_path / "moved"))
    butler = Butler(inputs=str(tmp_path / "moved" / "b"))
    assert butler.get("foo", k=1) == TestObject("in-a")


def test_symlinked_output_root_records_parents_from_its_real_location(tmp_path):
    put_foo(tmp_path / "a", "in-a", k=1)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    Butler(inputs=str(tmp_path / "a"), outputs=str(tmp_path / "link"))
    raw = yaml.load((tmp_path / "real" / "repositoryCfg.yaml").read_text().replace("!RepositoryCfg_v1", ""),
                    Loader=yaml.SafeLoader)
    assert raw["_parents"] == ["../a"]
    assert Butler(inputs=str(tmp_path / "link")).get("foo", k=1) == TestObject("in-a")


def test_reopen_rules(tmp_path):
    a, b_, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    put_foo(a, 1, k=1)
    put_foo(b_, 2, k=2)
    Butler(inputs=str(a), outputs=str(out))
    Butler(inputs=str(a), outputs=str(out))  # same parents: fine
    Butler(inputs=[str(a), str(b_)], outputs=str(out))  # extended at the end: recorded
    assert RepositoryCfg.read(str(out)).parents == [str(a), str(b_)]
    with pytest.raises(ParentsMismatch):
        Butler(inputs=[str(b_), str(a)], outputs=str(out))
    with pytest.raises(RuntimeError):
        Butler(inputs=str(b_), outputs=str(out))
    with pytest.raises(RuntimeError):
        Butler(outputs=str(out))  # 'w' without its recorded parents


# -- modes -------------------------------------------------------------------------------------

def test_mode_errors(tmp_path):
    a = tmp_path / "a"
    put_foo(a, 1, k=1)
    with pytest.raises(RuntimeError):
        Butler(inputs=RepositoryArgs(root=str(a), mode="w"))
    with pytest.raises(RuntimeError):
        Butler(outputs=RepositoryArgs(root=str(tmp_path / "o"), mode="r", mapper=WRITING))
    with pytest.raises(RuntimeError):
        Butler(inputs=str(a), outputs=[RepositoryArgs(root=str(tmp_path / "o1"), mode="rw"),
                                       str(tmp_path / "o2")])
    rw_input = Butler(inputs=RepositoryArgs(root=str(a), mode="rw"))
    assert rw_input.get("foo", k=1) == TestObject(1)
    with pytest.raises(RuntimeError, match="no output"):
        rw_input.put(TestObject(2), "foo", k=2)  # inputs are never written, whatever their mode
    assert not (a / "filename_k2.txt").exists()


def test_mapper_inference(tmp_path):
    a, b_ = tmp_path / "a", tmp_path / "b"
    put_foo(a, 1, k=1)
    Butler(outputs=RepositoryArgs(root=str(b_), mapper=EmptyTestMapper))
    Butler(inputs=str(a), outputs=str(tmp_path / "o"))
    assert RepositoryCfg.read(str(tmp_path / "o")).mapper == WRITING
    with pytest.raises(RuntimeError, match="different mappers"):
        Butler(inputs=[str(a), str(b_)], outputs=str(tmp_path / "o2"))
    assert not (tmp_path / "o2" / "repositoryCfg.yaml").exists()


# -- mapper construction ----------------------------------------------------------------------

class KeywordsOnly(Mapper):
    def __init__(self, root, repositoryCfg):
        self.root = root
        self.repositoryCfg = repositoryCfg


class TakesNothing(Mapper):
    def __init__(self):
        self.made = True


def test_mapper_gets_only_the_keywords_it_accepts(tmp_path):
    b = Butler(outputs=RepositoryArgs(root=str(tmp_path / "k"), mapper=KeywordsOnly, mode="rw"))
    mapper = b._repos.outputs()[0].repo._mapper
    assert mapper.root == str(tmp_path / "k")
    assert mapper.repositoryCfg.root == str(tmp_path / "k")
    b2 = Butler(outputs=RepositoryArgs(root=str(tmp_path / "n"), mapper=TakesNothing, mode="rw"))
    assert b2._repos.outputs()[0].repo._mapper.made
    b3 = Butler(outputs=RepositoryArgs(root=str(tmp_path / "e"), mapper=EmptyTestMapper,
                                       mapperArgs={"root": "/elsewhere", "x": 1}, mode="rw"))
    mapper3 = b3._repos.outputs()[0].repo._mapper
    assert mapper3.root == "/elsewhere" and mapper3.kwargs == {"x": 1}


def test_mapper_instance_is_used_as_is(tmp_path, caplog):
    instance = MapperForTestWriting(str(tmp_path))
    b = Butler(root=str(tmp_path), mapper=instance)
    assert b._repos.outputs()[0].repo._mapper is instance
    assert "instance" in caplog.text


def make_registry(root: Path) -> None:
    conn = sqlite3.connect(root / "registry.sqlite3")
    conn.execute("CREATE TABLE raw (visit INT)")
    conn.commit()
    conn.close()


def test_parent_registry_is_the_nearest_ancestors(tmp_path):
    a, b_, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    Butler(outputs=RepositoryArgs(root=str(a), mapper=EmptyTestMapper))
    make_registry(a)
    Butler(inputs=str(a), outputs=str(b_))
    butler = Butler(inputs=str(b_), outputs=str(c))
    records = {r.cfg.root: r for r in butler._repos.all()}
    assert records[str(a)].parentRegistry is None
    registry = records[str(b_)].parentRegistry
    assert registry is not None and Path(registry.conn.execute("PRAGMA database_list").fetchone()[2]) \
        == a / "registry.sqlite3"
    assert records[str(c)].parentRegistry is not None


# -- get / put / exists / uri -----------------------------------------------------------------

def test_read_proxy_reads_on_first_use(tmp_path):
    put_foo(tmp_path, [1, 2, 3], k=1)
    reader = Butler(inputs=str(tmp_path))
    proxy = reader.get("foo", k=1, immediate=False)
    assert type(proxy) is ReadProxy
    assert proxy.__subject__ == TestObject([1, 2, 3])
    assert proxy.data == [1, 2, 3]
    assert dp.readProxy.ReadProxy is ReadProxy


def test_put_with_backup_keeps_earlier_versions(tmp_path):
    b = Butler(outputs=RepositoryArgs(root=str(tmp_path), mapper=WRITING, mode="rw"))
    for value in (1, 2, 3):
        b.put(TestObject(value), "foo", k=1, doBackup=True)
    assert b.get("foo", k=1) == TestObject(3)
    with open(tmp_path / "filename_k1.txt~1", "rb") as f:
        assert pickle.load(f) == TestObject(2)  # ~1 is the newest backup, as in Gen2
    with open(tmp_path / "filename_k1.txt~2", "rb") as f:
        assert pickle.load(f) == TestObject(1)
    assert not (tmp_path / "filename_k1.txt~3").exists()


def test_dataset_exists_and_get_uri(tmp_path):
    a, out = tmp_path / "a", tmp_path / "out"
    put_foo(a, 1, k=1)
    b = Butler(inputs=str(a), outputs=str(out))
    assert b.datasetExists("foo", k=1)
    assert not b.datasetExists("foo", k=2)
    assert not b.datasetExists("foo", {"k": 1}, write=True)
    b.put(TestObject(2), "foo", k=2)
    assert b.datasetExists("foo", {"k": 2}, write=True)
    assert b.getUri("foo", k=1) == str(a / "filename_k1.txt")
    assert b.getUri("foo", k=5, write=True) == str(out / "filename_k5.txt")


class NoWriteMapper(Mapper):
    def map_foo(self, dataId, write):
        return None


def test_put_without_location_raises(tmp_path):
    b = Butler(outputs=RepositoryArgs(root=str(tmp_path), mapper=NoWriteMapper))
    with pytest.raises(RuntimeError, match="no location"):
        b.put(1, "foo", k=1)


# -- a mapper with a registry, hooks and composites --------------------------------------------

class CatalogMapper(Mapper):
    """A small mapper over a table of (visit, ccd, filter) rows held in a pickle."""

    ROWS = [(1, 1, "g"), (1, 2, "g"), (2, 1, "r"), (2, 2, "r")]
    defaultLevel = "ccd"
    defaultSubLevels = {"visit": "ccd"}

    def __init__(self, root, **kwargs):
        from butler.storage import Storage

        self.root = root
        self.storage = Storage.makeFromURI(root)

    def _location(self, name, dataId, storage="PickleStorage", python="builtins.dict"):
        return ButlerLocation(python, None, storage, name, dataId, self, self.storage)

    def map_calexp(self, dataId, write):
        return self._location(f"calexp/v{dataId['visit']}_c{dataId['ccd']}.pickle", dataId)

    def query_calexp(self, format, dataId):
        keys = ("visit", "ccd", "filter")
        rows = [dict(zip(keys, r, strict=True)) for r in self.ROWS]
        rows = [r for r in rows if all(r.get(k, v) == v for k, v in dataId.items())]
        return sorted({tuple(r[k] for k in format) for r in rows})

    def getKeys(self, datasetType, level):
        keys = {"visit": int, "ccd": int, "filter": str}
        if level == "visit":
            del keys["ccd"]
        return keys

    def map_summary(self, dataId, write):
        return self._location(f"summary/v{dataId['visit']}.yaml", dataId, "YamlStorage")

    def bypass_nccd(self, datasetType, pythonType, location, dataId):
        return len([r for r in self.ROWS if r[0] == dataId["visit"]])

    def map_nccd(self, dataId, write):
        return self._location("unused", dataId)

    def std_calexp(self, item, dataId):
        return dict(item, standardized=True)

    def map_pair(self, dataId, write):
        from butler.location import ButlerComposite

        composite = ButlerComposite(None, None, "test_butler.Pair", dataId, self)
        composite.add("left", "calexp", setter="setLeft", getter="getLeft")
        composite.add("right", "summary")
        return composite


class Pair:
    def __init__(self, left=None, right=None):
        self.left, self.right = left, right

    def setLeft(self, value):
        self.left = value

    def getLeft(self):
        return self.left


@pytest.fixture
def catalog_butler(tmp_path):
    return Butler(outputs=RepositoryArgs(root=str(tmp_path), mapper=CatalogMapper, mode="rw"))


def test_query_metadata_get_keys_and_dataset_types(catalog_butler):
    b = catalog_butler
    assert b.queryMetadata("calexp", "visit", filter="g") == [1]
    assert b.queryMetadata("calexp", ["visit", "ccd"], {"filter": "r"}) == [(2, 1), (2, 2)]
    assert b.queryMetadata("calexp", "visit", filter="z") == []
    assert b.queryMetadata("summary", "visit") == []  # no query_summary: skipped
    assert b.getKeys("calexp") == {"visit": int, "ccd": int, "filter": str}
    assert b.getKeys("calexp", tag="nothing-has-this-tag") is None
    assert {"calexp", "summary", "nccd", "pair"} <= b.getDatasetTypes()


def test_subset_and_data_refs(catalog_butler):
    b = catalog_butler
    subset = b.subset("calexp", visit=2)
    refs = list(subset)
    assert [r.dataId["ccd"] for r in refs] == [1, 2]
    for ref in refs:
        ref.put({"ccd": ref.dataId["ccd"]})
        assert ref.datasetExists()
        assert ref.get() == {"ccd": ref.dataId["ccd"], "standardized": True}
        assert ref.getUri().endswith(f"calexp/v2_c{ref.dataId['ccd']}.pickle")
        assert ref.getButler() is b
    assert len(b.subset("calexp", visit=99)) == 0  # junk values: empty
    assert len(b.subset("calexp", visit=7, ccd=7, filter="q")) == 1  # every key given: one ref
    visit_refs = list(b.subset("calexp", level="visit", filter="g"))
    assert len(visit_refs) == 1
    assert visit_refs[0].subLevels() == {"ccd"}
    assert [r.dataId["ccd"] for r in visit_refs[0].subItems()] == [1, 2]
    ref = b.dataRef("calexp", visit=1, ccd=2)
    assert ref.dataId == {"visit": 1, "ccd": 2, "filter": "g"} or ref.dataId["ccd"] == 2
    with pytest.raises(NoResults):
        b.dataRef("calexp", visit=1)


def test_bypass_standardize_and_composites(catalog_butler):
    b = catalog_butler
    assert b.get("nccd", visit=1) == 2
    b.put({"a": 1}, "calexp", visit=1, ccd=1)
    assert b.get("calexp", visit=1, ccd=1) == {"a": 1, "standardized": True}
    b.put(Pair(left={"l": 1}, right={"r": 2}), "pair", visit=3, ccd=3)
    pair = b.get("pair", visit=3, ccd=3)
    assert isinstance(pair, Pair)
    assert pair.left == {"l": 1, "standardized": True} and pair.right == {"r": 2}
    assert b.datasetExists("pair", visit=3, ccd=3)
    assert not b.datasetExists("pair", visit=4, ccd=3)


def test_aliases(catalog_butler):
    b = catalog_butler
    b.defineAlias("@img", "calexp")
    b.defineAlias("sum", "summary")
    b.put({"x": 1}, "@img", visit=1, ccd=1)
    assert b.get("@img", visit=1, ccd=1)["x"] == 1
    for bad in ("@im", "@imgx", "a@b"):
        with pytest.raises(RuntimeError):
            b.defineAlias(bad, "calexp")
    with pytest.raises(RuntimeError):
        b.defineAlias("@other", "@img")
    with pytest.raises(RuntimeError, match="undefined alias"):
        b.get("@nope", visit=1, ccd=1)


def test_butler_pickles_with_its_aliases(catalog_butler):
    b = catalog_butler
    b.defineAlias("img", "calexp")
    b.put({"x": 5}, "calexp", visit=1, ccd=1)
    clone = pickle.loads(pickle.dumps(b))
    assert clone.datasetTypeAliasDict == {"@img": "calexp"}
    assert clone.get("@img", visit=1, ccd=1)["x"] == 5


def test_default_mapper_and_repos_view(tmp_path):
    a, out = tmp_path / "a", tmp_path / "out"
    put_foo(a, 1, k=1)
    b = Butler(inputs=str(a), outputs=str(out))
    assert b._getDefaultMapper() is MapperForTestWriting
    assert [r.cfg.root for r in b._repos.outputs()] == [str(out)]
    assert isinstance(b._repos.inputs()[0].repo._mapper, MapperForTestWriting)
    mixed = Butler(inputs=[str(a)], outputs=RepositoryArgs(root=str(tmp_path / "m"), mapper=EmptyTestMapper))
    assert mixed._getDefaultMapper() is None


def test_deprecation_switch(tmp_path):
    dp.deprecation.always_warn = True
    try:
        with pytest.warns(FutureWarning):
            Butler(inputs=[], outputs=[])
    finally:
        dp.deprecation.always_warn = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Butler(inputs=[], outputs=[])


# -- concurrency and read-only inputs ---------------------------------------------------------

def _put_many(root: str, worker: int, count: int) -> None:
    b = Butler(outputs=RepositoryArgs(root=root, mode="rw"))
    for i in range(count):
        b.put(TestObject((worker, i)), "foo", worker=worker, i=i)
        b.put(TestObject(("shared", i)), "foo", shared=i)


def test_four_processes_put_into_one_output_and_lose_nothing(tmp_path):
    base, out = tmp_path / "base", tmp_path / "out"
    put_foo(base, "base", k=0)
    before = tree_fingerprint(base)
    Butler(inputs=str(base), outputs=RepositoryArgs(root=str(out), mode="rw"))
    assert run_together(_put_many, [(str(out), w, 25) for w in range(4)]) == [0, 0, 0, 0]
    b = Butler(outputs=RepositoryArgs(root=str(out), mode="rw"))
    for w in range(4):
        for i in range(25):
            assert b.get("foo", worker=w, i=i) == TestObject((w, i))
    for i in range(25):
        assert b.get("foo", shared=i) == TestObject(("shared", i))
    names = sorted(n for n in os.listdir(out) if not n.startswith("provenance.sqlite3"))
    assert len(names) == 4 * 25 + 25 + 1  # data files + repositoryCfg.yaml, nothing stray
    assert tree_fingerprint(base) == before


def test_unknown_dataset_type_names_the_data_id_and_repository(tmp_path):
    b = Butler(root=str(tmp_path), mapper=MapperForTestWriting)
    with pytest.raises(dp.MapperError, match=r"'nosuch'.*'visit': 3.*" + str(tmp_path)):
        b.get("nosuch", visit=3)
    with pytest.raises(dp.MapperError, match=r"'nosuch'.*'visit': 3.*" + str(tmp_path)):
        b.put(TestObject(1), "nosuch", visit=3)


def test_one_repository_cannot_be_both_input_and_output(tmp_path):
    put_foo(tmp_path / "a", 1, k=1)
    Butler(inputs=str(tmp_path / "a"), outputs=str(tmp_path / "x"))
    with pytest.raises(RuntimeError, match="both an input and an output"):
        Butler(inputs=str(tmp_path / "x"), outputs=str(tmp_path / "x"))
    with pytest.raises(ParentsMismatch) as err:
        Butler(inputs=str(tmp_path / "x"), outputs=str(tmp_path / "y"))
        Butler(inputs=str(tmp_path / "a"), outputs=str(tmp_path / "y"))
    assert "RepositoryCfg(" not in str(err.value)


def test_unwritable_output_names_the_repository_file(tmp_path):
    from butler.safeio import atomic_write

    locked = tmp_path / "locked"
    locked.mkdir()
    blocker = locked / "sub"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(OSError) as err:
        with atomic_write(str(blocker / "repositoryCfg.yaml")):
            pass
    assert "repositoryCfg.yaml" in str(err.value) and ".tmp" not in str(err.value)


def test_unpickled_butler_opens_the_same_repositories_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put_foo("rel", "x", k=1)
    b = Butler(inputs="rel")
    data = pickle.dumps(b)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    clone = pickle.loads(data)
    assert clone.get("foo", k=1) == TestObject("x")
    old_form = pickle.loads(pickle.dumps(Butler(root=str(tmp_path / "rel"))))
    assert old_form._repos.outputs()[0].mode == "rw"


def test_public_view_of_repositories(tmp_path):
    a, out = tmp_path / "a", tmp_path / "out"
    put_foo(a, 1, k=1)
    b = Butler(inputs=RepositoryArgs(root=str(a), tags="x"), outputs=RepositoryArgs(root=str(out), mode="rw"))
    assert [r.root for r in b.repositories()] == [str(out), str(a)]
    assert [r.root for r in b.repositories(tag="x")] == [str(a)]
    assert [r.root for r in b.outputRepositories()] == [str(out)]
    assert isinstance(b.repositories()[1].mapper, MapperForTestWriting)
