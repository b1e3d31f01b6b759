"""Speed where users feel it (issue 12), without answering from stale or borrowed state.

* ``datasetExists`` and ``getUri`` of an obs_lsst ``raw`` answer from the
  registry and the file's existence: a raw whose pixels are cut short still
  exists, and only ``get`` (which runs the bypass that assembles the
  amplifiers) fails, with a `FormatterError` naming the file.
* Nothing about files is cached: a raw written by another process after the
  Butler was made is found by that Butler.
* The obs_lsst camera finds each detector in the registry when it is asked
  for: a detector registered after the mapper was made is found.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from butler import Butler
from butler.errors import FormatterError, NoResults
from mappers.camera import Detector
from mappers.lsst import LsstCamMapper

LSSTCAM = ("obs_lsst", "data", "input", "lsstCam")
RAW_ID = {"expId": 3019032200002, "detector": 35}
RAW_PATH = "raw/2019-03-22/3019032200002/3019032200002-R10-S22-det035.fits"


@pytest.fixture
def lsstcam_copy(shared_data_untouched: Path, tmp_path: Path) -> Path:
    """A writable copy of the lsstCam repository's mapper file, registry and one raw."""
    source = shared_data_untouched.joinpath(*LSSTCAM)
    root = tmp_path / "lsstCam"
    for name in ("_mapper", "registry.sqlite3", RAW_PATH):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, root / name)
    return root


def test_raw_existence_reads_no_pixels(lsstcam_copy: Path) -> None:
    path = lsstcam_copy / RAW_PATH
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # headers intact, the gzip stream cut inside the pixels
    repo = Butler(inputs=str(lsstcam_copy))
    assert repo.datasetExists("raw", RAW_ID)
    assert repo.getUri("raw", RAW_ID) == str(path)
    with pytest.raises(FormatterError) as info:
        repo.get("raw", RAW_ID)
    message = str(info.value)
    assert str(path) in message and "raw" in message and "3019032200002" in message


def test_missing_raw_and_file_less_datasets(lsstcam_copy: Path) -> None:
    repo = Butler(inputs=str(lsstcam_copy))
    assert not repo.datasetExists("raw", expId=3019031900001, detector=29)  # in the registry, no file here
    assert repo.datasetExists("raw_detector", RAW_ID)  # served by its bypass, no file
    assert repo.get("raw_detector", RAW_ID) == Detector("R10_S22", 35)
    assert repo.datasetExists("camera")


def test_a_raw_written_by_another_process_is_found(shared_data_untouched: Path, lsstcam_copy: Path) -> None:
    path = lsstcam_copy / RAW_PATH
    path.unlink()
    repo = Butler(inputs=str(lsstcam_copy))
    assert not repo.datasetExists("raw", RAW_ID)
    with pytest.raises(NoResults):
        repo.getUri("raw", RAW_ID)
    source = shared_data_untouched.joinpath(*LSSTCAM, RAW_PATH)
    subprocess.run([sys.executable, "-c", "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])",
                    str(source), str(path)], check=True)
    assert repo.datasetExists("raw", RAW_ID)
    assert repo.getUri("raw", RAW_ID) == str(path)
    assert repo.get("raw", RAW_ID).data.size > 0


def test_the_camera_finds_detectors_when_asked(lsstcam_copy: Path) -> None:
    mapper = LsstCamMapper(root=str(lsstcam_copy))
    with sqlite3.connect(lsstcam_copy / "registry.sqlite3") as conn:  # registered after the mapper was made
        conn.execute("INSERT INTO raw (raftName, detectorName, detector, expId, visit, dayObs) "
                     "VALUES ('R22', 'S11', 94, 3019032200003, 3019032200003, '2019-03-22')")
    conn.close()
    camera = mapper.camera
    assert camera["R22_S11"] == Detector("R22_S11", 94)
    assert camera["R10_S22"] == Detector("R10_S22", 35)
    with pytest.raises(KeyError, match="R99_S99"):
        camera["R99_S99"]
    assert sorted(det.id for det in camera) == [29, 35, 94, 97]
    assert len(camera) == 4
