"""Service benchmark: repositories served by ``butler serve`` on loopback, read as remote Butler inputs.

    python bench/bench_service.py [--count 1000] [--clients 50] [--gets 200] [--dir DIR]

Everything is made in a temporary directory (the demo's repositories, then
three more) and served by one ``butler serve`` process:

* ``pickles``: remote `Butler.get` of ``count`` small pickles, against a bare
  ``httpx`` GET of the same bytes (the file API's URL of each). Target <= 1.3x.
* ``query``: remote `Butler.queryMetadata` of ``count`` data IDs, against
  the local query plus one bare round trip. Target <= 2x.

The two sides of each ratio are timed in turn, best of ``repeat`` (the query:
of 10 x ``repeat``), so a change of the machine's load falls on both.
* ``cut-out``: a 100x100 cut-out of a remote 4096x4096 float32 image, as a
  ``postISRCCD_sub`` dataset and as ``get(..., parameters={"bbox": ...})``
  (ranged reads through the FITS formatter's section path): the bytes the
  server sent (counted by the client) against the file's size. Target < 5%.
* ``concurrent``: ``clients`` threads, each with its own Butler, ``gets``
  remote gets each: errors (target none), median and p99 latency, and the
  server's resident memory after a warm-up and at the end (target: flat,
  within 20%).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
from astropy.nddata import CCDData
from timing import best_of

from butler import Butler, RepositoryArgs
from butler.demo import run_demo
from butler.registry import SqliteRegistry
from butler.storage import http as http_storage
from butler.test import MapperForTestWriting, TestObject

PICKLE_TARGET, QUERY_TARGET, CUTOUT_TARGET, RSS_GROWTH = 1.3, 2.0, 0.05, 1.2
SIDE = 4096


def make_repositories(work: str, count: int) -> dict[str, str]:
    """The demo's input, ``many`` (its copy with ``count`` more raws), ``big`` (a 4k x 4k image) and ``pickles``."""
    run_demo(os.path.join(work, "demo"), echo=lambda _line: None)
    roots = {name: os.path.join(work, name) for name in ("many", "big", "pickles")}
    roots["input"] = os.path.join(work, "demo", "input")
    shutil.copytree(roots["input"], roots["many"])
    registry = SqliteRegistry(os.path.join(roots["many"], "registry.sqlite3"), readOnly=False)
    with registry.transaction():
        registry.insert("raw", [{"visit": 1000 + n, "detector": 0, "filter": "g", "dateObs": "2024-04-01",
                                 "expTime": 30.0, "object": "bench"} for n in range(count)])
    registry.close()
    pixels = np.random.default_rng(1).normal(1000.0, 10.0, (SIDE, SIDE)).astype(np.float32)
    Butler(inputs=roots["input"], outputs=roots["big"]).put(CCDData(pixels, unit="adu"), "postISRCCD",
                                                             visit=101, detector=0)
    pickles = Butler(outputs=RepositoryArgs(root=roots["pickles"], mapper=MapperForTestWriting))
    for n in range(count):
        pickles.put(TestObject({"n": n, "payload": "x" * 200}), "foo", n=n)
    return roots


def start_server(roots: list[str]) -> tuple[subprocess.Popen, str]:
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [project, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "butler", "serve", *roots, "--port", "0"],
                               stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    return process, line.split(" at ")[-1].strip()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def interleaved(repeat: int, first: Callable[[], object], second: Callable[[], object]) -> tuple[float, float]:
    """The best times of two calls measured in turn, so a change of the machine's load falls on both."""
    times = [(best_of(1, first), best_of(1, second)) for _ in range(repeat)]
    return min(t[0] for t in times), min(t[1] for t in times)


def bench_pickles(url: str, count: int, repeat: int) -> tuple[float, float]:
    butler = Butler(inputs=f"{url}/pickles")
    urls = [f"{url}/api/v1/repositories/pickles/files/filename_n{n}.txt" for n in range(count)]
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(transport=nodelay) as client:  # as the http storage's client is made
        return interleaved(repeat, lambda: [butler.get("foo", n=n) for n in range(count)],
                           lambda: [client.get(u).content for u in urls])


def bench_query(url: str, local_root: str, repeat: int) -> tuple[float, float, int]:
    remote_butler, local_butler = Butler(inputs=f"{url}/many"), Butler(inputs=local_root)
    keys = ["visit", "detector"]
    found = len(remote_butler.queryMetadata("raw", keys))
    assert remote_butler.queryMetadata("raw", keys) == local_butler.queryMetadata("raw", keys)
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(transport=nodelay) as client:
        remote, floor = interleaved(repeat * 10, lambda: remote_butler.queryMetadata("raw", keys),
                                    lambda: (local_butler.queryMetadata("raw", keys), client.get(f"{url}/api/v1")))
    return remote, floor, found


def _sent(read: Callable[[], object]) -> tuple[int, object]:
    """The bytes the server sent (counted by the client) for ``read()``, and what it returned."""
    sent = [0]
    request = http_storage.HttpClient.request

    def counting(self, *args, **kwargs):
        response = request(self, *args, **kwargs)
        sent[0] += len(response.content)
        return response

    http_storage.HttpClient.request = counting  # type: ignore[method-assign]
    try:
        value = read()
    finally:
        http_storage.HttpClient.request = request  # type: ignore[method-assign]
    return sent[0], value


#: the cut-outs measured: a ``_sub`` dataset (the box in the data ID), and ``get(parameters={"bbox": ...})``
CUTOUTS = {"_sub": ("postISRCCD_sub", {"bbox": (2000, 2000, 100, 100)}, None),
           "parameters": ("postISRCCD", {}, {"bbox": (2000, 2000, 100, 100)})}


def bench_cutout(url: str, big_root: str) -> tuple[dict[str, int], int]:
    """Bytes sent for a 100x100 cut-out, each way of `CUTOUTS`, and the file's size."""
    remote, local = Butler(inputs=f"{url}/big"), Butler(inputs=big_root)
    sent = {}
    for name, (datasetType, box, parameters) in CUTOUTS.items():
        sent[name], cut = _sent(functools.partial(remote.get, datasetType, visit=101, detector=0,
                                                  parameters=parameters, **box))
        np.testing.assert_array_equal(cut.data, local.get(datasetType, visit=101, detector=0, parameters=parameters,
                                                          **box).data)
    return sent, os.path.getsize(local.getUri("postISRCCD", visit=101, detector=0))


def bench_concurrent(url: str, pid: int, clients: int, gets: int, count: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        butler = Butler(inputs=f"{url}/pickles")
        mine = []
        for step in range(gets):
            start = time.perf_counter()
            try:
                butler.get("foo", n=(index * gets + step) % count)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    def run() -> float:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    run()  # warm-up: the server's pools and caches fill
    before = rss_kib(pid)
    latencies.clear()
    elapsed = run()
    after = rss_kib(pid)
    ordered = sorted(latencies)
    return {"errors": errors, "p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99)],
            "elapsed": elapsed, "gets": len(ordered), "rss_before": before, "rss_after": after}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="bench-service-")
    process = None
    try:
        roots = make_repositories(work, args.count)
        process, url = start_server([roots["input"], roots["many"], roots["big"], roots["pickles"]])
        failures = []
        remote, bare = bench_pickles(url, args.count, args.repeat)
        print(f"pickles     remote get of {args.count}: {remote:.3f} s; bare httpx GET: {bare:.3f} s; "
              f"ratio {remote / bare:.2f} (target <= {PICKLE_TARGET})")
        failures += [] if remote / bare <= PICKLE_TARGET else ["pickles"]
        remote, floor, found = bench_query(url, roots["many"], args.repeat)
        print(f"query       remote queryMetadata of {found} data IDs: {remote * 1e3:.1f} ms; local + one round trip: "
              f"{floor * 1e3:.1f} ms; ratio {remote / floor:.2f} (target <= {QUERY_TARGET})")
        failures += [] if remote / floor <= QUERY_TARGET else ["query"]
        sent, size = bench_cutout(url, roots["big"])
        for name, count in sent.items():
            print(f"cut-out     100x100 of {SIDE}x{SIDE} ({name}): {count} bytes sent of a {size}-byte file: "
                  f"{count / size:.2%} (target < {CUTOUT_TARGET:.0%})")
            failures += [] if count / size < CUTOUT_TARGET else [f"cut-out ({name})"]
        result = bench_concurrent(url, process.pid, args.clients, args.gets, args.count)
        growth = result["rss_after"] / max(result["rss_before"], 1)
        print(f"concurrent  {args.clients} clients x {args.gets} gets: {len(result['errors'])} errors; "
              f"p50 {result['p50'] * 1e3:.1f} ms, p99 {result['p99'] * 1e3:.1f} ms; "
              f"{result['gets'] / result['elapsed']:.0f} gets/s; server RSS {result['rss_before'] // 1024} MiB -> "
              f"{result['rss_after'] // 1024} MiB (x{growth:.2f}, target <= {RSS_GROWTH})")
        for error in result["errors"][:5]:
            print(f"  error: {error}")
        failures += [] if not result["errors"] and growth <= RSS_GROWTH else ["concurrent"]
        print("all targets met" if not failures else f"targets missed: {', '.join(failures)}")
        return 1 if failures else 0
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
