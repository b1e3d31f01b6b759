"""The package surface (gen2-contract section 0) and the small objects of section 1."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest

import butler
from butler import DataId, doImport, iterify, sequencify

CONTRACT_NAMES = (
    "Butler ButlerLocation ButlerComposite ButlerSubset ButlerDataRef DataId Policy Mapper "
    "RepositoryArgs RepositoryCfg Storage StorageInterface PosixStorage Registry SqliteRegistry "
    "PosixRegistry FsScanner LogicalLocation ReadProxy NoResults ParentsMismatch sequencify iterify "
    "doImport").split()


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_every_contract_name_is_at_the_top_level(name):
    value = getattr(butler, name)
    assert value is not None
    assert name in dir(butler)


def test_submodules_are_attributes_of_the_package():
    assert butler.readProxy.ReadProxy is butler.ReadProxy
    for name in ("FileForWriteOnceCompareSame", "SafeLockedFileForRead", "SafeLockedFileForWrite",
                 "safeMakeDir"):
        assert callable(getattr(butler.safeFileIo, name))
    assert butler.deprecation.always_warn is False
    with pytest.raises(AttributeError):
        butler.noSuchThing  # noqa: B018


def test_importable_strings_resolve_including_legacy_names():
    assert doImport("butler.Mapper") is butler.Mapper
    assert doImport("butler.test.EmptyTestMapper") is butler.test.EmptyTestMapper
    assert doImport("butler.test.MapperForTestWriting") is butler.test.MapperForTestWriting
    assert doImport("lsst.daf.persistence.Butler") is butler.Butler
    assert doImport("lsst.daf.persistence.policy.Policy") is butler.Policy
    assert doImport("lsst.obs.lsst.LsstCamMapper").__name__ == "LsstCamMapper"
    with pytest.raises(ImportError, match="no.such.Thing"):
        doImport("no.such.Thing")
    with pytest.raises(TypeError):
        doImport(3)


def test_errors_subclass_the_builtins_the_contract_names():
    assert issubclass(butler.NoResults, RuntimeError)
    assert issubclass(butler.ParentsMismatch, RuntimeError)
    assert issubclass(butler.UnsafePathError, ValueError)
    assert issubclass(butler.DatasetNotFoundError, FileNotFoundError)
    err = butler.NoResults("nothing", "calexp", DataId({"visit": 1}, tag="v1"), ["/a", "/b"])
    assert "calexp" in str(err) and "'visit': 1" in str(err) and "v1" in str(err) and "/a, /b" in str(err)


def test_import_is_cheap_and_lazy():
    code = ("import sys, butler; heavy = [m for m in ('astropy', 'numpy', 'sqlite3', 'mappers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- DataId ------------------------------------------------------------------------------------

def test_data_id_is_a_mapping_equal_to_its_dict():
    d = DataId({"visit": 1}, ccd=2)
    assert d == {"visit": 1, "ccd": 2}
    assert dict(d) == {"visit": 1, "ccd": 2}
    d["filter"] = "g"
    del d["ccd"]
    assert sorted(d) == ["filter", "visit"] and len(d) == 2 and "visit" in d
    assert d.tag == set()


@pytest.mark.parametrize("tag, expected", [
    ("v1", {"v1"}), (["a", "b"], {"a", "b"}), (("a",), {"a"}), ({"x", "y"}, {"x", "y"}),
    (7, {7}), (None, set()),
])
def test_data_id_tags_are_always_a_set(tag, expected):
    assert DataId({}, tag=tag).tag == expected


def test_copying_a_data_id_keeps_and_adds_tags():
    a = DataId({"visit": 1}, tag="v1")
    b = DataId(a, tag="v2")
    assert b.tag == {"v1", "v2"} and b == {"visit": 1}
    assert a.tag == {"v1"}
    c = a.copy()
    c["visit"] = 2
    assert a["visit"] == 1 and c.tag == {"v1"}
    assert copy.deepcopy(a).tag == {"v1"}
    assert pickle.loads(pickle.dumps(a)).tag == {"v1"}


# -- sequencify / iterify ----------------------------------------------------------------------

def test_sequencify():
    assert sequencify("abc") == ("abc",)
    assert sequencify(3) == (3,)
    for seq in ([1, 2], (1, 2), {1, 2}):
        out = sequencify(seq)
        assert out is seq
    assert sequencify({"b": 1, "a": 2}) == ("a", "b")


def test_iterify():
    assert iterify(3) == [3]
    assert iterify("abc") == ["abc"]
    values = (1, 2)
    assert iterify(values) is values


def test_every_package_error_is_a_public_name():
    import butler.errors

    classes = {name for name in butler.errors.__all__
               if isinstance(getattr(butler.errors, name), type)
               and issubclass(getattr(butler.errors, name), butler.errors.ButlerError)}
    missing = sorted(classes - set(butler.__all__))
    assert not missing, f"errors not exported by the package: {missing}"
    for name in classes:
        assert getattr(butler, name) is getattr(butler.errors, name)
