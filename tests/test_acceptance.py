"""Problems found by using the package as a Gen2 user would, each pinned by a test.

The ``butler`` command is run as a subprocess on the shared Gen2 repositories
(read-only) and on scratch repositories under ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.realpath(os.path.join(HERE, "..", "..", "shared", "data"))
OBS_TEST = os.path.join(SHARED, "obs_test", "data", "input")
NO_KEYS = os.path.join(SHARED, "obs_test", "data", "calexpMetadataObjectsTest")
LSSTCAM = os.path.join(SHARED, "obs_lsst", "data", "input", "lsstCam")

pytestmark = pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared test data not present")


def butler(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "butler", *args], capture_output=True, text=True,
                          cwd=HERE, timeout=120)


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- a mistyped data-ID key used to be ignored, so it matched everything ----------------------


def test_query_refuses_a_mistyped_key_with_a_hint():
    result = butler("query", OBS_TEST, "raw", "vist=1")
    assert_user_error(result, "unknown data ID key 'vist'", "raw", "did you mean visit")
    assert result.stdout == ""


def test_get_and_compare_refuse_a_mistyped_key():
    assert_user_error(butler("get", LSSTCAM, "raw", "expId=3019032200002", "detektor=35"),
                      "'detektor'", "did you mean detector")
    assert_user_error(butler("compare", OBS_TEST, OBS_TEST, "raw", "fliter=g"), "'fliter'", "filter")


def test_registry_columns_that_are_no_template_key_are_still_accepted():
    # skyTile lives only in obs_test's raw_skyTile table; lsstCam's raw filter only in its registry
    result = butler("query", OBS_TEST, "raw", "skyTile=86653", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["skyTile,visit,filter", "86653,3,r"]
    result = butler("query", LSSTCAM, "raw", "filter=unknown", "--keys", "detector", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["detector", "29", "97"]


# -- an empty answer used to print a table without a header ------------------------------------


def test_query_with_no_match_still_names_the_columns():
    result = butler("query", OBS_TEST, "raw", "filter=zz")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert set(header) == {"visit", "filter"} and result.stdout.rstrip().endswith("(0 rows)")
    result = butler("query", OBS_TEST, "raw", "filter=zz", "--format", "csv")
    assert set(result.stdout.strip().split(",")) == {"visit", "filter"}


def test_query_of_a_dataset_without_keys_says_so():
    result = butler("query", NO_KEYS, "calexp")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1 row, no data ID keys)"


# -- a camera repository without calibrations --------------------------------------------------


def test_missing_calibration_registry_is_named_with_where_it_was_looked_for():
    line = assert_user_error(butler("get", LSSTCAM, "bias", "expId=3019032200002", "detector=35"),
                             "No registry for lookup", "'bias'", "no calibration registry (calibRegistry.sqlite3)", LSSTCAM)
    assert "Traceback" not in line


# -- ingest messages ---------------------------------------------------------------------------


@pytest.fixture
def obs_test_repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_text("lsst.obs.test.testMapper.TestMapper\n")
    return str(root)


def test_ingest_duplicate_names_the_option_and_the_registry(obs_test_repo):
    source = os.path.join(OBS_TEST, "raw", "raw_v1_fg.fits.gz")
    assert butler("ingest", obs_test_repo, source).returncode == 0
    line = assert_user_error(butler("ingest", obs_test_repo, source), "already ingested", "--ignore-ingested",
                             os.path.join(obs_test_repo, "registry.sqlite3"), "visit=1")
    assert line.count("already ingested") == 1
    result = butler("ingest", obs_test_repo, source, "--ignore-ingested")
    assert result.returncode == 0 and "skipped 1" in result.stdout


def test_ingest_failure_reported_once_and_names_the_file_once(obs_test_repo, tmp_path):
    bad = str(tmp_path / "no_visit_here.fits")
    fits.PrimaryHDU(np.zeros((2, 2), "u2")).writeto(bad)
    result = butler("ingest", obs_test_repo, bad)
    assert result.returncode == 1
    problem = [line for line in result.stderr.splitlines() if bad in line]
    assert len(problem) == 1, result.stderr
    assert problem[0].count(bad) == 1 and "_v<visit>_f" in problem[0]
    # with warnings hidden, the command still says which file failed and why
    result = butler("--log-level", "ERROR", "ingest", obs_test_repo, bad)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if bad in line] == \
        [f"{bad}: the file name has no _v<visit>_f part (obs_test visits come from it)"]


@pytest.mark.parametrize("case", ["untranslatable", "already ingested"])
def test_ingest_that_adds_nothing_leaves_the_registry_untouched(tmp_path, case):
    # an existing upstream registry used to be rewritten (and given a new index) even when no file
    # was ingested; this repository is a scratch copy of obs_test's
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("_mapper", "registry.sqlite3"):
        shutil.copyfile(os.path.join(OBS_TEST, name), root / name)
    registry = root / "registry.sqlite3"
    before = (registry.read_bytes(), os.stat(registry).st_ino, os.stat(registry).st_mtime_ns)
    if case == "untranslatable":
        source = str(tmp_path / "no_visit_here.fits")
        fits.PrimaryHDU(np.zeros((2, 2), "u2")).writeto(source)
        result = butler("ingest", str(root), source, "--mode", "copy")
        assert result.returncode == 1 and "failed 1" in result.stdout
    else:  # visit 1 is in the upstream registry already
        source = os.path.join(OBS_TEST, "raw", "raw_v1_fg.fits.gz")
        result = butler("ingest", str(root), source, "--mode", "copy", "--ignore-ingested")
        assert result.returncode == 0 and "skipped 1" in result.stdout
    assert (registry.read_bytes(), os.stat(registry).st_ino, os.stat(registry).st_mtime_ns) == before
    assert sorted(os.listdir(root)) == ["_mapper", "registry.sqlite3"]
