"""The compiled map path (issue 12): a plan per data-ID shape holds shapes, never rows or files.

`Mapping.map` works out once per mapper class and order of data-ID keys which
template keys are missing, the registry statement that supplies them
(`Registry.lookup_plan`) and how the template is filled; every call runs the
statement and probes the file afresh. So a registry row and a file added by
another process after the plan was built are found, a row removed is missed,
and the errors are those of the lookup without a plan.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pg_server import XDIST_GROUP

from butler.errors import NoResults
from butler.registry import PostgresRegistry
from butler.registry.postgres import copy_sqlite_registry
from mappers.lsst import LsstCamMapper

TEMPLATE = "raw/%(dayObs)s/%(expId)013d/%(expId)013d-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
RAW = ("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, visit INT, filter TEXT, dateObs TEXT, "
       "expTime DOUBLE, raftName TEXT, detectorName TEXT, detector INT, snap INT, expId INT, dayObs TEXT, "
       "UNIQUE(expId, detector, visit))")
RAW_VISIT = "CREATE TABLE raw_visit (visit INT, filter TEXT, dateObs TEXT, expTime DOUBLE, UNIQUE(visit))"
INSERT = ("INSERT INTO raw (visit, filter, dateObs, expTime, raftName, detectorName, detector, snap, expId, dayObs) "
          "VALUES (?, 'r', ?, 15.0, ?, ?, ?, 0, ?, ?)")
FIRST = {"expId": 3021010100001, "detector": 10}
LATER = {"expId": 3021010200002, "detector": 11}


def _row(dataId: dict, day: str, raft: str, sensor: str) -> tuple:
    return (dataId["expId"], day + "T00:00:00", raft, sensor, dataId["detector"], dataId["expId"], day)


def _path(root: Path, dataId: dict, day: str, raft: str, sensor: str) -> Path:
    return root / (TEMPLATE % {**dataId, "dayObs": day, "raftName": raft, "detectorName": sensor})


@pytest.fixture
def lsstcam(tmp_path: Path) -> Path:
    """An lsstCam repository with one raw (its registry row and an empty file)."""
    root = tmp_path / "lsstCam"
    root.mkdir()
    (root / "_mapper").write_text("lsst.obs.lsst.LsstCamMapper\n")
    with sqlite3.connect(root / "registry.sqlite3") as conn:
        conn.execute(RAW)
        conn.execute(RAW_VISIT)
        conn.execute(INSERT, _row(FIRST, "2021-01-01", "R01", "S01"))
    conn.close()
    path = _path(root, FIRST, "2021-01-01", "R01", "S01")
    path.parent.mkdir(parents=True)
    path.touch()
    return root


def _in_another_process(code: str, **names: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", textwrap.dedent(code), *names.values()], check=True, env=env, timeout=120)


def test_a_row_and_file_added_by_another_process_after_the_plan_are_found(lsstcam: Path) -> None:
    mapper = LsstCamMapper(root=str(lsstcam))
    location = mapper.map("raw", FIRST)
    assert location.found
    assert location.getLocationsWithRoot() == [str(_path(lsstcam, FIRST, "2021-01-01", "R01", "S01"))]
    with pytest.raises(NoResults):
        mapper.map("raw", LATER)  # the same shape: the plan is built, and holds no answer
    plan = mapper.mappings["raw"]._plans[(LsstCamMapper, "expId", "detector")]
    assert plan.missing == ("dayObs", "raftName", "detectorName") and plan.where == ("expId", "detector")
    assert plan.query is not None and plan.fillsDirectly
    _in_another_process("""
        import sqlite3, sys, pathlib
        with sqlite3.connect(sys.argv[1]) as conn:
            conn.execute(sys.argv[2], (3021010200002, "2021-01-02T00:00:00", "R02", "S02", 11, 3021010200002,
                                       "2021-01-02"))
        conn.close()
        path = pathlib.Path(sys.argv[3])
        path.parent.mkdir(parents=True)
        path.touch()
    """, registry=str(lsstcam / "registry.sqlite3"), insert=INSERT,
        file=str(_path(lsstcam, LATER, "2021-01-02", "R02", "S02")))
    later = mapper.map("raw", LATER)
    assert later.found and later.getLocationsWithRoot() == [str(_path(lsstcam, LATER, "2021-01-02", "R02", "S02"))]
    assert later.dataId == {**LATER, "dayObs": "2021-01-02", "raftName": "R02", "detectorName": "S02"}
    _in_another_process("""
        import sqlite3, sys
        with sqlite3.connect(sys.argv[1]) as conn:
            conn.execute("DELETE FROM raw WHERE expId = 3021010100001")
        conn.close()
    """, registry=str(lsstcam / "registry.sqlite3"))
    with pytest.raises(NoResults):
        mapper.map("raw", FIRST)


def test_errors_are_those_of_the_lookup_without_a_plan(lsstcam: Path) -> None:
    with sqlite3.connect(lsstcam / "registry.sqlite3") as conn:  # a second row: {detector} alone is ambiguous
        conn.execute(INSERT, _row(LATER, "2021-01-02", "R02", "S02"))
    conn.close()
    mapper = LsstCamMapper(root=str(lsstcam))
    mapping = mapper.mappings["raw"]
    for partial in ({"detector": 99}, {"snap": 0}):
        with pytest.raises(NoResults) as planned:
            mapper.map("raw", partial)
        missing = [key for key in mapping.keyDict if key not in partial]
        with pytest.raises(NoResults) as unplanned:
            mapping._complete(missing, dict(partial))
        assert str(planned.value) == str(unplanned.value)
        assert "raw" in str(planned.value) and str(lsstcam) in str(planned.value)


@pytest.mark.xdist_group(XDIST_GROUP)
def test_a_postgres_row_added_after_the_plan_is_found(pg_server, lsstcam: Path) -> None:
    uri = pg_server.uri(schema=f"mapplan{os.getpid()}")
    copy_sqlite_registry(lsstcam / "registry.sqlite3", uri)
    mapper = LsstCamMapper(root=str(lsstcam), registry=uri)
    assert isinstance(mapper.registry, PostgresRegistry)
    assert mapper.map("raw", FIRST).found
    with pytest.raises(NoResults):
        mapper.map("raw", LATER)
    with pg_server.connect("postgres") as conn:  # another session, after the plan was built
        columns = '"visit", "filter", "dateObs", "expTime", "raftName", "detectorName", "detector", "snap", ' \
                  '"expId", "dayObs"'
        conn.execute(f"INSERT INTO mapplan{os.getpid()}.raw ({columns}) VALUES (%s, 'r', %s, 15.0, %s, %s, %s, 0, "
                     "%s, %s)", _row(LATER, "2021-01-02", "R02", "S02"))
    later = mapper.map("raw", LATER)
    assert later.getLocations() == [TEMPLATE % {**LATER, "dayObs": "2021-01-02", "raftName": "R02",
                                                "detectorName": "S02"}]
    assert later.found is False  # no file: the probe, like the lookup, asks afresh
