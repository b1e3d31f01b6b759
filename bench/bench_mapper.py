"""Camera-mapper benchmark: each figure against its raw floor, on the same files, in one run.

    python bench/bench_mapper.py [--rows 100000] [--repeat 7]

Everything is generated in a temporary directory (nothing under ``shared/`` is
read or written):

* ``map raw``: `LsstCamMapper.map` of ``raw`` from a partial data ID
  ``{expId, detector}`` completed from a registry of ``--rows`` rows with the
  lsstCam ``raw`` schema. Floor: the same ``SELECT`` by hand on an open
  connection, plus one `os.stat` of the file found. Target <= 1.6x. Printed
  beside it, ``map raw, inline``: the same steps written in one function (the
  value checks, the SELECT the map's plan runs, the path, one stat, the location
  a map returns), the least any layering of them can cost. The plan asks for at
  most two rows without ``DISTINCT`` (one row is the answer; any other count
  falls back to the full lookup), which SQLite answers without the temporary
  B-tree the floor's ``SELECT DISTINCT`` builds.
* ``get raw``: `Butler.get` of a 2000x1026 uint16 single-HDU FITS raw of an
  obs_test (`TestMapper`) repository, filter completed from its registry.
  Floor: `astropy.io.fits.getdata` of the file. Target <= 1.3x.
* ``raw existence``: `Butler.datasetExists` and `Butler.getUri` of ``raw``
  over the same registry and sampled IDs (their files are empty: an answer
  that read pixels would fail). Floor: the same ``SELECT`` by hand plus one
  `os.stat` of the file. Target <= 3x.
* ``raw_sub``: a 100x100 ``raw_sub`` of an uncompressed 4096x4096 float32 raw;
  the bytes read (``rchar`` of ``/proc/self/io``) as a percentage of the file.
  Target < 5%.
* ``mapper construction``: `LsstCamMapper` made over generated registries of
  ``--construction-rows`` rows (10 000 and 1 000 000): the cost must not grow
  with the registry (1M within 20% of 10k) and stay <= 20 ms at 1M.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from astropy.io import fits
from timing import best_in_slices, best_interleaved, best_of

from butler import Butler, RepositoryArgs
from butler.dataId import check_data_id, check_path
from butler.location import ButlerLocation
from mappers.lsst import LsstCamMapper
from mappers.test import TestMapper

TARGETS = {"map raw": 1.6, "map raw, inline": 1.6, "map raw (scan)": 1.6, "get raw": 1.3, "datasetExists raw": 3.0,
           "getUri raw": 3.0}
CONSTRUCTION_TARGET_MS = 20.0
CONSTRUCTION_GROWTH = 1.2
SUB_TARGET_PERCENT = 5.0
#: data IDs per timed slice (about a millisecond: see `timing.best_in_slices`)
SLICE = 10
RAW_TEMPLATE = "raw/%(dayObs)s/%(expId)013d/%(expId)013d-%(raftName)s-%(detectorName)s-det%(detector)03d.fits"
LSSTCAM_RAW = ("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT, visit INT, filter TEXT, "
               "date TEXT, dateObs TEXT, expTime DOUBLE, raftName TEXT, detectorName TEXT, detector INT, "
               "snap INT, object TEXT, imageType TEXT, testType TEXT, lsstSerial TEXT, wavelength INT, "
               "controller TEXT, obsid TEXT, expGroup TEXT, expId INT, dayObs TEXT, seqNum INT, "
               "UNIQUE(expId, detector, visit))")
LSSTCAM_RAW_VISIT = ("CREATE TABLE raw_visit (visit INT, filter TEXT, dateObs TEXT, expTime DOUBLE, "
                     "UNIQUE(visit))")




def report(name: str, measured: float, floor: float, per: int, who: str = "butler") -> None:
    """Print one figure: per-call times and the ratio to the floor, with the verdict."""
    ratio = measured / floor
    target = TARGETS[name]
    verdict = "ok" if ratio <= target else f"OVER target {target}x"
    print(f"{name:<17} {who} {measured / per * 1e6:9.1f} us  floor {floor / per * 1e6:9.1f} us  "
          f"overhead {(measured - floor) / per * 1e6:7.1f} us  ratio {ratio:5.2f}x (target <= {target}x) "
          f"{verdict}", flush=True)


def _slice(items: list, index: int) -> list:
    """The ``index``-th slice of ``SLICE`` items."""
    return items[index * SLICE:(index + 1) * SLICE]


def _detector_table() -> list[tuple[str, str, int]]:
    """(raftName, detectorName, detector) of the 189 science detectors."""
    rafts = [f"R{row}{col}" for row in range(5) for col in range(5)
             if (row, col) not in ((0, 0), (0, 4), (4, 0), (4, 4))]
    return [(raft, f"S{r}{c}", 9 * index + 3 * r + c)
            for index, raft in enumerate(rafts) for r in range(3) for c in range(3)]


def make_lsstcam_repository(root: str, rows: int) -> list[dict]:
    """An lsstCam repository of ``rows`` registry rows (empty raw files for the sampled IDs).

    Returns the sampled partial data IDs ``{expId, detector}``.
    """
    detectors = _detector_table()
    os.makedirs(root)
    with open(os.path.join(root, "_mapper"), "w") as stream:
        stream.write("lsst.obs.lsst.LsstCamMapper\n")
    conn = sqlite3.connect(os.path.join(root, "registry.sqlite3"))
    conn.execute(LSSTCAM_RAW)
    conn.execute(LSSTCAM_RAW_VISIT)
    values = []
    for index in range(rows):
        exposure, slot = divmod(index, len(detectors))
        raft, name, detector = detectors[slot]
        day = f"2021-{1 + exposure // 250 % 12:02d}-{1 + exposure % 28:02d}"
        expId = int(day.replace("-", "")) * 100000 + 3000000000000 + exposure
        values.append(("run1", expId, "r", day, day + "T00:00:00.000", 15.0, raft, name, detector, 0,
                       "UNKNOWN", "FLAT", "FLAT", "ITL-0", -666, "C", f"MC_C_{expId}", str(expId), expId, day,
                       exposure))
    columns = ("run, visit, filter, date, dateObs, expTime, raftName, detectorName, detector, snap, "
               "object, imageType, testType, lsstSerial, wavelength, controller, obsid, expGroup, expId, "
               "dayObs, seqNum")
    conn.executemany(f"INSERT INTO raw ({columns}) VALUES ({','.join('?' * 21)})", values)
    conn.execute("INSERT INTO raw_visit SELECT DISTINCT visit, filter, dateObs, expTime FROM raw")
    conn.commit()
    conn.close()
    sample = random.Random(6).sample(values, 200)
    for row in sample:
        dataId = {"dayObs": row[3], "expId": row[18], "raftName": row[6], "detectorName": row[7],
                  "detector": row[8]}
        path = os.path.join(root, RAW_TEMPLATE % dataId)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    return [{"expId": row[18], "detector": row[8]} for row in sample]


def _missing_keys_query(keys: list[str], unique: bool = False) -> str:
    """The SELECT completing a raw data ID of ``keys`` (two of them) to its template keys, by hand: the
    distinct rows (the floor), or, ``unique``, at most two rows as they are (what a map's plan asks)."""
    missing = ", ".join(key for key in ("dayObs", "expId", "raftName", "detectorName") if key not in keys)
    if unique:
        return f"SELECT {missing} FROM raw WHERE {keys[0]}=? AND {keys[1]}=? LIMIT 2"
    return f"SELECT DISTINCT {missing} FROM raw WHERE {keys[0]}=? AND {keys[1]}=?"


def bench_map(root: str, ids: list[dict], repeat: int) -> None:
    """``map`` of raw from a partial data ID against the same SQLite query by hand.

    ``{expId, detector}`` is answered through the UNIQUE(expId, detector, visit)
    index; ``{visit, detector}`` (informational) cannot use it and scans the table.
    """
    mapper = LsstCamMapper(root=root)
    conn = sqlite3.connect(os.path.join(root, "registry.sqlite3"))
    # visit == expId in the generated registry
    by_visit = [{"visit": dataId["expId"], "detector": dataId["detector"]} for dataId in ids[:10]]
    for name, partial in (("map raw", ids), ("map raw (scan)", by_visit)):
        query = _missing_keys_query(list(partial[0]))
        paths = [mapper.map("raw", dataId).getLocationsWithRoot()[0] for dataId in partial]
        assert all(os.path.exists(path) for path in paths), paths

        def butler_map(index: int, partial: list = partial) -> None:
            for dataId in _slice(partial, index):
                mapper.map("raw", dataId)

        def floor_query(index: int, partial: list = partial, query: str = query, paths: list = paths) -> None:
            for dataId, path in zip(_slice(partial, index), _slice(paths, index),
                                    strict=True):
                conn.execute(query, tuple(dataId.values())).fetchall()
                os.stat(path)

        slices = -(-len(partial) // SLICE)
        for index in range(slices):  # warm up
            butler_map(index), floor_query(index)
        if name != "map raw":
            report(name, *best_in_slices(repeat, slices, butler_map, floor_query), len(partial))
            continue
        inline = _inline_map(mapper, _missing_keys_query(list(partial[0]), unique=True))
        for index in range(slices):
            inline(index, partial)
        butler_s, floor_s, inline_s = best_in_slices(repeat, slices, butler_map, floor_query,
                                                     functools.partial(_call_with, inline, partial))
        report(name, butler_s, floor_s, len(partial))
        report("map raw, inline", inline_s, floor_s, len(partial), who="inline")
    conn.close()


def _call_with(func: Callable[[int, list], None], items: list, index: int) -> None:
    func(index, items)


def _inline_map(mapper: LsstCamMapper, query: str) -> Callable[[int, list], None]:
    """The least a map of raw must do, written in one function (no mapper, mapping, registry or storage layer):
    check the given values, run the SELECT of the map's plan (``query``: one row expected), check the values it
    supplies, fill the template, check the path, one `os.stat`, and make the `ButlerLocation` a map returns (as
    the map makes it: `ButlerLocation._mapped`). What no layering can go below."""
    mapping = mapper.mappings["raw"]
    kinds = mapping.keyKinds(mapper)
    missing = tuple(key for key in ("dayObs", "raftName", "detectorName") if key in kinds)
    conn = sqlite3.connect(os.path.join(mapper.root, "registry.sqlite3"))
    prefix = mapper.root + "/"

    def inline(index: int, partial: list) -> None:
        for dataId in _slice(partial, index):
            given = check_data_id(dataId, kinds, kinds, "raw", mapper.root)
            (row,) = conn.execute(query, (given["expId"], given["detector"])).fetchall()
            supplied = dict(zip(missing, row, strict=True))
            actual = {**given, **check_data_id(supplied, kinds, supplied, "raw", mapper.root)}
            path = RAW_TEMPLATE % actual
            check_path(path, "raw", actual, mapper.root)
            os.stat(prefix + path)
            ButlerLocation._mapped(mapping.python, mapping.persistable, mapping.storage, path, actual, mapper,
                                   mapping.rootStorage, actual, "raw", dict(actual), mapper.repository, True)

    return inline


def bench_exists(root: str, ids: list[dict], repeat: int) -> None:
    """``datasetExists`` and ``getUri`` of raw against the SELECT by hand plus one `os.stat` of the file.

    The raw files are empty, so an answer that read (or assembled) pixels would be False or fail.
    """
    repo = Butler(inputs=root)
    conn = sqlite3.connect(os.path.join(root, "registry.sqlite3"))
    query = _missing_keys_query(list(ids[0]))
    paths = [repo.getUri("raw", dataId) for dataId in ids]
    assert all(repo.datasetExists("raw", dataId) for dataId in ids)

    def floor(index: int) -> None:
        for dataId, path in zip(_slice(ids, index), _slice(paths, index),
                                strict=True):
            conn.execute(query, tuple(dataId.values())).fetchall()
            os.stat(path)

    slices = -(-len(ids) // SLICE)
    for name, call in (("datasetExists raw", repo.datasetExists), ("getUri raw", repo.getUri)):
        def butler_call(index: int, call: Callable = call) -> None:
            for dataId in _slice(ids, index):
                call("raw", dataId)

        for index in range(slices):  # warm up
            butler_call(index), floor(index)
        report(name, *best_in_slices(repeat, slices, butler_call, floor), len(ids))
    conn.close()


def bench_construction(work: str, sizes: list[int], repeat: int) -> None:
    """`LsstCamMapper` construction over registries of each size: flat in the registry's size, <= 20 ms."""
    roots = {rows: os.path.join(work, f"lsstCam_{rows}") for rows in sizes}
    for rows, root in roots.items():
        make_lsstcam_repository(root, rows)
    gc.collect()  # the generation's garbage is not the mapper's cost
    times = {}
    for rows, root in roots.items():
        LsstCamMapper(root=root)  # warm up: imports, policy files
        times[rows] = best_of(repeat, lambda root=root: LsstCamMapper(root=root))
    smallest, largest = min(times), max(times)
    growth = times[largest] / times[smallest]
    verdict = ("ok" if growth <= CONSTRUCTION_GROWTH and times[largest] * 1e3 <= CONSTRUCTION_TARGET_MS
               else "OVER target")
    sizes_text = "  ".join(f"{rows:>9,} rows {seconds * 1e3:6.1f} ms" for rows, seconds in times.items())
    print(f"{'mapper construction':<17} {sizes_text}  ratio {growth:4.2f}x (target <= {CONSTRUCTION_GROWTH}x, "
          f"<= {CONSTRUCTION_TARGET_MS:.0f} ms at {largest:,}) {verdict}", flush=True)


def make_obs_test_repository(root: str, images: dict[int, np.ndarray]) -> Butler:
    """An obs_test repository holding one plain single-HDU FITS raw per visit (filter ``g``)."""
    os.makedirs(os.path.join(root, "raw"))
    conn = sqlite3.connect(os.path.join(root, "registry.sqlite3"))
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, visit INT, filter TEXT, "
                 "taiObs TEXT, expTime DOUBLE, UNIQUE(visit))")
    conn.execute("CREATE TABLE raw_visit (visit INT, filter TEXT, taiObs TEXT, expTime DOUBLE, "
                 "UNIQUE(visit))")
    conn.execute("CREATE TABLE raw_skyTile (id INTEGER, skyTile INTEGER)")
    for visit, data in images.items():
        rowid = conn.execute("INSERT INTO raw (visit, filter, taiObs, expTime) VALUES (?, 'g', "
                             "'1999-01-17T04:52:34.895', 15.0)", (visit,)).lastrowid
        conn.execute("INSERT INTO raw_skyTile VALUES (?, 85932)", (rowid,))
        header = fits.Header({"FILTER": "g", "EXPTIME": 15.0, "CCDID": "R22_S00_C00"})
        fits.PrimaryHDU(data, header=header).writeto(os.path.join(root, "raw", f"raw_v{visit}_fg.fits"))
    conn.execute("INSERT INTO raw_visit SELECT visit, filter, taiObs, expTime FROM raw")
    conn.commit()
    conn.close()
    policy = {"exposures": {"raw": {"template": "raw/raw_v%(visit)d_f%(filter)s.fits"}}}
    return Butler(outputs=RepositoryArgs(root=root, mapper=TestMapper, policy=policy, mode="rw"))


def bench_get(repo: Butler, root: str, repeat: int) -> None:
    """``get`` of a 2000x1026 uint16 raw against `astropy.io.fits.getdata` of the file."""
    path = os.path.join(root, "raw", "raw_v1_fg.fits")
    assert np.array_equal(repo.get("raw", visit=1).data, fits.getdata(path))
    report("get raw", *best_interleaved(repeat, lambda: repo.get("raw", visit=1), lambda: fits.getdata(path)), 1)


def _bytes_read() -> int:
    with open("/proc/self/io") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith("rchar:"))


def bench_sub(repo: Butler, root: str) -> None:
    """Bytes read by a 100x100 ``raw_sub`` of a 4096x4096 float32 raw, as a share of the file."""
    path = os.path.join(root, "raw", "raw_v2_fg.fits")
    size = os.path.getsize(path)
    expected = fits.getdata(path)[1000:1100, 2000:2100]
    repo.get("raw_sub", visit=2, bbox=(0, 0, 100, 100))  # warm up: imports, registry, policy files
    before = _bytes_read()
    sub = repo.get("raw_sub", visit=2, bbox=(2000, 1000, 100, 100))
    read = _bytes_read() - before
    assert np.array_equal(sub.data, expected)
    percent = 100.0 * read / size
    verdict = "ok" if percent < SUB_TARGET_PERCENT else f"OVER target {SUB_TARGET_PERCENT}%"
    print(f"{'raw_sub':<14} 100x100 of 4096x4096 float32 ({size / 2**20:.0f} MiB): "
          f"read {read / 1024:.0f} KiB "
          f"= {percent:.2f}% of the file (target < {SUB_TARGET_PERCENT}%) {verdict}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the generated lsstCam registry")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions (the best counts)")
    parser.add_argument("--construction-rows", default="10000,1000000",
                        help="comma-separated registry sizes for mapper construction")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_mapper_") as work:
        root = os.path.join(work, "lsstCam")
        ids = make_lsstcam_repository(root, args.rows)
        bench_map(root, ids, args.repeat)
        bench_exists(root, ids, args.repeat)
        bench_construction(work, [int(rows) for rows in args.construction_rows.split(",")], args.repeat)
        rng = np.random.default_rng(6)
        images = {1: rng.integers(900, 62000, size=(2000, 1026), dtype=np.uint16),
                  2: rng.random((4096, 4096), dtype=np.float32)}
        root = os.path.join(work, "obs_test")
        repo = make_obs_test_repository(root, images)
        bench_get(repo, root, args.repeat)
        bench_sub(repo, root)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
