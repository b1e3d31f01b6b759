"""Tests of `butler.registry` against the shipped Gen2 registries (never modified)."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from butler.errors import RegistryError
from butler.registry import FsScanner, PosixRegistry, Registry, SqliteRegistry, template_fields

from conftest import SHARED_DATA

DATA = str(SHARED_DATA)
OBS_TEST = f"{DATA}/obs_test/data/input"
OBS_TEST_REGISTRY = f"{OBS_TEST}/registry.sqlite3"
CFHTLS = f"{DATA}/obs_base/tests/cfhtls.sqlite3"
CALIB = f"{DATA}/obs_base/tests/calibRegistry.sqlite3"
SMALL = f"{DATA}/obs_base/tests/registry.sqlite3"
REGISTRY_FILES = (OBS_TEST_REGISTRY, f"{OBS_TEST}/calibRegistry.sqlite3", CFHTLS, CALIB, SMALL)


def _digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def registries_unchanged(shared_data):
    before = {path: _digest(path) for path in REGISTRY_FILES}
    yield
    assert {path: _digest(path) for path in REGISTRY_FILES} == before


@pytest.fixture
def registry(request):
    reg = SqliteRegistry(request.param)
    yield reg
    reg.close()


def _open(path):
    return pytest.mark.parametrize("registry", [path], indirect=True)


# -- Registry.create ---------------------------------------------------------------------------

def test_create(tmp_path):
    reg = Registry.create(OBS_TEST_REGISTRY)
    try:
        assert isinstance(reg, SqliteRegistry)
        assert isinstance(reg.conn, sqlite3.Connection)
    finally:
        reg.close()
    posix = Registry.create(OBS_TEST)
    assert isinstance(posix, PosixRegistry) and posix.root == OBS_TEST
    assert Registry.create(None) is None
    assert Registry.create(str(tmp_path / "missing.sqlite3")) is None
    assert not (tmp_path / "missing.sqlite3").exists()
    with pytest.raises(RegistryError):
        Registry.create(str(tmp_path / "missing-dir"))
    with pytest.raises(RegistryError):
        SqliteRegistry(tmp_path / "missing.sqlite3")


@_open(OBS_TEST_REGISTRY)
def test_read_only_connection(registry):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        registry.conn.execute("DELETE FROM raw")


def test_writable_when_asked(tmp_path):
    path = tmp_path / "r.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE raw ("visit" INT, "filter" TEXT)')
    conn.close()
    with SqliteRegistry(path, readOnly=False) as reg:
        with reg.transaction():
            reg.insert("raw", [{"visit": 7, "filter": "z"}])
        assert reg.lookup("visit", "raw", {"filter": "z"}) == [(7,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # reads stay mode=ro
            reg.conn.execute("DELETE FROM raw")


# -- obs_test ----------------------------------------------------------------------------------

@_open(OBS_TEST_REGISTRY)
def test_obs_test_registry(registry):
    assert registry.tables() == ["raw", "raw_skyTile", "raw_visit"]
    assert registry.columns("raw") == {"id": "INTEGER", "visit": "INT", "filter": "TEXT", "taiObs": "TEXT",
                                       "expTime": "DOUBLE"}
    assert list(registry.columns("raw")) == ["id", "visit", "filter", "taiObs", "expTime"]
    assert registry.columns("nope") == {}
    assert registry.root == OBS_TEST and registry.location == OBS_TEST_REGISTRY
    assert [registry.rowCount(t) for t in ("raw", "raw_visit", "raw_skyTile")] == [3, 3, 5]
    with pytest.raises(RegistryError):
        registry.rowCount("nope")
    assert registry.lookup("visit", "raw", {"filter": "g"}) == [(1,), (2,)]
    assert registry.lookup(["visit"], ["raw"], {"filter": "r"}) == [(3,)]
    assert sorted(registry.lookup("filter", "raw", None)) == [("g",), ("r",)]
    assert registry.lookup(("visit",), ("raw", "raw_skyTile"), {"skyTile": 85932}) == [(1,), (2,)]
    assert registry.lookup("visit", ["raw", "raw_skyTile"], {"skyTile": 86653}) == [(3,)]
    assert registry.lookup(["filter", "taiObs"], "raw_visit", {"visit": 3}) == \
        [("r", "1999-02-19T01:17:24.056802176")]
    assert registry.lookup("filter", "raw", {"visit": 1, "filter": "r"}) == []


@_open(OBS_TEST_REGISTRY)
def test_unknown_names_are_refused(registry):
    # SQLite would read an unknown double-quoted name as a string literal
    with pytest.raises(RegistryError, match="'nosuchcolumn'"):
        registry.lookup("visit", "raw", {"nosuchcolumn": 1})
    with pytest.raises(RegistryError, match="'nosuchcolumn'"):
        registry.lookup("nosuchcolumn", "raw", {})
    with pytest.raises(RegistryError, match="no such table"):
        registry.lookup("visit", ["raw", "nosuchtable"], {})
    with pytest.raises(RegistryError, match="SQL: SELECT DISTINCT"):  # SQLite errors name the SQL
        registry.executeQuery("visit", "raw", [], None, [1, 2])


@_open(OBS_TEST_REGISTRY)
def test_identifiers_are_quoted_values_are_bound(registry):
    evil = "g' OR '1'='1"
    assert registry.lookup("visit", "raw", {"filter": evil}) == []
    with pytest.raises(RegistryError):
        registry.lookup('visit" FROM raw; --', "raw", {})


# -- obs_base CFHTLS ---------------------------------------------------------------------------

@_open(CFHTLS)
def test_cfhtls_registry(registry):
    assert registry.rowCount("raw") == 1260
    ccds = [ccd for (ccd,) in sorted(registry.lookup("ccd", "raw", {}))]
    assert ccds == [c for c in range(36) if c != 3]
    expected = {
        "g": [787784, 787796, 788455, 792933],
        "i": [787650, 788033, 788548, 789033, 792170],
        "r": [787731, 788052, 788555, 788556, 788557, 788558, 788559, 788965, 793310],
    }
    for filt, visits in expected.items():
        assert sorted(v for (v,) in registry.lookup("visit", "raw", {"filter": filt})) == visits
    assert registry.lookup("ccd", "raw", {"visit": 787731, "filter": "r", "ccd": 36}) == []
    assert registry.lookup(["filter", "taiObs"], "raw", {"visit": 787650, "ccd": 13}) == \
        [("i", "2005-04-01T08:57:56.180160128")]
    assert len(registry.lookup("skyTile", ["raw", "raw_skyTile"], {})) == 19


# -- obs_base calibration registry: validity ranges --------------------------------------------

@_open(CALIB)
def test_calib_range_lookup(registry):
    taiObs = "2005-04-01T08:57:56.180160128"
    assert registry.lookup("derivedRunId", "flat", {"filter": "i", ("validStart", "validEnd"): taiObs}) \
        == [("05Am03",)]
    assert registry.executeQuery(["derivedRunId", "path"], ["flat"], [("filter", "?")],
                                 ("?", "validStart", "validEnd"), ["i", taiObs]) == \
        [("05Am03", "05Am03.flat.i.36.01.fits")]
    # a bare string field, bare where columns and a (start, end) range
    assert registry.executeQuery("id", "flat", ["filter"], ("validStart", "validEnd"),
                                 ["i", taiObs]) == [(118,)]
    # no i flat covers late April 2005
    assert registry.executeQuery("id", "flat", ["filter"], ("validStart", "validEnd"),
                                 ["i", "2005-04-25T00:00:00"]) == []
    assert [registry.rowCount(t) for t in ("bias", "dark", "flat", "fringe")] == [53, 56, 252, 94]


@_open(CALIB)
def test_calib_range_is_lexicographic_as_in_gen2(registry):
    # row 118 is valid 2005-03-30 .. 2005-04-17; a time on the last day sorts after the bare date
    assert registry.executeQuery("id", "flat", ["filter"], ("validStart", "validEnd"),
                                 ["i", "2005-04-17"]) == [(118,)]
    assert registry.executeQuery("id", "flat", ["filter"], ("validStart", "validEnd"),
                                 ["i", "2005-04-17T01:00:00"]) == []
    assert registry.conn.execute("SELECT '2005-04-17T01:00:00' BETWEEN '2005-03-30' AND '2005-04-17'"
                                 ).fetchone() == (0,)


@_open(CALIB)
def test_numpy_values_bind(registry):
    np = pytest.importorskip("numpy")
    assert registry.lookup("path", "flat", {"id": np.int64(118)}) == [("05Am03.flat.i.36.01.fits",)]


@_open(SMALL)
def test_small_registry(registry):
    assert registry.lookup("sensor", "x", {}) == [("1,1",)]
    assert registry.rowCount("x") == 34
    assert sorted(registry.lookup("visit", "x", {"filter": "r"})) == [(85408556,), (85751839,)]


def test_executeQuery_rejects_a_bad_range_key():
    with SqliteRegistry(CALIB) as reg, pytest.raises(RegistryError):
        reg.lookup("id", "flat", {("validStart",): "2005-01-01"})


# -- templates, FsScanner, PosixRegistry -------------------------------------------------------

def test_template_fields():
    template = "raw/%(dayObs)s/%(expId)013d/%(expId)013d-%(raftName)s-det%(detector)03d.fits[%(channel)d]"
    assert template_fields(template) == {"dayObs": str, "expId": int, "raftName": str, "detector": int,
                                         "channel": int}
    assert template_fields("a%(x)5.2f_%(h)x_%(c)c") == {"x": float, "h": int, "c": str}
    assert template_fields("config/test.py") == {}


def _touch(root, *paths):
    for path in paths:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        open(full, "w").close()


def test_fsscanner(tmp_path):
    _touch(tmp_path, "1038843o.fits.fz", "raw_v1_fg.fits.gz", "raw_v12_fgr.fits.gz", "other.txt",
           "d/v3/e0.5/x.fits", "d/v3/e0.5/y.fits", "d/vX/e1/x.fits")
    assert FsScanner("%(visit)d%(state)1s.fits.fz[%(extension)d]").processPath(tmp_path) == \
        {"1038843o.fits.fz": {"visit": 1038843, "state": "o"}}
    assert FsScanner("raw_v%(visit)d_f%(filter)1s.fits.gz").processPath(str(tmp_path)) == \
        {"raw_v1_fg.fits.gz": {"visit": 1, "filter": "g"}}
    assert FsScanner("raw_v%(visit)d_f%(filter)s.fits.gz").processPath(tmp_path) == \
        {"raw_v1_fg.fits.gz": {"visit": 1, "filter": "g"},
         "raw_v12_fgr.fits.gz": {"visit": 12, "filter": "gr"}}
    assert FsScanner("d/v%(visit)d/e%(e)g/%(name)s.fits").processPath(tmp_path) == {
        "d/v3/e0.5/x.fits": {"visit": 3, "e": 0.5, "name": "x"},
        "d/v3/e0.5/y.fits": {"visit": 3, "e": 0.5, "name": "y"}}


def test_fsscanner_repeated_field_must_agree(tmp_path):
    _touch(tmp_path, "0042/0042-a.fits", "0042/0043-a.fits")
    assert FsScanner("%(expId)04d/%(expId)04d-%(x)s.fits").processPath(tmp_path) == \
        {"0042/0042-a.fits": {"expId": 42, "x": "a"}}


def test_fsscanner_literal_glob_characters(tmp_path):
    _touch(tmp_path, "a[1]/v1.fits", "a1/v2.fits")
    assert FsScanner("a[1]/v%(visit)d.fits").processPath(tmp_path) == {"a[1]/v1.fits": {"visit": 1}}


def test_posix_registry_on_obs_test():
    reg = PosixRegistry(OBS_TEST)
    template = "raw/raw_v%(visit)d_f%(filter)s.fits.gz"
    assert reg.lookup("filter", "raw", {"visit": 1}, template=template) == [("g",)]
    assert reg.lookup(["visit"], "raw", {"filter": "g"}, template=template) == [(1,), (2,)]
    assert reg.lookup(["visit", "filter"], "raw", None, template=template, storage="FitsStorage") == \
        [(1, "g"), (2, "g"), (3, "r")]
    assert reg.lookup("visit", "raw", {"filter": "g", "ccd": 4}, template=template) == [(1,), (2,)]
    assert reg.lookup("taiObs", "raw", {"visit": 1}, template=template) == []
    assert reg.lookup("visit", "raw", {"visit": 1}) == []


def test_posix_registry_hdu_template(tmp_path):
    _touch(tmp_path, "raw/v1/c3.fits", "raw/v1/c4.fits", "raw/v2/c3.fits")
    reg = Registry.create(str(tmp_path))
    template = "raw/v%(visit)d/c%(ccd)d.fits[%(hdu)d]"
    assert reg.lookup(("ccd",), "raw", {"visit": 1, "hdu": 2}, template=template) == [(3,), (4,)]
    assert reg.lookup("visit", "raw", {"ccd": "3"}, template=template) == [(1,), (2,)]
