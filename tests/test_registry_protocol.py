"""The registry protocol: transactions all-or-nothing, quoted identifiers, checked keys, the schema view."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from butler.errors import RegistryConflictError, RegistryError, RegistrySchemaError
from butler.registry import PosixRegistry, Registry, SqliteRegistry

from conftest import SHARED_DATA

OBS_TEST = SHARED_DATA / "obs_test" / "data" / "input"
ODD = 'we"ird; DROP TABLE raw; --'  # a table and column name that must be quoted


def read(path, sql) -> list[tuple]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()


@pytest.fixture
def registry(tmp_path):
    """A writable registry that does not exist yet."""
    with SqliteRegistry(tmp_path / "registry.sqlite3", readOnly=False) as reg:
        yield reg


def make_raw(registry) -> None:
    with registry.transaction():
        registry.create_table("raw", [("visit", "INT"), ("filter", "TEXT")], unique=["visit"],
                              primary_key="id")
        registry.insert("raw", [{"visit": 1, "filter": "g"}, {"visit": 2, "filter": "r"}])


def test_both_registries_implement_the_protocol(tmp_path):
    assert issubclass(SqliteRegistry, Registry) and issubclass(PosixRegistry, Registry)
    posix = PosixRegistry(tmp_path)
    assert (posix.root, posix.location) == (str(tmp_path), str(tmp_path))
    assert (posix.tables(), posix.columns("raw")) == ([], {})
    with pytest.raises(RegistryError, match="file names only"):
        posix.executeQuery("visit", "raw", [], None, [])
    with pytest.raises(RegistryError, match="read-only"), posix.transaction():
        pass


def test_a_new_registry_reads_empty_until_its_first_commit(registry, tmp_path):
    assert registry.tables() == [] and registry.columns("raw") == {}
    assert registry.root == str(tmp_path) and registry.location == str(tmp_path / "registry.sqlite3")
    assert not os.path.exists(registry.location)
    make_raw(registry)
    assert registry.tables() == ["raw"]
    assert registry.columns("raw") == {"id": "INTEGER", "visit": "INT", "filter": "TEXT"}
    assert registry.lookup("filter", "raw", {"visit": 2}) == [("r",)]
    assert read(registry.location, "SELECT id, visit, filter FROM raw") == [(1, 1, "g"), (2, 2, "r")]


def test_transaction_is_all_or_nothing(registry, tmp_path):
    make_raw(registry)
    before = Path(registry.location).read_bytes()
    with pytest.raises(RegistryConflictError, match="UNIQUE"), registry.transaction():
        registry.create_table("raw_visit", [("visit", "INT")])
        registry.insert("raw", [{"visit": 3, "filter": "i"}])
        assert registry.lookup("visit", "raw", {"filter": "i"}) == [(3,)]  # seen inside the transaction
        registry.insert("raw", [{"visit": 1, "filter": "z"}])  # breaks UNIQUE(visit)
    assert Path(registry.location).read_bytes() == before
    assert registry.tables() == ["raw"] and registry.lookup("visit", "raw", {"filter": "i"}) == []
    with pytest.raises(ZeroDivisionError), registry.transaction():
        registry.insert("raw", [{"visit": 4, "filter": "y"}])
        1 / 0
    assert Path(registry.location).read_bytes() == before
    assert [name for name in os.listdir(tmp_path) if name != "registry.sqlite3"] == []  # no temporary left


def test_nested_transaction_is_a_savepoint(registry):
    make_raw(registry)
    with registry.transaction():
        registry.insert("raw", [{"visit": 3, "filter": "i"}])
        with pytest.raises(RegistryConflictError), registry.transaction():
            registry.insert("raw", [{"visit": 4, "filter": "z"}])
            registry.insert("raw", [{"visit": 2, "filter": "z"}])
        assert registry.insert("raw", [{"visit": 4, "filter": "z"}, {"visit": 2, "filter": "x"}],
                               ignore_conflicts=True)[1] is None
    assert read(registry.location, "SELECT visit, filter FROM raw ORDER BY visit") == \
        [(1, "g"), (2, "r"), (3, "i"), (4, "z")]


def test_readers_see_the_old_file_or_the_new_one(registry):
    make_raw(registry)
    with SqliteRegistry(registry.location) as reader:
        inode = os.stat(registry.location).st_ino
        with registry.transaction():
            registry.insert("raw", [{"visit": 3, "filter": "i"}])
            assert reader.lookup("visit", "raw", {"filter": "i"}) == []  # not committed: not visible
        assert os.stat(registry.location).st_ino != inode  # a copy renamed into place
        assert reader.lookup("visit", "raw", {}) == [(1,), (2,)]  # an open reader keeps its snapshot
    with SqliteRegistry(registry.location) as fresh:
        assert fresh.lookup("visit", "raw", {"filter": "i"}) == [(3,)]


def test_writes_need_a_transaction_and_a_writable_registry(registry, tmp_path):
    make_raw(registry)
    with pytest.raises(RegistryError, match="transaction"):
        registry.insert("raw", [{"visit": 5, "filter": "g"}])
    with SqliteRegistry(registry.location) as reader:
        with pytest.raises(RegistryError, match="read-only"), reader.transaction():
            pass
        with pytest.raises(RegistryError, match="read-only"):
            reader.create_table("x", [("a", "INT")])
    with pytest.raises(RegistryError, match="not found"):
        SqliteRegistry(tmp_path / "missing.sqlite3")


def test_odd_identifiers_are_quoted(registry):
    with registry.transaction():
        registry.create_table(ODD, [(ODD, "TEXT"), ("visit", "INT")], unique=[ODD])
        registry.create_index(ODD, [ODD, "visit"])
        registry.insert(ODD, [{ODD: "x' OR '1'='1", "visit": 1}, {ODD: "y", "visit": 2}])
    assert registry.tables() == [ODD]
    assert registry.columns(ODD) == {ODD: "TEXT", "visit": "INT"}
    assert registry.lookup(ODD, ODD, {"visit": 1}) == [("x' OR '1'='1",)]
    assert registry.lookup("visit", ODD, {ODD: "y"}) == [(2,)]
    assert registry.queryMetadata(ODD, "visit", {ODD: "x' OR '1'='1"}) == [1]
    indexes = read(registry.location, "SELECT name FROM sqlite_master WHERE name GLOB 'ix_*'")
    assert indexes == [(f"ix_{ODD}_{ODD}_visit",)]


def test_a_bad_sql_type_is_refused(registry):
    with pytest.raises(RegistryError, match="not an SQL type"), registry.transaction():
        registry.create_table("raw", [("visit", "INT); DROP TABLE x; --")])
    assert not os.path.exists(registry.location)


def test_unknown_keys_name_the_key_and_the_known_columns(registry):
    make_raw(registry)
    with pytest.raises(RegistrySchemaError) as info:
        registry.lookup("visit", "raw", {"vist": 1})
    message = str(info.value)
    assert "'vist'" in message and "id, visit, filter" in message and registry.location in message
    with pytest.raises(RegistrySchemaError) as info, registry.transaction():
        registry.insert("raw", [{"visit": 9, "fliter": "g"}])
    assert "'fliter'" in str(info.value) and "id, visit, filter" in str(info.value)
    assert registry.lookup("visit", "raw", {"visit": 9}) == []
    with pytest.raises(RegistrySchemaError, match="no such table 'nope'"):
        registry.lookup("visit", "nope", {})
    # queryMetadata ignores keys the tables lack, as Gen2 queryMetadata did
    assert registry.queryMetadata("raw", ["visit", "filter"], {"filter": "g", "ccd": 3}) == [(1, "g")]


def test_an_existing_table_of_another_schema_is_named(registry):
    make_raw(registry)
    with pytest.raises(RegistrySchemaError) as info, registry.transaction():
        registry.create_table("raw", [("visit", "INT"), ("taiObs", "TEXT")])
    message = str(info.value)
    assert registry.location in message and "'raw'" in message and "'taiObs'" in message
    with registry.transaction():  # the same columns (or fewer): nothing to do
        registry.create_table("raw", [("visit", "INT")])
    assert registry.columns("raw") == {"id": "INTEGER", "visit": "INT", "filter": "TEXT"}


@pytest.mark.needs_shared_data
def test_shipped_registry_schema_view():
    with SqliteRegistry(OBS_TEST / "registry.sqlite3") as registry:
        assert registry.root == str(OBS_TEST)
        assert registry.columns("raw_skyTile") == {"id": "INTEGER", "skyTile": "INTEGER"}
        assert registry.queryMetadata(["raw", "raw_skyTile"], "skyTile", {"visit": 1}) == [85932, 86652]
        registry.require_columns("raw", ["visit", "taiObs"])
        with pytest.raises(RegistrySchemaError, match="'ccd'"):
            registry.require_columns("raw", ["visit", "ccd"])
