"""Scale-out benchmarks (issue 14), each figure against the floor of the same work done by hand.

    python bench/bench_scaleout.py [--dir DIR] [--refs 1000] [--cpu-ms 20]

``bench_parallel``: `butler.parallel.map` over ``--refs`` dataRefs of a toy
repository (`butler.test.MapperForTestWriting`: a small pickle each); the
function does one get, about ``--cpu-ms`` of pure-Python CPU, and one put.

* serial: the function called in this process for every dataRef.
* 2 process workers: `parallel.map` (its own spawn pool of 2). Floor: a bare
  ``ProcessPoolExecutor(2)`` mapping the same work over the data IDs with one
  Butler per process. Target: speed-up over serial >= 1.8x (the bare pool: 2.0x).
* Dask: `parallel.map` on ``LocalCluster(n_workers=2, processes=True)``'s
  executor. Floor: ``client.map`` of the same work, one Butler per worker.
  Target: speed-up over serial >= 1.3x.

Each figure is one run (the work is long enough); the load average is printed
before and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import logging
import math
import multiprocessing
import os
import pickle
import tempfile
import time
from collections.abc import Callable

from butler import Butler, parallel
from butler.test import TestObject

PARALLEL_TARGET = 1.8
DASK_TARGET = 1.3
WORKERS = 2


def _spin(loops: int) -> int:
    """Pure-Python CPU work: ``loops`` multiply-adds."""
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def _loops_for(cpuMs: float) -> int:
    """The `_spin` loops that take about ``cpuMs`` of CPU here (CPU time, so a loaded machine does not
    shrink the work; best of five)."""
    trial = 200_000
    best = min(_timed(functools.partial(_spin, trial), clock=time.process_time) for _ in range(5))
    return max(1, int(trial * cpuMs / 1000 / best))


def _timed(func: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds ``func()`` takes on ``clock`` (wall time by default)."""
    start = clock()
    func()
    return clock() - start


def parallel_work(loops: int, ref) -> int:
    """The benchmarked function: one get, `_spin`, one put."""
    value = ref.get("foo").data + _spin(loops) % 7
    ref.put(TestObject(value), "foo")
    return value


@functools.lru_cache(maxsize=4)
def _bare_butler(pickled: bytes) -> Butler:
    """One Butler per process for the floors, unpickled on first use."""
    return pickle.loads(pickled)


def _bare_work(pickled: bytes, loops: int, i: int) -> int:
    """The same work without `butler.parallel`: a cached Butler, a get, `_spin`, a put."""
    butler = _bare_butler(pickled)
    value = butler.get("foo", id=i).data + _spin(loops) % 7
    butler.put(TestObject(value), "foo", id=i)
    return value


def _parallel_repositories(work: str, refs: int) -> tuple[str, Callable[[str], Butler]]:
    """The input repository of ``refs`` pickles, and a maker of a Butler writing to a new output under ``work``."""
    inputs = os.path.join(work, "input")
    writer = Butler(outputs={"root": inputs, "mapper": "butler.test.MapperForTestWriting"})
    for i in range(refs):
        writer.put(TestObject(i), "foo", id=i)
    return inputs, lambda name: Butler(inputs=inputs, outputs=os.path.join(work, name))


def bench_parallel(work: str, refs: int = 1000, cpuMs: float = 20.0) -> dict[str, float]:
    """Time serial, `parallel.map` on 2 processes and on Dask(2), and their floors; print and return the seconds."""
    import bench_scaleout as this  # workers import the work by this module's name (its directory is on sys.path)

    _, butlerFor = _parallel_repositories(work, refs)
    loops = _loops_for(cpuMs)
    work_func = functools.partial(this.parallel_work, loops)
    ids = range(refs)
    chunks = max(1, math.ceil(refs / (parallel.CHUNKS_PER_WORKER * WORKERS)))

    def dataRefs(name: str) -> list:
        butler = butlerFor(name)
        return [butler.dataRef("foo", id=i) for i in ids]

    def checked(results: list) -> None:
        assert len(results) == refs and all(result.ok for result in results), parallel.summary(results)

    print(f"parallel.map: {refs} dataRefs, one get, ~{cpuMs:g} ms CPU ({loops} loops) and one put each; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    times: dict[str, float] = {}
    serialRefs = dataRefs("serial")
    times["serial"] = _timed(lambda: [work_func(ref) for ref in serialRefs])
    mapRefs = dataRefs("map")
    times["map"] = _timed(lambda: checked(parallel.map(work_func, mapRefs, workers=WORKERS)))
    pickled = pickle.dumps(butlerFor("bare"))
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        times["bare pool"] = _timed(lambda: list(pool.map(functools.partial(this._bare_work, pickled, loops), ids,
                                                          chunksize=chunks)))
    import distributed

    with distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as client:
        daskRefs = dataRefs("dask")
        times["dask"] = _timed(lambda: checked(parallel.map(work_func, daskRefs, executor=client.get_executor())))
        pickled = pickle.dumps(butlerFor("bare-dask"))
        times["bare dask"] = _timed(lambda: client.gather(client.map(this._bare_work, [pickled] * refs,
                                                                     [loops] * refs, list(ids))))
    serial = times["serial"]
    print(f"  serial                 {serial:7.2f} s")
    for name, floor, target in (("map", "bare pool", PARALLEL_TARGET), ("dask", "bare dask", DASK_TARGET)):
        speedup, floorSpeedup = serial / times[name], serial / times[floor]
        print(f"  {name:<6} on 2 workers    {times[name]:7.2f} s  speed-up {speedup:.2f}x (target >= {target}x)"
              f"   floor ({floor}) {times[floor]:7.2f} s  speed-up {floorSpeedup:.2f}x"
              f"   ratio to floor {times[name] / times[floor]:.2f}  {'ok' if speedup >= target else 'MISSED'}")
    print(f"  load average after: {os.getloadavg()[0]:.2f} (1 min; {os.cpu_count()} CPUs)")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--refs", type=int, default=1000)
    parser.add_argument("--cpu-ms", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        bench_parallel(work, args.refs, args.cpu_ms)


if __name__ == "__main__":
    main()
