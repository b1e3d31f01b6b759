"""Provenance and representations benchmark (issue 15): recording's cost, lineage reads, partial reads.

    python bench/bench_provenance.py [--n 1000] [--repeat 5] [--records 10000] [--rows 1000000] [--dir DIR]

- ``put``: ``n`` small objects put by a fresh Butler, recording on against off
  (target <= 1.3x);
- ``get``: the same ``n`` objects read back, recording on against off (target <= 1.1x);
- ``lineage``: `Butler.provenance` of a dataset whose lineage is 5 levels deep,
  over 5 chained repositories holding ``records`` records in all, and the same
  through ``butler provenance`` run in-process (target <= 50 ms).

``bench_parameters``: ``get(..., parameters={"columns": [2 of 50]})`` of a
1M-row table, as a FITS binary table (``FitsCatalogStorage``) and as Parquet,
against the get of the whole table. Everything is generated in a temporary
directory.

How bytes read are counted, per get, on a file evicted from the page cache
first (``posix_fadvise(DONTNEED)``, so every byte the get needs is fetched):

* ``fetched``: the file's pages resident after the get, counted with
  ``mincore(2)`` over a map of the file: every byte the kernel brought in for
  this get, whether through ``read`` calls or a memory map (readahead
  included). This is the measure the target (< 10% of the file) is judged on.
* ``read()``: ``rchar`` of ``/proc/self/io``, the bytes through read system
  calls: it misses what a memory map touches, so it is shown for comparison
  only (a memory-mapped read would otherwise look free).

A FITS binary table stores its rows one after the other: 2 columns of 50
lie in every row, hence on every page once a row is shorter than a page, so
a column read of FITS fetches (nearly) the whole file however it is done; what
it saves is decoding and copying 48 columns. Parquet stores columns apart, and
its column read fetches only theirs. A FITS row range (``rows``) is
contiguous, and is shown too.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import mmap
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy.table import Table
from click.testing import CliRunner
from timing import best_of

from butler import Butler, ButlerLocation, RepositoryArgs
from butler.cli import cli
from butler.test import MapperForTestWriting, TestObject

TARGETS = {"put": 1.3, "get": 1.1}
LINEAGE_TARGET_MS = 50.0
LEVELS = 5


def report(name: str, on_s: float, off_s: float, per: int) -> None:
    ratio = on_s / off_s
    target = TARGETS[name]
    verdict = " ok" if ratio <= target else f" OVER target {target}x"
    print(f"{name:<8} recording {on_s / per * 1e6:8.1f} us  off {off_s / per * 1e6:8.1f} us  "
          f"ratio {ratio:5.2f}x{verdict}")


def bench_put_get(work: str, n: int, repeat: int) -> None:
    """Put and get of ``n`` small objects, recording on and off, each in its own repository.

    The two are timed in turns (off, on, off, on...) so that a change in the
    machine's load hits both; the best of ``repeat`` turns is kept.
    """
    objects = [TestObject({"i": i, "values": list(range(8))}) for i in range(n)]
    roots = {flag: os.path.join(work, f"putget-{'on' if flag else 'off'}") for flag in (False, True)}
    rounds = {flag: iter(range(10**6)) for flag in (False, True)}

    def put(flag: bool) -> None:
        butler = Butler(outputs=RepositoryArgs(root=roots[flag], mode="rw"), recordProvenance=flag)
        ccd = next(rounds[flag])
        for i, obj in enumerate(objects):
            butler.put(obj, "foo", visit=i, ccd=ccd)

    def get(reader: Butler) -> None:
        for i in range(n):
            reader.get("foo", visit=i, ccd=0)

    for root in roots.values():
        Butler(outputs=RepositoryArgs(root=root, mapper=MapperForTestWriting, mode="rw"))
    readers = {}
    times: dict[tuple[str, bool], float] = {}
    for _ in range(repeat):
        for flag in (False, True):
            times["put", flag] = min(times.get(("put", flag), 1e9), best_of(1, functools.partial(put, flag)))
            # a reader with an output: its reads may become inputs of what it puts (one without records nothing)
            readers.setdefault(flag, Butler(inputs=roots[flag], outputs=roots[flag] + "-reader-out",
                                            recordProvenance=flag))
            times["get", flag] = min(times.get(("get", flag), 1e9),
                                     best_of(1, functools.partial(get, readers[flag])))
    report("put", times["put", True], times["put", False], n)
    report("get", times["get", True], times["get", False], n)


def make_lineage(work: str, records: int) -> list[str]:
    """``LEVELS`` chained repositories of ``records // LEVELS`` datasets each, dataset k of each level made
    from dataset k of the level below (one quantum each)."""
    per_level = records // LEVELS
    roots = [os.path.join(work, "lineage", f"L{level}") for level in range(1, LEVELS + 1)]
    first = Butler(outputs=RepositoryArgs(root=roots[0], mapper=MapperForTestWriting))
    for k in range(per_level):
        first.put(TestObject(k), "foo", visit=k, ccd=0)
    del first
    for below, root in zip(roots, roots[1:]):
        butler = Butler(inputs=below, outputs=root)
        for k in range(per_level):
            with butler.quantum("step", config={"level": root}):
                butler.put(butler.get("foo", visit=k, ccd=0), "foo", visit=k, ccd=0)
        del butler
    return roots


def bench_lineage(work: str, records: int, repeat: int) -> None:
    """Read the 5-level lineage of one dataset: through the API, and through the command in-process."""
    start = time.perf_counter()
    roots = make_lineage(work, records)
    print(f"lineage  made {records} records in {LEVELS} repositories in {time.perf_counter() - start:.1f} s")
    reader = Butler(inputs=roots[-1])
    middle = records // LEVELS // 2

    def api() -> None:
        record = reader.provenance("foo", visit=middle, ccd=0)
        depth = max(d for d, _ in record.walk())
        assert depth == LEVELS - 1, depth

    runner = CliRunner()

    def command() -> None:
        result = runner.invoke(cli, ["provenance", roots[-1], "foo", f"visit={middle}", "ccd=0"])
        assert result.exit_code == 0, result.output

    for name, func in (("api", api), ("command", command)):
        ms = best_of(repeat, func) * 1e3
        verdict = " ok" if ms <= LINEAGE_TARGET_MS else f" OVER target {LINEAGE_TARGET_MS:g} ms"
        print(f"lineage  {name:<8} {ms:7.1f} ms  ({LEVELS} levels, {records} records){verdict}")


#: the issue's target: a 2-of-50-column get reads less than this share of the file
PARAMETERS_TARGET_PERCENT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_PAGE = mmap.PAGESIZE


#: dataset type -> (storage name, file name)
_FILES = {"fits": ("FitsCatalogStorage", "table.fits"), "parquet": ("ParquetStorage", "table.parq")}


class _TablesMapper(MapperForTestWriting):
    """``fits`` (a FITS binary table) and ``parquet``, one file each, whatever the data ID."""

    def map(self, datasetType: str, dataId: Any, write: bool = False) -> Any:
        storageName, name = _FILES[datasetType]
        return ButlerLocation("astropy.table.Table", None, storageName, name, dataId, self, self.storage)


def _evict(path: str) -> None:
    """Drop the file's pages from the page cache (clean pages: they are written already)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _resident_bytes(path: str) -> int:
    """How many bytes of the file are in the page cache: ``mincore`` over a fresh map of it (faulting nothing in)."""
    size = os.path.getsize(path)
    pages = (size + _PAGE - 1) // _PAGE
    fd = os.open(path, os.O_RDONLY)
    address = _libc.mmap(None, ctypes.c_size_t(size), mmap.PROT_READ, mmap.MAP_SHARED, fd, ctypes.c_long(0))
    os.close(fd)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
    try:
        vector = (ctypes.c_ubyte * pages)()
        if _libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vector) != 0:
            raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
        return min(size, sum(byte & 1 for byte in vector) * _PAGE)
    finally:
        _libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))


def _rchar() -> int:
    with open("/proc/self/io") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith("rchar:"))


def _measure(get: Callable[[], Any], path: str) -> tuple[float, float]:
    """The percentages of the file fetched (``mincore``) and passed through read calls by one cold ``get``."""
    size = os.path.getsize(path)
    _evict(path)
    before = _rchar()
    get()
    through_read = _rchar() - before
    return 100.0 * _resident_bytes(path) / size, 100.0 * through_read / size


def bench_parameters(rows: int = 1_000_000, repeat: int = 3) -> None:
    """A 2-of-50-column get of a ``rows``-row table (FITS, Parquet): bytes fetched, and time against the whole get."""
    rng = np.random.default_rng(15)
    table = Table({f"c{i:02d}": rng.random(rows, dtype=np.float32) for i in range(50)})
    columns = ["c07", "c31"]
    with tempfile.TemporaryDirectory(prefix="bench_parameters_") as work:
        butler = Butler(outputs=RepositoryArgs(root=work, mapper=_TablesMapper, mode="rw"))
        butler.put(table, "fits")
        butler.put(table, "parquet")
        del table
        print(f"parameters: {rows:,} rows x 50 float32 columns; get of 2 columns vs the whole table", flush=True)
        cases = [("fits", {"columns": columns}), ("parquet", {"columns": columns}),
                 ("fits", {"rows": slice(0, rows // 20)})]
        for datasetType, parameters in cases:
            path = os.path.join(work, _FILES[datasetType][1])
            part = butler.get(datasetType, parameters=parameters)
            assert len(part.colnames) == (2 if "columns" in parameters else 50)
            fetched, through_read = _measure(lambda d=datasetType, p=parameters: butler.get(d, parameters=p), path)
            whole_fetched, _ = _measure(lambda d=datasetType: butler.get(d), path)
            selected = best_of(repeat, lambda d=datasetType, p=parameters: butler.get(d, parameters=p))
            whole = best_of(repeat, lambda d=datasetType: butler.get(d))
            verdict = "ok" if fetched < PARAMETERS_TARGET_PERCENT else f"OVER target {PARAMETERS_TARGET_PERCENT}%"
            what = ", ".join(f"{key}={value!r}" for key, value in parameters.items())
            print(f"  {datasetType:<8} {what:<28} fetched {fetched:5.1f}% of {os.path.getsize(path) / 1e6:.0f} MB "
                  f"(whole get {whole_fetched:5.1f}%; through read() {through_read:5.1f}%) {verdict}; "
                  f"{selected * 1e3:7.1f} ms vs whole {whole * 1e3:7.1f} ms = {selected / whole:4.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated tables (parameters)")
    parser.add_argument("--dir", default=None, help="Work directory (default: a new temporary one).")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="bench-provenance-")
    start = time.perf_counter()
    bench_put_get(work, args.n, args.repeat)
    bench_lineage(work, args.records, args.repeat)
    bench_parameters(args.rows, min(args.repeat, 3))
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
