"""Speed where users feel it: registry lookups use indexes, a subset is one query, worker start reuses
the per-process policy work."""

from __future__ import annotations

import os
import pickle
import sqlite3

import pytest

from butler import Butler, RepositoryArgs
from butler.errors import RegistryError
from butler.ingest import _create_schema
from butler.registry import SqliteRegistry
from mappers.lsst import LatissMapper, LsstCamMapper, Ts8Mapper
from mappers.test import TestMapper


@pytest.mark.parametrize("mapperClass", [LsstCamMapper, LatissMapper, Ts8Mapper, TestMapper])
def test_raw_lookups_use_an_index(tmp_path, mapperClass):
    """Every one-key partial data ID of the raw template completes through indexes of the ingest schema."""
    (tmp_path / "_mapper").write_text(f"{mapperClass.__module__}.{mapperClass.__name__}\n")
    mapper = mapperClass(root=str(tmp_path))
    keys = list(mapper.getKeys("raw", None))
    tables = mapper.mappings["raw"].tables or ["raw"]
    registry = SqliteRegistry(tmp_path / "registry.sqlite3", readOnly=False)
    with registry.transaction():
        _create_schema(registry, mapperClass.translator, keys)
    columns = registry.columns("raw")
    queried = [key for key in keys if key in columns]
    assert queried, keys
    for key in queried:
        others = [other for other in queried if other != key] or ["id"]
        plan = registry.queryPlan(others, tables, {key: 1})
        assert not [step for step in plan if step.startswith("SCAN")], (mapperClass.__name__, key, plan)
        assert any(step.startswith("SEARCH raw USING") and "INDEX" in step for step in plan), \
            (mapperClass.__name__, key, plan)


def _obs_test_repository(root, visits, template="raw/raw_v%(visit)d_f%(filter)s.fits"):
    """An obs_test repository over the ingest schema, ``visits`` raws registered (no files needed)."""
    root.mkdir()
    registry = SqliteRegistry(root / "registry.sqlite3", readOnly=False)
    with registry.transaction():
        _create_schema(registry, TestMapper.translator, ("visit", "filter"))
        rows = [{"visit": visit, "filter": "gr"[visit % 2], "taiObs": "1999-01-17T04:52:34.895", "expTime": 15.0}
                for visit in range(1, visits + 1)]
        ids = registry.insert("raw", rows)
        registry.insert("raw_visit", rows)
        registry.insert("raw_skyTile", [{"id": rowid, "skyTile": None} for rowid in ids])
    registry.close()
    policy = {"exposures": {"raw": {"template": template}}}
    return Butler(outputs=RepositoryArgs(root=str(root), mapper=TestMapper, policy=policy, mode="rw"))


def test_subset_is_one_query(tmp_path):
    """A subset of many data IDs asks the registry for rows once (its schema is read once per registry)."""
    repo = _obs_test_repository(tmp_path / "repo", 300)
    registry = repo.repositories()[0].mapper.registry
    statements = []
    registry.conn.set_trace_callback(statements.append)
    refs = repo.subset("raw", filter="g")
    assert sorted(ref.dataId["visit"] for ref in refs) == list(range(2, 301, 2))
    assert len([sql for sql in statements if 'FROM "raw"' in sql]) == 1, statements
    statements.clear()
    assert len(repo.subset("raw", filter="r")) == 150
    assert len(statements) == 1, statements


def test_mappers_of_one_process_share_the_policy_work_not_the_repository(tmp_path):
    """An unpickled Butler's mapper reuses the composed policy; a different repository policy is its own."""
    repo = _obs_test_repository(tmp_path / "a", 3)
    first = repo.repositories()[0].mapper
    again = pickle.loads(pickle.dumps(repo)).repositories()[0].mapper
    assert again is not first and again.policy is first.policy
    assert again.registry is not first.registry
    assert again.map("raw", {"visit": 2}).getLocations() == ["raw/raw_v2_fg.fits"]
    other = _obs_test_repository(tmp_path / "b", 3, template="raw/v%(visit)d-%(filter)s.fits")
    mapper = other.repositories()[0].mapper
    assert mapper.policy is not first.policy
    assert mapper.map("raw", {"visit": 3}).getLocations() == ["raw/v3-r.fits"]
    assert mapper.getKeys("raw", None) == {"visit": int, "filter": str}
    assert sorted(mapper.mappings) == sorted(first.mappings) and "raw" in mapper.exposures


def test_readers_share_a_schema_until_the_file_changes(tmp_path):
    """Readers of one registry file reuse its learnt schema; a reader of the rewritten file sees the new one."""
    location = tmp_path / "registry.sqlite3"
    writer = SqliteRegistry(location, readOnly=False)
    with writer.transaction():
        writer.create_table("raw", [("visit", "INT")])
    first, second = SqliteRegistry(location), SqliteRegistry(location)
    assert first.tables() == ["raw"] and first.columns("raw") == {"visit": "INT"}
    statements = []
    second.conn.set_trace_callback(statements.append)
    assert second.tables() == ["raw"] and second.columns("raw") == {"visit": "INT"}
    assert statements == []  # learnt by the first reader
    with writer.transaction():
        writer.create_table("raw_visit", [("visit", "INT")])
        writer.insert("raw", [{"visit": 7}])
    third = SqliteRegistry(location)
    assert third.tables() == ["raw", "raw_visit"]
    assert third.lookup("visit", "raw", {}) == [(7,)]
    assert first.tables() == ["raw"]  # an open reader keeps the version it connected to


# -- read connections shared by the registries of one file version --------------------------------

def _tiny_registry(path, visits) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE raw (visit INT, filter TEXT)")
        conn.executemany("INSERT INTO raw VALUES (?, 'g')", [(visit,) for visit in visits])
    conn.close()
    return str(path)


def test_registries_of_one_file_share_a_read_connection_and_a_replaced_file_gets_its_own(tmp_path):
    path = _tiny_registry(tmp_path / "registry.sqlite3", [1, 2])
    first, second = SqliteRegistry(path), SqliteRegistry(path)
    assert first.conn is second.conn  # one connection (and one schema read by SQLite) per file version
    replacement = _tiny_registry(tmp_path / "new.sqlite3", [1, 2, 3])
    os.replace(replacement, path)  # how a writer publishes a registry: a new file under the name
    third = SqliteRegistry(path)
    assert third.conn is not first.conn
    assert third.lookup("visit", "raw", {}) == [(1,), (2,), (3,)]
    second.close()  # closing one leaves the others working, and it fails from then on
    assert first.lookup("visit", "raw", {"visit": 2}) == [(2,)]
    with pytest.raises(RegistryError):
        second.lookup("visit", "raw", {})
    writable = SqliteRegistry(path, readOnly=False)
    assert writable.conn is not third.conn  # a registry that may write never shares its reader
    writable.close()
    assert third.lookup("visit", "raw", {"visit": 3}) == [(3,)]


def _connection_in_child(path: str, queue) -> None:
    from butler.registry import sqlite as sqlite_module

    queue.put((len(sqlite_module._READERS), sqlite_module.SqliteRegistry(path).lookup("visit", "raw", {})))


def test_a_forked_child_never_uses_its_parents_read_connection(tmp_path):
    import multiprocessing

    from butler.registry import sqlite as sqlite_module

    path = _tiny_registry(tmp_path / "registry.sqlite3", [7])
    assert SqliteRegistry(path).lookup("visit", "raw", {}) == [(7,)] and sqlite_module._READERS
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_connection_in_child, args=(path, queue))
    child.start()
    inherited, rows = queue.get(timeout=60)
    child.join(60)
    assert inherited == 0 and rows == [(7,)] and child.exitcode == 0
