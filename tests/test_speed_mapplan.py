"""The compiled map path (issue 12): a plan per data-ID shape holds shapes, never rows or files.

`Mapping.map` works out once per mapper class and order of data-ID keys which
template keys are missing, the registry statement that supplies them
(`Registry.lookup_unique_plan`) and how the template is filled, and compiles
them into one function, which `CameraMapper.map` calls straight away for a
shape it has seen; every call checks the values, runs the statement and probes
the file afresh. So a registry row and a file added by another process after
the plan was built are found, a row removed is missed, a hostile value (given
or supplied by the registry) is refused as on the first map, and the errors are
those of the lookup without a plan.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from pg_server import XDIST_GROUP

from butler.errors import DataIdValueError, NoResults, UnsafeDataIdValueError
from butler.location import ButlerLocation
from butler.registry import PostgresRegistry, SqliteRegistry
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
    assert plan.query is not None and plan.fillsDirectly and not plan.checksKeys
    assert mapper._locators[("raw", "expId", "detector")] is plan.locate  # what mapper.map calls from now on
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


def _insert(root: Path, *rows: tuple) -> None:
    """Add rows (`_row`) to the registry, as another writer would."""
    with sqlite3.connect(root / "registry.sqlite3") as conn:
        conn.executemany(INSERT, rows)
    conn.close()


def _visit(row: tuple, visit: int) -> tuple:
    """A `_row` of another visit of the same exposure."""
    return (visit, *row[1:])


def test_a_unique_answer_repeated_in_the_registry_falls_back_to_the_full_lookup(lsstcam: Path) -> None:
    """The planned statement asks for two rows, not made distinct: rows repeating the one answer (two
    visits of an exposure) are answered by the full, distinct lookup; rows that differ, as before."""
    same = _row(LATER, "2021-01-02", "R02", "S02")
    _insert(lsstcam, same, _visit(same, 1))
    registry = SqliteRegistry(lsstcam / "registry.sqlite3")
    run = registry.lookup_unique_plan(["dayObs", "raftName", "detectorName"], ["raw"], ["expId", "detector"])
    assert run([LATER["expId"], LATER["detector"]]) == [("2021-01-02", "R02", "S02")] * 2  # through the index
    assert registry.lookup(["dayObs", "raftName", "detectorName"], ["raw"], LATER) == [("2021-01-02", "R02", "S02")]
    scanning = registry.lookup_unique_plan(["dayObs", "raftName"], ["raw"], ["detector"])  # no index: DISTINCT
    assert scanning([LATER["detector"]]) == [("2021-01-02", "R02")]
    registry.close()
    mapper = LsstCamMapper(root=str(lsstcam))
    for _ in range(2):  # the first map plans, the second runs the plan
        assert mapper.map("raw", FIRST).found
        location = mapper.map("raw", LATER)
        assert location.dataId == {**LATER, "dayObs": "2021-01-02", "raftName": "R02", "detectorName": "S02"}
    _insert(lsstcam, _visit(_row(LATER, "2021-01-03", "R03", "S03"), 2))
    mapping = mapper.mappings["raw"]
    with pytest.raises(NoResults) as planned:
        mapper.map("raw", LATER)
    with pytest.raises(NoResults) as unplanned:
        mapping._complete(["dayObs", "raftName", "detectorName"], dict(LATER))
    assert str(planned.value) == str(unplanned.value) and "2 matches" in str(planned.value)


@pytest.mark.parametrize("raft", ["../../etc", "R/1", "", "R\x00", "é/x", "x" * 300])
def test_a_hostile_registry_value_never_reaches_a_path_once_planned(lsstcam: Path, raft: str) -> None:
    _insert(lsstcam, _row(LATER, "2021-01-02", raft, "S02"))
    mapper = LsstCamMapper(root=str(lsstcam))
    assert mapper.map("raw", FIRST).found  # plans the shape
    messages = set()
    for _ in range(2):
        with pytest.raises(UnsafeDataIdValueError) as info:
            mapper.map("raw", LATER)
        messages.add(str(info.value))
    (message,) = messages  # the same refusal, planned or not
    assert "'raftName'" in message and str(lsstcam) in message


def test_a_bad_given_value_is_refused_as_before_once_planned(lsstcam: Path) -> None:
    mapper = LsstCamMapper(root=str(lsstcam))
    fresh = LsstCamMapper(root=str(lsstcam))
    assert mapper.map("raw", FIRST).found  # plans the shape: the key check is not asked again
    for bad in ({"expId": 1.5, "detector": 10}, {"expId": "x", "detector": 10}, {"expId": 2**64, "detector": 10}):
        with pytest.raises(DataIdValueError) as planned:
            mapper.map("raw", bad)
        with pytest.raises(DataIdValueError) as unplanned:
            fresh.mappings["raw"].checkDataId(fresh, bad)
        assert str(planned.value) == str(unplanned.value) and "'expId'" in str(planned.value)
    converted = mapper.map("raw", {"expId": str(FIRST["expId"]), "detector": 10.0})
    assert converted.dataId["expId"] == FIRST["expId"] and type(converted.dataId["detector"]) is int


def test_the_fast_location_constructor_sets_what_the_public_one_does(lsstcam: Path) -> None:
    mapper = LsstCamMapper(root=str(lsstcam))
    mapped = mapper.map("raw", FIRST)
    public = ButlerLocation(mapped.pythonType, mapped.cppType, mapped.storageName, mapped.locationList[0],
                            mapped.dataId, mapper, mapped.storage, usedDataId=mapped.usedDataId,
                            datasetType="raw", additionalData=mapped.dataId, repository=mapped.repository,
                            found=mapped.found)
    for field in attrs.fields(ButlerLocation):
        assert getattr(mapped, field.name) == getattr(public, field.name), field.name
    assert mapped.additionalData is not mapped.dataId and mapped.additionalData == mapped.dataId
    assert list(mapped.usedDataId) == list(mapper.mappings["raw"].keyDict)  # the template's order
