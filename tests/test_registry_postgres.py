"""PostgreSQL registries against a real PostgreSQL 15 server (the `pg_server` plugin).

Copies of the real registries answer as their SQLite files; CameraMapper
repositories read, write and subset with their registry in PostgreSQL; ingest
writes there in one transaction; faults (a stopped server, a dropped
connection, a wrong password, many processes) give the package's errors and
lose nothing; hostile data-ID keys never reach SQL.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from pg_server import XDIST_GROUP

import butler
from butler.cfg import RepositoryArgs
from butler.errors import AccessDenied, RegistryConflictError, RegistryError, RegistrySchemaError, RegistryUnavailable
from butler.ingest import ingest_raws
from butler.registry import PostgresRegistry, Registry, SqliteRegistry
from butler.registry.postgres import close_connections, copy_sqlite_registry, parse_postgres_uri
from butler.storage import Storage
from mappers.test import TestMapper

from conftest import SHARED_DATA, assert_user_error, run_cli, run_together

pytestmark = pytest.mark.xdist_group(XDIST_GROUP)  # one xdist worker runs them all, on its server

OBS_TEST = SHARED_DATA / "obs_test" / "data" / "input"
OBS_LSST = SHARED_DATA / "obs_lsst" / "data" / "input"
OBS_TEST_RAWS = [str(OBS_TEST / "raw" / f"raw_v{visit}_f{filt}.fits.gz") for visit, filt in
                 ((1, "g"), (2, "g"), (3, "r"))]
#: every registry of the real obs_test and obs_lsst repositories, relative to the shared data
REGISTRIES = sorted(str(path.relative_to(SHARED_DATA)) for top in (OBS_TEST, OBS_LSST)
                    for path in top.rglob("*.sqlite3")) if SHARED_DATA.is_dir() else []
HOSTILE_KEYS = ['visit" OR 1=1 --', "visit; DROP TABLE raw", 'x") UNION SELECT usename FROM pg_user --']

_names = iter(range(10**6))


@pytest.fixture
def uri(pg_server, request) -> str:
    """The URI of a new, empty schema of the server's ``postgres`` database."""
    return pg_server.uri(schema=f"t{os.getpid()}_{next(_names)}")


def admin_query(pg_server, query: str, *values, database: str = "postgres"):
    with pg_server.connect(database) as conn:
        cursor = conn.execute(query, values)
        return cursor.fetchall() if cursor.description is not None else []


def table_names(pg_server, uri: str) -> list[str]:
    schema = parse_postgres_uri(uri).schema
    return sorted(row[0] for row in admin_query(
        pg_server, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema))


def sorted_rows(rows) -> list:
    return sorted(rows, key=repr)


# -- names ------------------------------------------------------------------------------------------


def test_uri_forms():
    target = parse_postgres_uri("postgresql://me@%2Fvar%2Frun%2Fpostgresql:5433/reg?schema=Cam%20One")
    assert (target.host, target.port, target.database, target.user, target.schema) == \
        ("/var/run/postgresql", 5433, "reg", "me", "Cam One")
    assert parse_postgres_uri("postgres://db.example.org/reg").key == ("db.example.org", None, "reg", None)
    with pytest.raises(RegistryError, match="never read from a registry URI") as caught:
        parse_postgres_uri("postgresql://me:s3cret@host/reg")
    assert "s3cret" not in str(caught.value)
    for bad, words in (("postgresql://host/", "no database"), ("postgresql://host:x/db", "not a number"),
                       ("postgresql://host/db?sslmode=off", "schema")):
        with pytest.raises(RegistryError, match=words):
            parse_postgres_uri(bad)


# -- copies of the real registries answer as the SQLite files --------------------------------------


@pytest.mark.parametrize("relpath", REGISTRIES)
def test_copied_registry_answers_as_its_sqlite_file(pg_server, uri, shared_data_untouched, relpath):
    source = shared_data_untouched / relpath
    result = run_cli("registry", "copy", str(source), uri)
    assert result.exit_code == 0, result.stderr
    with SqliteRegistry(source) as lite:
        pg = Registry.create(uri)
        assert isinstance(pg, PostgresRegistry)
        tables = [table for table in lite.tables() if table != "sqlite_sequence"]
        assert pg.tables() == tables
        assert result.stdout.splitlines() == [f"{table}: {lite.rowCount(table)} rows" for table in tables]
        for table in tables:
            columns = list(lite.columns(table))
            assert list(pg.columns(table)) == columns
            assert pg.rowCount(table) == lite.rowCount(table)
            assert sorted_rows(pg.lookup(columns, table, {})) == sorted_rows(lite.lookup(columns, table, {}))
            for column in columns:
                assert sorted_rows(pg.queryMetadata(table, column)) == sorted_rows(lite.queryMetadata(table, column))
            # a few key combinations: each row's first one and two columns as a partial data ID
            for row in lite.lookup(columns, table, {})[:5]:
                for width in (1, 2):
                    dataId = dict(zip(columns[:width], row[:width]))
                    assert sorted_rows(pg.queryMetadata(table, columns, dataId)) == \
                        sorted_rows(lite.queryMetadata(table, columns, dataId)), (table, dataId)
            assert pg.queryMetadata(table, columns, {"no_such_key": 1}) == pg.queryMetadata(table, columns, {})


def test_copy_keeps_indexes_and_identity(pg_server, uri, shared_data):
    copy_sqlite_registry(shared_data / "obs_test/data/input/registry.sqlite3", uri)
    schema = parse_postgres_uri(uri).schema
    indexes = {row[0]: row[1] for row in admin_query(
        pg_server, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", schema)}
    assert "UNIQUE" in indexes["uq_raw"] and {"ix_skyTile_id", "ix_skyTile_tile"} <= set(indexes)
    registry = PostgresRegistry(uri, readOnly=False)
    with registry.transaction():  # the id goes on after the copied ones; UNIQUE(visit) holds
        assert registry.insert("raw", [{"visit": 4, "filter": "i"}]) == [4]
        with pytest.raises(RegistryConflictError), registry.transaction():
            registry.insert("raw", [{"visit": 1, "filter": "z"}])
    assert registry.lookup("id", "raw", {"visit": 4}) == [(4,)]


def test_copy_is_one_transaction(pg_server, uri, tmp_path):
    source = tmp_path / "registry.sqlite3"
    conn = sqlite3.connect(source)
    conn.executescript("CREATE TABLE a (x INT); INSERT INTO a VALUES (1);"
                       "CREATE TABLE b (y INT); INSERT INTO b VALUES ('not a number');")
    conn.commit()
    conn.close()
    result = run_cli("registry", "copy", str(source), uri)
    assert_user_error(result, "'b'", "not a number")
    assert table_names(pg_server, uri) == []  # table a was created and filled, then rolled back
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", uri)
    with pytest.raises(RegistryError, match="exists there already"):
        copy_sqlite_registry(OBS_TEST / "registry.sqlite3", uri)


# -- the registry protocol -------------------------------------------------------------------------


def test_protocol_transactions_and_conflicts(pg_server, uri):
    registry = PostgresRegistry(uri, readOnly=False)
    with pytest.raises(RegistryError, match="transaction"):
        registry.insert("raw", [{"visit": 1}])
    with registry.transaction():
        registry.create_table("raw", [("visit", "INT"), ("filter", "TEXT")], unique=["visit"], primary_key="id")
        assert registry.insert("raw", [{"visit": 1, "filter": "g"}, {"visit": 2, "filter": "r"}]) == [1, 2]
    assert registry.columns("raw") == {"id": "bigint", "visit": "bigint", "filter": "text"}
    with registry.transaction():
        registry.insert("raw", [{"visit": 3, "filter": "i"}])
        with pytest.raises(RegistryConflictError, match="raw"), registry.transaction():
            registry.insert("raw", [{"visit": 4, "filter": "z"}])
            registry.insert("raw", [{"visit": 2, "filter": "z"}])
        assert registry.insert("raw", [{"visit": 4, "filter": "z"}, {"visit": 2, "filter": "x"}],
                               ignore_conflicts=True)[1] is None
    with pytest.raises(ValueError), registry.transaction():
        registry.insert("raw", [{"visit": 5, "filter": "y"}])
        raise ValueError("undo")
    assert registry.lookup(["visit", "filter"], "raw", {}) == [(1, "g"), (2, "r"), (3, "i"), (4, "z")]  # sorted
    assert registry.lookup(["filter"], "raw", {}) == [("g",), ("i",), ("r",), ("z",)]
    # values compare as SQLite compares them: text digits match an integer column, numbers a text column
    assert registry.lookup("filter", "raw", {"visit": "3"}) == [("i",)]
    assert registry.lookup("visit", "raw", {"visit": "three"}) == []
    reader = Registry.create(uri)
    with pytest.raises(RegistryError, match="read-only"), reader.transaction():
        pass


def test_default_schema(pg_server, shared_data):
    database = pg_server.new_database()
    uri = pg_server.uri(database)
    copy_sqlite_registry(shared_data / "obs_test/data/input/registry.sqlite3", uri)
    assert admin_query(pg_server, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                                  "AND tablename = 'raw'") == [(0,)]  # (another database)
    assert Registry.create(uri).queryMetadata("raw", "visit", {"filter": "g"}) == [1, 2]


def test_hostile_keys_never_reach_sql(pg_server, uri):
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", uri)
    registry = Registry.create(uri)
    admin_query(pg_server, "SELECT pg_stat_statements_reset()")
    for key in HOSTILE_KEYS:
        with pytest.raises(RegistrySchemaError, match="no such column"):
            registry.lookup("visit", "raw", {key: 1})
        with pytest.raises(RegistrySchemaError):
            registry.lookup(key, "raw", {})
        with pytest.raises(RegistrySchemaError, match="no such table"):
            registry.lookup("visit", key, {})
        assert registry.queryMetadata("raw", "visit", {key: 1, "filter": "r"}) == [3]  # an unknown key is ignored
    assert registry.lookup("visit", "raw", {"filter": "g' OR '1'='1"}) == []  # a value is bound, not pasted
    statements = [row[0] for row in admin_query(pg_server, "SELECT query FROM pg_stat_statements")]
    assert statements and not [text for text in statements if "OR 1=1" in text or "DROP" in text
                                 or "pg_user" in text or "'1'='1" in text]
    assert registry.rowCount("raw") == 3


# -- CameraMapper repositories with their registry in PostgreSQL ---------------------------------------


def _ccd() -> CCDData:
    rng = np.random.default_rng(14)
    return CCDData(rng.normal(100.0, 5.0, (20, 30)).astype(np.float32), unit="adu",
                   meta=fits.Header({"OBSERVER": "pg test"}))


def test_butler_with_registry_in_postgres(pg_server, uri, tmp_path, shared_data_untouched):
    """get/put/subset/datasetExists/queryMetadata through a chain whose input's registry is in PostgreSQL."""
    imsim = shared_data_untouched / "obs_lsst/data/input/imsim"
    copy_sqlite_registry(imsim / "registry.sqlite3", uri)
    out = tmp_path / "out"
    writer = butler.Butler(inputs=RepositoryArgs(root=str(imsim), mapperArgs={"registry": uri}), outputs=str(out))
    mapper = writer.repositories()[-1].mapper
    assert isinstance(mapper.registry, PostgresRegistry) and mapper.registry.location == uri
    plain = butler.Butler(inputs=str(imsim))  # the same repository with its SQLite registry
    dataId = {"expId": 204595, "detector": 42}  # partial: the rest comes from the registry
    for fields in ("visit", ["visit", "filter", "raftName"], ["run", "detectorName", "snap"]):
        assert writer.queryMetadata("raw", fields, **dataId) == plain.queryMetadata("raw", fields, **dataId)
    assert writer.queryMetadata("raw", ["visit", "filter"], **dataId) == [(204595, "i_sim_1.4")]
    assert writer.get("raw_md", **dataId) == plain.get("raw_md", **dataId)
    assert writer.datasetExists("raw", **dataId) and not writer.datasetExists("calexp", **dataId)
    ccd = _ccd()
    writer.put(ccd, "calexp", **dataId)
    assert writer.datasetExists("calexp", write=True, **dataId)  # (a 'w' output is not read)
    refs = list(writer.subset("raw"))
    assert [dict(ref.dataId) for ref in refs] == [dict(ref.dataId) for ref in plain.subset("raw")]
    assert len(refs) == 1 and refs[0].datasetExists("raw")
    # a new Butler over the output finds the input, and its registry, through the output's cfg
    reader = butler.Butler(inputs=str(out))
    np.testing.assert_array_equal(reader.get("calexp", **dataId).data, ccd.data)
    assert reader.queryMetadata("raw", "visit", expId=204595) == [204595]
    # a second output chained to the first (a rerun) reads both
    rerun = butler.Butler(inputs=str(out), outputs=str(tmp_path / "rerun"))
    rerun.put(ccd, "postISRCCD", **dataId)
    assert rerun.datasetExists("calexp", **dataId) and rerun.datasetExists("postISRCCD", write=True, **dataId)
    for chained in (reader, rerun):
        registries = {repo.root: repo.mapper.registry for repo in chained.repositories()}
        assert isinstance(registries[str(imsim)], PostgresRegistry), registries


def test_legacy_pgsql_file(pg_server, tmp_path):
    database = pg_server.new_database("legacy")
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", pg_server.uri(database))
    admin_query(pg_server, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {pg_server.password_role}",
                database=database)
    repo = tmp_path / "repo"
    repo.mkdir()
    legacy = repo / "registry.pgsql"
    server = f"host: {pg_server.sockdir}\nport: {pg_server.port}\ndatabase: {database}\n"
    legacy.write_text(server + "user: postgres\n")
    legacy.chmod(0o644)  # no password: any mode
    registry = Registry.create(str(legacy))
    assert isinstance(registry, PostgresRegistry) and registry.lookup("visit", "raw", {"filter": "r"}) == [(3,)]
    legacy.write_text(server + f"user: {pg_server.password_role}\npassword: {pg_server.password}\n")
    legacy.chmod(0o640)
    storage = Storage.makeFromURI(str(repo))
    with pytest.raises(AccessDenied, match="chmod 600") as caught:
        Registry.create(storage, "registry.sqlite3")  # Gen2 looked for registry.pgsql first
    assert pg_server.password not in str(caught.value) and "0o640" in str(caught.value)
    legacy.chmod(0o600)
    found = Registry.create(storage, "registry.sqlite3")
    assert isinstance(found, PostgresRegistry) and found.target.user == pg_server.password_role
    assert pg_server.password not in repr(found) + found.location + repr(found.target)
    assert found.lookup("visit", "raw", {"filter": "r"}) == [(3,)]  # connected with the file's password
    legacy.write_text(server + "user: postgres\nsecret: x\n")
    with pytest.raises(RegistryError, match="unknown keys secret"):
        Registry.create(storage, "registry.sqlite3")


def test_mapper_finds_registry_pgsql_in_its_root(pg_server, uri, tmp_path):
    """A repository holding ``registry.pgsql`` (no registry.sqlite3) is read with its registry in PostgreSQL."""
    database = pg_server.new_database("legacy")
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", pg_server.uri(database))
    root = tmp_path / "repo"
    root.mkdir()
    (root / "registry.pgsql").write_text(f"host: {pg_server.sockdir}\nport: {pg_server.port}\n"
                                         f"database: {database}\nuser: postgres\n")
    mapper = TestMapper(root=str(root))
    assert isinstance(mapper.registry, PostgresRegistry)
    assert mapper.map("raw", {"visit": 2}).getLocations() == ["raw/raw_v2_fg.fits.gz"]
    assert mapper.queryMetadata("raw", ["visit"], {"filter": "g"}) == [(1,), (2,)]


def test_output_uses_the_registry_pgsql_of_its_parent(pg_server, tmp_path):
    """An output chained to a repository holding only ``registry.pgsql`` is given that registry."""
    database = pg_server.new_database("legacy")
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", pg_server.uri(database))
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "_mapper").write_text("lsst.obs.test.TestMapper\n")
    (parent / "registry.pgsql").write_text(f"host: {pg_server.sockdir}\nport: {pg_server.port}\n"
                                           f"database: {database}\nuser: postgres\n")
    out = butler.Butler(inputs=str(parent), outputs=str(tmp_path / "out"))
    output = out._repos.outputs()[0]
    assert isinstance(output.parentRegistry, PostgresRegistry)
    assert out.queryMetadata("raw", ["visit"], dataId={"filter": "g"}) == [1, 2]
    assert [ref.dataId["visit"] for ref in out.subset("raw", filter="r")] == [3]


# -- ingest ------------------------------------------------------------------------------------------


def test_ingest_into_postgres(pg_server, uri, tmp_path):
    registry = PostgresRegistry(uri, readOnly=False)
    with registry.transaction():  # a table ingest did not create, kept as it is
        registry.create_table("keep", [("note", "TEXT")])
        registry.insert("keep", [{"note": "mine"}])
    root = tmp_path / "repo"
    report = ingest_raws(str(root), OBS_TEST_RAWS[:2], mode="copy", translator=TestMapper.translator,
                         template="raw/raw_v%(visit)d_f%(filter)s.fits.gz", registry=uri, progress=False, workers=1)
    assert len(report.ingested) == 2 and not report.failed
    assert not (root / "registry.sqlite3").exists()
    assert registry.lookup(["id", "visit", "filter"], "raw", {}) == [(1, 1, "g"), (2, 2, "g")] or \
        sorted(registry.lookup(["id", "visit", "filter"], "raw", {})) == [(1, 1, "g"), (2, 2, "g")]
    report = ingest_raws(str(root), OBS_TEST_RAWS, mode="copy", translator=TestMapper.translator,
                         template="raw/raw_v%(visit)d_f%(filter)s.fits.gz", registry=uri, progress=False,
                         workers=1, ignore_ingested=True)
    assert [item.row["visit"] for item in report.ingested] == [3] and len(report.skipped) == 2
    assert sorted(registry.lookup(["visit"], "raw_visit", {})) == [(1,), (2,), (3,)]
    assert sorted(registry.lookup("id", "raw_skyTile", {})) == [(1,), (2,), (3,)]
    assert registry.lookup("note", "keep", {}) == [("mine",)]


def test_cli_ingest_into_the_registry_a_root_names(pg_server, tmp_path):
    """``butler ingest`` on a repository holding ``registry.pgsql``: the rows go to PostgreSQL."""
    database = pg_server.new_database("ingest")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_text("lsst.obs.test.testMapper.TestMapper\n")
    (root / "registry.pgsql").write_text(f"host: {pg_server.sockdir}\nport: {pg_server.port}\n"
                                         f"database: {database}\nuser: postgres\n")
    result = run_cli("ingest", str(root), *OBS_TEST_RAWS, "--mode", "copy", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert not (root / "registry.sqlite3").exists()
    assert admin_query(pg_server, 'SELECT visit, filter FROM raw ORDER BY id', database=database) == \
        [(1, "g"), (2, "g"), (3, "r")]
    repo = butler.Butler(inputs=str(root))
    assert repo.queryMetadata("raw", "visit", filter="g") == [1, 2]
    assert repo.get("raw", visit=3).shape == (2000, 1026)


_KILLED_INGEST = """
import sys, time
import butler.ingest as ingest
from mappers.test import TestMapper
real = ingest._transfer
def transfer(*args):  # this process's own checkpoint: the second file is registered, not committed
    real(*args)
    if args[2].startswith("raw/raw_v2"):
        print("inside", flush=True)
        time.sleep(60)
ingest._transfer = transfer
ingest.ingest_raws(sys.argv[1], sys.argv[3:], mode="copy", translator=TestMapper.translator,
                   template="raw/raw_v%(visit)d_f%(filter)s.fits.gz", registry=sys.argv[2], progress=False,
                   workers=1)
"""


def test_client_killed_mid_ingest_leaves_no_row(pg_server, uri, tmp_path):
    root = tmp_path / "repo"
    process = subprocess.Popen([sys.executable, "-c", _KILLED_INGEST, str(root), uri, *OBS_TEST_RAWS],
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert process.stdout.readline().strip() == "inside"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    deadline = time.monotonic() + 10  # the server notices the dead client and rolls back
    while table_names(pg_server, uri) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert table_names(pg_server, uri) == []  # not even the tables made in the transaction
    report = ingest_raws(str(root), OBS_TEST_RAWS, mode="copy", translator=TestMapper.translator,
                         template="raw/raw_v%(visit)d_f%(filter)s.fits.gz", registry=uri, progress=False, workers=1)
    assert len(report.ingested) == 3  # the files left in place are registered by the rerun
    assert Registry.create(uri).rowCount("raw") == 3


# -- faults ------------------------------------------------------------------------------------------


def test_server_stopped_mid_run_then_restarted(pg_server, uri, shared_data):
    copy_sqlite_registry(shared_data / "obs_test/data/input/registry.sqlite3", uri)
    repo = butler.Butler(inputs=RepositoryArgs(root=str(shared_data / "obs_test/data/input"),
                                               mapperArgs={"registry": uri}))
    assert repo.queryMetadata("raw", "visit", filter="g") == [1, 2]
    pg_server.stop()
    try:
        start = time.monotonic()
        with pytest.raises(RegistryUnavailable) as caught:
            repo.queryMetadata("raw", "visit", filter="r")
        assert time.monotonic() - start < 10
        message = str(caught.value)
        for words in (pg_server.sockdir, str(pg_server.port), "'postgres'", "'filter': 'r'"):
            assert words in message, message
        assert isinstance(caught.value, ConnectionError) and "\n" not in message
    finally:
        pg_server.start()
    assert repo.queryMetadata("raw", "visit", filter="r") == [3]  # the same Butler goes on
    assert repo.get("raw", visit=3).shape == (2000, 1026)


def test_dropped_connection_is_reopened_once(pg_server, uri, caplog):
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", uri)
    registry = Registry.create(uri)
    assert registry.lookup("visit", "raw", {"filter": "r"}) == [(3,)]
    killed = admin_query(pg_server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = 'butler' AND pid <> pg_backend_pid()")
    assert killed and all(row[0] for row in killed)
    with caplog.at_level(logging.INFO, logger="butler.registry.postgres"):
        assert registry.lookup("visit", "raw", {"filter": "g"}) == [(1,), (2,)]
    assert "reconnecting" in caplog.text
    writer = PostgresRegistry(uri, readOnly=False)  # a transaction begun on a dropped connection reopens it
    admin_query(pg_server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'butler' AND pid <> pg_backend_pid()")
    with writer.transaction():
        writer.insert("raw", [{"visit": 9, "filter": "y"}])
    assert registry.lookup("visit", "raw", {"filter": "y"}) == [(9,)]


def test_wrong_password_is_one_line_access_denied(pg_server, tmp_path, monkeypatch):
    database = pg_server.new_database("pw")
    uri = pg_server.uri(database, user=pg_server.password_role)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"*:*:*:{pg_server.password_role}:wrong-battery\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    start = time.monotonic()
    with pytest.raises(AccessDenied) as caught:
        Registry.create(uri).tables()
    assert time.monotonic() - start < 5  # refused credentials are not retried
    message = str(caught.value)
    assert "\n" not in message and "wrong-battery" not in message and pg_server.password not in message
    assert pg_server.password_role in message and database in message and "password" in message
    result = run_cli("registry", "copy", str(OBS_TEST / "registry.sqlite3"), uri)
    assert "wrong-battery" not in assert_user_error(result, pg_server.password_role)
    passfile.write_text(f"*:*:*:{pg_server.password_role}:{pg_server.password}\n")
    copy_sqlite_registry(OBS_TEST / "registry.sqlite3", uri)
    assert Registry.create(uri).queryMetadata("raw", "visit", {"filter": "r"}) == [3]


def _worker(uri: str, worker: int, rows: int) -> None:
    registry = PostgresRegistry(uri, readOnly=False)
    for start in range(0, rows, 10):
        with registry.transaction():
            registry.insert("work", [{"worker": worker, "item": item} for item in range(start, start + 10)])
        assert registry.lookup("item", "work", {"worker": worker, "item": start}) == [(start,)]


def test_eight_processes_against_twelve_connections_lose_nothing(pg_server, uri, caplog):
    assert admin_query(pg_server, "SHOW max_connections") == [("12",)]
    close_connections()  # those the earlier tests left to other databases and roles
    registry = PostgresRegistry(uri, readOnly=False)
    with registry.transaction():
        registry.create_table("work", [("worker", "INT"), ("item", "INT")], unique=["worker", "item"])
    assert registry.rowCount("work") == 0  # the parent's connection is open when the workers fork
    with caplog.at_level(logging.INFO, logger="butler.registry.postgres"):
        assert run_together(_worker, [(uri, worker, 100) for worker in range(8)]) == [0] * 8
        assert registry.rowCount("work") == 800
    assert "reconnecting" not in caplog.text  # no child closed the parent's connection
    assert sorted(registry.lookup(["worker", "item"], "work", {})) == \
        [(worker, item) for worker in range(8) for item in range(100)]
