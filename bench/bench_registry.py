"""Big-registry and worker-start benchmark: each figure against its floor, in one run.

    python bench/bench_registry.py [--rows 1000000] [--repeat 7]

Everything is generated in a temporary directory (nothing under ``shared/`` is
read or written):

* ``subset raw``: `Butler.subset` of ``raw`` for one ``dayObs`` of an lsstCam
  registry of ``--rows`` rows (made with the schema and indexes ingest makes),
  selecting 1000 data IDs. Floor: the same ``SELECT`` by hand with `sqlite3`.
  Target <= 1.2x.
* ``queryMetadata``: `Butler.queryMetadata` of the same keys and data ID.
  Floor: the same ``SELECT``. Target <= 1.2x.
* ``worker start``: a Butler over an obs_test-like repository, pickled, then
  in a fresh process (``multiprocessing`` spawn) unpickled and its first
  ``get`` timed (one pool task), against a warm ``get`` in that process.
  Target <= 2x. The process's very first task, which also imports the
  libraries and reads the policy files, is printed alongside.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import sqlite3
import sys
import tempfile
import time

from timing import best_interleaved, report_ms

from butler import Butler, RepositoryArgs
from butler.ingest import _create_schema
from butler.registry import SqliteRegistry
from mappers.lsst import LsstCamMapper
from mappers.test import TestMapper

TARGETS = {"subset raw": 1.2, "queryMetadata": 1.2, "worker start": 2.0}
PER_DAY = 1000
#: the 189 science detectors: (raftName, detectorName, detector)
DETECTORS = [(raft, f"S{r}{c}", 9 * index + 3 * r + c)
             for index, raft in enumerate(f"R{row}{col}" for row in range(5) for col in range(5)
                                          if (row, col) not in ((0, 0), (0, 4), (4, 0), (4, 4)))
             for r in range(3) for c in range(3)]




def report(name: str, measured: float, floor: float, detail: str = "") -> None:
    """Print one figure and its ratio to the floor, with the verdict."""
    report_ms(name, measured, floor, TARGETS[name], detail, width=14)


def make_lsstcam_registry(root: str, rows: int) -> str:
    """An lsstCam repository whose ``raw`` table has ``rows`` rows, ``PER_DAY`` per ``dayObs``.

    The schema and indexes are those ingest makes; the rows go in with one
    ``executemany`` in one transaction. Returns the first ``dayObs``.
    """
    os.makedirs(root)
    with open(os.path.join(root, "_mapper"), "w") as stream:
        stream.write("lsst.obs.lsst.LsstCamMapper\n")
    location = os.path.join(root, "registry.sqlite3")
    registry = SqliteRegistry(location, readOnly=False)
    with registry.transaction():
        _create_schema(registry, LsstCamMapper.translator, LsstCamMapper(root=root).getKeys("raw", None) or {})
    registry.close()
    columns = [name for name, _ in LsstCamMapper.translator.columns]
    fixed = {"run": "run1", "filter": "r", "expTime": 15.0, "snap": 0, "object": "UNKNOWN", "imageType": "FLAT",
             "testType": "FLAT", "lsstSerial": "ITL-0", "wavelength": -666, "controller": "C"}

    def day_of(day: int) -> str:
        return f"{2000 + day // 336:04d}-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}"

    def row(index: int) -> list:
        day, in_day = divmod(index, PER_DAY)
        exposure, slot = divmod(in_day, len(DETECTORS))
        raft, name, detector = DETECTORS[slot]
        dayObs = day_of(day)
        expId = 3_000_000_000_000 + day * 1000 + exposure
        values = {**fixed, "visit": expId, "date": dayObs, "dateObs": dayObs, "raftName": raft,
                  "detectorName": name, "detector": detector, "obsid": f"MC_C_{expId}",
                  "expGroup": str(expId), "expId": expId, "dayObs": dayObs, "seqNum": exposure}
        return [values[column] for column in columns]

    conn = sqlite3.connect(location)
    conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: no rollback journal
    indexes = [sql for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                              "AND tbl_name = 'raw' AND sql IS NOT NULL")]
    with conn:  # bulk load: the ingest indexes are dropped and made again after the rows are in
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'raw' "
                                    "AND sql IS NOT NULL").fetchall():
            conn.execute(f'DROP INDEX "{name}"')
        conn.executemany(f"INSERT INTO raw ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         map(row, range(rows)))
        for sql in indexes:
            conn.execute(sql)
    conn.close()
    return day_of(0)


def bench_registry(work: str, rows: int, repeat: int) -> None:
    """``subset`` and ``queryMetadata`` of 1000 data IDs against the same ``SELECT`` by hand."""
    root = os.path.join(work, "lsstCam")
    start = time.perf_counter()
    dayObs = make_lsstcam_registry(root, rows)
    print(f"generated {rows:,} rows in {time.perf_counter() - start:.1f} s", flush=True)
    repo = Butler(inputs=root)
    keys = list(repo.getKeys("raw"))
    conn = sqlite3.connect("file:" + os.path.join(root, "registry.sqlite3") + "?mode=ro", uri=True)
    sql = f"SELECT DISTINCT {', '.join(keys)} FROM raw WHERE dayObs = ?"

    def floor() -> list:
        return conn.execute(sql, (dayObs,)).fetchall()

    assert len(floor()) == PER_DAY
    assert len(repo.subset("raw", dayObs=dayObs)) == PER_DAY
    assert len(repo.queryMetadata("raw", keys, dayObs=dayObs)) == PER_DAY
    subset_time, query_time, floor_time = best_interleaved(
        repeat, lambda: repo.subset("raw", dayObs=dayObs), lambda: repo.queryMetadata("raw", keys, dayObs=dayObs),
        floor)
    report("subset raw", subset_time, floor_time, f"({PER_DAY} data IDs of {rows:,} rows)")
    report("queryMetadata", query_time, floor_time)
    conn.close()


def make_obs_test_repository(root: str, visits: int = 3) -> Butler:
    """An obs_test repository of small single-HDU FITS raws, filter ``g``, over the ingest schema."""
    import numpy as np
    from astropy.io import fits

    os.makedirs(os.path.join(root, "raw"))
    registry = SqliteRegistry(os.path.join(root, "registry.sqlite3"), readOnly=False)
    with registry.transaction():
        _create_schema(registry, TestMapper.translator, ("visit", "filter"))
        rows = [{"visit": visit, "filter": "g", "taiObs": "1999-01-17T04:52:34.895", "expTime": 15.0}
                for visit in range(1, visits + 1)]
        registry.insert("raw", rows)
        registry.insert("raw_visit", rows)
    registry.close()
    for visit in range(1, visits + 1):
        data = np.full((64, 64), visit, dtype=np.uint16)
        fits.PrimaryHDU(data).writeto(os.path.join(root, "raw", f"raw_v{visit}_fg.fits"))
    policy = {"exposures": {"raw": {"template": "raw/raw_v%(visit)d_f%(filter)s.fits"}}}
    return Butler(outputs=RepositoryArgs(root=root, mapper=TestMapper, policy=policy, mode="rw"))


def _worker(pickled: bytes, repeat: int) -> tuple[float, float, float]:
    """In a fresh process: (first task, best later task, best warm get) in seconds.

    A task is what a pool worker does with a Butler sent to it: unpickle it
    and get one dataset. The first task of a process also pays for the imports
    and policy files it is the first to need; later tasks find them cached.
    """
    def task() -> None:
        repo = pickle.loads(pickled)
        assert int(repo.get("raw", visit=1).data[0, 0]) == 1

    start = time.perf_counter()
    task()
    first = time.perf_counter() - start
    repo = pickle.loads(pickled)
    later, warm = best_interleaved(repeat, task, lambda: repo.get("raw", visit=2))
    return first, later, warm


def bench_worker_start(work: str, repeat: int) -> None:
    """Unpickle + first get in a spawned worker process against a warm get there."""
    repo = make_obs_test_repository(os.path.join(work, "obs_test"))
    pickled = pickle.dumps(repo)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        first, later, warm = pool.apply(_worker, (pickled, repeat))
    report("worker start", later, warm, f"(unpickle + first get vs warm get; the process's very first task, "
           f"imports included: {first * 1e3:.0f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated lsstCam registry")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions (the best counts)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_registry_") as work:
        bench_registry(work, args.rows, args.repeat)
        bench_worker_start(work, args.repeat)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
