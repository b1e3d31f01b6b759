"""Problems found by using the package as a Gen2 user would, each pinned by a test.

The ``butler`` command is run in this process (click's CliRunner) on the shared
Gen2 repositories (read-only, byte-identical after this module) and on scratch
repositories under ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from conftest import SHARED_DATA, assert_user_error, run_cli as butler

OBS_TEST = os.path.join(SHARED_DATA, "obs_test", "data", "input")
NO_KEYS = os.path.join(SHARED_DATA, "obs_test", "data", "calexpMetadataObjectsTest")
LSSTCAM = os.path.join(SHARED_DATA, "obs_lsst", "data", "input", "lsstCam")

pytestmark = pytest.mark.usefixtures("shared_data_untouched")


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
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["skyTile,visit,filter", "86653,3,r"]
    result = butler("query", LSSTCAM, "raw", "filter=unknown", "--keys", "detector", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["detector", "29", "97"]


# -- an empty answer used to print a table without a header ------------------------------------


def test_query_with_no_match_still_names_the_columns():
    result = butler("query", OBS_TEST, "raw", "filter=zz")
    assert result.exit_code == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert set(header) == {"visit", "filter"} and result.stdout.rstrip().endswith("(0 rows)")
    result = butler("query", OBS_TEST, "raw", "filter=zz", "--format", "csv")
    assert set(result.stdout.strip().split(",")) == {"visit", "filter"}


def test_query_of_a_dataset_without_keys_says_so():
    result = butler("query", NO_KEYS, "calexp")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "(1 row, no data ID keys)"


# -- a camera repository without calibrations --------------------------------------------------


def test_missing_calibration_registry_is_named_with_where_it_was_looked_for():
    line = assert_user_error(butler("get", LSSTCAM, "bias", "expId=3019032200002", "detector=35"),
                             "No registry for lookup", "'bias'",
                             "no calibration registry (calibRegistry.sqlite3)", LSSTCAM)
    assert "Traceback" not in line


# -- ingest messages ---------------------------------------------------------------------------


def test_ingest_duplicate_names_the_option_and_the_registry(obs_test_repo):
    source = os.path.join(OBS_TEST, "raw", "raw_v1_fg.fits.gz")
    assert butler("ingest", obs_test_repo, source).exit_code == 0
    line = assert_user_error(butler("ingest", obs_test_repo, source), "already ingested", "--ignore-ingested",
                             os.path.join(obs_test_repo, "registry.sqlite3"), "visit=1")
    assert line.count("already ingested") == 1
    result = butler("ingest", obs_test_repo, source, "--ignore-ingested")
    assert result.exit_code == 0 and "skipped 1" in result.stdout


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
        assert result.exit_code == 1 and "failed 1" in result.stdout
    else:  # visit 1 is in the upstream registry already
        source = os.path.join(OBS_TEST, "raw", "raw_v1_fg.fits.gz")
        result = butler("ingest", str(root), source, "--mode", "copy", "--ignore-ingested")
        assert result.exit_code == 0 and "skipped 1" in result.stdout
    assert (registry.read_bytes(), os.stat(registry).st_ino, os.stat(registry).st_mtime_ns) == before
    assert sorted(os.listdir(root)) == ["_mapper", "registry.sqlite3"]
