"""Reading a repository runs no code, and bad files or objects give package errors.

Gadget pickles, YAML bombs, corrupt and truncated files are planted in real
repositories (tmp_path) and read through `Butler.get` and ``butler get``.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import fractions
import functools
import gzip
import os
import pickle
import subprocess
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.table import Table
from astropy.time import Time

from butler import Butler, ButlerLocation, RepositoryArgs
from butler.errors import (
    ButlerError,
    DatasetNotFoundError,
    FormatterError,
    UnsafePickleError,
    UnsafeYamlError,
    UnwritableObjectError,
)
from butler.formatters import get_formatter
from butler.storage.posix import PosixStorage
from butler.test import MapperForTestWriting, TestObject
from butler.utils import TRUSTED_MAPPERS_ENV, resolve_type_name

from conftest import assert_user_error, run_cli

# -- a repository with one dataset type per format ----------------------------------------------


class FormatsMapper(MapperForTestWriting):
    """``foo`` (pickle, inherited), ``cat`` (FITS catalog), ``img`` (FITS image), ``meta`` (YAML)."""

    def _at(self, storageName: str, pythonType: str, suffix: str, dataId, write: bool):
        name = f"{storageName}-{dataId['visit']}{suffix}"
        if not write and not self.storage.exists(name):
            return None
        return ButlerLocation(pythonType, None, storageName, name, dataId, self, self.storage)

    def map_cat(self, dataId, write):
        return self._at("FitsCatalogStorage", "lsst.afw.table.SourceCatalog", ".fits", dataId, write)

    def map_img(self, dataId, write):
        return self._at("FitsStorage", "lsst.afw.image.ExposureF", ".fits", dataId, write)

    def map_meta(self, dataId, write):
        return self._at("YamlStorage", "lsst.daf.base.PropertySet", ".yaml", dataId, write)


class Point:
    """A class of the program's own (this test module): its pickles round-trip."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (other.x, other.y) == (self.x, self.y)


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    Butler(outputs=RepositoryArgs(root=str(root), mapper=FormatsMapper))
    return root


def _butler(root: Path) -> Butler:
    return Butler(outputs=RepositoryArgs(root=str(root), mapper=FormatsMapper, mode="rw"))


def _plant(root: Path, datasetType: str, data: bytes, visit: int = 1) -> Path:
    """Write ``data`` as the file of a dataset, as an attacker (or a broken disk) would."""
    path = root / {"foo": f"filename_visit{visit}.txt", "cat": f"FitsCatalogStorage-{visit}.fits",
                   "img": f"FitsStorage-{visit}.fits", "meta": f"YamlStorage-{visit}.yaml"}[datasetType]
    path.write_bytes(data)
    return path


# -- pickle gadgets --------------------------------------------------------------------------------


class _Reduces:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _gadgets(marker: Path) -> dict[str, bytes]:
    touch = f"touch {marker}"
    return {
        "os.system": pickle.dumps(_Reduces(os.system, touch)),
        "subprocess.Popen": pickle.dumps(_Reduces(subprocess.Popen, ["touch", str(marker)])),
        "builtins.eval": pickle.dumps(_Reduces(eval, f"open({str(marker)!r}, 'w')")),
        "builtins.exec": pickle.dumps(_Reduces(exec, f"open({str(marker)!r}, 'w')")),
        "functools.partial": pickle.dumps(_Reduces(functools.partial(os.system, touch))),
        "getattr": b"cbuiltins\ngetattr\n(cos\nsystem\nS'x'\ntR.",
        "protocol 0 os.system": f"cos\nsystem\n(S'{touch}'\ntR.".encode(),
        "numpy.memmap": pickle.dumps(_Reduces(np.memmap, str(marker), np.uint8, "w+", 0, (4,))),
        "numpy.load": pickle.dumps(_Reduces(np.load, str(marker))),
        "butler.Butler": pickle.dumps(_Reduces(Butler, None, str(marker))),
        "astropy Table.read": pickle.dumps(_Reduces(Table.read, str(marker))),
    }


@pytest.mark.parametrize("gadget", list(_gadgets(Path("m"))))
def test_pickle_gadgets_are_refused_before_anything_runs(repo, tmp_path, gadget):
    marker = tmp_path / "marker"
    planted = _plant(repo, "foo", _gadgets(marker)[gadget])
    with pytest.raises(UnsafePickleError) as info:
        _butler(repo).get("foo", visit=1)
    message = str(info.value)
    assert str(planted) in message and "datasetType: foo" in message
    assert TRUSTED_MAPPERS_ENV in message
    assert isinstance(info.value, FormatterError)
    assert not marker.exists()


def test_refusal_names_the_module_and_name(repo, tmp_path):
    _plant(repo, "foo", _gadgets(tmp_path / "marker")["subprocess.Popen"])
    with pytest.raises(UnsafePickleError, match=r"subprocess\.Popen"):
        _butler(repo).get("foo", visit=1)


class _Local:
    pass


@pytest.mark.parametrize("obj", [
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i4"), ("b", "f8")]),
    np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
    np.float64(2.5),
    {"a": (1, 2.5, 1j), "b": [None, "x", b"y", bytearray(b"z")], "c": {3, 4}, "d": frozenset({5}),
     "e": slice(1, 5, 2), "f": range(4)},
    OrderedDict(a=1), Counter("abca"), deque([1, 2]), defaultdict(list, {"k": [1]}),
    datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), datetime.timedelta(days=2),
    decimal.Decimal("1.25"), fractions.Fraction(1, 3), uuid.UUID(int=7),
    TestObject({"x": [1, 2]}),
    Point(1, 2),
], ids=lambda obj: type(obj).__name__)
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_legitimate_pickles_round_trip(repo, obj, protocol):
    _plant(repo, "foo", pickle.dumps(obj, protocol=protocol))
    result = _butler(repo).get("foo", visit=1)
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(result, obj)
        assert result.dtype == obj.dtype
    else:
        assert result == obj and type(result) is type(obj)


def test_astropy_objects_round_trip(repo):
    butler = _butler(repo)
    ccd = CCDData(np.ones((3, 4)), unit="electron", mask=np.zeros((3, 4), bool),
                  uncertainty=VarianceUncertainty(np.full((3, 4), 2.0)), meta={"FILTER": "r"})
    objects = {1: Table({"a": [1, 2], "b": ["x", "y"]}), 2: Time("2020-01-01T00:00:00"),
               3: [3.5, 1.0] * u.m / u.s, 4: ccd, 5: fits.Header({"KEY": 5})}
    for visit, obj in objects.items():
        butler.put(obj, "foo", visit=visit)
    assert list(butler.get("foo", visit=1)["b"]) == ["x", "y"]
    assert butler.get("foo", visit=2) == objects[2]
    assert (butler.get("foo", visit=3) == objects[3]).all() and butler.get("foo", visit=3).unit == u.m / u.s
    read = butler.get("foo", visit=4)
    np.testing.assert_array_equal(read.uncertainty.array, 2.0)
    assert read.unit == u.electron and read.meta["FILTER"] == "r"
    assert butler.get("foo", visit=5)["KEY"] == 5


def test_a_class_not_yet_imported_or_from_a_library_is_refused_until_trusted(repo, monkeypatch):
    _plant(repo, "foo", pickle.dumps(argparse.Namespace(a=1)))
    with pytest.raises(UnsafePickleError, match=r"argparse\.Namespace"):
        _butler(repo).get("foo", visit=1)
    monkeypatch.setenv(TRUSTED_MAPPERS_ENV, "argparse")
    assert _butler(repo).get("foo", visit=1) == argparse.Namespace(a=1)


def test_a_local_class_of_the_program_round_trips(repo):
    _plant(repo, "foo", pickle.dumps([_Local]))
    assert _butler(repo).get("foo", visit=1) == [_Local]


def test_corrupt_and_truncated_pickles_are_formatter_errors(repo):
    good = pickle.dumps({"a": list(range(100))})
    for data in (good[: len(good) // 2], b"not a pickle at all", b"", b"\x80\x05\x95"):
        planted = _plant(repo, "foo", data)
        with pytest.raises(FormatterError) as info:
            _butler(repo).get("foo", visit=1)
        assert str(planted) in str(info.value) and "dataId: {'visit': 1}" in str(info.value)
        assert str(repo) in str(info.value)


# -- YAML ---------------------------------------------------------------------------------------------

_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"]
                  + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                     f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                     f"*{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]) + "\n"


@pytest.mark.parametrize("text, words", [
    (_BOMB, ["nodes"]),
    ("a: " + "x" * (1 << 20) + "\n", ["larger than"]),
    ("[" * 200 + "]" * 200 + "\n", ["nested deeper"]),
    ("!!python/object/apply:os.system ['true']\n", ["python/object/apply"]),
    ("!RepositoryCfg_v1\n_root: null\n_mapper: os.system\n", ["RepositoryCfg_v1"]),
    ("!!python/name:os.system\n", ["python/name"]),
])
def test_yaml_datasets_are_bounded_and_construct_nothing(repo, text, words):
    planted = _plant(repo, "meta", text.encode())
    with pytest.raises(UnsafeYamlError) as info:
        _butler(repo).get("meta", visit=1)
    for word in [str(planted), "datasetType: meta", *words]:
        assert word in str(info.value)


def test_yaml_syntax_error_is_a_formatter_error(repo):
    planted = _plant(repo, "meta", b"a: [1, 2\nb: {")
    with pytest.raises(FormatterError, match=str(planted)):
        _butler(repo).get("meta", visit=1)


def test_yaml_legacy_property_set_still_reads(repo):
    _plant(repo, "meta", b"--- !<lsst.daf.base.PropertySet>\n- [a, int, 1, '']\n- [b, string, x, '']\n")
    assert _butler(repo).get("meta", visit=1) == {"a": 1, "b": "x"}


# -- writes: type errors ------------------------------------------------------------------------------


def _write_temporaries(root: Path) -> list[str]:
    return [name for name in os.listdir(root) if name.endswith(".tmp") or name.startswith(".")]


@pytest.mark.parametrize("datasetType, obj, words", [
    ("cat", "a string", ["FitsCatalogStorage", "builtins.str", "Tables"]),
    ("cat", CCDData(np.ones((2, 2)), unit="adu"), ["FitsCatalogStorage", "CCDData"]),
    ("img", "a string", ["FitsStorage", "builtins.str", "CCDData or HDULists"]),
    ("img", {"a": 1}, ["FitsStorage", "builtins.dict"]),
    ("meta", CCDData(np.ones((2, 2)), unit="adu"), ["YamlStorage", "CCDData", "plain data"]),
    ("meta", TestObject(1), ["YamlStorage", "butler.test.TestObject"]),
    ("foo", lambda: None, ["PickleStorage", "function"]),
], ids=lambda v: v if isinstance(v, str) and len(v) < 6 else None)
def test_unwritable_objects_are_package_errors_and_nothing_is_written(repo, datasetType, obj, words):
    before = sorted(os.listdir(repo))
    with pytest.raises(UnwritableObjectError) as info:
        _butler(repo).put(obj, datasetType, visit=1)
    message = str(info.value)
    for word in [*words, f"datasetType: {datasetType}", "dataId: {'visit': 1}", str(repo)]:
        assert word in message
    assert isinstance(info.value, TypeError)
    assert sorted(os.listdir(repo)) == before


def test_a_failed_put_keeps_the_old_file(repo):
    butler = _butler(repo)
    butler.put(Table({"a": [1, 2]}), "cat", visit=1)
    with pytest.raises(UnwritableObjectError):
        butler.put("not a table", "cat", visit=1)
    assert list(butler.get("cat", visit=1)["a"]) == [1, 2]
    assert not _write_temporaries(repo)


# -- reads: corrupt files -----------------------------------------------------------------------------


def _fits_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": np.arange(2000)}))]).writeto(path)
    return path.read_bytes()


@pytest.mark.parametrize("datasetType", ["cat", "img"])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "truncated gzip", "empty", "pickle"])
def test_corrupt_fits_files_are_formatter_errors_naming_them(repo, tmp_path, datasetType, damage):
    good = _fits_bytes(tmp_path)
    data = {"garbage": b"SIMPLE  = nonsense" * 300, "truncated": good[: len(good) // 2 + 7],
            "truncated gzip": gzip.compress(good)[:3000], "empty": b"",
            "pickle": pickle.dumps({"a": 1})}[damage]
    planted = _plant(repo, datasetType, data)
    with pytest.raises(FormatterError) as info:
        _butler(repo).get(datasetType, visit=1)
    message = str(info.value)
    assert str(planted) in message and f"datasetType: {datasetType}" in message


def test_a_missing_file_is_still_a_miss(repo):
    storage = PosixStorage(str(repo), create=False)
    for name in ("PickleStorage", "FitsStorage", "FitsCatalogStorage", "YamlStorage", "ConfigStorage"):
        with pytest.raises(DatasetNotFoundError, match="nothing.here"):
            get_formatter(name).readFrom(storage, "nothing.here")


# -- the command line ---------------------------------------------------------------------------------


def _cli_repo(tmp_path: Path) -> Path:
    root = tmp_path / "cli"
    Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting))
    return root


@pytest.mark.parametrize("data, words", [
    (pickle.dumps({"a": 1})[:-3], ["cannot read", "PickleStorage"]),
    (pickle.dumps(_Reduces(os.system, "true")), ["refusing to unpickle", "system"]),
])
def test_cli_get_of_a_bad_pickle_prints_one_line(tmp_path, data, words):
    root = _cli_repo(tmp_path)
    (root / "filename_visit1.txt").write_bytes(data)
    assert_user_error(run_cli("get", str(root), "foo", "visit=1"), "filename_visit1.txt", *words)


def test_cli_get_of_a_corrupt_fits_prints_one_line(tmp_path):
    root = tmp_path / "fits"
    Butler(outputs=RepositoryArgs(root=str(root), mapper=FormatsMapper))
    (root / "FitsStorage-1.fits").write_bytes(b"not fits" * 500)
    mapper = f"{FormatsMapper.__module__}.{FormatsMapper.__qualname__}"
    assert_user_error(run_cli("get", str(root), "img", "visit=1", "--mapper", mapper),
                      "FitsStorage-1.fits", "cannot read")


# -- trusted type names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("astropy.nddata.CCDData", CCDData), ("numpy.ndarray", np.ndarray), ("dict", dict),
    ("butler.test.TestObject", TestObject), (f"{Point.__module__}.Point", Point),
    ("lsst.afw.image.ExposureF", None), ("os.system", None), ("builtins.eval", None),
    ("subprocess.Popen", None), ("numpy.load", None), ("numpy.memmap", None), ("butler.Butler", None),
    ("astropy.table.Table.read", None), ("argparse.Namespace", None),
])
def test_type_names_resolve_only_to_trusted_classes(name, expected):
    assert resolve_type_name(name) is expected


def test_an_untrusted_type_name_is_not_imported(tmp_path, monkeypatch):
    (tmp_path / "sr_side_effect.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
                                                "class Config:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_type_name("sr_side_effect.Config") is None
    assert not (tmp_path / "imported").exists()


def test_package_errors_are_butler_errors():
    assert issubclass(UnsafePickleError, ButlerError)
