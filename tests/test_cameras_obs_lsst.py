"""The obs_lsst mappers against the eight real obs_lsst repositories (README §2)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from butler.errors import IncompleteDataIdError, NoResults, UnsafePathError
from butler.utils import doImport
from mappers import lsst

CAMERAS = ["comCam", "imsim", "latiss", "lsstCam", "phosim", "ts3", "ts8", "ucd"]


@pytest.fixture(scope="module")
def input_dir(shared_data):
    return shared_data / "obs_lsst" / "data" / "input"


def open_mapper(input_dir, camera):
    root = input_dir / camera
    return doImport((root / "_mapper").read_text().strip())(root=str(root))


def registry_rows(input_dir, camera):
    conn = sqlite3.connect(f"file:{input_dir / camera / 'registry.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT expId, detector FROM raw").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("camera", CAMERAS)
def test_every_registry_row_maps_to_an_existing_raw(input_dir, camera):
    mapper = open_mapper(input_dir, camera)
    assert hasattr(type(mapper), "translator")  # the ingest hook
    rows = registry_rows(input_dir, camera)
    assert rows
    for expId, detector in rows:
        location = mapper.map("raw", {"expId": expId, "detector": detector})
        assert os.path.exists(location.getLocationsWithRoot()[0]), location


def test_lsstcam_paths_and_queries(input_dir):
    mapper = open_mapper(input_dir, "lsstCam")
    assert isinstance(mapper, lsst.LsstCamMapper)
    location = mapper.map("raw", {"expId": 3019032200002, "detector": 35})
    assert location.getLocations() == ["raw/2019-03-22/3019032200002/3019032200002-R10-S22-det035.fits"]
    assert sorted(mapper.queryMetadata("raw", ["detector"], {"expId": 3019031900001})) == [(29,), (97,)]
    with pytest.raises(NoResults, match="2 matches") as info:
        mapper.map("raw", {"expId": 3019031900001})
    assert "registry.sqlite3" in str(info.value) and "raw" in str(info.value)
    assert sorted(mapper.queryMetadata("raw", "filter", {})) == [("SDSSi~ND_OD0.5",), ("unknown",)]
    assert mapper.getDefaultLevel() == "sensor"
    assert mapper.getDefaultSubLevel("visit") == "sensor"
    assert "detector" not in mapper.getKeys("raw", "visit")


def test_unregistered_file_is_not_found_by_registry(input_dir):
    mapper = open_mapper(input_dir, "lsstCam")
    assert mapper.queryMetadata("raw", ["expId"], {"detector": 98}) == []
    # a complete data ID still maps: widths pad and never truncate
    location = mapper.map("raw", {"dayObs": "2021-12-12", "expId": 30211212000310, "raftName": "R22",
                                  "detectorName": "S22", "detector": 98})
    assert os.path.exists(location.getLocationsWithRoot()[0])


@pytest.mark.parametrize("camera, mapper_id, expected", [
    ("phosim", {"expId": 9006002, "visit": 9006002, "snap": 0, "raftName": "R22", "detectorName": "S00"},
     "eimage/9006002/E000/R22/eimage_09006002_R22_S00_E000.fits.gz"),
    ("lsstCam", {"expId": 4000021706001, "visit": 4000021706001, "snap": 0, "raftName": "R22",
                 "detectorName": "S00"},
     "eimage/4000021706001/E000/R22/eimage_4000021706001_R22_S00_E000.fits.gz"),
])
def test_eimage(input_dir, camera, mapper_id, expected):
    location = open_mapper(input_dir, camera).map("eimage", mapper_id)
    assert location.getLocations() == [expected]
    assert os.path.exists(location.getLocationsWithRoot()[0])


def test_phosim_process_ccd_metadata(input_dir):
    location = open_mapper(input_dir, "phosim").map(
        "processCcd_metadata", {"visit": 204595, "filter": "i", "raftName": "R11", "detectorName": "S11",
                                "detector": 40})
    assert os.path.exists(location.getLocationsWithRoot()[0])


def test_latiss(input_dir):
    mapper = open_mapper(input_dir, "latiss")
    assert mapper.calibRoot == str(input_dir / "latiss" / "CALIB")
    assert mapper.map("raw", {"expId": 3018092000065, "detector": 0}).getLocations() == [
        "raw/2018-09-20/3018092000065-det000.fits"]
    for dataId in ({"expId": 3018092000065}, {"seqNum": 65}, {"detector": 0}):
        assert mapper.queryMetadata("raw", ["expId", "seqNum", "dayObs"], dataId) == [
            (3018092000065, 65, "2018-09-20")]
    assert len(mapper.queryMetadata("raw", ["expId"], {"filter": "unknown~unknown"})) == 1
    assert mapper.queryMetadata("raw", ["expId"], {"filter": "foo"}) == []
    bias = mapper.map("bias", {"expId": 3018092000065, "detector": 0})
    path = input_dir / "latiss/CALIB/bias/2018-09-21/bias-det000_2018-09-21.fits"
    assert bias.getLocationsWithRoot() == [str(path)]
    assert bias.dataId["calibDate"] == "2018-09-21"


def test_ts8(input_dir):
    mapper = open_mapper(input_dir, "ts8")
    dataId = {"run": "6006D", "expId": 201807241028453, "raftName": "RTM-010", "detectorName": "S11",
              "detector": 67}
    assert mapper.map("raw", dataId).getLocations() == ["raw/6006D/201807241028453-RTM-010-S11-det067.fits"]
    bias = mapper.map("bias", {"expId": 201807241028453})
    assert bias.getLocationsWithRoot() == [
        str(input_dir / "ts8/CALIB/bias/2018-07-24/bias-RTM-010-S11-det067_2018-07-24.fits")]


def test_imsim_calibrations(input_dir):
    mapper = open_mapper(input_dir, "imsim")
    dataId = {"expId": 204595, "detector": 42}
    assert mapper.map("raw", dataId).getLocations() == ["raw/204595/R11/00204595-R11-S20-det042.fits"]
    expected = {
        "bias": "bias/2022-01-01/bias-R11-S20-det042_2022-01-01.fits",
        "dark": "dark/2022-01-01/dark-R11-S20-det042_2022-01-01.fits",
        "flat": "flat/i_sim_1.4/2022-08-06/flat_i_sim_1.4-R11-S20-det042_2022-08-06.fits",
    }
    for calib, path in expected.items():
        location = mapper.map(calib, dict(dataId, filter="i_sim_1.4"))
        assert location.getLocationsWithRoot() == [str(input_dir / "imsim" / "CALIB" / path)]
        assert os.path.exists(location.getLocationsWithRoot()[0])
    for other in ("i", "r"):
        with pytest.raises(NoResults, match="0 matches"):
            mapper.map("flat", dict(dataId, filter=other))


def test_ucd_and_ts3(input_dir):
    ucd = open_mapper(input_dir, "ucd")
    assert sorted(ucd.queryMetadata("raw", ["run", "detector", "filter"], {})) == [
        ("2018-05-30", 2, "r"), ("2018-12-05", 0, "r")]
    ts3 = open_mapper(input_dir, "ts3")
    assert sorted(ts3.queryMetadata("raw", ["detector", "filter"], {})) == [(71, "550CutOn"),
                                                                            (433, "550CutOn")]
    assert ts3.queryMetadata("raw", ["dayObs", "run"], {"detector": 71}) == [("2016-07-21", "2016-07-22")]


def test_lsstcam_raw_assembly_and_amp(input_dir):
    mapper = open_mapper(input_dir, "lsstCam")
    dataId = {"expId": 3019032200002, "detector": 35}
    location = mapper.map("raw", dataId)
    image = mapper.bypass_raw("raw", None, location, location.dataId)
    assert isinstance(image, CCDData)
    assert image.shape == (2 * 2048, 8 * 576)
    assert image.meta["RAFTBAY"] == "R10"
    amp = mapper.map("raw_amp", dict(dataId, channel=16))
    assert amp.getLocations()[0].endswith("det035.fits[16]")
    assert mapper.bypass_raw_amp("raw_amp", None, amp, amp.dataId).shape == (2048, 576)
    header = mapper.bypass_raw_md("raw_md", None, location, dataId)
    assert header["DAYOBS"] == "20190322" and header["CCDSLOT"] == "S22"
    assert mapper.map("raw_hdu", dataId).getLocations()[0].endswith("det035.fits[0]")


def test_raw_assembly_flips_backwards_detsec(tmp_path):
    import numpy as np

    from mappers.astro import assemble_amplifiers

    hdus = [fits.PrimaryHDU()]
    for detsec, value in (("[2:1,1:2]", 1), ("[3:4,1:2]", 2), ("[1:2,4:3]", 3), ("[4:3,4:3]", 4)):
        data = np.array([[value * 10, value * 10 + 1], [value * 10 + 2, value * 10 + 3]], dtype=np.int32)
        hdus.append(fits.ImageHDU(data, header=fits.Header({"DETSEC": detsec})))
    fits.HDUList(hdus).writeto(tmp_path / "raw.fits")
    image = assemble_amplifiers(str(tmp_path / "raw.fits")).data
    assert image.tolist() == [[11, 10, 20, 21], [13, 12, 22, 23], [32, 33, 43, 42], [30, 31, 41, 40]]


def test_ucd_raw_has_empty_amplifiers(input_dir):
    mapper = open_mapper(input_dir, "ucd")
    location = mapper.map("raw", {"detector": 2})
    assert mapper.bypass_raw("raw", None, location, location.dataId).shape == (0, 0)
    amp = mapper.map("raw_amp", {"detector": 2, "channel": 1})
    assert mapper.bypass_raw_amp("raw_amp", None, amp, amp.dataId).shape == (0, 0)


def test_detectors_and_exposure_ids(input_dir):
    mapper = open_mapper(input_dir, "lsstCam")
    dataId = {"expId": 3019032200002, "detector": 35}
    detector = mapper.bypass_raw_detector("raw_detector", None, None, dataId)
    assert (detector.name, detector.id) == ("R10_S22", 35)
    assert mapper.bypass_ccdExposureId("ccdExposureId", None, None, dataId) == 3019032200002 * 1000 + 35
    assert mapper.bypass_ccdExposureId_bits("ccdExposureId_bits", None, None, {}) == 36
    with pytest.raises(IncompleteDataIdError, match="neither visit nor expId"):
        mapper.bypass_ccdExposureId("ccdExposureId", None, None, {"detector": 35})


def test_hostile_values(input_dir):
    mapper = open_mapper(input_dir, "lsstCam")
    with pytest.raises(UnsafePathError):
        mapper.map("raw", {"dayObs": "../..", "expId": 1, "raftName": "R22", "detectorName": "S00",
                           "detector": 0})
    with pytest.raises(UnsafePathError):
        mapper.map("raw", {"dayObs": "2019-03-19", "expId": 1, "raftName": "/etc/passwd",
                           "detectorName": "S00", "detector": 0}, write=True)
