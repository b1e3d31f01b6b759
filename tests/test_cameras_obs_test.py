"""The obs_test mappers against the real obs_test repository (README §1)."""

from __future__ import annotations

import shutil

import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from butler.errors import NoResults, TemplateError, UnsafePathError
from butler.utils import doImport
from mappers import test as obs_test
from mappers.camera import Detector, FilterLabel


@pytest.fixture(scope="module")
def root(shared_data):
    return str(shared_data / "obs_test" / "data" / "input")


@pytest.fixture(scope="module")
def mapper(root):
    return obs_test.TestMapper(root=root)


def test_legacy_names_resolve(root):
    with open(f"{root}/_mapper") as stream:
        assert doImport(stream.read().strip()) is obs_test.TestMapper
    assert doImport("lsst.obs.test.TestMapper") is obs_test.TestMapper
    assert (doImport("lsst.obs.test.MapperForTestCalexpMetadataObjects")
            is obs_test.MapperForTestCalexpMetadataObjects)
    assert obs_test.TestMapper.translator.__name__ == "TestCamTranslator"


@pytest.mark.parametrize("visit, filt", [(1, "g"), (2, "g"), (3, "r")])
def test_raw_paths_for_every_registry_row(mapper, visit, filt):
    location = mapper.map("raw", {"visit": visit, "filter": filt})
    assert location.getLocations() == [f"raw/raw_v{visit}_f{filt}.fits.gz"]
    assert location.storageName == "FitsStorage"


def test_partial_id_filled_from_registry(mapper):
    location = mapper.map("raw", {"visit": 2})
    assert location.getLocations() == ["raw/raw_v2_fg.fits.gz"]
    assert location.dataId == {"visit": 2, "filter": "g"}
    assert location.usedDataId == {"visit": 2, "filter": "g"}
    assert location.additionalData["filter"] == "g"


def test_validate_casts_visit(mapper):
    assert mapper.map("raw", {"visit": "3"}).getLocations() == ["raw/raw_v3_fr.fits.gz"]


def test_inconsistent_id_matches_nothing(mapper):
    assert mapper.queryMetadata("raw", ["visit"], {"visit": 1, "filter": "r"}) == []


def test_query_metadata(mapper):
    assert mapper.queryMetadata("raw", ["visit"], {"filter": "g"}) == [(1,), (2,)]
    assert mapper.queryMetadata("raw", ["visit"], {"filter": "r"}) == [(3,)]
    assert sorted(mapper.queryMetadata("raw", "filter", {})) == [("g",), ("r",)]
    assert sorted(mapper.queryMetadata("raw", ["visit"], {"skyTile": 85932})) == [(1,), (2,)]
    assert mapper.queryMetadata("raw", ["visit"], {"skyTile": 86653}) == [(3,)]
    # the raw_visit table answers filter/expTime/taiObs for a visit
    assert mapper.queryMetadata("raw", ["filter", "expTime"], {"visit": 1}) == [("g", 0.0)]


def test_calibrations(mapper):
    assert mapper.map("bias", {"visit": 1}).getLocations() == ["bias/bias.fits.gz"]
    flat = mapper.map("flat", {"visit": 3})
    assert flat.getLocations() == ["flat/flat_fr.fits.gz"]
    assert flat.repository is mapper.repository and flat.storage is mapper.rootStorage
    assert flat.storage.exists("flat/flat_fr.fits.gz") is False
    assert mapper.calibRegistry is None  # needCalibRegistry: false


def test_raw_read_through_storage(mapper):
    location = mapper.map("raw", {"visit": 1})
    image = mapper.standardize("raw", mapper.rootStorage.read(location), location.dataId)
    assert isinstance(image, CCDData)
    assert image.shape == (2000, 1026)
    assert image.meta["FILTER"] == "g"
    assert image.wcs is not None


def test_derived_types(mapper):
    dataId = {"visit": 1}
    location = mapper.map("raw_md", dataId)
    header = mapper.bypass_raw_md("raw_md", None, location, dataId)
    assert isinstance(header, fits.Header)
    assert (header["NAXIS1"], header["NAXIS2"], header["CCDID"], header["EXPTIME"]) == (1026, 2000,
                                                                                          "R22_S00_C00", 15.0)
    assert header["OBSID"] == 890104911
    filename = mapper.bypass_raw_filename("raw_filename", None, mapper.map("raw_filename", dataId), dataId)
    assert filename == [mapper.root + "/raw/raw_v1_fg.fits.gz"]
    assert mapper.bypass_raw_bbox("raw_bbox", None, location, dataId) == (0, 0, 1026, 2000)
    wcs = mapper.bypass_raw_wcs("raw_wcs", None, location, dataId)
    assert wcs.wcs.ctype[0] == "RA---TAN"
    assert mapper.bypass_raw_header_wcs("raw_header_wcs", None, location, dataId).wcs.ctype[1] == "DEC--TAN"
    with pytest.raises(NoResults, match="Can only get header WCS for raw exposures."):
        mapper.bypass_calexp_header_wcs("calexp_header_wcs", None, location, dataId)
    assert mapper.bypass_raw_filter("raw_filter", None, location, dataId) == FilterLabel("g", "g")
    assert mapper.bypass_raw_detector("raw_detector", None, mapper.map("raw_detector", dataId),
                                      dataId) == Detector("0", 0)
    assert mapper.bypass_ccdExposureId("ccdExposureId", None, None, {"visit": 3}) == 3
    assert mapper.bypass_ccdExposureId_bits("ccdExposureId_bits", None, None, {}) == 41


def test_defects_catalog(mapper):
    location = mapper.map("defects", {"visit": 1})
    assert location.getLocations() == ["defects/defects.fits"]
    assert mapper.bypass_defects_len("defects_len", None, location, {}) == 504
    schema = mapper.bypass_defects_schema("defects_schema", None, location, {})
    assert len(schema) == 0 and schema.colnames == ["X", "Y", "SHAPE", "R", "ROTANG", "COMPONENT"]
    assert mapper.bypass_defects_md("defects_md", None, location, {})["NAXIS2"] == 504


def test_levels_and_keys(mapper):
    assert mapper.getDefaultLevel() == "visit"
    assert mapper.getDefaultSubLevel("visit") is None
    assert mapper.getKeys("raw", None) == {"visit": int, "filter": str}
    assert mapper.getKeys("raw", "skyTile") == {"filter": str}
    assert mapper.getKeys("raw", "") == {"visit": int, "filter": str}  # nothing dropped at "visit"
    assert {"visit", "filter", "tract", "patch"} <= set(mapper.keys())


def test_skymap_keys_must_be_given(mapper):
    with pytest.raises(RuntimeError, match="Cannot look up skymap key 'tract'"):
        mapper.map("forced_src", {"visit": 1})
    location = mapper.map("forced_src", {"visit": 1, "tract": 0})
    assert location.getLocations() == ["forced/0/v1_fg.fits"]


@pytest.mark.parametrize("value", ["../../etc", "a/b", "x\0y", "/abs", ".."])
def test_hostile_values_are_refused(mapper, value):
    with pytest.raises(UnsafePathError):
        mapper.map("raw", {"visit": 1, "filter": value})
    with pytest.raises(UnsafePathError):
        mapper.map("calexp", {"visit": 1, "filter": value}, write=True)


def test_bad_types_fail_to_format(mapper):
    with pytest.raises(TemplateError, match="Failed to format"):
        mapper._mapActualToPath(mapper.mappings["raw"].template, {"visit": "one", "filter": "g"})


def test_repository_policy_wins(shared_data):
    from butler.cfg import RepositoryCfg

    cfg = RepositoryCfg.read(str(shared_data / "obs_test/tests/policyTest/a/repositoryCfg.yaml"))
    mapper = obs_test.TestMapper(root=str(shared_data / "obs_test" / "data" / "input"), repositoryCfg=cfg)
    assert mapper.map("raw", {"visit": 1}).getLocations() == ["raw/v1_fg.fits.gz"]


def test_calexp_found_through_gz(shared_data):
    root = str(shared_data / "obs_test" / "data" / "calexpMetadataObjectsTest")
    mapper = obs_test.MapperForTestCalexpMetadataObjects(root=root)
    location = mapper.map("calexp", {})
    assert location.getLocations() == ["example-calexp.fits.gz"]
    assert mapper.map("calexp", {}, write=True).getLocations() == ["example-calexp.fits"]
    image = mapper.standardize("calexp", mapper.rootStorage.read(location), {})
    assert image.shape == (4, 8)
    assert image.meta["FILTER"] == "i"


def test_backup(tmp_path, root):
    shutil.copytree(f"{root}", tmp_path / "repo", ignore=shutil.ignore_patterns("raw", "defects"))
    mapper = obs_test.TestMapper(root=str(tmp_path / "repo"))
    path = tmp_path / "repo" / "calexp" / "calexp_v1_fg.fits"
    path.parent.mkdir()
    for text in ("first", "second"):
        path.write_text(text)
        mapper.backup("calexp", {"visit": 1})
    # the newest backup is ~1; older ones move up
    assert (tmp_path / "repo" / "calexp" / "calexp_v1_fg.fits~1").read_text() == "second"
    assert (tmp_path / "repo" / "calexp" / "calexp_v1_fg.fits~2").read_text() == "first"
