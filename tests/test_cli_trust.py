"""A butler a new user can trust: the command's answers to mistakes, corrupt files and bugs, and its tools.

Each test pins a problem found by a new user's pass over the ``butler`` command
(run in this process through click's CliRunner): tracebacks for broken input
files, a library bug shown as a user error, an ambiguous data ID reported as
missing, unchecked ``query --keys``, ``get --out`` copying a whole file over an
existing one, no statistics, no way to create a repository, noisy comparisons,
no pictures, a demo that leaves its directory behind.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest
from astropy.io import fits

from conftest import SHARED_DATA, assert_user_error, run_cli as butler, run_demo

OBS_TEST = os.path.join(SHARED_DATA, "obs_test", "data", "input")
LSSTCAM = os.path.join(SHARED_DATA, "obs_lsst", "data", "input", "lsstCam")
CFHT = os.path.join(SHARED_DATA, "obs_base", "tests")
#: a one-exposure, two-detector raw of lsstCam and one of its amplifiers
AMBIGUOUS_EXPOSURE = "expId=3019031900001"
AMP = ("expId=3019032200002", "detector=35", "channel=3")

pytestmark = pytest.mark.xdist_group("test_cli_trust")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """The demo, made once for this module."""
    return run_demo(tmp_path_factory)


@pytest.fixture
def broken_obs_test(tmp_path, shared_data) -> str:
    """A copy of obs_test's registry with three broken raws of our own making.

    visit 1: a gzip whose FITS content is cut in half; visit 2: the gzip itself cut
    in half; visit 3: a gzip of text, no FITS at all.
    """
    root = tmp_path / "broken"
    (root / "raw").mkdir(parents=True)
    source = shared_data / "obs_test" / "data" / "input"
    for name in ("_mapper", "registry.sqlite3"):
        shutil.copyfile(source / name, root / name)
    with gzip.open(source / "raw" / "raw_v1_fg.fits.gz") as stream:
        content = stream.read()
    (root / "raw" / "raw_v1_fg.fits.gz").write_bytes(gzip.compress(content[:len(content) // 2]))
    packed = (source / "raw" / "raw_v2_fg.fits.gz").read_bytes()
    (root / "raw" / "raw_v2_fg.fits.gz").write_bytes(packed[:len(packed) // 2])
    (root / "raw" / "raw_v3_fr.fits.gz").write_bytes(gzip.compress(b"this is no FITS file\n" * 200))
    return str(root)


# -- one line and exit code 2 for every mistake in the input or the data ----------------------


@pytest.mark.parametrize("content", [b"_mapper: [unclosed\n", b"_mapper: a\x00b\n"], ids=["syntax", "nul"])
def test_a_cfg_that_is_no_yaml_is_one_line(tmp_path, content):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "repositoryCfg.yaml").write_bytes(content)
    line = assert_user_error(butler("show", str(root)), str(root), "not valid YAML")
    assert "Traceback" not in line


def test_a_mapper_file_that_is_no_text_is_one_line(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_bytes(b"\xff\xfe\x00 not text")
    assert_user_error(butler("show", str(root)), str(root), "not UTF-8 text")


@pytest.mark.parametrize("visit, words", [
    ("1", ["raw_v1_fg.fits.gz", "buffer is too small"]),
    ("2", ["raw_v2_fg.fits.gz", "EOFError", "Compressed file ended"]),
    ("3", ["raw_v3_fr.fits.gz", "no SIMPLE card"]),
], ids=["cut-fits", "cut-gzip", "not-fits"])
def test_a_corrupt_file_is_one_line_naming_it(broken_obs_test, visit, words):
    result = butler("get", broken_obs_test, "raw", f"visit={visit}")
    line = assert_user_error(result, "cannot read", broken_obs_test)
    assert all(word.lower() in line.lower() for word in words), line
    assert "ignore_missing_simple" not in line and "Aborted" not in result.output
    assert result.stdout == ""


def test_compare_of_a_corrupt_file_is_one_line(broken_obs_test):
    line = assert_user_error(butler("compare", OBS_TEST, broken_obs_test, "raw", "visit=2"), "cannot read")
    assert broken_obs_test in line and "EOFError" in line


BUGGY_MAPPER = '''
from butler.mapper import Mapper


class BuggyMapper(Mapper):
    def getDatasetTypes(self):
        raise {error}("an internal inconsistency")
'''


@pytest.mark.parametrize("error", ["LookupError", "RuntimeError", "ZeroDivisionError"])
def test_a_library_bug_is_no_user_error(tmp_path, monkeypatch, error):
    module = f"buggy_{error.lower()}"
    (tmp_path / f"{module}.py").write_text(BUGGY_MAPPER.format(error=error))
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_text(f"{module}.BuggyMapper\n")
    result = butler("query", str(root), "raw", "--mapper", f"{module}.BuggyMapper")
    assert result.exit_code == 3, result.stderr
    assert "Traceback (most recent call last)" in result.stderr and f"{error}: an internal inconsistency" in \
        result.stderr and "bug" in result.stderr.splitlines()[-1]
    assert len(result.stderr.splitlines()) < 20  # the last frames only
    sys.modules.pop(module, None)


def test_exit_codes_are_documented():
    out = butler("--help").stdout
    assert "Exit codes:" in out
    for code in ("0  success", "1  compare", "2  a mistake", "3  a bug"):
        assert code in out


# -- an ambiguous data ID says so --------------------------------------------------------------


@pytest.mark.usefixtures("shared_data")
def test_an_ambiguous_data_id_shows_the_librarys_message():
    line = assert_user_error(butler("get", LSSTCAM, "raw", AMBIGUOUS_EXPOSURE), "2 matches", "raw")
    assert "no such dataset" not in line


# -- query ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("shared_data")
@pytest.mark.parametrize("keys, words", [(",", ["empty key"]), ("visit,,detector", ["empty key"]),
                                         ("visit,visit", ["visit given twice"]),
                                         ("detector,detektor", ["unknown key 'detektor'", "detector"])])
def test_query_keys_are_checked(keys, words):
    line = assert_user_error(butler("query", LSSTCAM, "raw", "--keys", keys), *words)
    assert "SELECT" not in line


def test_query_exists_lists_only_what_exists(demo):
    listed = json.loads(butler("query", demo["input"], "src", "--format", "json").stdout)
    assert len(listed) == 6  # the registry's rows: no src was ever written to input
    result = butler("query", demo["input"], "src", "--exists", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    result = butler("query", demo["v1"], "src", "visit=103", "--exists", "--format", "json")
    assert json.loads(result.stdout) == [{"visit": 103, "detector": 0}, {"visit": 103, "detector": 1}]


def test_query_exists_skips_a_removed_dataset(demo, tmp_path):
    root = str(tmp_path / "v1x")
    shutil.copytree(demo["v1"], root, symlinks=True)
    os.remove(os.path.join(root, "src", "v0103", "src_v0103_d01.fits"))
    result = butler("query", root, "src", "visit=103", "--exists", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"visit": 103, "detector": 0}]


def test_query_of_a_calibration_lists_its_calibration_rows(demo):
    result = butler("query", demo["input"], "flat", "filter=g", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(row["filter"], row["detector"]) for row in rows] == [("g", 0), ("g", 1)]
    assert all(row["validStart"] < row["validEnd"] for row in rows)
    assert "calibration registry" in butler("query", "--help").stdout


# -- get --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("shared_data")
def test_get_out_writes_exactly_the_hdu_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "amp.fits"
    result = butler("get", LSSTCAM, "raw_amp", *AMP, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    with fits.open(out) as hdus:
        assert len(hdus) == 1 and hdus[0].data.shape == (2048, 576)
        written = hdus[0].data.copy()
    source = os.path.join(LSSTCAM, "raw", "2019-03-22", "3019032200002", "3019032200002-R10-S22-det035.fits")
    with fits.open(source) as hdus:
        assert len(hdus) > 2 and np.array_equal(written, hdus[3].data)
    before = out.read_bytes()
    assert_user_error(butler("get", LSSTCAM, "raw_amp", *AMP, "--out", str(out)), str(out), "--force")
    assert out.read_bytes() == before
    assert butler("get", LSSTCAM, "raw", "expId=3019032200002", "detector=35", "--out", str(out),
                  "--force").exit_code == 0
    assert out.read_bytes() != before
    assert not [name for name in os.listdir(tmp_path) if name != "amp.fits"]  # no temporary left


def test_get_prints_image_statistics_table_rows_header_and_json(demo):
    args = (demo["v1"], "postISRCCD", "visit=101", "detector=0")
    lines = butler("get", *args).stdout.splitlines()
    assert lines[1].startswith("CCDData: shape (96, 128)")
    assert lines[2].startswith("min ") and " median " in lines[2] and "0 NaN" in lines[2]
    summary = json.loads(butler("get", *args, "--format", "json").stdout)
    stats = summary["stats"]
    assert summary["shape"] == [96, 128] and stats["min"] <= stats["median"] <= stats["max"]
    assert stats["nan"] == 0 and 0 <= stats["zeroFraction"] < 1
    table = butler("get", demo["v1"], "src", "visit=101", "detector=0").stdout
    assert "id  x" in table.splitlines()[2]  # the first rows under the column names
    header = butler("get", *args, "--header").stdout
    assert "INSTRUME= 'DemoCam '" in header
    assert json.loads(butler("get", *args, "--header", "--format", "json").stdout)["INSTRUME"] == "DemoCam"
    shown = json.loads(butler("show", demo["v1"], "--format", "json").stdout)
    assert shown["repository"] == demo["v1"] and shown["parents"] == [demo["input"]]
    assert shown["datasetsOnDisk"][demo["v1"]] == {"postISRCCD": 6, "src": 6}


# -- create, mappers, short mapper names -------------------------------------------------------


def test_create_and_mappers(demo, tmp_path):
    root = str(tmp_path / "rerun")
    result = butler("create", root, "--mapper", "DemoMapper", "--parent", demo["input"])
    assert result.exit_code == 0, result.stderr
    assert os.path.isfile(os.path.join(root, "repositoryCfg.yaml"))
    listed = json.loads(butler("query", root, "raw", "--format", "json").stdout)
    assert len(listed) == 6  # read through the parent
    assert_user_error(butler("create", root, "--mapper", "DemoMapper"), "exists", root)
    assert_user_error(butler("create", demo["input"], "--mapper", "DemoMapper"), "exists", "registry.sqlite3")
    line = assert_user_error(butler("create", str(tmp_path / "other"), "--mapper", "NoSuchMapper"),
                             "unknown mapper 'NoSuchMapper'", "MinMapper2", "DemoMapper")
    assert not os.path.exists(tmp_path / "other"), line
    names = butler("mappers").stdout
    assert "MinMapper2" in names and "lsst.obs.lsst.LsstCamMapper" in names
    assert "mappers.lsst.LsstCamMapper" in names


@pytest.mark.usefixtures("shared_data")
def test_a_short_mapper_name_resolves():
    result = butler("query", CFHT, "raw", "filter=g", "--keys", "visit", "--format", "json", "--mapper",
                    "MinMapper2", "--registry", os.path.join(CFHT, "cfhtls.sqlite3"))
    assert result.exit_code == 0, result.stderr
    assert [row["visit"] for row in json.loads(result.stdout)] == [787784, 787796, 788455, 792933]


# -- compare options --------------------------------------------------------------------------


def test_compare_ignore_keys_and_pixels_only(demo, tmp_path):
    root = str(tmp_path / "v1x")
    shutil.copytree(demo["v1"], root, symlinks=True)
    path = os.path.join(root, "postISRCCD", "v0102", "postISRCCD_v0102_d01.fits")
    with fits.open(path, mode="update") as hdus:
        hdus[0].header["ISR_FLAT"] = "2000-01-01"
    args = ("compare", demo["v1"], root, "postISRCCD", "visit=102", "detector=1")
    assert butler(*args).exit_code == 1
    assert butler(*args, "--ignore-keys", "ISR_*").exit_code == 0
    assert butler(*args, "--ignore-keys", "OTHER").exit_code == 1
    assert butler(*args, "--pixels-only").exit_code == 0
    with fits.open(path, mode="update") as hdus:
        next(h for h in hdus if h.data is not None).data[5, 5] += 1
    assert butler(*args, "--pixels-only").exit_code == 1


# -- pictures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def matplotlib_fonts():
    """Draw a figure once, so the fonts matplotlib keeps open for the process are open before a test."""
    import io

    plt = pytest.importorskip("matplotlib.pyplot")
    figure, axes = plt.subplots()
    figure.colorbar(axes.imshow(np.arange(4.0).reshape(2, 2)), ax=axes)
    axes.set_title("warm-up")
    figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)


def _png_pixels(path):
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_get_and_compare_png(demo, tmp_path, matplotlib_fonts):
    png = tmp_path / "ccd.png"
    result = butler("get", demo["v1"], "postISRCCD", "visit=101", "detector=0", "--png", str(png))
    assert result.exit_code == 0, result.stderr
    pixels = _png_pixels(png)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 500 and pixels.std() > 0.01
    diff = tmp_path / "diff.png"
    result = butler("compare", demo["v1"], demo["v2"], "postISRCCD", "visit=101", "detector=0",
                    "--png", str(diff))
    assert result.exit_code == 0, result.stderr
    pixels = _png_pixels(diff)
    assert pixels.shape[1] > 2 * pixels.shape[0] and pixels.std() > 0.01  # three panels side by side
    assert_user_error(butler("get", demo["v1"], "postISRCCD", "visit=101", "detector=0", "--png", str(png)),
                      "--force")
    several = butler("compare", demo["v1"], demo["v2"], "postISRCCD", "--png", str(tmp_path / "x.png"))
    assert_user_error(several, "one data ID")


def test_png_without_matplotlib_names_the_extra(demo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert_user_error(butler("get", demo["v1"], "postISRCCD", "visit=101", "detector=0", "--png",
                             str(tmp_path / "a.png")), "butler[plot]")
    assert not (tmp_path / "a.png").exists()


# -- demo -------------------------------------------------------------------------------------


def test_demo_removes_its_temporary_directory_unless_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = butler("demo")
    assert result.exit_code == 0, result.stderr
    assert "removed " in result.stdout and os.listdir(tmp_path) == []
    result = butler("demo", "--keep")
    assert result.exit_code == 0, result.stderr
    kept = os.listdir(tmp_path)
    assert len(kept) == 1 and os.path.isdir(tmp_path / kept[0] / "v2")
