"""The ``butler`` command, run in this process (click's CliRunner) on real repositories.

The demo's repositories (made once by ``butler demo``) and the shared Gen2
repositories under the shared data, which must stay byte-identical. The command
as a process (``python -m butler``, exit codes, a closed pipe) is tested in
``test_cli_e2e.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest
from astropy.io import fits

from conftest import SHARED_DATA, assert_user_error, run_cli as butler, run_demo

SHARED = str(SHARED_DATA)
OBS_TEST = os.path.join(SHARED, "obs_test", "data", "input")
OBS_LSST = os.path.join(SHARED, "obs_lsst", "data", "input")
CAMERAS = ("comCam", "imsim", "latiss", "lsstCam", "phosim", "ts3", "ts8", "ucd")
#: obs_base's CFHT registries: no _mapper, no images; read with the MinMapper2 fixture's policy
CFHT = os.path.join(SHARED, "obs_base", "tests")
CFHT_OPTIONS = ("--mapper", "mappers.testing.MinMapper2", "--registry", os.path.join(CFHT, "cfhtls.sqlite3"))

#: the tests reading the shared repositories, which are byte-identical after this module
needs_shared = pytest.mark.usefixtures("shared_data_untouched")
#: one pytest-xdist worker runs this module, so the demo is made once
pytestmark = pytest.mark.xdist_group("test_cli")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """The demo, made once for this module."""
    return run_demo(tmp_path_factory)


@pytest.fixture(scope="module")
def planted(demo) -> str:
    """A copy of ``v1`` (a sibling, so its relative parent link holds) with planted changes.

    - postISRCCD visit=101 detector=0: one pixel changed;
    - postISRCCD visit=102 detector=1: header keyword ISR_FLAT changed;
    - src visit=103 detector=0: one flux value changed;
    - src visit=103 detector=1: removed.
    """
    root = os.path.join(demo["dir"], "v1x")
    shutil.copytree(demo["v1"], root)
    with fits.open(os.path.join(root, "postISRCCD/v0101/postISRCCD_v0101_d00.fits"), mode="update") as hdus:
        image = next(h for h in hdus if h.data is not None)
        image.data[10, 20] += 7.5
    with fits.open(os.path.join(root, "postISRCCD/v0102/postISRCCD_v0102_d01.fits"), mode="update") as hdus:
        hdus[0].header["ISR_FLAT"] = "2000-01-01"
    with fits.open(os.path.join(root, "src/v0103/src_v0103_d00.fits"), mode="update") as hdus:
        hdus[1].data["flux"][2] += 1.0
    os.remove(os.path.join(root, "src/v0103/src_v0103_d01.fits"))
    return root


# -- demo ------------------------------------------------------------------------------------


def test_demo_output(demo):
    out = demo["out"]
    for name in ("input", "v1", "v2"):
        assert demo[name] in out and os.path.isdir(demo[name])
    assert "postISRCCD: 6 compared, 0 different" in out and out.count("IDENTICAL") == 1
    assert "src: 6 compared, 6 different" in out and "meta.THRESH" in out
    assert os.path.isfile(os.path.join(demo["input"], "registry.sqlite3"))
    with sqlite3.connect(os.path.join(demo["input"], "calibRegistry.sqlite3")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM flat").fetchone() == (4,)
        assert conn.execute("SELECT validStart < validEnd FROM bias").fetchall() == [(1,), (1,)]
    raw = os.path.join(demo["input"], "raw", "v0101", "raw_v0101_d00.fits")
    header = fits.getheader(raw)
    assert (header["EXPID"], header["DETECTOR"], header["FILTER"]) == (101, 0, "g")
    assert fits.getdata(raw).dtype.kind == "u"


def test_demo_refuses_a_non_empty_directory(demo):
    assert_user_error(butler("demo", demo["dir"]), "not empty")


def test_help_on_every_subcommand():
    for command in ("create", "mappers", "demo", "show", "query", "get", "compare", "ingest", "serve", "map"):
        result = butler(command, "--help")
        assert result.exit_code == 0 and "Usage: butler " + command in result.stdout
        example = result.stdout.split("Example")[1] if "Example" in result.stdout else ""
        assert f"butler {command}" in example, command


# -- show ------------------------------------------------------------------------------------


def test_show_demo_chain(demo):
    result = butler("show", demo["v1"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"repository: {demo['v1']}" in out and "mappers.demo.DemoMapper" in out
    assert f"`-- {demo['input']}" in out
    assert "raw 6, raw_visit 3" in out and "bias 2, flat 4" in out
    assert f"{demo['v1']}: postISRCCD 6, src 6" in out


@needs_shared
@pytest.mark.parametrize("camera", CAMERAS)
def test_show_obs_lsst(camera):
    root = os.path.join(OBS_LSST, camera)
    result = butler("show", root)
    assert result.exit_code == 0, result.stderr
    assert "legacy (_mapper, registry.sqlite3)" in result.stdout
    assert "-> mappers.lsst." in result.stdout
    assert f"{root}/registry.sqlite3: raw " in result.stdout


@needs_shared
def test_show_obs_test():
    result = butler("show", OBS_TEST, "--types")
    assert result.exit_code == 0, result.stderr
    assert "lsst.obs.test.testMapper.TestMapper -> mappers.test.TestMapper" in result.stdout
    assert "raw 3, raw_skyTile 5, raw_visit 3" in result.stdout
    assert f"{OBS_TEST}: defects 1, raw 3" in result.stdout
    assert " raw_md," in result.stdout  # --types lists them all


@needs_shared
def test_show_parent_chain_of_legacy_cfgs():
    result = butler("show", os.path.join(SHARED, "obs_test", "tests", "policyTest", "b"))
    assert result.exit_code == 0, result.stderr
    assert "`-- " + os.path.join(SHARED, "obs_test", "tests", "policyTest", "a") in result.stdout


# -- query -----------------------------------------------------------------------------------


@needs_shared
def test_query_obs_test():
    result = butler("query", OBS_TEST, "raw", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"visit": 1, "filter": "g"}, {"visit": 2, "filter": "g"},
                                         {"visit": 3, "filter": "r"}]
    result = butler("query", OBS_TEST, "raw", "filter=g", "--keys", "visit", "--format", "csv")
    assert result.stdout.split() == ["visit", "1", "2"]


@needs_shared
def test_query_obs_lsst():
    root = os.path.join(OBS_LSST, "lsstCam")
    result = butler("query", root, "raw", "--keys", "visit,detector,filter", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.split()[1:]) == ["3019031900001,29,unknown", "3019031900001,97,unknown",
                                                 "3019032200002,35,SDSSi~ND_OD0.5"]
    result = butler("query", root, "raw", "detector=29")  # a typed key: detector is an int
    assert result.exit_code == 0 and "(1 row)" in result.stdout and "R10" in result.stdout
    result = butler("query", os.path.join(OBS_LSST, "latiss"), "raw", "--keys", "expId,seqNum,dayObs",
                    "--format", "json")
    assert json.loads(result.stdout) == [{"expId": 3018092000065, "seqNum": 65, "dayObs": "2018-09-20"}]


@needs_shared
def test_query_cfht():
    result = butler("query", CFHT, "raw", "filter=g", "--keys", "visit", "--format", "json", *CFHT_OPTIONS)
    assert result.exit_code == 0, result.stderr
    assert [row["visit"] for row in json.loads(result.stdout)] == [787784, 787796, 788455, 792933]
    ccds = json.loads(butler("query", CFHT, "raw", "--keys", "ccd", "--format", "json", *CFHT_OPTIONS).stdout)
    assert [row["ccd"] for row in ccds] == [c for c in range(36) if c != 3]
    result = butler("query", CFHT, "raw", "visit=787650", *CFHT_OPTIONS)
    assert "(35 rows)" in result.stdout
    # the flat's validity range, looked up in CFHT's calibRegistry.sqlite3 beside the registry
    result = butler("query", CFHT, "flat", "visit=787650", "ccd=13", "--keys", "derivedRunId,filter",
                    "--format", "csv", *CFHT_OPTIONS)
    assert result.stdout.split() == ["derivedRunId,filter", "05Am03,i"]


@needs_shared
def test_show_cfht():
    result = butler("show", CFHT, *CFHT_OPTIONS)
    assert result.exit_code == 0, result.stderr
    assert "mapper:     mappers.testing.MinMapper2" in result.stdout
    assert f"{CFHT}/cfhtls.sqlite3: raw 1260, raw_skyTile 2070, raw_visit 18" in result.stdout
    assert f"{CFHT}/calibRegistry.sqlite3: bias 53, dark 56, flat 252, fringe 94" in result.stdout


def test_query_demo(demo):
    result = butler("query", demo["v1"], "src", "visit=102", "--format", "json")
    assert json.loads(result.stdout) == [{"visit": 102, "detector": 0}, {"visit": 102, "detector": 1}]


# -- get -------------------------------------------------------------------------------------


def test_get_demo(demo, tmp_path):
    args = (demo["v1"], "postISRCCD", "visit=101", "detector=1")
    result = butler("get", *args, "--uri")
    assert result.stdout.strip() == os.path.join(demo["v1"], "postISRCCD/v0101/postISRCCD_v0101_d01.fits")
    result = butler("get", *args)
    assert "CCDData: shape (96, 128)" in result.stdout
    out = tmp_path / "copy.fits"
    result = butler("get", demo["v1"], "src", "visit=101", "detector=1", "--out", str(out))
    with open(os.path.join(demo["v1"], "src/v0101/src_v0101_d01.fits"), "rb") as stream:
        assert result.exit_code == 0 and out.read_bytes() == stream.read()
    # a calibration found through the chain and the validity range
    result = butler("get", demo["v1"], "flat", "visit=103", "detector=0", "--uri")
    assert result.stdout.strip() == os.path.join(demo["input"], "flat", "r", "2024-04-15",
                                                 "flat_r_d00_2024-04-15.fits")


@needs_shared
def test_get_shared():
    result = butler("get", OBS_TEST, "raw", "visit=1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [os.path.join(OBS_TEST, "raw/raw_v1_fg.fits.gz"),
                                          "CCDData: shape (2000, 1026), dtype uint16, unit adu",
                                          "min 936 max 61267 mean 1216.76 median 1182; 0 NaN; "
                                          "zero fraction 0"]
    result = butler("get", os.path.join(OBS_LSST, "ts8"), "bias", "expId=201807241028453", "detector=67",
                    "--uri")
    assert result.stdout.strip().endswith("CALIB/bias/2018-07-24/bias-RTM-010-S11-det067_2018-07-24.fits")


@needs_shared
def test_get_cfht_calibration():
    """The flat of a visit, by validity range: where it would be (the registries have no images)."""
    result = butler("get", CFHT, "flat_filename", "visit=787650", "ccd=13", "--uri", *CFHT_OPTIONS)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == os.path.join(CFHT, "flat-05Am03-fi.fits")
    assert_user_error(butler("get", CFHT, "flat", "visit=787650", "ccd=13", *CFHT_OPTIONS),
                      "no dataset found", "flat")


# -- compare ---------------------------------------------------------------------------------


def test_compare_identical(demo):
    result = butler("compare", demo["v1"], demo["v1"], "postISRCCD")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().endswith("IDENTICAL")
    result = butler("compare", demo["v1"], demo["v2"], "postISRCCD", "visit=102", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["identical"] is True


def test_compare_planted_image_changes(demo, planted):
    result = butler("compare", demo["v1"], planted, "postISRCCD")
    assert result.exit_code == 1, result.stderr
    lines = result.stdout.splitlines()
    pixel = next(line for line in lines if "visit=101 detector=0" in line)
    assert "1 of 12288 pixels differ; max |diff| 7.5" in pixel and "at (10, 20)" in pixel
    keyword = next(line for line in lines if "visit=102 detector=1" in line)
    assert "header.ISR_FLAT" in keyword and "'2024-04-15' -> '2000-01-01'" in keyword
    assert "6 compared, 2 different" in lines[-1]
    # within tolerance the pixel change goes away, the keyword change stays
    result = butler("compare", demo["v1"], planted, "postISRCCD", "--atol", "8", "--format", "json")
    report = json.loads(result.stdout)
    assert [r["dataId"] for r in report["results"] if not r["identical"]] == [{"visit": 102, "detector": 1}]


def test_compare_planted_table_changes(demo, planted):
    result = butler("compare", demo["v1"], planted, "src", "visit=103", "--format", "json")
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["A"] == "v1" and report["B"] == "v1x"
    assert report["onlyInA"] == [{"visit": 103, "detector": 1}] and report["onlyInB"] == []
    (diff,) = report["results"][0]["differences"]
    assert diff["where"] == "column flux" and diff["stats"]["positions"] == [2]
    assert diff["stats"]["maxAbsDiff"] == pytest.approx(1.0)
    text = butler("compare", demo["v1"], planted, "src", "visit=103").stdout
    assert "visit=103 detector=1  only in v1" in text


# -- ingest ----------------------------------------------------------------------------------


def test_ingest(demo, tmp_path):
    from butler import Butler, RepositoryArgs

    root = str(tmp_path / "repo")
    Butler(outputs=RepositoryArgs(root=root, mapper="mappers.demo.DemoMapper"))
    sources = sorted(os.path.join(demo["input"], "raw", "v0102", name)
                     for name in os.listdir(os.path.join(demo["input"], "raw", "v0102")))
    result = butler("ingest", root, *sources, "--mode", "copy")
    assert result.exit_code == 0, result.stderr
    assert "ingested 2 file(s)" in result.stdout
    assert os.path.isfile(os.path.join(root, "raw/v0102/raw_v0102_d01.fits"))
    assert json.loads(butler("query", root, "raw", "--format", "json").stdout) == [
        {"visit": 102, "detector": 0}, {"visit": 102, "detector": 1}]
    assert_user_error(butler("ingest", root, *sources), "already ingested")
    assert butler("ingest", root, *sources, "--ignore-ingested").exit_code == 0
    assert_user_error(butler("ingest", root, str(tmp_path / "missing.fits")), "no such file")


# -- user errors -----------------------------------------------------------------------------


def test_user_errors(demo, tmp_path):
    assert_user_error(butler("show", str(tmp_path / "nowhere")), "no such repository root")
    assert_user_error(butler("show", str(tmp_path)), "no repository at")
    assert_user_error(butler("query", demo["v1"], "srcx"), "unknown dataset type", "src")
    assert_user_error(butler("query", demo["v1"], "src", "visit"), "malformed", "KEY=VALUE")
    assert_user_error(butler("get", demo["v1"], "src", "visit=abc", "detector=0"), "visit", "int")
    assert_user_error(butler("get", demo["v1"], "src", "visit=999", "detector=0"), "no dataset found")
    assert_user_error(butler("compare", demo["v1"], str(tmp_path / "nowhere"), "src"), "no such repository")
    assert_user_error(butler("compare", demo["v1"], demo["v2"], "src", "visit=999"), "no dataset")


@needs_shared
def test_user_errors_on_shared_data():
    assert_user_error(butler("query", OBS_TEST, "raw", "--keys", "nokey"), "nokey")
    assert_user_error(butler("show", os.path.join(SHARED, "README.md")), "not a directory")
    assert_user_error(butler("query", os.path.join(SHARED, "obs_base"), "raw"), "no repository at")
    assert_user_error(butler("query", CFHT, "raw"), "no mapper", "--mapper")
    assert_user_error(butler("query", CFHT, "raw", "--mapper", "nowhere.Mapper"), "cannot import", "nowhere")
    assert_user_error(butler("query", CFHT, "raw", "--mapper", "os.path"), "not a mapper class")
