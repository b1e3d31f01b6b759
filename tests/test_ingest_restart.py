"""Ingest killed part-way and run again: every file registered once, no source lost, no temporary left.

Real ``butler ingest`` processes, killed with SIGKILL, on a few hundred small
generated obs_test raws; the registry is read back with sqlite3 (read-only).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from butler.errors import RegistrySchemaError
from butler.ingest import ingest_raws
from butler.registry import SqliteRegistry
from mappers.test import TestMapper

from conftest import SHARED_DATA

OBS_TEST = SHARED_DATA / "obs_test" / "data" / "input"
#: enough files that the ingest can be caught part-way (placing them takes a good fraction of a second)
COUNT = 300
TEMPORARY = re.compile(r"\..*\.tmp(-journal|-wal|-shm)?$|.*-journal$")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """``COUNT`` small gzipped obs_test raws (``raw_v<visit>_f<filter>.fits.gz``), made once."""
    directory = tmp_path_factory.mktemp("generated")
    for visit in range(1, COUNT + 1):
        hdu = fits.PrimaryHDU(np.full((4, 4), visit, dtype="i2"))
        hdu.header.update(FILTER="gr"[visit % 2], TAI=51195.2 + visit / 1440, EXPTIME=15.0)
        hdu.writeto(directory / f"raw_v{visit}_f{'gr'[visit % 2]}.fits.gz")
    return directory


@pytest.fixture
def sources(generated, tmp_path) -> dict[str, str]:
    """A fresh copy of the generated raws: ``{path: sha256}``."""
    incoming = tmp_path / "incoming"
    shutil.copytree(generated, incoming)
    return {str(path): sha256(path) for path in sorted(incoming.iterdir())}


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_text("lsst.obs.test.testMapper.TestMapper\n")
    return root


def start_ingest(repo, files, *options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "butler", "ingest", str(repo), *files, *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_ingest(repo, files, *options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "butler", "ingest", str(repo), *files, *options],
                          capture_output=True, text=True, timeout=300)


def registered(repo) -> list[tuple]:
    connection = sqlite3.connect(f"file:{repo / 'registry.sqlite3'}?mode=ro", uri=True)
    try:
        return list(connection.execute("SELECT visit, filter FROM raw ORDER BY visit"))
    finally:
        connection.close()


def temporaries(root) -> list[str]:
    return sorted(os.path.join(directory, name) for directory, _, names in os.walk(root)
                  for name in names if TEMPORARY.fullmatch(name))


def placed(repo) -> list[str]:
    raw = repo / "raw"
    return [name for name in os.listdir(raw) if not name.startswith(".")] if raw.is_dir() else []


def kill_part_way(repo, files, mode) -> None:
    """Start an ingest and SIGKILL it once a few files are in place, long before it is done."""
    process = start_ingest(repo, files, "--mode", mode, "--workers", "1")
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and len(placed(repo)) < 5:
        time.sleep(0.0005)
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_killed_ingest_completes_when_run_again(repo, sources, mode):
    files = list(sources)
    kill_part_way(repo, files, mode)
    assert 0 < len(placed(repo)) < COUNT
    assert not (repo / "registry.sqlite3").exists()  # the registry is only replaced on commit
    assert temporaries(repo)  # the killed ingest's registry copy (at least)
    if mode == "move":  # nothing is lost: every source is still there until the registry commits
        assert {path: sha256(path) for path in files} == sources

    result = run_ingest(repo, files, "--mode", mode, "--ignore-ingested")
    assert result.returncode == 0, result.stderr
    assert f"ingested {COUNT} file(s), skipped 0, failed 0" in result.stdout
    rows = registered(repo)
    assert [visit for visit, _ in rows] == list(range(1, COUNT + 1))  # each file once
    for path, digest in sources.items():
        assert sha256(repo / "raw" / os.path.basename(path)) == digest
        assert os.path.exists(path) == (mode == "copy")
    assert temporaries(repo) == []


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_header_workers_die_with_a_killed_ingest(repo, sources):
    process = start_ingest(repo, list(sources), "--mode", "copy", "--workers", "2")
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while process.poll() is None and time.monotonic() < deadline and len(workers) < 2:
        workers = _children(process.pid)
        time.sleep(0.001)
    assert workers, "the ingest ended before its workers could be seen"
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _running(pid)], "header-reading workers outlived the ingest"


def test_dead_ingest_temporaries_are_removed_live_ones_kept(repo, sources):
    dead = _dead_pid()
    live = os.getppid()
    raw = repo / "raw"
    raw.mkdir()
    left = [repo / f".registry.sqlite3.{dead}.0123456789ab.tmp",
            repo / f".registry.sqlite3.{dead}.0123456789ab.tmp-journal",
            raw / f".raw_v1_fr.fits.gz.{dead}.abcdef012345.tmp"]
    kept = [repo / f".registry.sqlite3.{live}.0123456789ab.tmp", raw / "notes.txt"]
    for path in left + kept:
        path.write_bytes(b"partial")
    files = list(sources)[:2]
    report = ingest_raws(str(repo), files, mode="copy", mapper=TestMapper(root=str(repo)), progress=False,
                         workers=1)
    assert len(report.ingested) == 2
    assert not any(path.exists() for path in left)
    assert all(path.exists() for path in kept)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_move_rerun_after_commit_removes_the_sources_in_place(repo, sources):
    # as if a move ingest was killed after its registry commit, before it removed the sources
    files = list(sources)[:3]
    mapper = TestMapper(root=str(repo))
    ingest_raws(str(repo), files, mode="copy", mapper=mapper, progress=False, workers=1)
    report = ingest_raws(str(repo), files, mode="move", mapper=mapper, ignore_ingested=True, progress=False,
                         workers=1)
    assert len(report.skipped) == 3 and not report.ingested
    assert not any(os.path.exists(path) for path in files)
    for path in files:
        assert sha256(repo / "raw" / os.path.basename(path)) == sources[path]


def test_move_keeps_a_source_whose_place_holds_another_file(repo, sources):
    path = list(sources)[0]
    destination = repo / "raw" / os.path.basename(path)
    destination.parent.mkdir()
    destination.write_bytes(b"someone else's")
    report = ingest_raws(str(repo), [path], mode="move", mapper=TestMapper(root=str(repo)), progress=False,
                         workers=1)
    assert report.failed and "exists already" in report.failed[0].reason
    assert sha256(path) == sources[path] and destination.read_bytes() == b"someone else's"


@pytest.mark.needs_shared_data
def test_obs_test_ingest_then_query(repo):
    files = sorted(str(path) for path in (OBS_TEST / "raw").iterdir())
    result = run_ingest(repo, files, "--mode", "copy")
    assert result.returncode == 0, result.stderr
    query = subprocess.run([sys.executable, "-m", "butler", "query", str(repo), "raw", "--format", "json"],
                           capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    assert '"visit": 3' in query.stdout and '"filter": "r"' in query.stdout
    # every table of the shipped registry, with its columns and declared types
    with SqliteRegistry(repo / "registry.sqlite3") as made, \
            SqliteRegistry(OBS_TEST / "registry.sqlite3") as shipped:
        assert made.tables() == shipped.tables() == ["raw", "raw_skyTile", "raw_visit"]
        for table in shipped.tables():
            assert {k: v.upper() for k, v in made.columns(table).items()} == \
                {k: v.upper() for k, v in shipped.columns(table).items()}
        assert made.lookup("visit", ["raw", "raw_skyTile"], {}) == [(1,), (2,), (3,)]
    indexes = sqlite3.connect(f"file:{repo / 'registry.sqlite3'}?mode=ro", uri=True)
    try:
        names = {name for (name,) in indexes.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        indexes.close()
    assert {"ix_skyTile_id", "ix_skyTile_tile", "ix_raw_filter"} <= names


@pytest.mark.needs_shared_data
def test_registry_of_another_schema_is_a_package_error(repo):
    path = repo / "registry.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, visit INT, filter TEXT)")
    connection.close()
    before = path.read_bytes()
    source = str(OBS_TEST / "raw" / "raw_v1_fg.fits.gz")
    with pytest.raises(RegistrySchemaError) as info:
        ingest_raws(str(repo), [source], mode="copy", mapper=TestMapper(root=str(repo)), progress=False,
                    workers=1)
    message = str(info.value)
    assert str(path) in message and "'raw'" in message and "'taiObs'" in message and "'expTime'" in message
    result = run_ingest(repo, [source], "--mode", "copy")
    assert result.returncode == 2 and "taiObs" in result.stderr and str(path) in result.stderr
    assert path.read_bytes() == before and sorted(os.listdir(repo)) == ["_mapper", "registry.sqlite3"]
