"""Issue #13, the Python API: a butler a new user can trust.

A mistyped data-ID key, an object of the wrong type, a read of a write-only
output and a mistyped root each fail at once with a message that says what is
wrong, instead of answering something else. The obs_test input repository is
read-only; everything is written into a temporary output.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import Table

from butler import (
    Butler,
    DataIdValueError,
    NoResults,
    RepositoryError,
    UnknownDataIdKeyError,
    UnwritableObjectError,
)
from butler.location import ButlerComposite, ButlerLocation
from butler.mapper import Mapper
from butler.storage import Storage
from butler.test import MapperForTestWriting, TestObject

from conftest import tree_fingerprint

pytestmark = pytest.mark.needs_shared_data


@pytest.fixture
def rw_butler(obs_test_input, tmp_path) -> Butler:
    """obs_test's input read through a 'rw' output in a temporary directory."""
    return Butler(inputs=obs_test_input, outputs={"root": str(tmp_path / "out"), "mode": "rw"})


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


# -- 1. unknown data-ID keys -------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda b: b.subset("raw", vist=1),
    lambda b: b.subset("raw", visit=1, filter="g", vist=2),  # complete at its level: no registry query
    lambda b: b.dataRef("raw", vist=1),
    lambda b: b.datasetExists("raw", vist=1),
    lambda b: b.get("raw", vist=1),
    lambda b: b.getUri("raw", vist=1),
    lambda b: b.getUri("src", write=True, vist=1),
    lambda b: b.queryMetadata("raw", "filter", vist=1),
    lambda b: b.put(Table({"a": [1]}), "src", vist=1),
], ids=["subset", "subset-complete", "dataRef", "datasetExists", "get", "getUri", "getUri-write",
        "queryMetadata", "put"])
def test_a_mistyped_key_is_an_error_with_a_hint(rw_butler, call):
    # before: subset gave all three raws, datasetExists False, get a NoResults about a lookup
    with pytest.raises(UnknownDataIdKeyError) as info:
        call(rw_butler)
    assert isinstance(info.value, DataIdValueError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'vist' (did you mean 'visit'?)" in message
    assert "datasetType: raw" in message or "datasetType: src" in message
    assert "'vist':" in message and rw_butler.outputRepositories()[0].root in message
    assert _files(rw_butler.outputRepositories()[0].root) == ["repositoryCfg.yaml"]


def test_several_unknown_keys_are_all_named(rw_butler):
    with pytest.raises(UnknownDataIdKeyError, match=r"keys 'fliter' \(did you mean 'filter'.*\), 'zzz': no template"):
        rw_butler.get("raw", visit=1, fliter="g", zzz=3)


def test_keys_the_camera_knows_but_the_dataset_type_does_not_use_stay_allowed(rw_butler):
    # tract is a coadd template field, expTime a registry column, taiObs the raw registry's time
    assert rw_butler.datasetExists("raw", visit=1, tract=0)
    assert rw_butler.queryMetadata("raw", "visit", expTime=0.0) == [1, 2, 3]
    assert isinstance(rw_butler.get("raw", visit=1, taiObs="1999-01-17T04:52:34.895201920"), CCDData)
    assert len(rw_butler.subset("raw", visit=1, filter="g", tract=0)) == 1


def test_a_mapper_that_declares_no_keys_is_not_checked(tmp_path):
    root = str(tmp_path / "toy")
    butler = Butler(outputs={"root": root, "mapper": MapperForTestWriting, "mode": "rw"})
    butler.put(TestObject(1), "foo", {"anyKey": 3, "notAKey": "x"})
    assert butler.get("foo", {"anyKey": 3, "notAKey": "x"}) == TestObject(1)


# -- 2. put checks types -------------------------------------------------------------------------


@pytest.mark.parametrize(("obj", "datasetType", "expected"), [
    (Table({"a": [1]}), "calexp", "CCDData"),  # before: written, and its get failed
    ("hello", "src", "Table"),
    (CCDData(np.zeros((2, 2)), unit="adu"), "src", "Table"),
    (np.zeros(3), "src", "Table"),  # before: came back a Table
    (np.zeros(2, dtype=[("a", "i4")]), "calexp", "CCDData"),
    (np.ones((2, 3)), "calexp", "ndarray -> CCDData loses information"),  # no unit, no WCS: lossy (issue 15)
], ids=["table-as-image", "str-as-catalog", "image-as-catalog", "array-as-catalog",
        "structured-array-as-image", "array-as-image"])
def test_put_refuses_what_get_would_not_give_back(rw_butler, obj, datasetType, expected):
    root = rw_butler.outputRepositories()[0].root
    before = tree_fingerprint(root)
    with pytest.raises(UnwritableObjectError) as info:
        rw_butler.put(obj, datasetType, visit=1)
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert f"as {datasetType!r}" in message and "'visit': 1" in message and root in message
    assert expected in message and type(obj).__qualname__ in message
    assert tree_fingerprint(root) == before  # not a byte written
    assert not rw_butler.datasetExists(datasetType, visit=1)


def test_put_accepts_what_get_returns_and_its_lossless_forms(rw_butler):
    image = CCDData(np.arange(6, dtype=np.float32).reshape(2, 3), unit="adu")
    rw_butler.put(image, "calexp", visit=1)
    assert isinstance(rw_butler.get("calexp", visit=1), CCDData)
    rw_butler.put(np.zeros(2, dtype=[("a", "i4")]), "src", visit=2)  # a lossless converter (issue 15)
    assert list(rw_butler.get("src", visit=2)["a"]) == [0, 0]
    rw_butler.put(Table({"flux": [1.0, 2.0]}), "src", visit=1)
    assert list(rw_butler.get("src", visit=1)["flux"]) == [1.0, 2.0]


def test_a_refused_put_writes_into_no_output(obs_test_input, tmp_path):
    outputs = [str(tmp_path / name) for name in ("a", "b")]
    butler = Butler(inputs=obs_test_input, outputs=outputs)
    with pytest.raises(UnwritableObjectError):
        butler.put(np.zeros(3), "src", visit=1)
    assert _files(tmp_path / "a") == _files(tmp_path / "b") == ["repositoryCfg.yaml"]


# -- 3. NoResults says why ---------------------------------------------------------------------


def test_a_read_of_a_write_only_output_says_it_was_not_searched(obs_test_input, tmp_path):
    out = str(tmp_path / "out")
    butler = Butler(inputs=obs_test_input, outputs=out)  # Gen2's default output mode: 'w'
    butler.put(Table({"a": [1]}), "src", visit=1)
    with pytest.raises(NoResults) as info:
        butler.get("src", visit=1)
    message = str(info.value)
    assert f"not searched: output {out} (mode 'w': not read; give mode='rw' to read it back)" in message
    assert "datasetType: src" in message and obs_test_input in message
    reader = Butler(inputs=obs_test_input, outputs={"root": out, "mode": "rw"})
    assert list(reader.get("src", visit=1)["a"]) == [1]


def test_a_read_with_only_readable_outputs_names_none_skipped(rw_butler):
    with pytest.raises(NoResults) as info:
        rw_butler.get("src", visit=1)
    assert "not searched" not in str(info.value)


# -- 4. a mistyped root ------------------------------------------------------------------------


def test_a_mistyped_old_form_root_creates_nothing(tmp_path):
    root = tmp_path / "data" / "obs_tset" / "rerun"
    with pytest.raises(RuntimeError) as info:
        Butler(str(root))
    assert str(root) in str(info.value)
    assert not (tmp_path / "data").exists()


def test_a_missing_input_is_named_at_construction(tmp_path):
    missing = tmp_path / "obs_tset" / "input"
    with pytest.raises(RepositoryError, match=str(missing)):
        Butler(inputs=str(missing), outputs={"root": str(tmp_path / "out"), "mapper": MapperForTestWriting})
    assert os.listdir(tmp_path) == []


class _PairMapper(Mapper):
    """A toy mapper with a composite of a FITS image and a FITS catalog."""

    def __init__(self, root, **kwargs):
        self.root = root
        self.storage = Storage.makeFromURI(root)

    def _location(self, name, storage, python, dataId):
        return ButlerLocation(python, None, storage, name, dataId, self, self.storage)

    def map_image(self, dataId, write):
        return self._location(f"image_{dataId['visit']}.fits", "FitsStorage", "lsst.afw.image.ExposureF", dataId)

    def map_catalog(self, dataId, write):
        return self._location(f"catalog_{dataId['visit']}.fits", "FitsCatalogStorage",
                              "lsst.afw.table.SourceCatalog", dataId)

    def map_pair(self, dataId, write):
        composite = ButlerComposite(None, None, "builtins.dict", dataId, self)
        composite.add("image", "image")
        composite.add("catalog", "catalog")
        return composite


def test_a_composite_with_one_wrong_component_writes_none(tmp_path):
    root = tmp_path / "pairs"
    butler = Butler(outputs={"root": str(root), "mapper": _PairMapper, "mode": "rw"})
    image = CCDData(np.ones((2, 2)), unit="adu")

    class Pair:
        def getImage(self):
            return image

        def getCatalog(self):
            return np.zeros(3)  # an array is not a catalog

    with pytest.raises(UnwritableObjectError, match="as 'catalog'"):
        butler.put(Pair(), "pair", visit=1)
    assert _files(root) == ["repositoryCfg.yaml"]  # the image, checked first, was not written either
