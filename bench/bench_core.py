"""Core Butler benchmark: each operation against its raw floor, in one run.

    python bench/bench_core.py [--n 1000] [--repeat 5] [--dir DIR]

Prints, per operation, the best time of the butler, the best time of the
floor (plain pickle / YAML I/O of the same objects and files) and their ratio.
Two operations have a second, syscall-matched floor: ``put/rename`` (a
hand-written temporary file plus `os.replace` in the same directory: what an
atomic write cannot avoid) and ``deep/stat`` (one `os.stat` of the file's name
in each of the nine repositories above the one holding it, then the load);
``deep/inline`` times, against that floor, the least a get must do written in
one function (check the data ID, name the file, stat it from the top until
found, open and load it), which no layering of the butler can go below.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile

import yaml
from timing import best_in_slices, best_interleaved, best_of, stat_each

from butler import Butler, RepositoryArgs
from butler.dataId import check_data_id, check_path
from butler.test import MapperForTestWriting, TestObject

TARGETS = {"put": 2.0, "put/rename": 1.3, "get": 2.0, "construct": 2.0, "deep get": 2.5, "deep/stat": 1.3,
           "deep/inline": 1.3}




def report(name: str, butler_s: float, floor_s: float, per: int = 1, who: str = "butler") -> None:
    ratio = butler_s / floor_s
    target = TARGETS.get(name)
    verdict = "" if target is None else (" ok" if ratio <= target else f" OVER target {target}x")
    print(f"{name:<11} {who} {butler_s / per * 1e6:9.1f} us  floor {floor_s / per * 1e6:9.1f} us  "
          f"ratio {ratio:5.2f}x{verdict}")


def bench_put_get(work: str, n: int, repeat: int) -> None:
    root = os.path.join(work, "putget")
    butler = Butler(outputs=RepositoryArgs(root=root, mapper=MapperForTestWriting, mode="rw"))
    objects = [TestObject({"i": i, "values": list(range(8))}) for i in range(n)]
    ids = [{"visit": i, "ccd": i % 9} for i in range(n)]
    paths = [os.path.join(root, f"filename_ccd{d['ccd']}_visit{d['visit']}.txt") for d in ids]

    def butler_put():
        for obj, dataId in zip(objects, ids):
            butler.put(obj, "foo", dataId)

    def floor_put():
        for obj, path in zip(objects, paths):
            with open(path, "wb") as f:
                pickle.dump(obj, f, pickle.HIGHEST_PROTOCOL)

    def floor_put_rename():
        for obj, path in zip(objects, paths):
            directory, name = os.path.split(path)
            tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
            with open(tmp, "xb") as f:
                pickle.dump(obj, f, pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)

    def butler_get():
        for dataId in ids:
            butler.get("foo", dataId)

    def floor_get():
        for path in paths:
            with open(path, "rb") as f:
                pickle.load(f)

    put_s, put_floor, rename_floor = best_interleaved(repeat, butler_put, floor_put, floor_put_rename)
    report("put", put_s, put_floor, n)
    report("put/rename", put_s, rename_floor, n)
    report("get", *best_interleaved(repeat, butler_get, floor_get), n)


def make_chain(work: str, depth: int) -> list[str]:
    roots = [os.path.join(work, "chain", f"R{i}") for i in range(1, depth + 1)]
    Butler(outputs=RepositoryArgs(root=roots[0], mapper=MapperForTestWriting)).put(
        TestObject("deep"), "foo", {"visit": 1})
    for parent, child in zip(roots, roots[1:]):
        Butler(inputs=parent, outputs=child)
    return roots


def bench_chain(work: str, repeat: int, depth: int = 10) -> None:
    roots = make_chain(work, depth)
    counter = iter(range(10**9))
    cfg_paths = [os.path.join(r, "repositoryCfg.yaml") for r in roots]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    yaml.add_constructor("!RepositoryCfg_v1", lambda loader_, node: loader_.construct_mapping(node, deep=True),
                         Loader=loader)

    def construct():
        Butler(inputs=roots[-1], outputs=os.path.join(work, "out", str(next(counter))))

    def floor_construct():
        docs = []
        for path in cfg_paths:
            with open(path) as f:
                docs.append(yaml.load(f, Loader=loader))
        out = os.path.join(work, "floor", str(next(counter)))
        os.makedirs(out)
        with open(os.path.join(out, "repositoryCfg.yaml"), "w") as f:
            f.write(yaml.safe_dump(docs[-1]))

    report("construct", *best_interleaved(repeat, construct, floor_construct))

    reader = Butler(inputs=roots[-1])
    slices, per_slice = 20, 10  # 200 gets, timed 10 at a time (see timing.best_in_slices)
    loops = slices * per_slice
    target = os.path.join(roots[0], "filename_visit1.txt")

    def deep_get(_: int) -> None:
        for _ in range(per_slice):
            reader.get("foo", visit=1)

    def floor_deep_get(_: int) -> None:
        for _ in range(per_slice):
            with open(target, "rb") as f:
                pickle.load(f)

    above = [os.path.join(root, "filename_visit1.txt") for root in roots[1:]]

    def floor_stat_deep_get(_: int) -> None:
        for _ in range(per_slice):
            stat_each(above)
            with open(target, "rb") as f:
                pickle.load(f)

    searched = [os.path.join(root, "") for root in reversed(roots)]

    def inline_deep_get(_: int) -> None:
        # the least a get must do, in one function: check the data ID, name the file, stat it in each
        # repository from the top until found, open and load it (no repository, mapper or storage layer)
        for _ in range(per_slice):
            dataId = check_data_id({"visit": 1}, {"visit": None}, ("visit",), "foo")
            name = "filename" + "".join([f"_{key}{value}" for key, value in sorted(dataId.items())]) + ".txt"
            check_path(name, "foo", dataId)
            for prefix in searched:
                try:
                    os.stat(prefix + name)
                except FileNotFoundError:
                    continue
                with open(prefix + name, "rb") as f:
                    pickle.load(f)
                break

    deep_s, load_floor, stat_floor, inline_s = best_in_slices(repeat, slices, deep_get, floor_deep_get,
                                                              floor_stat_deep_get, inline_deep_get)
    report("deep get", deep_s, load_floor, loops)
    report("deep/stat", deep_s, stat_floor, loops)
    report("deep/inline", inline_s, stat_floor, loops, who="inline")


def bench_import(repeat: int) -> None:
    def run(code: str) -> float:
        def once():
            subprocess.run([sys.executable, "-c", code], check=True)
        return best_of(repeat, once)

    floor = run("pass")
    cost = run("import butler")
    print(f"{'import':<10} butler {cost * 1e3:9.1f} ms  floor {floor * 1e3:9.1f} ms  "
          f"over floor {(cost - floor) * 1e3:6.1f} ms (target <= 150 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="objects to put and get")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--dir", default=None,
                        help="where to make the repositories (default: the system temporary directory); "
                             "a put creates a new file per write, so the file system's create cost matters")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-core-", dir=args.dir) as work:
        print(f"repositories under {work}")
        bench_put_get(work, args.n, args.repeat)
        bench_chain(work, args.repeat)
    bench_import(args.repeat)


if __name__ == "__main__":
    main()
