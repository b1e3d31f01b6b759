"""Data-ID values are checked and converted per key before any path is built (issue #10 items 5, 8;
issue #11: a put the mapper cannot complete names the missing keys).

The kind of a key comes from its template field (``%(visit)d`` is an integer)
or from the declared type of its registry column (lsstCam's ``seqNum INT``,
``expTime DOUBLE``). Exact conversions pass; lossy ones, values of the wrong
kind and values that would make an unsafe or impossible path are package
errors naming the key, the value, the dataset type, the data ID and the
repository.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

import butler
from butler.dataId import DataId, check_data_id, kind_of_column
from butler.errors import (
    ButlerError,
    DataIdValueError,
    IncompleteDataIdError,
    UnsafeDataIdValueError,
    UnsafePathError,
)
from butler.test import MapperForTestWriting, TestObject


@pytest.fixture
def obs_test_root(shared_data: Path) -> Path:
    return shared_data / "obs_test" / "data" / "input"


@pytest.fixture
def obs_test(obs_test_root: Path, tmp_path: Path) -> butler.Butler:
    """obs_test read-only as input, a temporary output."""
    return butler.Butler(inputs=str(obs_test_root), outputs=str(tmp_path / "out"))


@pytest.fixture
def lsst_cam(shared_data: Path, tmp_path: Path) -> butler.Butler:
    return butler.Butler(inputs=str(shared_data / "obs_lsst" / "data" / "input" / "lsstCam"),
                         outputs=str(tmp_path / "out"))


def image(value: float = 0.0) -> CCDData:
    return CCDData(np.full((2, 3), value), unit="adu")


def calexp_files(tmp_path: Path) -> list[str]:
    directory = tmp_path / "out" / "calexp"
    return sorted(os.listdir(directory)) if directory.is_dir() else []


# -- item 1: lossy or wrong-kind values are refused -----------------------------------------------

LOSSY_OR_WRONG = [1.9, 1.5, True, False, np.bool_(True), None, b"1", [1], {"a": 1}, set(), math.nan, math.inf,
                  -math.inf, "1.0", "0x10", "1e3", "", " 1", "one", "\udcff", 2**63, -2**63 - 1, 2**64,
                  np.float64(1.5)]


@pytest.mark.parametrize("value", LOSSY_OR_WRONG, ids=repr)
def test_put_refuses_a_lossy_or_wrong_kind_int_value(obs_test, tmp_path, value):
    obs_test.put(image(1.0), "calexp", visit=1, filter="g")
    with pytest.raises(DataIdValueError) as info:
        obs_test.put(image(2.0), "calexp", visit=value, filter="g")
    message = str(info.value)
    assert "'visit'" in message and "calexp" in message and str(tmp_path / "out") in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, ButlerError)
    assert calexp_files(tmp_path) == ["calexp_v1_fg.fits"]
    assert fits.getdata(tmp_path / "out" / "calexp" / "calexp_v1_fg.fits")[0, 0] == 1.0


@pytest.mark.parametrize("value", [1.5, True, None, math.nan, "..", b"x", [1]], ids=repr)
def test_reads_and_queries_refuse_the_value_instead_of_answering(obs_test, value):
    with pytest.raises(DataIdValueError, match="'visit'"):
        obs_test.datasetExists("raw", visit=value)
    with pytest.raises(DataIdValueError, match="'visit'"):
        obs_test.get("raw", visit=value)
    with pytest.raises(DataIdValueError, match="'visit'"):
        obs_test.getUri("raw", visit=value)
    with pytest.raises(DataIdValueError, match="'visit'"):
        obs_test.queryMetadata("raw", "filter", visit=value)
    with pytest.raises(DataIdValueError, match="'visit'"):
        len(obs_test.subset("raw", visit=value))


def test_too_big_an_integer_is_a_package_error_not_overflow(obs_test):
    for value in (2**63, 10**24, -2**63 - 1):
        with pytest.raises(DataIdValueError, match="64-bit"):
            obs_test.queryMetadata("raw", "filter", visit=value)
        with pytest.raises(DataIdValueError, match="64-bit"):
            obs_test.datasetExists("raw", visit=value)
    assert obs_test.queryMetadata("raw", "filter", visit=2**63 - 1) == []


@pytest.mark.parametrize("value,expected", [("12", 12), (np.int64(3), 3), (2.0, 2), (np.float32(7.0), 7),
                                            ("-1", -1), (np.uint8(5), 5)], ids=repr)
def test_exact_conversions_are_accepted(obs_test, tmp_path, value, expected):
    obs_test.put(image(), "calexp", visit=value, filter="g")
    assert calexp_files(tmp_path) == [f"calexp_v{expected}_fg.fits"]
    assert obs_test.datasetExists("calexp", write=True, visit=expected, filter="g")


def test_an_integer_fills_a_text_key(obs_test, tmp_path):
    obs_test.put(image(), "calexp", visit=1, filter=7)
    assert calexp_files(tmp_path) == ["calexp_v1_f7.fits"]


@pytest.mark.parametrize("value", [None, 1.5, b"g", ["g"], math.nan], ids=repr)
def test_a_text_key_refuses_values_that_are_not_text(obs_test, tmp_path, value):
    with pytest.raises(DataIdValueError, match="'filter'"):
        obs_test.put(image(), "calexp", visit=1, filter=value)
    assert calexp_files(tmp_path) == []


@pytest.mark.parametrize("value", ["a/b", "..", "x\x00y", "\n", "a\tb", "\x7f", "\udcff", "", "x" * 300],
                         ids=repr)
def test_values_making_an_unsafe_or_impossible_path_are_refused(obs_test, tmp_path, value):
    with pytest.raises(UnsafeDataIdValueError, match="'filter'") as info:
        obs_test.put(image(), "calexp", visit=1, filter=value)
    assert isinstance(info.value, UnsafePathError) and isinstance(info.value, DataIdValueError)
    with pytest.raises(UnsafePathError):
        obs_test.getUri("calexp", write=True, visit=1, filter=value)
    assert calexp_files(tmp_path) == []


def test_a_filled_path_over_the_name_limit_is_refused(obs_test, tmp_path):
    value = "x" * 250  # each value fits a name, the file name it makes does not
    with pytest.raises(UnsafeDataIdValueError, match="file-name limits"):
        obs_test.put(image(), "calexp", visit=1, filter=value)
    assert calexp_files(tmp_path) == []


def test_registry_column_types_check_keys_outside_the_template(lsst_cam):
    complete = {"visit": 3019031900001, "filter": "i", "raftName": "R10", "detectorName": "S02",
                "detector": 29}
    lsst_cam.put(image(), "calexp", **complete, seqNum=1)
    for value in (1.9, True, "x"):
        with pytest.raises(DataIdValueError, match="'seqNum'") as info:
            lsst_cam.put(image(), "calexp", **complete, seqNum=value)
        assert "calexp" in str(info.value)
    with pytest.raises(DataIdValueError, match="'expTime'"):
        lsst_cam.queryMetadata("raw", "expId", expTime="fast")
    with pytest.raises(DataIdValueError, match="'expTime'"):
        lsst_cam.queryMetadata("raw", "expId", expTime=math.inf)


def test_a_mapper_validate_never_sees_a_bad_value(obs_test_root):
    mapper = butler.Butler(inputs=str(obs_test_root)).repositories()[0].mapper
    with pytest.raises(DataIdValueError, match="'visit'"):
        mapper.map("raw", {"visit": ".."})
    with pytest.raises(DataIdValueError, match="'visit'"):
        mapper.queryMetadata("raw", ["filter"], {"visit": ".."})
    location = mapper.map("raw", DataId({"visit": "3"}, tag="t"))
    assert location.getLocations() == ["raw/raw_v3_fr.fits.gz"]


def test_toy_writing_mapper_refuses_values_that_fill_its_file_name_badly(tmp_path):
    repo = butler.Butler(root=str(tmp_path), mapper=MapperForTestWriting)
    for value in (None, 1.5, "../x", [1]):
        with pytest.raises(DataIdValueError, match="'x'"):
            repo.put(TestObject(1), "foo", x=value)
    repo.put(TestObject(1), "foo", x=np.int64(2))
    assert (tmp_path / "filename_x2.txt").is_file()


def test_check_data_id_converts_and_keeps_tags():
    dataId = DataId({"visit": "12", "filter": "g", "other": [1]}, tag="t")
    checked = check_data_id(dataId, {"visit": int, "filter": str, "exp": float}, ["visit", "filter"])
    assert checked == {"visit": 12, "filter": "g", "other": [1]} and checked.tag == {"t"}
    assert dataId["visit"] == "12"
    same = {"visit": 1}
    assert check_data_id(same, {"visit": int}) is same
    assert check_data_id({"exp": "1e3"}, {"exp": float}) == {"exp": 1000.0}
    with pytest.raises(DataIdValueError):
        check_data_id({"exp": 2**60 + 1}, {"exp": float})


@pytest.mark.parametrize("declared,kind", [("INTEGER", int), ("int", int), ("TEXT", str), ("varchar(10)", str),
                                           ("DOUBLE", float), ("REAL", float), ("FLOAT", float),
                                           ("NUMERIC", None), ("", None), (None, None)])
def test_kind_of_column_follows_sqlite_affinity(declared, kind):
    assert kind_of_column(declared) is kind


# -- item 2: a put the mapper cannot complete names the missing keys -------------------------------

def test_put_that_cannot_be_completed_names_the_missing_keys(obs_test, tmp_path):
    with pytest.raises(IncompleteDataIdError) as info:
        obs_test.put(TestObject(1), "transmission_filter", visit=1)
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "['filter']" in message and "transmission_filter" in message and str(tmp_path / "out") in message
    with pytest.raises(RuntimeError, match=r"No unique lookup for \['filter'\]"):
        obs_test.put(image(), "calexp", visit=99)
    assert calexp_files(tmp_path) == []


def test_a_data_id_is_a_dict_that_keeps_its_tags_through_copies_and_pickles():
    import copy
    import pickle

    from butler.dataId import DataId

    dataId = DataId({"visit": 1}, tag="new", ccd=2)
    assert isinstance(dataId, dict) and dict(dataId) == {"visit": 1, "ccd": 2} and dataId == {"visit": 1, "ccd": 2}
    for other in (dataId.copy(), copy.copy(dataId), copy.deepcopy(dataId), pickle.loads(pickle.dumps(dataId))):
        assert type(other) is DataId and other == dataId and other.tag == {"new"} and other is not dataId

    # DataId({"visit": 3}, tag="old") as the earlier DataId (a mapping over an inner dict) pickled it
    earlier = pickle.loads(b"\x80\x04\x959\x00\x00\x00\x00\x00\x00\x00\x8c\rbutler.dataId\x94\x8c\x06DataId"
                           b"\x94\x93\x94)\x81\x94}\x94\x8c\x05visit\x94K\x03s\x8f\x94(\x8c\x03old\x94\x90\x86\x94b.")
    assert type(earlier) is DataId and earlier == {"visit": 3} and earlier.tag == {"old"}
