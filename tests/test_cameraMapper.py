"""CameraMapper behaviour on the obs_base registries (cameramapper contract §7)."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from butler.errors import MapperError, NoResults
from butler.policy import Policy
from mappers.camera import FilterDefinition, FilterLabel, best_filter
from mappers.cameraMapper import CameraMapper, compose_policy
from mappers.testing import MinMapper1, MinMapper2

FIXED_TYPES = ["camera", "expIdInfo", "skypolicy"]


@pytest.fixture(scope="module")
def obs_base(shared_data):
    return shared_data / "obs_base" / "tests"


@pytest.fixture
def mapper1(tmp_path, obs_base):
    return MinMapper1(root=str(tmp_path), registry=str(obs_base / "registry.sqlite3"))


@pytest.fixture
def mapper2(tmp_path, obs_base):
    return MinMapper2(root=str(tmp_path), registry=str(obs_base / "cfhtls.sqlite3"),
                      calibRegistry=str(obs_base / "calibRegistry.sqlite3"))


def test_min_mapper1_types_and_map(mapper1, tmp_path):
    assert mapper1.getDatasetTypes() == sorted(FIXED_TYPES + ["x", "x_filename", "badSourceHist",
                                                               "badSourceHist_filename"])
    location = mapper1.map("x", {"sensor": "1,1"}, write=True)
    assert location.getPythonType() == "lsst.geom.BoxI"
    assert location.getStorageName() == "PickleStorage"
    assert location.getLocations() == ["foo-1,1.pickle"]
    assert location.getStorage().root.rstrip("/") == str(tmp_path)
    assert location.getAdditionalData() == {"sensor": "1,1"}
    assert mapper1.queryMetadata("x", ["sensor"], None) == [("1,1",)]
    assert mapper1.canStandardize("x")
    assert not mapper1.canStandardize("badSourceHist")
    assert not mapper1.canStandardize("notPresent")
    assert mapper1.standardize("x", "3.14", None) == 3.14
    assert MinMapper1.getCameraName() == "min"
    assert mapper1.getDefaultLevel() == "sensor"


def test_package_name_required():
    class NoPackageMapper(CameraMapper):
        pass

    with pytest.raises(ValueError, match="class variable packageName must not be None"):
        NoPackageMapper.getPackageName()
    with pytest.raises(ValueError, match="packageName"):
        NoPackageMapper(policy=Policy({}), root=".")


def test_min_mapper2_types(mapper2):
    types = set(mapper2.getDatasetTypes())
    assert {"raw", "raw_filename", "raw_md", "raw_sub", "raw_bbox", "raw_wcs", "raw_header_wcs", "raw_filter",
            "raw_detector", "some", "some_bbox", "some_sub", "someCatalog_len", "someCatalog_schema",
            "someCatalog_md", "flat", "flat_md", "forced_src"} <= types
    assert not {"raw_photoCalib", "raw_visitInfo", "raw_filterLabel", "some_wcs"} & types


def test_raw_write_recipe(mapper2):
    location = mapper2.map("raw", {"ccd": 13}, write=True)
    assert location.getLocations() == ["foo-13.fits"]
    data = location.getAdditionalData()
    for plane in ("image", "mask", "variance"):
        assert data[f"{plane}.compression.algorithm"] == "GZIP_SHUFFLE"
        for key in ("rows", "columns", "quantizeLevel"):
            assert f"{plane}.compression.{key}" in data
        for key in ("algorithm", "bitpix", "maskPlanes", "quantizeLevel", "quantizePad", "fuzz", "bscale",
                    "bzero"):
            assert f"{plane}.scaling.{key}" in data
        assert data[f"{plane}.scaling.seed"] != 0
    assert data["ccd"] == 13


def test_unknown_write_recipe(tmp_path, obs_base):
    policy = Policy({"images": {"some": {"template": "a-%(ccd)d.fits", "recipe": "nope"}}})
    mapper = MinMapper2(policy=policy, root=str(tmp_path), registry=str(obs_base / "cfhtls.sqlite3"))
    with pytest.raises(RuntimeError, match="nope"):
        mapper.map("some", {"ccd": 1}, write=True)


def test_sub_image(mapper2):
    location = mapper2.map("raw_sub", {"ccd": 13, "bbox": (200, 100, 300, 400), "imageOrigin": "LOCAL"})
    data = location.getAdditionalData()
    assert (data["llcX"], data["llcY"], data["width"], data["height"]) == (200, 100, 300, 400)
    assert data["imageOrigin"] == "LOCAL"
    assert "bbox" not in location.dataId


@pytest.mark.parametrize("bbox", [None, (1, 2, 3), "100x200"])
def test_sub_image_without_a_usable_bbox_names_it(mapper2, bbox):
    dataId = {"ccd": 13} if bbox is None else {"ccd": 13, "bbox": bbox}
    with pytest.raises(MapperError, match=r"raw_sub needs a 'bbox' in the data ID.*'ccd': 13"):
        mapper2.map("raw_sub", dataId)


def _write_image(path, shape=(1000, 800), ltv=(0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    header = fits.Header({"LTV1": -ltv[0], "LTV2": -ltv[1]})
    hdu = fits.PrimaryHDU(np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape), header=header)
    with open(path, "wb") as stream:
        hdu.writeto(stream)


def test_images_bbox_sub_and_compressed(mapper2, tmp_path):
    import gzip

    _write_image(tmp_path / "bar-35.fits", ltv=(10, 20))
    location = mapper2.map("some", {"ccd": 35})
    assert location.getLocations() == ["bar-35.fits"]
    assert mapper2.bypass_some_bbox("some_bbox", None, location, {"ccd": 35}) == (10, 20, 800, 1000)
    sub = mapper2.map("some_sub", {"ccd": 35, "bbox": (110, 220, 400, 300)})
    image = mapper2.rootStorage.read(sub)
    assert image.shape == (300, 400)
    _write_image(tmp_path / "tmp.fits")
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "bar-35.fits.gz").write_bytes(gzip.compress((tmp_path / "tmp.fits").read_bytes()))
    (tmp_path / "fz").mkdir()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.ones((10, 10), dtype=np.float32))]).writeto(
        tmp_path / "fz" / "bar-35.fits.fz")
    assert mapper2.map("someGz", {"ccd": 35}).getLocations() == ["gz/bar-35.fits.gz"]
    assert mapper2.map("someFz", {"ccd": 35}).getLocations() == ["fz/bar-35.fits.fz"]
    assert mapper2.map("someGz", {"ccd": 35}, write=True).getLocations() == ["gz/bar-35.fits"]
    assert mapper2.map("someHdu", {"ccd": 35, "hdu": 0}).getLocations() == ["bar-35.fits[0]"]
    assert mapper2.rootStorage.read(mapper2.map("someGz", {"ccd": 35})).shape == (1000, 800)


def test_catalog_put_and_derived(mapper2):
    dataId = {"visit": 787650, "ccd": 13}
    location = mapper2.map("someCatalog", dataId, write=True)
    mapper2.rootStorage.write(location, Table({"a": [1, 2, 3], "b": [1.0, 2.0, 3.0]}))
    read = mapper2.map("someCatalog", dataId)
    filename = mapper2.bypass_someCatalog_filename("someCatalog_filename", None, read, dataId)
    assert len(filename) == 1 and filename[0].endswith("catalog-v787650-c13.fits")
    schema = mapper2.bypass_someCatalog_schema("someCatalog_schema", None, read, dataId)
    assert schema.colnames == ["a", "b"] and len(schema) == 0
    assert mapper2.bypass_someCatalog_len("someCatalog_len", None, read, dataId) == 3
    assert mapper2.bypass_someCatalog_md("someCatalog_md", None, read, dataId)["NAXIS2"] == 3


def test_detector(mapper2):
    location = mapper2.map("raw_detector", {"ccd": 0})
    assert location.getStorageName() == "Internal"
    assert mapper2.bypass_raw_detector("raw_detector", None, location, {"ccd": 0}).name == "ccd00"


FILTERS = (
    FilterDefinition(physical="i.MP9701", band="i", aliases={"old-i"}),
    FilterDefinition(physical="i2.MP9702", band="i", afw_name="i2"),
    FilterDefinition(physical="r.MP9601", band="r", aliases={"old-r"}, afw_name="r"),
    FilterDefinition(physical="r2.MP9602", band="r", afw_name="r2"),
)


@pytest.mark.parametrize("stored, idFilter, expected", [
    (FilterLabel("i", "i.MP9701"), None, FilterLabel("i", "i.MP9701")),
    (FilterLabel(physical="old-i"), None, FilterLabel("i", "i.MP9701")),
    (FilterLabel(band="i"), None, FilterLabel("i", "i.MP9701")),  # the one without afw_name
    (FilterLabel(physical="i2"), None, FilterLabel("i", "i2.MP9702")),
    (None, "i2", FilterLabel("i", "i2.MP9702")),
    (None, "r", FilterLabel(band="r")),  # two with afw_name, nothing stored, one band
    (FilterLabel(band="r"), None, None),  # two candidates, both with afw_name, something stored
    (None, "unknown", None),
])
def test_best_filter(stored, idFilter, expected):
    assert best_filter(FILTERS, stored, idFilter) == expected


def test_best_filter_band_only_and_no_definitions():
    defs = (FilterDefinition("a1", "a", afw_name="x"), FilterDefinition("a2", "a", afw_name="y"))
    assert best_filter(defs, None, "a") == FilterLabel(band="a")
    assert best_filter((), FilterLabel("g", "g.1"), "r") == FilterLabel("g", "g.1")


def test_query_other(mapper2):
    taiObs = "2005-04-02T09:24:49.933440112"
    conn = sqlite3.connect(f"file:{mapper2.registry.location}?mode=ro", uri=True)
    try:
        taiObs = conn.execute("SELECT taiObs FROM raw WHERE visit=787731 LIMIT 1").fetchone()[0]
    finally:
        conn.close()
    query = {"ccd": 35, "filter": "r", "visit": 787731, "taiObs": taiObs}
    assert mapper2.queryMetadata("other", ["visit"], query) == [(787731,)]
    assert mapper2.queryMetadata("other", ["visit"], dict(query, ccd=36)) == []


def test_query_raw_ccds(mapper2):
    ccds = sorted(row[0] for row in mapper2.queryMetadata("raw", ["ccd"], None))
    assert ccds == [c for c in range(36) if c != 3]


def test_visits_by_filter(mapper2):
    visits = sorted(row[0] for row in mapper2.queryMetadata("raw", ["visit"], {"filter": "g"}))
    assert visits == [787784, 787796, 788455, 792933]


@pytest.mark.parametrize("visit, run", [(787650, "05Am03"), (789033, "05Am03"), (792170, "05Am04"),
                                        (792933, "05Am04"), (793310, "05Am04")])
def test_flat_lookup(mapper2, visit, run):
    location = mapper2.map("flat", {"visit": visit, "ccd": 13})
    assert location.dataId["derivedRunId"] == run
    if visit == 787650:
        assert location.getLocations() == ["flat-05Am03-fi.fits"]
        assert location.dataId["filter"] == "i"


def test_flat_validity_string_comparison_and_gaps(mapper2):
    # validEnd is a bare date: a later time of the same day compares greater, so no flat covers it
    flat = mapper2.map("flat", {"filter": "i", "taiObs": "2005-04-16T23:00:00"})
    assert flat.dataId["derivedRunId"] == "05Am03"
    for taiObs in ("2005-04-17T01:00:00", "2005-04-20T00:00:00"):
        with pytest.raises(NoResults, match="0 matches") as info:
            mapper2.map("flat", {"filter": "i", "taiObs": taiObs})
        assert "calibRegistry.sqlite3" in str(info.value) and "flat" in str(info.value)


def test_flat_overlap_is_not_unique(mapper2, obs_base):
    conn = sqlite3.connect(f"file:{obs_base / 'calibRegistry.sqlite3'}?mode=ro", uri=True)
    try:
        start, filt = conn.execute(
            "SELECT b.validStart, a.filter FROM flat a JOIN flat b ON a.filter = b.filter AND a.id < b.id "
            "AND b.validStart BETWEEN a.validStart AND a.validEnd LIMIT 1").fetchone()
    finally:
        conn.close()
    with pytest.raises(NoResults, match="2 matches"):
        mapper2.map("flat", {"filter": filt, "taiObs": start})


def test_skymap_keys(mapper2):
    with pytest.raises(RuntimeError, match="it must be explicitly included in the data ID"):
        mapper2.map("forced_src", {"visit": 787650, "ccd": 13})
    location = mapper2.map("forced_src", {"visit": 787650, "ccd": 13, "tract": 0})
    assert location.getLocations() == ["0/i/forced_src-v787650-c13.fits"]
    assert not mapper2.rootStorage.exists(location.getLocations()[0])


def test_parent_registry_shared(tmp_path, obs_base):
    parent = tmp_path / "parent"
    parent.mkdir()
    shutil.copy(obs_base / "registry.sqlite3", parent / "registry.sqlite3")
    parentMapper = MinMapper1(root=str(parent))
    child = tmp_path / "child"
    child.mkdir()
    childMapper = MinMapper1(root=str(child), parentRegistry=parentMapper.registry)
    assert childMapper.registry is parentMapper.registry
    shutil.copy(obs_base / "registry.sqlite3", child / "registry.sqlite3")
    ownMapper = MinMapper1(root=str(child), parentRegistry=parentMapper.registry)
    assert ownMapper.registry is not parentMapper.registry


def test_empty_template(tmp_path, obs_base):
    policy = Policy({"exposures": {"raw": {"template": ""}}})
    mapper = MinMapper2(policy=policy, root=str(tmp_path), registry=str(obs_base / "cfhtls.sqlite3"))
    message = ("Template is not defined for the raw dataset type, it must be set before it can be used.")
    for call in (lambda: mapper.map("raw", {"ccd": 1}), lambda: mapper.queryMetadata("raw", ["ccd"], {}),
                 lambda: mapper.map("raw_filename", {"ccd": 1}), lambda: mapper.map("raw_wcs", {"ccd": 1})):
        with pytest.raises(RuntimeError) as info:
            call()
        assert str(info.value) == message


def test_duplicate_policy():
    policy = Policy({"exposures": {"packages": {"template": "a"}}, "datasets": {}})
    with pytest.raises(ValueError, match="Duplicate mapping policy for dataset type packages"):
        compose_policy([policy])


def test_composition_order():
    first = Policy({"exposures": {"raw": {"template": "first"}}})
    second = Policy({"exposures": {"raw": {"template": "second", "level": "Amp"}}})
    policy = compose_policy([first, second], {"exposures": {"raw": {"tables": "mine"}}})
    assert policy["exposures.raw.template"] == "first"
    assert policy["exposures.raw.level"] == "Amp"
    assert policy["exposures.raw.tables"] == "mine"
    assert policy["exposures.raw.python"] == "lsst.afw.image.DecoratedImageU"  # central default
    assert "calexp" in policy["exposures"] and policy.get("datasets") is None
    assert len(compose_policy([Policy({"datasets": {}})])["datasets"]) == 249
