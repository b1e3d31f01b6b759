"""Command start-up benchmark: fresh ``butler`` processes against ``python -c pass``.

    python bench/bench_cli.py [--repeat 5]

* ``butler --help``: target <= 100 ms over ``python -c pass``.
* ``butler query ROOT raw`` listing the 10 data IDs of a generated obs_test
  registry: target <= 150 ms over ``python -c pass``.

Each figure is the best of ``--repeat`` fresh processes, after one warm-up run,
in rounds that run the floor and each command once in turn (so all see the
same load); the best CPU time (user + system) of the same runs is printed too,
since on a shared machine the wall time also counts waiting for a core.
The processes write their bytecode under a temporary ``PYTHONPYCACHEPREFIX``
(as an installed package has it), so what is measured is importing and
running, not compiling. Everything is generated in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time

TARGETS_MS = {"butler --help": 100.0, "butler query": 150.0}
VISITS = 10


def make_obs_test_registry(root: str) -> None:
    """An obs_test repository (legacy ``_mapper`` file) whose registry holds ``VISITS`` raws."""
    os.makedirs(root)
    with open(os.path.join(root, "_mapper"), "w") as stream:
        stream.write("lsst.obs.test.testMapper.TestMapper\n")
    conn = sqlite3.connect(os.path.join(root, "registry.sqlite3"))
    conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, visit INT, filter TEXT, "
                 "taiObs TEXT, expTime DOUBLE, UNIQUE(visit))")
    conn.execute("CREATE TABLE raw_visit (visit INT, filter TEXT, taiObs TEXT, expTime DOUBLE, UNIQUE(visit))")
    conn.execute("CREATE TABLE raw_skyTile (id INTEGER, skyTile INTEGER)")
    conn.executemany("INSERT INTO raw (visit, filter, taiObs, expTime) VALUES (?, 'g', '1999-01-17T04:52:34', 15.0)",
                     [(visit,) for visit in range(1, VISITS + 1)])
    conn.execute("INSERT INTO raw_visit SELECT visit, filter, taiObs, expTime FROM raw")
    conn.execute("INSERT INTO raw_skyTile SELECT id, 85932 FROM raw")
    conn.commit()
    conn.close()


def best_processes(commands: list[list[str]], env: dict[str, str], cwd: str,
                   repeat: int) -> list[tuple[float, float, str]]:
    """The best wall time and the best CPU time (user + system) of each command over ``repeat`` rounds
    that run each once in turn (after one warm-up run of each), and its output.

    The commands and their floor run in the same rounds, so they see the same load
    of a shared machine; the CPU time is what a process itself spent, the wall
    time also counts its waits for a core.
    """
    outputs = [subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout
               for command in commands]
    times = [float("inf")] * len(commands)
    cpu = [float("inf")] * len(commands)
    for _ in range(repeat):
        for index, command in enumerate(commands):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
            times[index] = min(times[index], time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[index] = min(cpu[index], after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return list(zip(times, cpu, outputs, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per figure (the best counts)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as work:
        root = os.path.join(work, "obs_test")
        make_obs_test_registry(root)
        env = dict(os.environ, PYTHONPYCACHEPREFIX=os.path.join(work, "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # the user's cache of parsed policies and entry points (butler.utils.CACHE_ENV), as a first command fills it
        env["BUTLER_CACHE_DIR"] = os.path.join(work, "cache")
        butler = [sys.executable, "-m", "butler"]
        commands = {"python -c pass": [sys.executable, "-c", "pass"], "butler --help": [*butler, "--help"],
                    "butler query": [*butler, "query", root, "raw"]}
        (floor, floor_cpu, _), *figures = best_processes(list(commands.values()), env, work, args.repeat)
        print(f"{'python -c pass':<14} {floor * 1e3:7.1f} ms  (cpu {floor_cpu * 1e3:6.1f} ms)", flush=True)
        for name, (measured, cpu, output) in zip(list(commands)[1:], figures, strict=True):
            if name == "butler query":
                assert f"({VISITS} rows)" in output, output
            overhead = (measured - floor) * 1e3
            target = TARGETS_MS[name]
            verdict = "ok" if overhead <= target else f"OVER target {target:.0f} ms"
            print(f"{name:<14} {measured * 1e3:7.1f} ms  overhead {overhead:6.1f} ms  ratio {measured / floor:4.2f}x "
                  f"(target overhead <= {target:.0f} ms) {verdict}  (cpu overhead {(cpu - floor_cpu) * 1e3:6.1f} ms)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
