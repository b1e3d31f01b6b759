"""Raw ingest: re-ingesting the shipped raws reproduces the shipped registries; safety checks."""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from astropy.io import fits

from butler.errors import IngestError, UnsafePathError
from butler.ingest import IngestReport, ingest_raws, read_primary_header
from butler.location import ButlerLocation
from butler.registry import template_fields
from mappers.translators import TRANSLATORS, ImsimTranslator, LsstCamTranslator

from conftest import SHARED_DATA

DATA = str(SHARED_DATA)
OBS_LSST = os.path.join(DATA, "obs_lsst", "data", "input")
OBS_TEST = os.path.join(DATA, "obs_test", "data", "input")

pytestmark = pytest.mark.needs_shared_data

# README §2 "Raw templates"
_FOCAL_PLANE = "raw/%(dayObs)s/%(expId)013d/%(expId)013d-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
_TEST_STAND = "raw/%(run)s/%(expId)011d-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
_SIMULATION = "raw/%(run)s/%(raftName)s/%(expId)08d-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
TEMPLATES = {
    "lsstCam": _FOCAL_PLANE, "comCam": _FOCAL_PLANE,
    "latiss": "raw/%(dayObs)s/%(expId)013d-det%(detector)03d.fits",
    "ts8": _TEST_STAND, "ts3": _TEST_STAND,
    "ucd": "raw/%(run)s/%(expId)011d-%(detectorName)s-det%(detector)03d.fits",
    "imsim": _SIMULATION, "phosim": _SIMULATION,
}
# README §2 "id": upstream ingest order
UPSTREAM_ORDER = {
    "lsstCam": ["raw/2019-03-22/3019032200002/3019032200002-R10-S22-det035.fits",
                "raw/2019-03-19/3019031900001/3019031900001-R10-S02-det029.fits",
                "raw/2019-03-19/3019031900001/3019031900001-R22-S21-det097.fits"],
    "comCam": ["raw/2019-05-30/3019053000001/3019053000001-R22-S00-det000.fits"],
    "latiss": ["raw/2018-09-20/3018092000065-det000.fits"],
    "ts8": ["raw/6006D/201807241028453-RTM-010-S11-det067.fits"],
    "ts3": ["raw/2016-07-22/201607220607067-R071-S00-det071.fits",
            "raw/2018-11-15/201811151255111-R433-S00-det433.fits"],
    "ucd": ["raw/2018-12-05/20181205233148-S00-det000.fits",
            "raw/2018-05-30/20180530150355-S00-det002.fits"],
    "imsim": ["raw/204595/R11/00204595-R11-S20-det042.fits"],
    "phosim": ["raw/204595/R11/00204595-R11-S20-det042.fits"],
}
LSSTCAM = [os.path.join(OBS_LSST, "lsstCam", path) for path in UPSTREAM_ORDER["lsstCam"]]
IMSIM = os.path.join(OBS_LSST, "imsim", UPSTREAM_ORDER["imsim"][0])


def sha256(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def shared_data_unchanged():
    """Every input under the shared data is byte-identical after the tests."""
    paths = sorted(os.path.join(directory, name)
                   for top in (OBS_LSST, OBS_TEST) for directory, _, names in os.walk(top) for name in names)
    before = {path: sha256(path) for path in paths}
    yield
    assert {path: sha256(path) for path in paths} == before


def rows(registry: str, table: str) -> list[tuple]:
    connection = sqlite3.connect(f"file:{registry}?mode=ro", uri=True)
    try:
        return list(connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid'))
    finally:
        connection.close()


def ingest(root, files, **kwargs) -> IngestReport:
    kwargs.setdefault("translator", LsstCamTranslator)
    kwargs.setdefault("template", _FOCAL_PLANE)
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 1)
    return ingest_raws(str(root), [str(path) for path in files], **kwargs)


def tree(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(directory, name), root)
                  for directory, _, names in os.walk(root) for name in names)


def write_header_only_raw(path, header: fits.Header) -> str:
    fits.PrimaryHDU(header=header).writeto(path)
    return str(path)


@pytest.mark.parametrize("camera", sorted(TEMPLATES))
def test_reingest_reproduces_shipped_registry(tmp_path, camera):
    shipped = os.path.join(OBS_LSST, camera, "registry.sqlite3")
    files = [os.path.join(OBS_LSST, camera, path) for path in UPSTREAM_ORDER[camera]]
    report = ingest(tmp_path, files, mode="copy", translator=TRANSLATORS[camera],
                    template=TEMPLATES[camera], workers=2)
    assert [item.destination for item in report.ingested] == UPSTREAM_ORDER[camera]
    assert not report.skipped and not report.failed
    registry = os.path.join(tmp_path, "registry.sqlite3")
    assert rows(registry, "raw") == rows(shipped, "raw")
    assert rows(registry, "raw_visit") == rows(shipped, "raw_visit")
    for source, relpath in zip(files, UPSTREAM_ORDER[camera], strict=True):
        assert sha256(os.path.join(tmp_path, relpath)) == sha256(source)


def test_reingest_obs_test(tmp_path):
    files = [os.path.join(OBS_TEST, "raw", name)
             for name in ("raw_v1_fg.fits.gz", "raw_v2_fg.fits.gz", "raw_v3_fr.fits.gz")]
    report = ingest(tmp_path, files, translator=TRANSLATORS["test"],
                    template="raw/raw_v%(visit)d_f%(filter)s.fits.gz")
    assert len(report.ingested) == 3
    shipped = rows(os.path.join(OBS_TEST, "registry.sqlite3"), "raw")
    # the shipped expTime (0.0) disagrees with the headers (15.0), README §1
    assert [row[:4] for row in rows(tmp_path / "registry.sqlite3", "raw")] == [row[:4] for row in shipped]


def test_link_mode(tmp_path):
    report = ingest(tmp_path, LSSTCAM, mode="link")
    for source, item in zip(LSSTCAM, report.ingested, strict=True):
        destination = os.path.join(tmp_path, item.destination)
        assert os.path.islink(destination)
        assert os.readlink(destination) == source
    assert not [name for name in tree(tmp_path) if name.endswith(".tmp")]


def test_skip_mode_registers_only(tmp_path):
    report = ingest(tmp_path, LSSTCAM, mode="skip")
    assert len(report.ingested) == 3
    assert tree(tmp_path) == ["registry.sqlite3"]
    assert len(rows(tmp_path / "registry.sqlite3", "raw")) == 3


def test_move_mode_on_copies(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    copies = []
    for source in LSSTCAM:
        copy = staging / os.path.basename(source)
        copy.write_bytes(Path(source).read_bytes())
        copies.append(copy)
    root = tmp_path / "repo"
    report = ingest(root, copies, mode="move")
    assert len(report.ingested) == 3
    assert not list(staging.iterdir())
    for source, item in zip(LSSTCAM, report.ingested, strict=True):
        assert sha256(os.path.join(root, item.destination)) == sha256(source)


def test_files_already_in_place_are_registered(tmp_path):
    ingest(tmp_path, LSSTCAM, mode="copy", create=True)
    os.remove(tmp_path / "registry.sqlite3")
    in_place = [os.path.join(tmp_path, path) for path in UPSTREAM_ORDER["lsstCam"]]
    report = ingest(tmp_path, in_place, mode="link")
    assert len(report.ingested) == 3
    assert not any(os.path.islink(path) for path in in_place)


def test_duplicates_in_registry(tmp_path):
    ingest(tmp_path, LSSTCAM[:2], mode="link")
    before = rows(tmp_path / "registry.sqlite3", "raw")
    with pytest.raises(IngestError, match="already ingested"):
        ingest(tmp_path, LSSTCAM, mode="link")
    assert rows(tmp_path / "registry.sqlite3", "raw") == before
    report = ingest(tmp_path, LSSTCAM, mode="link", ignore_ingested=True)
    assert [item.source for item in report.skipped] == LSSTCAM[:2]
    assert [item.source for item in report.ingested] == LSSTCAM[2:]
    assert [row[0] for row in rows(tmp_path / "registry.sqlite3", "raw")] == [1, 2, 3]


def test_duplicates_within_one_call(tmp_path):
    with pytest.raises(IngestError, match="already ingested"):
        ingest(tmp_path, [LSSTCAM[0], LSSTCAM[0]], mode="link")
    assert tree(tmp_path) == []
    report = ingest(tmp_path, [LSSTCAM[0], LSSTCAM[0]], mode="link", ignore_ingested=True)
    assert len(report.ingested) == 1 and len(report.skipped) == 1


def test_corrupt_files_are_reported_and_skipped(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    gz_data = Path(LSSTCAM[1]).read_bytes()
    plain_data = Path(IMSIM).read_bytes()
    corrupt = {
        "truncated-gzip.fits": gz_data[: len(gz_data) // 2],
        "truncated-plain.fits": plain_data[:500_000],
        "truncated-header.fits": plain_data[:1000],
        "not-fits.fits": gzip.compress(b"hello" * 1000),
    }
    for name, data in corrupt.items():
        (staging / name).write_bytes(data)
    files = [staging / name for name in corrupt] + [LSSTCAM[0]]
    root = tmp_path / "repo"
    report = ingest(root, files, mode="copy")
    assert sorted(os.path.basename(item.source) for item in report.failed) == sorted(corrupt)
    assert all("not a readable FITS file" in item.reason for item in report.failed)
    assert [item.source for item in report.ingested] == [LSSTCAM[0]]
    assert tree(root) == sorted(["registry.sqlite3", UPSTREAM_ORDER["lsstCam"][0]])
    assert len(rows(root / "registry.sqlite3", "raw")) == 1


def test_untranslatable_header_is_reported(tmp_path):
    header = fits.getheader(LSSTCAM[0])
    del header["CCDSLOT"]
    bad = write_header_only_raw(tmp_path / "bad.fits", header)
    report = ingest(tmp_path / "repo", [bad], mode="copy")
    assert report.failed[0].source == bad
    assert "CCDSLOT" in report.failed[0].reason and bad in report.failed[0].reason
    assert tree(tmp_path / "repo") == ["registry.sqlite3"]
    assert rows(tmp_path / "repo" / "registry.sqlite3", "raw") == []


@pytest.mark.parametrize("run", ["../../etc", "../..", "x/../../../y"])
def test_hostile_header_value_is_refused(tmp_path, run):
    header = fits.getheader(IMSIM)
    header["RUNNUM"] = run
    header["OBSID"] = 204596
    hostile = write_header_only_raw(tmp_path / "hostile.fits", header)
    root = tmp_path / "repo"
    root.mkdir()
    for mode in ("copy", "link", "move", "skip"):
        with pytest.raises(UnsafePathError):
            ingest(root, [IMSIM, hostile], mode=mode, translator=ImsimTranslator, template=_SIMULATION)
    assert tree(tmp_path) == ["hostile.fits"]


def test_destination_taken_by_another_file(tmp_path):
    destination = tmp_path / UPSTREAM_ORDER["lsstCam"][0]
    destination.parent.mkdir(parents=True)
    destination.write_bytes(b"someone else's")
    report = ingest(tmp_path, LSSTCAM, mode="copy")
    assert [item.source for item in report.failed] == LSSTCAM[:1]
    assert "exists already" in report.failed[0].reason
    assert destination.read_bytes() == b"someone else's"
    assert [row[0] for row in rows(tmp_path / "registry.sqlite3", "raw")] == [1, 2]


def test_dry_run_writes_nothing(tmp_path):
    report = ingest(tmp_path, LSSTCAM, mode="copy", dry_run=True)
    assert report.dry_run and len(report.ingested) == 3
    assert "would ingest 3" in report.summary()
    assert tree(tmp_path) == []


def test_bad_file_patterns(tmp_path):
    report = ingest(tmp_path, LSSTCAM, mode="link", bad_files=["*-det097.fits"])
    assert [item.source for item in report.skipped] == LSSTCAM[2:]
    assert len(report.ingested) == 2


def test_without_create_needs_a_registry(tmp_path):
    with pytest.raises(IngestError, match="no registry"):
        ingest(tmp_path, LSSTCAM, mode="link", create=False)
    ingest(tmp_path, LSSTCAM[:1], mode="link")
    report = ingest(tmp_path, LSSTCAM[1:], mode="link", create=False)
    assert len(report.ingested) == 2


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        ingest(tmp_path, LSSTCAM, mode="symlink")
    with pytest.raises(ValueError, match="translator"):
        ingest(tmp_path, LSSTCAM, translator=None)
    with pytest.raises(ValueError, match="template"):
        ingest(tmp_path, LSSTCAM, template=None)


class TemplateMapper:
    """A stand-in for a camera mapper: ``map('raw', ..., write=True)``, ``getKeys`` and ``translator``."""

    translator = LsstCamTranslator

    def __init__(self):
        self.calls = []

    def map(self, datasetType, dataId, write=False):
        self.calls.append((datasetType, write))
        return ButlerLocation(None, None, "FitsStorage", [_FOCAL_PLANE % dataId + "[0]"], dataId, self, None)

    def getKeys(self, datasetType, level):
        return template_fields(_FOCAL_PLANE)


def test_destination_and_translator_from_mapper(tmp_path):
    mapper = TemplateMapper()
    report = ingest_raws(str(tmp_path), LSSTCAM, mode="link", mapper=mapper, progress=False)
    assert mapper.calls == [("raw", True)] * 3
    assert [item.destination for item in report.ingested] == UPSTREAM_ORDER["lsstCam"]
    assert rows(tmp_path / "registry.sqlite3", "raw") == rows(
        os.path.join(OBS_LSST, "lsstCam", "registry.sqlite3"), "raw")


def test_read_primary_header_sniffs_gzip():
    assert Path(LSSTCAM[0]).read_bytes()[:2] == b"\x1f\x8b"
    assert read_primary_header(LSSTCAM[0])["RAFTBAY"] == "R10"
    assert read_primary_header(IMSIM)["RAFTNAME"] == "R11"


def test_absolute_destination_is_refused(tmp_path):
    with pytest.raises(UnsafePathError):
        ingest(tmp_path / "repo", LSSTCAM, mode="copy", template=str(tmp_path / "out" / "%(expId)d.fits"))
    assert tree(tmp_path) == []


def test_symlinked_directory_leaving_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "repo"
    root.mkdir()
    os.symlink(outside, root / "raw")
    with pytest.raises(UnsafePathError):
        ingest(root, LSSTCAM, mode="copy")
    assert tree(outside) == [] and tree(root) == []


MAPPER_CLASSES = {"lsstCam": "LsstCamMapper", "comCam": "LsstComCamMapper", "latiss": "LatissMapper",
                  "ts8": "Ts8Mapper", "ts3": "Ts3Mapper", "ucd": "UcdMapper", "imsim": "ImsimMapper",
                  "phosim": "PhosimMapper"}


@pytest.mark.parametrize("camera", sorted(MAPPER_CLASSES))
def test_reingest_with_camera_mapper(tmp_path, camera):
    lsst = pytest.importorskip("mappers.lsst")
    mapper_class = getattr(lsst, MAPPER_CLASSES[camera])
    translator = getattr(mapper_class, "translator", None) or TRANSLATORS[camera]
    assert translator is TRANSLATORS[camera]
    files = [os.path.join(OBS_LSST, camera, path) for path in UPSTREAM_ORDER[camera]]
    report = ingest_raws(str(tmp_path), files, mode="link", mapper=mapper_class(root=str(tmp_path)),
                         translator=translator, progress=False, workers=1)
    assert [item.destination for item in report.ingested] == UPSTREAM_ORDER[camera]
    shipped = os.path.join(OBS_LSST, camera, "registry.sqlite3")
    for table in ("raw", "raw_visit"):
        assert rows(tmp_path / "registry.sqlite3", table) == rows(shipped, table)


def _ingest_in_child(root: str, files: list[str]) -> int:
    return len(ingest(root, files, mode="link").ingested)


def test_concurrent_ingests_into_one_repository(tmp_path):
    import multiprocessing

    batches = [[path] for path in LSSTCAM] * 2  # every file twice: one of each pair is a duplicate
    with multiprocessing.get_context("fork").Pool(len(batches)) as pool:
        results = [pool.apply_async(_ingest_in_child, (str(tmp_path), batch)) for batch in batches]
        outcomes = []
        for result in results:
            try:
                outcomes.append(result.get(timeout=60))
            except IngestError:  # the duplicate was seen before it started
                outcomes.append(0)
    registered = rows(tmp_path / "registry.sqlite3", "raw")
    assert sorted(row[1:] for row in registered) == sorted(
        row[1:] for row in rows(os.path.join(OBS_LSST, "lsstCam", "registry.sqlite3"), "raw"))
    assert sum(outcomes) == 3


def test_row_registered_meanwhile_is_rolled_back(tmp_path, monkeypatch):
    import butler.ingest

    ingest(tmp_path, LSSTCAM[:1], mode="link")
    # as if another ingest registered the file after this one looked at the registry
    monkeypatch.setattr(butler.ingest, "_existing_keys", lambda *args: set())
    report = ingest(tmp_path, LSSTCAM[:2], mode="copy", ignore_ingested=True)
    assert [item.source for item in report.skipped] == LSSTCAM[:1]
    assert "UNIQUE" in report.skipped[0].reason
    assert [item.source for item in report.ingested] == LSSTCAM[1:2]
    report = ingest(tmp_path, LSSTCAM[:1], mode="copy")
    assert [item.source for item in report.failed] == LSSTCAM[:1]
    assert os.path.islink(tmp_path / UPSTREAM_ORDER["lsstCam"][0])  # still the first ingest's link
    assert [row[0] for row in rows(tmp_path / "registry.sqlite3", "raw")] == [1, 2]


CAMERA_MAPPERS = [("mappers.test", "TestMapper"), ("mappers.demo", "DemoMapper"),
                  *(("mappers.lsst", name) for name in sorted(MAPPER_CLASSES.values()))]


@pytest.mark.parametrize("module, name", CAMERA_MAPPERS)
def test_ingest_creates_every_table_the_policy_queries(tmp_path, module, name):
    """Each exposure-registry table a camera's policy names (``tables``, or a calibration's
    ``reference``) is one the camera's translator defines, so ingest creates it."""
    from mappers.mapping import CalibrationMapping

    mapper = getattr(pytest.importorskip(module), name)(root=str(tmp_path))
    queried = set()
    for mapping in mapper.mappings.values():
        tables = mapping.reference if isinstance(mapping, CalibrationMapping) else mapping.tables
        queried.update(tables or ())
    assert "raw" in queried
    assert queried <= {spec.name for spec in mapper.translator.tables()}


def test_ingest_indexes_the_template_keys(tmp_path):
    ingest(tmp_path, LSSTCAM[:1], mode="link")
    connection = sqlite3.connect(f"file:{tmp_path / 'registry.sqlite3'}?mode=ro", uri=True)
    try:
        indexes = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' "
                                          "AND name GLOB 'ix_*'"))
    finally:
        connection.close()
    # one per key of the raw template (and visit); expId leads the UNIQUE constraint's own index
    keys = ("dayObs", "raftName", "detectorName", "detector", "visit")
    assert indexes == {f"ix_raw_{key}": "raw" for key in keys}
