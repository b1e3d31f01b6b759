"""Scale-out benchmark: each figure against the raw client doing the same work on the same server, in one run.

    python bench/bench_scaleout.py [--rows 100000] [--repeat 200]

Each section starts the server it needs in a temporary directory and stops it
at the end (nothing under ``shared/`` is read or written).

``bench_postgres``: a PostgreSQL 15 server on a Unix socket (started as the
tests start it, ``tests/pg_server.py``), an lsstCam registry of ``--rows``
rows (the schema and indexes ingest makes, generated as in
``bench_registry.py``) copied into it with ``butler registry copy``'s function:

* ``pg map``: a mapper's ``map('raw', {expId, detector})``, a partial data ID
  whose other keys come from the registry. Floor: the very SQL the registry
  ran for it, with its values, through a bare psycopg connection. Target <= 1.5x.
* ``pg subset``: `Butler.subset` of ``raw`` for one ``dayObs`` (1000 data
  IDs). Floor: the same ``SELECT`` through psycopg. Must be one statement
  (counted by ``pg_stat_statements`` on the server).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench_registry import PER_DAY, make_lsstcam_registry
from timing import best_of

from butler import Butler, RepositoryArgs

#: ratio to the floor each figure must stay under
TARGETS = {"pg map": 1.5, "pg subset": 1.5}
TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")


def report(name: str, measured: float, floor: float, detail: str = "") -> None:
    """Print one figure, its floor and their ratio, with the verdict."""
    ratio = measured / floor
    target = TARGETS[name]
    verdict = "ok" if ratio <= target else f"OVER target {target}x"
    print(f"{name:<10} butler {measured * 1e3:8.3f} ms  floor {floor * 1e3:8.3f} ms  ratio {ratio:5.2f}x "
          f"(target <= {target}x) {verdict} {detail}", flush=True)


def interleaved(repeat: int, funcs: list[Callable[[], object]], rounds: int = 5) -> list[float]:
    """The best time of each function over ``rounds`` alternating rounds of ``repeat`` calls.

    Alternating keeps a burst of load from the other users of a shared machine
    from falling on one figure and not on its floor.
    """
    best = [float("inf")] * len(funcs)
    for _ in range(rounds):
        for index, func in enumerate(funcs):
            best[index] = min(best[index], best_of(repeat, func))
    return best


def _statements(server: Any) -> int:
    """Statements the server has run for the registry's role so far (``pg_stat_statements``)."""
    with server.connect() as conn:
        return conn.execute("SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements "
                            "WHERE query NOT LIKE '%pg_stat_statements%'").fetchone()[0]


def bench_postgres(work: str, args: argparse.Namespace) -> None:
    """``map`` with a partial data ID and ``subset`` of 1000 data IDs on a PostgreSQL registry, against psycopg."""
    import psycopg

    rows, repeat = args.rows, args.repeat

    sys.path.insert(0, TESTS)
    from pg_server import PgServer, find_bindir

    from butler.registry import PostgresRegistry
    from butler.registry.postgres import copy_sqlite_registry

    bindir = find_bindir()
    if bindir is None:
        print("pg: skipped (no initdb on PATH nor in /usr/lib/postgresql/*/bin)")
        return
    server = PgServer(bindir, tempfile.mkdtemp(prefix="bench-pg-"))
    server.init()
    server.start()
    try:
        server.setup_roles()
        root = os.path.join(work, "lsstCam")
        start = time.perf_counter()
        dayObs = make_lsstcam_registry(root, rows)
        uri = server.uri()
        copy_sqlite_registry(os.path.join(root, "registry.sqlite3"), uri)
        print(f"pg: generated {rows:,} rows and copied them into PostgreSQL in {time.perf_counter() - start:.1f} s",
              flush=True)
        repo = Butler(inputs=RepositoryArgs(root=root, mapperArgs={"registry": uri}))
        mapper = repo.repositories()[0].mapper
        registry = mapper.registry
        assert isinstance(registry, PostgresRegistry)
        ids = registry.lookup(["expId", "detector"], "raw", {"dayObs": dayObs})
        partial = dict(zip(("expId", "detector"), ids[7]))
        mapper.map("raw", dict(zip(("expId", "detector"), ids[8])))  # the schema, learnt once per registry

        # the statement map runs, caught on its way to the server
        ran: list[tuple[Any, list]] = []
        run = registry._run

        def record(query: Any, values: Any = (), *args: Any, **kwargs: Any) -> list:
            ran.append((query, list(values)))
            return run(query, values, *args, **kwargs)

        registry._run = record  # type: ignore[method-assign]
        location = mapper.map("raw", dict(partial))
        del registry._run
        assert location.dataId["raftName"] and len(ran) == 1, ran
        (query, values), = ran
        floor_conn = psycopg.connect(host=server.sockdir, port=server.port, dbname="postgres", user="postgres",
                                     autocommit=True)
        try:
            expected = floor_conn.execute(query, values).fetchall()
            assert len(expected) == 1, expected
            fields = ["dayObs", "raftName", "detectorName"]  # what the raw template needs beyond the data ID
            map_floor, map_time, lookup_time = interleaved(repeat, [
                lambda: floor_conn.execute(query, values).fetchall(), lambda: mapper.map("raw", dict(partial)),
                lambda: registry.lookup(fields, "raw", partial)])
            report("pg map", map_time, map_floor, f"(raw {partial} of {rows:,} rows; the registry's lookup "
                   f"alone {lookup_time * 1e3:.3f} ms, the rest is the mapper's own work)")

            keys = list(repo.getKeys("raw"))
            quoted = ", ".join(f'"{key}"' for key in keys)
            subset_sql = f'SELECT DISTINCT {quoted} FROM raw WHERE "dayObs" = %s ORDER BY {quoted}'  # what it runs
            assert len(floor_conn.execute(subset_sql, [dayObs]).fetchall()) == PER_DAY
            assert len(repo.subset("raw", dayObs=dayObs)) == PER_DAY
            before = _statements(server)
            assert len(repo.subset("raw", dayObs=dayObs)) == PER_DAY
            statements = _statements(server) - before
            subset_floor, subset_time = interleaved(max(repeat // 10, 5), [
                lambda: floor_conn.execute(subset_sql, [dayObs]).fetchall(),
                lambda: repo.subset("raw", dayObs=dayObs)])
            report("pg subset", subset_time, subset_floor,
                   f"({PER_DAY} data IDs in {statements} statement{'s' if statements != 1 else ''}: "
                   f"{'ok' if statements == 1 else 'NOT one query'})")
        finally:
            floor_conn.close()
    finally:
        from butler.registry.postgres import close_connections

        close_connections()
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


#: the sections, run in order: each is ``section(work directory, parsed arguments)``
SECTIONS = (bench_postgres,)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the PostgreSQL registry")
    parser.add_argument("--repeat", type=int, default=200, help="timed repetitions (the best counts)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_scaleout_") as work:
        for section in SECTIONS:
            section(work, args)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
