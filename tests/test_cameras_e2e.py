"""Every repository under the shared data, opened unchanged through `butler.Butler` (issue 6).

Facts come from ``shared/data/README.md``; pixel statistics of the obs_test raws
were computed once with `astropy.io.fits.getdata` and are also re-checked
against it here. The whole shared tree is fingerprinted before the first test
of this module and compared after the last one.

Documented behaviours pinned here:

* ``datasetExists`` with a hostile data-ID value raises `UnsafePathError`
  (it does not answer False): a refused value is an error, not a missing dataset.
* A hostile value is refused before the registry is asked about it, so a partial
  data ID with one also raises `UnsafePathError` (not `NoResults`).
* A calibration lookup in a camera repository without a calibration registry
  (lsstCam) raises ``RuntimeError("No registry for lookup")`` (contract §2).
* Overlapping validity ranges are not resolved: the lookup raises `NoResults`
  "... 2 matches", naming the dataset type, the data ID and the calib registry.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.table import Table

import butler
from butler import RepositoryArgs
from butler.errors import MissingParentError, NoResults, UnsafePathError

from conftest import tree_fingerprint

OBS_LSST = ("obs_lsst", "data", "input")

# -- module guard: the shared tree is never written -------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def shared_tree_untouched(shared_data: Path):
    """Fingerprint the whole shared tree before this module's tests and compare after."""
    before = tree_fingerprint(shared_data)
    yield
    assert tree_fingerprint(shared_data) == before


def lsst_root(shared_data: Path, camera: str) -> Path:
    """The root of one obs_lsst camera repository."""
    return shared_data.joinpath(*OBS_LSST, camera)


def open_lsst(shared_data: Path, camera: str) -> butler.Butler:
    """A Butler reading one obs_lsst camera repository as it is."""
    return butler.Butler(inputs=str(lsst_root(shared_data, camera)))


# -- obs_test ---------------------------------------------------------------------------------

#: visit -> (filter, OBSID, MJD-OBS, min, max, median, sum) of the raw pixels (astropy, computed once)
OBS_TEST_RAWS = {
    1: ("g", 890104911, 51195.2035520278, 936, 61267, 1182.0, 2496790727),
    2: ("g", 890106021, 51195.2240820278, 937, 61272, 1227.0, 2593128614),
    3: ("r", 890880321, 51228.0541210278, 938, 61272, 1437.0, 3139643425),
}


@pytest.fixture(scope="module")
def obs_test_root(shared_data: Path) -> Path:
    return shared_data / "obs_test" / "data" / "input"


@pytest.fixture(scope="module")
def obs_test(obs_test_root: Path) -> butler.Butler:
    return butler.Butler(inputs=str(obs_test_root))


@pytest.mark.parametrize("visit", sorted(OBS_TEST_RAWS))
def test_obs_test_raw_pixels_and_header(obs_test, obs_test_root, visit):
    filt, obsid, mjd, low, high, median, total = OBS_TEST_RAWS[visit]
    raw = obs_test.get("raw", visit=visit)  # filter completed from the registry
    assert isinstance(raw, CCDData)
    assert raw.shape == (2000, 1026) and raw.data.dtype == np.uint16
    assert (raw.data.min(), raw.data.max(), np.median(raw.data), int(raw.data.sum(dtype=np.int64))) == (
        low, high, median, total)
    path = obs_test_root / "raw" / f"raw_v{visit}_f{filt}.fits.gz"
    np.testing.assert_array_equal(raw.data, fits.getdata(path))
    assert raw.meta["FILTER"] == filt
    header = obs_test.get("raw_md", visit=visit)
    assert (header["FILTER"], header["OBSID"], header["MJD-OBS"], header["EXPTIME"], header["CCDID"]) == (
        filt, obsid, mjd, 15.0, "R22_S00_C00")
    assert obs_test.get("raw_filename", visit=visit) == [str(path)]


def test_obs_test_queries_subsets_and_keys(obs_test):
    assert obs_test.queryMetadata("raw", "visit", filter="g") == [1, 2]
    assert obs_test.queryMetadata("raw", "visit", filter="r") == [3]
    assert sorted(obs_test.queryMetadata("raw", "filter")) == ["g", "r"]
    assert obs_test.queryMetadata("raw", "visit", skyTile=85932) == [1, 2]
    assert obs_test.queryMetadata("raw", "visit", skyTile=86653) == [3]
    assert obs_test.queryMetadata("raw", "visit", visit=1, filter="r") == []  # inconsistent ID
    assert obs_test.queryMetadata("raw", ["filter", "taiObs"], visit=1) == [
        ("g", "1999-01-17T04:52:34.895201920")]
    assert [dict(ref.dataId) for ref in obs_test.subset("raw")] == [
        {"visit": 1, "filter": "g"}, {"visit": 2, "filter": "g"}, {"visit": 3, "filter": "r"}]
    assert len(obs_test.subset("raw", filter="g")) == 2
    ref = obs_test.dataRef("raw", visit=2)
    assert ref.dataId["filter"] == "g" and ref.datasetExists("raw")
    assert ref.get("raw_md")["OBSID"] == 890106021
    assert obs_test.getKeys("raw") == {"visit": int, "filter": str}
    assert obs_test.getKeys("raw", "skyTile") == {"filter": str}
    assert {"raw", "raw_md", "raw_filename", "raw_sub", "raw_bbox", "raw_wcs", "bias", "flat", "defects",
            "calexp", "src"} <= obs_test.getDatasetTypes()
    assert obs_test.datasetExists("raw", visit=3)
    assert not obs_test.datasetExists("raw", visit=1, filter="r")


def test_obs_test_calibrations(obs_test, obs_test_root):
    # bias and flat paths resolve, the files are absent (README §1)
    assert obs_test.get("bias_filename", visit=1) == [str(obs_test_root / "bias" / "bias.fits.gz")]
    assert obs_test.get("flat_filename", visit=3) == [str(obs_test_root / "flat" / "flat_fr.fits.gz")]
    assert not obs_test.datasetExists("flat", visit=3)
    with pytest.raises(NoResults, match="bias"):
        obs_test.get("bias", visit=1)
    defects = obs_test.get("defects")
    assert isinstance(defects, Table) and len(defects) == 504
    assert defects.colnames == ["X", "Y", "SHAPE", "R", "ROTANG", "COMPONENT"]


def test_calexp_metadata_objects_repository(shared_data):
    repo = butler.Butler(inputs=str(shared_data / "obs_test" / "data" / "calexpMetadataObjectsTest"))
    calexp = repo.get("calexp")  # found as example-calexp.fits.gz
    assert calexp.shape == (4, 8)
    assert calexp.mask is not None and isinstance(calexp.uncertainty, VarianceUncertainty)
    assert (calexp.meta["FILTER"], calexp.meta["EXPTIME"]) == ("i", 30.0)
    assert repo.get("calexp_md")["AR_HDU"] == 5
    assert repo.get("calexp_bbox") == (0, 0, 8, 4)
    assert repo.get("calexp_filename")[0].endswith("example-calexp.fits.gz")


def test_policy_test_repositories(shared_data):
    base = shared_data / "obs_test" / "tests" / "policyTest"
    a = butler.Butler(inputs=str(base / "a"))
    # the repository's own policy overrides the raw template
    assert a.get("raw_filename", visit=1, filter="g") == [str(base / "a" / "raw" / "v1_fg.fits.gz")]
    b = butler.Butler(inputs=str(base / "b"))
    assert [r.repo.root for r in b._repos.inputs()] == [str(base / "b"), str(base / "a")]
    assert b.get("raw_filename", visit=1, filter="g") == [str(base / "b" / "raw" / "raw_v1_fg.fits.gz")]
    assert not b.datasetExists("raw", visit=1, filter="g")


# -- obs_lsst: raws ---------------------------------------------------------------------------

#: camera -> (raw rows, one amplifier's shape, the assembled shape per detector)
LSST_RAWS: dict[str, tuple[int, dict[int, tuple[int, int]]]] = {
    "lsstCam": (3, {29: (2048, 576), 97: (2048, 576), 35: (2048, 576)}),
    "comCam": (1, {0: (2048, 576)}),
    "latiss": (1, {0: (2048, 576)}),
    "ts8": (1, {67: (2048, 576)}),
    "ts3": (2, {71: (2048, 544), 433: (2048, 572)}),
    "ucd": (2, {0: (0, 0), 2: (0, 0)}),
    "imsim": (1, {42: (2048, 544)}),
    "phosim": (1, {42: (2010, 522)}),
}
#: ts8 Segment00 (HDU 16): real flat-field counts (min, max, median); every other amplifier is zeroed
TS8_SEGMENT00 = (25391, 49336, 47765)


def _assembled(amp: tuple[int, int]) -> tuple[int, int]:
    """16 amplifiers tile 2 rows x 8 columns; empty amplifiers give an empty image."""
    return (2 * amp[0], 8 * amp[1]) if amp != (0, 0) else (0, 0)


@pytest.mark.parametrize("camera", sorted(LSST_RAWS))
def test_lsst_raw_get_every_registry_row(shared_data, camera):
    repo = open_lsst(shared_data, camera)
    rows, amps = LSST_RAWS[camera]
    ids = repo.queryMetadata("raw", ["expId", "detector"])
    assert len(ids) == rows and {detector for _, detector in ids} == set(amps)
    for expId, detector in ids:
        raw = repo.get("raw", expId=expId, detector=detector)  # the rest is filled from the registry
        assert isinstance(raw, CCDData)
        assert raw.shape == _assembled(amps[detector])
        amp = repo.get("raw_amp", expId=expId, detector=detector, channel=1)
        assert amp.shape == amps[detector]
        filename = repo.get("raw_filename", expId=expId, detector=detector)
        assert len(filename) == 1 and os.path.isfile(filename[0])
        assert filename[0].startswith(str(lsst_root(shared_data, camera) / "raw") + os.sep)
        assert f"{expId}" in filename[0] and filename[0].endswith(f"-det{detector:03d}.fits")
        if camera != "ts8":
            assert not raw.data.any()  # pixels zeroed upstream


def test_ts8_real_amplifier(shared_data):
    repo = open_lsst(shared_data, "ts8")
    dataId = {"expId": 201807241028453, "detector": 67}
    amp = repo.get("raw_amp", dataId, channel=16)
    assert amp.meta["EXTNAME"] == "Segment00"
    assert (amp.data.min(), amp.data.max(), np.median(amp.data)) == TS8_SEGMENT00
    raw = repo.get("raw", dataId)
    counts = raw.data[raw.data != 0]
    assert counts.size == amp.data.size  # only Segment00 holds counts
    assert (counts.min(), counts.max(), np.median(counts)) == TS8_SEGMENT00


#: README "Primary-header values that match the registry": header key -> (registry column, header to column)
HEADER_TO_COLUMN = {
    "DATE-OBS": ("dateObs", str),
    "DAYOBS": ("dayObs", lambda v: f"{v[:4]}-{v[4:6]}-{v[6:]}"),
    "SEQNUM": ("seqNum", int),
    "RAFTBAY": ("raftName", str),
    "CCDSLOT": ("detectorName", str),
    "LSST_NUM": ("lsstSerial", lambda v: v.removesuffix("-Dev")),
    "OBSID": ("obsid", str),
    "IMGTYPE": ("imageType", str.upper),
}
#: camera -> the header keys compared (where the header and the registry both have them)
HEADER_KEYS = {
    "lsstCam": {"DATE-OBS", "DAYOBS", "SEQNUM", "RAFTBAY", "CCDSLOT", "LSST_NUM", "OBSID", "IMGTYPE"},
    "comCam": {"DATE-OBS", "DAYOBS", "SEQNUM", "RAFTBAY", "CCDSLOT", "LSST_NUM", "OBSID", "IMGTYPE"},
    "latiss": {"DATE-OBS", "DAYOBS", "SEQNUM", "OBSID"},
    "ts8": {"DATE-OBS", "SEQNUM", "LSST_NUM", "IMGTYPE"},
    "ts3": {"DATE-OBS", "SEQNUM", "LSST_NUM", "IMGTYPE"},
    "ucd": {"SEQNUM", "LSST_NUM", "IMGTYPE"},  # ucd DATE-OBS is a ctime string
    "imsim": {"DATE-OBS", "LSST_NUM", "OBSID", "IMGTYPE"},
    "phosim": {"DATE-OBS", "LSST_NUM", "OBSID", "IMGTYPE"},
}


@pytest.mark.parametrize("camera", sorted(HEADER_KEYS))
def test_lsst_raw_md_matches_registry(shared_data, camera):
    repo = open_lsst(shared_data, camera)
    columns = {key: ("testSeqNum" if key == "SEQNUM" and camera in ("ts8", "ts3", "ucd") else column)
               for key, (column, _) in HEADER_TO_COLUMN.items()}
    for expId, detector in repo.queryMetadata("raw", ["expId", "detector"]):
        header = repo.get("raw_md", expId=expId, detector=detector)
        assert isinstance(header, fits.Header)
        compared = set()
        for key in HEADER_KEYS[camera]:
            convert = HEADER_TO_COLUMN[key][1]
            value = repo.queryMetadata("raw", columns[key], expId=expId, detector=detector)
            assert value == [convert(header[key])], (key, header[key])
            compared.add(key)
        assert compared == HEADER_KEYS[camera]


#: README §2 Expectations: (camera, data ID, format, answer of queryMetadata)
LSST_QUERIES = [
    ("lsstCam", {"expId": 3019031900001}, "detector", [29, 97]),
    ("lsstCam", {}, "filter", ["SDSSi~ND_OD0.5", "unknown"]),
    ("lsstCam", {"detector": 98}, "expId", []),  # the 2021 file has no registry row
    ("latiss", {"expId": 3018092000065}, ["expId", "seqNum", "dayObs"], [(3018092000065, 65, "2018-09-20")]),
    ("latiss", {"seqNum": 65}, ["expId", "seqNum", "dayObs"], [(3018092000065, 65, "2018-09-20")]),
    ("latiss", {"detector": 0}, ["expId", "seqNum", "dayObs"], [(3018092000065, 65, "2018-09-20")]),
    ("latiss", {"filter": "unknown~unknown"}, "expId", [3018092000065]),
    ("latiss", {"filter": "foo"}, "expId", []),
    ("ucd", {}, ["run", "detector", "filter"], [("2018-05-30", 2, "r"), ("2018-12-05", 0, "r")]),
    ("ts3", {}, ["detector", "filter"], [(71, "550CutOn"), (433, "550CutOn")]),
    ("ts3", {"detector": 71}, ["dayObs", "run"], [("2016-07-21", "2016-07-22")]),
    ("imsim", {"expId": 204595}, ["filter", "raftName", "detectorName"], [("i_sim_1.4", "R11", "S20")]),
    ("phosim", {"expId": 204595}, "filter", ["i"]),
    ("comCam", {}, ["expId", "dayObs"], [(3019053000001, "2019-05-30")]),
    ("ts8", {"detector": 67}, ["run", "filter", "testSeqNum"], [("6006D", "z", 17)]),
]


@pytest.mark.parametrize("camera, dataId, format, expected", LSST_QUERIES)
def test_lsst_query_metadata(shared_data, camera, dataId, format, expected):
    assert sorted(open_lsst(shared_data, camera).queryMetadata("raw", format, **dataId)) == expected


#: (camera, partial data ID, the raw path it completes to)
LSST_PARTIAL_IDS = [
    ("lsstCam", {"expId": 3019032200002, "detector": 35},
     "raw/2019-03-22/3019032200002/3019032200002-R10-S22-det035.fits"),
    ("comCam", {"detector": 0}, "raw/2019-05-30/3019053000001/3019053000001-R22-S00-det000.fits"),
    ("latiss", {"expId": 3018092000065}, "raw/2018-09-20/3018092000065-det000.fits"),
    ("ts8", {"expId": 201807241028453}, "raw/6006D/201807241028453-RTM-010-S11-det067.fits"),
    ("ts3", {"detector": 433}, "raw/2018-11-15/201811151255111-R433-S00-det433.fits"),
    ("ucd", {"detector": 2}, "raw/2018-05-30/20180530150355-S00-det002.fits"),
    ("imsim", {"visit": 204595}, "raw/204595/R11/00204595-R11-S20-det042.fits"),
    ("phosim", {"detector": 42}, "raw/204595/R11/00204595-R11-S20-det042.fits"),
]


@pytest.mark.parametrize("camera, dataId, relpath", LSST_PARTIAL_IDS)
def test_lsst_partial_ids_subsets_and_refs(shared_data, camera, dataId, relpath):
    repo = open_lsst(shared_data, camera)
    root = lsst_root(shared_data, camera)
    assert repo.get("raw_filename", **dataId) == [str(root / relpath)]
    assert repo.getUri("raw_hdu", **dataId) == str(root / relpath) + "[0]"  # the HDU selector is kept
    assert repo.datasetExists("raw", **dataId)
    ref = repo.dataRef("raw", **dataId)
    assert ref.get("raw_filename") == [str(root / relpath)]
    assert len(repo.subset("raw")) == LSST_RAWS[camera][0]
    visits = repo.queryMetadata("raw", "visit")
    assert len(repo.subset("raw", "visit")) == len(set(visits))


def test_lsst_ambiguous_and_unknown_ids(shared_data):
    repo = open_lsst(shared_data, "lsstCam")
    with pytest.raises(NoResults, match="2 matches") as info:
        repo.get("raw_filename", expId=3019031900001)
    assert "registry.sqlite3" in str(info.value) and "expId" in str(info.value)
    with pytest.raises(NoResults, match="exactly one"):
        repo.dataRef("raw", expId=3019031900001)
    assert [ref.dataId["detector"] for ref in repo.subset("raw", expId=3019031900001)] == [29, 97]
    assert not repo.datasetExists("raw", expId=3019031900001, detector=98)
    # lsstCam has no calibration registry: a calibration lookup cannot be made (contract §2)
    with pytest.raises(RuntimeError, match="No registry for lookup"):
        repo.get("bias", expId=3019032200002, detector=35)


#: camera -> the keys of its raw template (README §2 "Raw templates")
RAW_KEYS = {
    "lsstCam": {"dayObs", "expId", "raftName", "detectorName", "detector"},
    "comCam": {"dayObs", "expId", "raftName", "detectorName", "detector"},
    "latiss": {"dayObs", "expId", "detector"},
    "ts8": {"run", "expId", "raftName", "detectorName", "detector"},
    "ts3": {"run", "expId", "raftName", "detectorName", "detector"},
    "ucd": {"run", "expId", "detectorName", "detector"},
    "imsim": {"run", "raftName", "expId", "detectorName", "detector"},
    "phosim": {"run", "raftName", "expId", "detectorName", "detector"},
}


@pytest.mark.parametrize("camera", sorted(RAW_KEYS))
def test_lsst_keys_and_dataset_types(shared_data, camera):
    repo = open_lsst(shared_data, camera)
    keys = repo.getKeys("raw")
    assert set(keys) == RAW_KEYS[camera]
    assert (keys["expId"], keys["detector"]) == (int, int)
    # the expId level drops the detector keys (README §2 levels)
    assert set(repo.getKeys("raw", "expId")) == RAW_KEYS[camera] - {"raftName", "detectorName", "detector"}
    assert {"raw", "raw_md", "raw_filename", "raw_amp", "raw_amp_md", "raw_hdu", "raw_sub", "raw_bbox",
            "bias", "bias_filename", "dark", "flat", "flat_md", "calexp", "calexp_sub", "postISRCCD", "src",
            "src_len", "camera"} <= repo.getDatasetTypes()


# -- obs_lsst: calibrations ----------------------------------------------------------------------

#: (camera, calibration, data ID of the raw (+filter), path under CALIB, image shape)
LSST_CALIBS = [
    ("latiss", "bias", {"expId": 3018092000065, "detector": 0},
     "bias/2018-09-21/bias-det000_2018-09-21.fits", (4000, 4072)),
    ("ts8", "bias", {"expId": 201807241028453},
     "bias/2018-07-24/bias-RTM-010-S11-det067_2018-07-24.fits", (4004, 4096)),
    ("imsim", "bias", {"expId": 204595, "detector": 42},
     "bias/2022-01-01/bias-R11-S20-det042_2022-01-01.fits", (4000, 4072)),
    ("imsim", "dark", {"expId": 204595, "detector": 42},
     "dark/2022-01-01/dark-R11-S20-det042_2022-01-01.fits", (4000, 4072)),
    ("imsim", "flat", {"expId": 204595, "detector": 42, "filter": "i_sim_1.4"},
     "flat/i_sim_1.4/2022-08-06/flat_i_sim_1.4-R11-S20-det042_2022-08-06.fits", (4000, 4072)),
]


@pytest.mark.parametrize("camera, calib, dataId, relpath, shape", LSST_CALIBS)
def test_lsst_calibration_lookup(shared_data, camera, calib, dataId, relpath, shape):
    repo = open_lsst(shared_data, camera)
    path = str(lsst_root(shared_data, camera) / "CALIB" / relpath)
    assert repo.get(f"{calib}_filename", **dataId) == [path]
    assert repo.datasetExists(calib, **dataId)
    image = repo.get(calib, **dataId)
    assert isinstance(image, CCDData) and image.shape == shape
    assert image.mask is not None and image.mask.shape == shape
    assert isinstance(image.uncertainty, VarianceUncertainty)
    assert repo.get(f"{calib}_md", **dataId)["OBSTYPE"].lower() == calib


def test_imsim_flat_of_another_filter_is_not_found(shared_data):
    repo = open_lsst(shared_data, "imsim")
    with pytest.raises(NoResults, match="0 matches") as info:
        repo.get("flat_filename", expId=204595, detector=42, filter="i")
    message = str(info.value)
    assert "flat" in message and "'filter': 'i'" in message and "registry.sqlite3" in message
    assert not repo.datasetExists("flat", expId=204595, detector=42, filter="i")


#: (camera, calibration, complete calib data ID, path under CALIB, shape): the CALIB roots as inputs
CALIB_ROOTS = [
    ("latiss", "bias", {"calibDate": "2018-09-21", "detector": 0},
     "bias/2018-09-21/bias-det000_2018-09-21.fits", (4000, 4072)),
    ("ts8", "bias", {"calibDate": "2018-07-24", "raftName": "RTM-010", "detectorName": "S11", "detector": 67},
     "bias/2018-07-24/bias-RTM-010-S11-det067_2018-07-24.fits", (4004, 4096)),
    ("imsim", "flat", {"calibDate": "2022-08-06", "raftName": "R11", "detectorName": "S20", "detector": 42,
                       "filter": "i_sim_1.4"},
     "flat/i_sim_1.4/2022-08-06/flat_i_sim_1.4-R11-S20-det042_2022-08-06.fits", (4000, 4072)),
]


@pytest.mark.parametrize("camera, calib, dataId, relpath, shape", CALIB_ROOTS)
def test_calib_root_as_input(shared_data, camera, calib, dataId, relpath, shape):
    calibRoot = lsst_root(shared_data, camera) / "CALIB"
    # the parent recorded in repositoryCfg.yaml is an absolute path on the upstream author's machine
    repo = butler.Butler(inputs=str(calibRoot))
    assert [r.repo.root for r in repo._repos.inputs()] == [str(calibRoot)]
    assert repo.getUri(calib, **dataId) == str(calibRoot / relpath)
    assert repo.get(calib, **dataId).shape == shape
    # a search that does not find it in CALIB reaches the missing parent: an error, not a silent False
    with pytest.raises(MissingParentError, match="/Users/timj/.*recorded by repository " + str(calibRoot)):
        repo.datasetExists(calib, **dict(dataId, calibDate="1999-01-01"))
    # the calibration registry of the root answers range queries
    if camera == "latiss":
        rangeId = {"dayObs": "2018-09-20", "detector": 0}
    else:
        rangeId = {key: dataId[key] for key in ("raftName", "detectorName", "filter") if key in dataId}
        rangeId["dateObs"] = "2020-01-01T00:00:00"
    assert repo.queryMetadata(calib, "calibDate", **rangeId) == [dataId["calibDate"]]


# -- obs_base CFHT registries (MinMapper2) -------------------------------------------------------


@pytest.fixture
def cfht(shared_data, tmp_path) -> butler.Butler:
    """A MinMapper2 repository in tmp_path over the shared CFHT registries (no copies)."""
    tests = shared_data / "obs_base" / "tests"
    args = RepositoryArgs(root=str(tmp_path / "cfht"), mapper="mappers.testing.MinMapper2", mode="rw",
                          mapperArgs={"registry": str(tests / "cfhtls.sqlite3"),
                                      "calibRegistry": str(tests / "calibRegistry.sqlite3")})
    return butler.Butler(outputs=args)


@pytest.mark.parametrize("visit, run, filt", [(787650, "05Am03", "i"), (789033, "05Am03", "i"),
                                              (787731, "05Am03", "r"), (792170, "05Am04", "i"),
                                              (792933, "05Am04", "g"), (793310, "05Am04", "r")])
def test_cfht_flat_for_each_visit(cfht, tmp_path, visit, run, filt):
    expected = str(tmp_path / "cfht" / f"flat-{run}-f{filt}.fits")
    assert cfht.get("flat_filename", visit=visit, ccd=13) == [expected]
    assert cfht.queryMetadata("flat", ["derivedRunId", "filter"], visit=visit, ccd=13) == [(run, filt)]
    assert not cfht.datasetExists("flat", visit=visit, ccd=13)  # registries only, no images


@pytest.mark.parametrize("taiObs", ["2005-04-18T00:00:00", "2005-04-25T12:00:00", "2005-05-02T23:59:59",
                                    "2005-04-17T01:00:00"])  # the last: a time after a bare-date validEnd
def test_cfht_flat_validity_gap(cfht, taiObs):
    with pytest.raises(NoResults, match="0 matches") as info:
        cfht.get("flat_filename", filter="i", taiObs=taiObs)
    message = str(info.value)
    assert "datasetType: flat" in message and taiObs in message and "calibRegistry.sqlite3" in message


def test_cfht_flat_overlap(cfht, shared_data):
    registry = shared_data / "obs_base" / "tests" / "calibRegistry.sqlite3"
    conn = sqlite3.connect(f"file:{registry}?mode=ro", uri=True)
    try:
        pairs = conn.execute(
            "SELECT a.filter, b.validStart FROM flat a JOIN flat b ON a.filter = b.filter AND a.id < b.id "
            "AND b.validStart BETWEEN a.validStart AND a.validEnd ORDER BY a.filter").fetchall()
    finally:
        conn.close()
    assert len(pairs) == 5  # README §3
    for filt, start in pairs:
        with pytest.raises(NoResults, match="2 matches") as info:
            cfht.get("flat_filename", filter=filt, taiObs=start)
        assert "datasetType: flat" in str(info.value) and "calibRegistry.sqlite3" in str(info.value)
    assert sorted(cfht.queryMetadata("flat", "derivedRunId", filter="i", taiObs="2003-05-30")) == [
        "03Am04", "03Am04n"]


def test_cfht_queries_and_subsets(cfht):
    assert cfht.queryMetadata("raw", "ccd") == [c for c in range(36) if c != 3]
    assert cfht.queryMetadata("raw", "visit", filter="g") == [787784, 787796, 788455, 792933]
    assert cfht.queryMetadata("raw", "visit", filter="r", visit=787731, ccd=36) == []
    assert len(cfht.subset("raw", visit=787650)) == 35
    assert cfht.getKeys("raw") == {"ccd": int}
    assert cfht.getKeys("raw", "visit") == {}


# -- writing beside an obs_lsst repository -------------------------------------------------------

#: camera -> (partial data ID, the processed-file stem "<visit>-<filter>/<raft>/<type>_<...>-det<nnn>")
OUTPUTS = {
    "imsim": ({"expId": 204595, "detector": 42},
              "00204595-i_sim_1.4/R11/{t}_00204595-i_sim_1.4-R11-S20-det042"),
    "lsstCam": ({"expId": 3019032200002, "detector": 35},
                "3019032200002-SDSSi~ND_OD0.5/R10/{t}_3019032200002-SDSSi~ND_OD0.5-R10-S22-det035"),
}


def _ccd() -> CCDData:
    rng = np.random.default_rng(6)
    shape = (40, 60)
    return CCDData(rng.normal(100.0, 5.0, shape).astype(np.float32), unit="adu",
                   mask=rng.random(shape) < 0.1,
                   uncertainty=VarianceUncertainty(rng.random(shape).astype(np.float32)),
                   meta=fits.Header({"OBSERVER": "e2e test", "EXPTIME": 30.0}))


@pytest.mark.parametrize("camera", sorted(OUTPUTS))
def test_output_chained_to_lsst_input(shared_data, tmp_path, camera):
    inputRoot = lsst_root(shared_data, camera)
    before = tree_fingerprint(inputRoot)
    dataId, stem = OUTPUTS[camera]
    out = tmp_path / "out"
    writer = butler.Butler(inputs=str(inputRoot), outputs=str(out))
    ccd = _ccd()
    table = Table({"id": np.arange(5, dtype=np.int64), "flux": np.linspace(1.0, 2.0, 5)})
    for datasetType in ("postISRCCD", "calexp"):
        writer.put(ccd, datasetType, **dataId)
    writer.put(table, "src", **dataId)

    written = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                     if p.is_file() and not p.name.startswith("provenance.sqlite3"))
    expected = [f"{t}/{stem.format(t=t)}.fits" for t in ("postISRCCD", "calexp", "src")]
    assert written == sorted(expected + ["repositoryCfg.yaml"])

    reader = butler.Butler(inputs=str(out))  # a new Butler: the parent comes from the output's cfg
    for datasetType in ("postISRCCD", "calexp"):
        back = reader.get(datasetType, **dataId)
        assert isinstance(back, CCDData)
        np.testing.assert_array_equal(back.data, ccd.data)
        np.testing.assert_array_equal(back.mask, ccd.mask)
        assert isinstance(back.uncertainty, VarianceUncertainty)
        np.testing.assert_array_equal(back.uncertainty.array, ccd.uncertainty.array)
        assert back.meta["OBSERVER"] == "e2e test" and back.meta["EXPTIME"] == 30.0
        assert back.unit == ccd.unit
    assert reader.get("calexp_bbox", **dataId) == (0, 0, 60, 40)
    np.testing.assert_array_equal(reader.get("calexp_sub", bbox=(10, 5, 20, 8), **dataId).data,
                                  ccd.data[5:13, 10:30])
    back = reader.get("src", **dataId)
    assert back.colnames == ["id", "flux"] and back["id"].tolist() == table["id"].tolist()
    np.testing.assert_array_equal(back["flux"], table["flux"])
    assert reader.get("src_len", **dataId) == 5
    # reads not found in the output fall through to the parent
    assert reader.getUri("raw_hdu", **dataId).startswith(str(inputRoot) + os.sep)
    assert reader.get("raw_md", **dataId)["DATE-OBS"] == writer.queryMetadata("raw", "dateObs", **dataId)[0]
    assert tree_fingerprint(inputRoot) == before


# -- path safety through the Butler ---------------------------------------------------------------

HOSTILE = ["../../etc", "a/b", "x\x00y", "/etc/passwd", ".."]
#: (operation, how it is called on a Butler with an output chained to imsim)
OPERATIONS = {
    "get": lambda b, dataId: b.get("calexp", **dataId),
    "put": lambda b, dataId: b.put(_ccd(), "calexp", **dataId),
    "datasetExists": lambda b, dataId: b.datasetExists("calexp", **dataId),
    "getUri": lambda b, dataId: b.getUri("calexp", **dataId),
    "getUri write": lambda b, dataId: b.getUri("calexp", write=True, **dataId),
    "get raw": lambda b, dataId: b.get("raw", **dataId),
}
COMPLETE_ID = {"visit": 204595, "filter": "i_sim_1.4", "raftName": "R11", "detectorName": "S20",
               "detector": 42, "expId": 204595, "run": "204595"}


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("key", ["raftName", "filter"])
@pytest.mark.parametrize("complete", [True, False], ids=["complete", "partial"])
def test_hostile_values_through_butler(shared_data, tmp_path, value, key, complete):
    repo = butler.Butler(inputs=str(lsst_root(shared_data, "imsim")), outputs=str(tmp_path / "out"))
    before = tree_fingerprint(tmp_path)
    dataId = dict(COMPLETE_ID) if complete else {"expId": 204595, "detector": 42}
    dataId[key] = value
    for name, operation in OPERATIONS.items():
        if name == "get raw" and key == "filter":
            continue  # filter is not a key of the raw template
        with pytest.raises(UnsafePathError, match=repr(key)):
            operation(repo, dataId)
    assert tree_fingerprint(tmp_path) == before


def test_hostile_values_through_obs_test_butler(obs_test_root, tmp_path):
    repo = butler.Butler(inputs=str(obs_test_root), outputs=str(tmp_path / "out"))
    before = tree_fingerprint(tmp_path)
    for value in HOSTILE:
        for operation in OPERATIONS.values():
            with pytest.raises(UnsafePathError):
                operation(repo, {"visit": 1, "filter": value})
    assert tree_fingerprint(tmp_path) == before
