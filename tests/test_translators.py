"""Header translators against the registries shipped with the obs_lsst and obs_test data."""

from __future__ import annotations

import glob
import os
import sqlite3

import pytest
from astropy.io import fits

from butler.errors import IngestError
from mappers import translators
from mappers.translators import TRANSLATORS

from conftest import HAVE_SHARED_DATA, SHARED_DATA

DATA = str(SHARED_DATA)
OBS_LSST = os.path.join(DATA, "obs_lsst", "data", "input")
OBS_TEST = os.path.join(DATA, "obs_test", "data", "input")
CAMERAS = ("lsstCam", "comCam", "latiss", "ts8", "ts3", "ucd", "imsim", "phosim")
UNREGISTERED = os.path.join(OBS_LSST, "lsstCam", "raw", "2021-12-12", "30211212000310",
                            "30211212000310-R22-S22-det098.fits")

pytestmark = pytest.mark.needs_shared_data


def read_registry(path: str, table: str) -> list[dict]:
    """All rows of a table, opened read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(f'SELECT * FROM "{table}"')]
    finally:
        connection.close()


def table_columns(path: str, table: str) -> list[tuple[str, str]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(row[1], row[2].upper()) for row in connection.execute(f'PRAGMA table_info("{table}")')]
    finally:
        connection.close()


def raw_files(camera: str) -> list[str]:
    return sorted(glob.glob(os.path.join(OBS_LSST, camera, "raw", "**", "*.fits"), recursive=True))


def registered_raws() -> list[tuple[str, str, dict]]:
    """(camera, file, registry row without id) for every raw file that has a row."""
    cases = []
    for camera in CAMERAS:
        rows = read_registry(os.path.join(OBS_LSST, camera, "registry.sqlite3"), "raw")
        for path in raw_files(camera):
            # the registered files are exactly those under their row's template path
            matches = [row for row in rows
                       if f"{row['expId']}" in os.path.basename(path)
                       and os.path.basename(path).endswith(f"det{row['detector']:03d}.fits")]
            if matches:
                (row,) = matches
                cases.append((camera, path, {k: v for k, v in row.items() if k != "id"}))
    return cases


REGISTERED = registered_raws() if HAVE_SHARED_DATA else []


def test_every_registry_row_has_a_file():
    assert len(REGISTERED) == 12
    assert {camera for camera, _, _ in REGISTERED} == set(CAMERAS)


@pytest.mark.parametrize("camera,path,expected", REGISTERED,
                         ids=[os.path.basename(path) for _, path, _ in REGISTERED])
def test_translate_reproduces_registry_row(camera, path, expected):
    row = TRANSLATORS[camera].translate(fits.getheader(path, 0), path)
    assert list(row) == list(expected)
    assert row == expected
    assert [type(value) for value in row.values()] == [type(value) for value in expected.values()]


@pytest.mark.parametrize("camera", CAMERAS)
def test_schema_matches_registry(camera):
    registry = os.path.join(OBS_LSST, camera, "registry.sqlite3")
    translator = TRANSLATORS[camera]
    assert [("id", "INTEGER")] + list(translator.columns) == table_columns(registry, "raw")
    assert list(translator.visit_columns) == [name for name, _ in table_columns(registry, "raw_visit")]
    assert set(translator.unique) <= {name for name, _ in translator.columns}


def test_unregistered_lsstcam_file():
    row = translators.LsstCamTranslator.translate(fits.getheader(UNREGISTERED, 0), UNREGISTERED)
    assert row == {
        "run": "13162", "visit": 3021121200310, "filter": "SDSSi",
        "date": "2021-12-13T04:58:56.398", "dateObs": "2021-12-13T04:58:56.398", "expTime": 7.83172,
        "raftName": "R22", "detectorName": "S22", "detector": 98, "snap": 0, "object": "UNKNOWN",
        "imageType": "FLAT", "testType": "FLAT", "lsstSerial": "E2V-CCD250-370", "wavelength": -666,
        "controller": "C", "obsid": "MC_C_20211212_000310", "expGroup": "3021121200310",
        "expId": 3021121200310, "dayObs": "2021-12-12", "seqNum": 310,
    }


def test_obs_test_rows():
    rows = read_registry(os.path.join(OBS_TEST, "registry.sqlite3"), "raw")
    for row in rows:
        path = os.path.join(OBS_TEST, "raw", f"raw_v{row['visit']}_f{row['filter']}.fits.gz")
        translated = translators.TestCamTranslator.translate(fits.getheader(path), path)
        # upstream's registry expTime (0.0) disagrees with the header (15.0): README §1
        assert translated == {"visit": row["visit"], "filter": row["filter"], "taiObs": row["taiObs"],
                              "expTime": 15.0}


def test_translators_table_names_every_camera():
    assert set(TRANSLATORS) == set(CAMERAS) | {"test"}
    assert all(TRANSLATORS[name].camera == name for name in TRANSLATORS)


@pytest.fixture
def lsstcam_header():
    return fits.getheader(UNREGISTERED, 0)


def test_missing_key_names_file_and_key(lsstcam_header):
    del lsstcam_header["RAFTBAY"]
    with pytest.raises(IngestError, match=r"some/file\.fits.*RAFTBAY"):
        translators.LsstCamTranslator.translate(lsstcam_header, "some/file.fits")


def test_unknown_raft_is_an_ingest_error(lsstcam_header):
    lsstcam_header["RAFTBAY"] = "R44"
    with pytest.raises(IngestError, match="R44_S22"):
        translators.LsstCamTranslator.translate(lsstcam_header, "x.fits")


def test_uncastable_value_is_an_ingest_error(lsstcam_header):
    lsstcam_header["EXPTIME"] = "long"
    with pytest.raises(IngestError, match="expTime"):
        translators.LsstCamTranslator.translate(lsstcam_header, "x.fits")


@pytest.mark.parametrize("cards,expected", [
    ({}, "SDSSi"),
    ({"FILTER2": "ND_OD0.5"}, "SDSSi~ND_OD0.5"),
    ({"FILTER2": "empty_3"}, "SDSSi"),
    ({"FILTER": "empty_2"}, "empty"),
    ({"FILTER": None, "FILTER2": "ND_OD0.5"}, "unknown"),
])
def test_lsstcam_filter_rule(lsstcam_header, cards, expected):
    for key, value in cards.items():
        if value is None:
            del lsstcam_header[key]
        else:
            lsstcam_header[key] = value
    assert translators.LsstCamTranslator.translate(lsstcam_header, "x.fits")["filter"] == expected


@pytest.mark.parametrize("cards,expected", [
    ({"FILTER": "r"}, "empty"),  # this header is from 2021, after 2020-03-13
    ({"FILTER": "r", "MJD-OBS": 58634.1}, "r_03"),
    ({"FILTER": "", "MJD-OBS": 58634.1}, "r_03"),
    ({"FILTER": None, "FILTER2": "ND_OD0.5"}, "unknown~ND_OD0.5"),
])
def test_comcam_filter_rule(lsstcam_header, cards, expected):
    lsstcam_header["RAFTBAY"] = "R22"
    del lsstcam_header["FILTER2"]
    for key, value in cards.items():
        if value is None:
            del lsstcam_header[key]
        else:
            lsstcam_header[key] = value
    assert translators.LsstComCamTranslator.translate(lsstcam_header, "x.fits")["filter"] == expected


@pytest.mark.parametrize("cards,expected", [
    ({"CONTRLLR": "C"}, ("C", 3021121200310)),
    ({"CONTRLLR": "O"}, ("O", 2021121200310)),
    ({"CONTRLLR": None}, ("C", 2021121200310)),
    ({"CONTRLLR": ""}, ("C", 2021121200310)),  # from the 2nd field of OBSID MC_C_...
    ({"CONTRLLR": "", "OBSID": "MC_20211212_000310"}, ("O", 2021121200310)),
])
def test_controller_and_exposure_id(lsstcam_header, cards, expected):
    for key, value in cards.items():
        if value is None:
            del lsstcam_header[key]
        else:
            lsstcam_header[key] = value
    row = translators.LsstCamTranslator.translate(lsstcam_header, "x.fits")
    assert (row["controller"], row["expId"]) == expected


@pytest.mark.parametrize("cards,expected", [
    ({"IMGTYPE": "object"}, ("SKYEXP", -666)),
    ({"MONOWL": 499.6}, ("FLAT", 500)),
    ({"MONOWL": -1.0}, ("FLAT", -666)),
])
def test_image_type_and_wavelength(lsstcam_header, cards, expected):
    lsstcam_header.update(cards)
    row = translators.LsstCamTranslator.translate(lsstcam_header, "x.fits")
    assert (row["imageType"], row["wavelength"]) == expected


def test_mjd_rounds_to_the_millisecond():
    assert translators.mjd_to_isot(58000.0) == "2017-09-04T00:00:00.000"
    assert translators.mjd_to_isot(58000.0 + 0.0016 / 86400) == "2017-09-04T00:00:00.002"
    assert translators.mjd_to_isot(58000.0 + 0.0014 / 86400) == "2017-09-04T00:00:00.001"
    assert translators.mjd_to_isot(58000.0 - 0.0001 / 86400) == "2017-09-04T00:00:00.000"


def test_observing_day_is_tai_minus_eight_hours():
    assert translators.observing_day("2016-07-22T06:07:06.784") == "2016-07-21"
    assert translators.observing_day("2018-07-24T10:28:45.342") == "2018-07-24"
    # 08:00 UTC minus 8 h is still the same day once TAI-UTC (37 s) is added
    assert translators.observing_day("2018-07-24T07:59:30.000") == "2018-07-24"
    assert translators.observing_day("2018-07-24T07:59:20.000") == "2018-07-23"
