"""Camera mappers end to end, through `butler.Butler` on the real repositories."""

from __future__ import annotations

import pytest
from astropy.nddata import CCDData

import butler


def test_obs_test_through_butler(shared_data):
    repo = butler.Butler(inputs=str(shared_data / "obs_test" / "data" / "input"))
    raw = repo.get("raw", visit=2)
    assert isinstance(raw, CCDData) and raw.shape == (2000, 1026)
    raw2 = shared_data / "obs_test/data/input/raw/raw_v2_fg.fits.gz"
    assert repo.get("raw_filename", visit=2) == [str(raw2)]
    assert repo.get("raw_md", visit=3)["FILTER"] == "r"
    assert repo.queryMetadata("raw", "visit", filter="g") == [1, 2]


def test_calexp_metadata_objects_through_butler(shared_data):
    repo = butler.Butler(inputs=str(shared_data / "obs_test" / "data" / "calexpMetadataObjectsTest"))
    assert repo.get("calexp").shape == (4, 8)


@pytest.mark.parametrize("camera, dataId, shape", [
    ("lsstCam", {"expId": 3019032200002, "detector": 35}, (4096, 4608)),
    ("ucd", {"detector": 2}, (0, 0)),
])
def test_obs_lsst_raw_through_butler(shared_data, camera, dataId, shape):
    repo = butler.Butler(inputs=str(shared_data / "obs_lsst" / "data" / "input" / camera))
    assert repo.get("raw", **dataId).shape == shape


def test_imsim_calib_through_butler(shared_data):
    root = shared_data / "obs_lsst" / "data" / "input" / "imsim"
    repo = butler.Butler(inputs=str(root))
    assert repo.get("flat_filename", expId=204595, detector=42) == [
        str(root / "CALIB/flat/i_sim_1.4/2022-08-06/flat_i_sim_1.4-R11-S20-det042_2022-08-06.fits")]


def test_rerun_outputs_find_the_calibrations_of_their_ancestors(shared_data, tmp_path):
    root = shared_data / "obs_lsst" / "data" / "input" / "imsim"
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    butler.Butler(inputs=str(root), outputs=str(v1))
    butler.Butler(inputs=str(v1), outputs=str(v2))
    repo = butler.Butler(inputs=str(v2))
    mapper = repo._repos.inputs()[0].repo._mapper
    assert mapper.calibRoot == str(root / "CALIB")
    assert repo.get("bias_filename", expId=204595, detector=42) == [
        str(root / "CALIB/bias/2022-01-01/bias-R11-S20-det042_2022-01-01.fits")]


def test_calibration_lookup_without_a_calibration_registry_names_the_request(shared_data):
    repo = butler.Butler(inputs=str(shared_data / "obs_lsst" / "data" / "input" / "lsstCam"))
    with pytest.raises(butler.RegistryError, match="No registry for lookup") as err:
        repo.get("bias", expId=3019032200002, detector=35)
    assert "'bias'" in str(err.value) and isinstance(err.value, RuntimeError)
