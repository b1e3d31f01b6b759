"""Fuzz: hostile data-ID values through every operation, for every template key of obs_test and lsstCam.

Each of the 40 values below is put in each template key of the camera (one
key at a time) and sent through ``put``, ``datasetExists`` and ``getUri`` (all
values x all keys), and through ``get``, ``queryMetadata``, ``subset`` and the
``butler get``/``butler query`` commands for a sample in which every value and
every key still occurs. The shared repository is the input, read-only; writes
go to a temporary output. Asserted:

* only package errors (`butler.errors.ButlerError`) escape the library;
* the command never prints a traceback: exit 0, or exit 2 with one line;
* nothing is created or changed outside the output root (a listing with sizes
  and modification times of the temporary directory's parent, of the working
  directory and of the shared tree, before and after).
"""

from __future__ import annotations

import functools
import gc
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.nddata import CCDData
from astropy.table import Table
from click.testing import CliRunner

import butler
from butler.cli import cli
from butler.errors import ButlerError
from butler.test import TestObject

#: 40 hostile values
HOSTILE: list[Any] = [
    None, True, False, 1.9, 1.5, math.nan, math.inf, -math.inf, 2**64, 2**63, -1, 0, b"x", [1], {"a": 1}, set(),
    "", " ", "..", "../x", "/etc/passwd", "a/b", "a\\b", "\x00", "\n", "é", "\udcff", "x" * 300, "1; rm -rf",
    "%s", "%(visit)d", "*", "?", "~", "-1", "1e3", "0x10", np.int64(3), np.float64(2.5), np.bool_(True),
]
assert len(HOSTILE) == 40

#: (camera, input repository under the shared data)
CAMERAS = {
    "obs_test": ("obs_test", "data", "input"),
    "lsstCam": ("obs_lsst", "data", "input", "lsstCam"),
}
#: a benign value of each kind, to complete a data ID around the hostile one
BENIGN = {int: 1, float: 1.0, str: "g"}
#: every n-th (value, key) pair goes through the sampled operations
SAMPLE = 7


def listing(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of everything under ``root`` (``skip``'s subtree left out)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            stat = path.lstat()
            result[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return result


def choose_dataset_type(mapper: Any, key: str) -> str:
    """The dataset type with the fewest template keys that has ``key`` (a plain, non-calibration one first)."""
    candidates = [(type(m).__name__ == "CalibrationMapping", len(m.keyDict), name)
                  for name, m in mapper.mappings.items() if key in m.keyDict and m._template]
    return min(candidates)[2]


def an_object(storage: str) -> Any:
    """A small object the storage can write."""
    if storage == "FitsStorage":
        return CCDData(np.zeros((2, 2)), unit="adu")
    if storage in ("YamlStorage", "ConfigStorage"):
        return {"a": 1}
    if storage == "FitsCatalogStorage":
        return Table({"a": [1]})
    return TestObject(1)


def case_key(value: Any, key: str) -> str:
    return f"{key}={value!r}"[:60]


@pytest.mark.parametrize("camera", sorted(CAMERAS))
def test_hostile_values_through_every_operation(shared_data, tmp_path, camera):
    input_root = shared_data.joinpath(*CAMERAS[camera])
    out = tmp_path / "out"
    repo = butler.Butler(inputs=str(input_root), outputs=str(out))
    mapper = repo.repositories()[0].mapper
    keys = list(mapper.keyDict)
    assert len(keys) >= 15  # every template key of the camera

    gc.collect()  # Butlers of earlier tests in this worker finish their provenance records when collected
    shared_before = listing(shared_data)
    around_before = listing(tmp_path.parent, skip=out)
    cwd_before = sorted(os.listdir(os.getcwd()))
    leaks: list[str] = []
    calls = 0

    def attempt(operation: str, case: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        try:
            call(*args, **kwargs)
        except ButlerError:
            pass
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a leak
            leaks.append(f"{operation} {case}: {type(exc).__name__}: {exc}"[:300])

    for keyIndex, key in enumerate(keys):
        datasetType = choose_dataset_type(mapper, key)
        mapping = mapper.mappings[datasetType]
        complete = {k: BENIGN[kind] for k, kind in mapping.keyDict.items()}
        obj = an_object(mapping.storage)
        other = next((k for k in mapping.keyDict if k != key), key)
        for valueIndex, value in enumerate(HOSTILE):
            case = case_key(value, key)
            full = {**complete, key: value}
            partial = {key: value}
            attempt("put", case, repo.put, obj, datasetType, full)
            attempt("datasetExists", case, repo.datasetExists, datasetType, partial)
            attempt("getUri", case, repo.getUri, datasetType, partial)
            attempt("getUri write", case, repo.getUri, datasetType, full, write=True)
            if (keyIndex + valueIndex) % SAMPLE:
                continue
            attempt("get", case, repo.get, datasetType, full)
            attempt("queryMetadata", case, repo.queryMetadata, datasetType, [other], partial)
            attempt("subset", case, lambda subset: [ref.dataId for ref in subset()],
                    functools.partial(repo.subset, datasetType, dataId=partial))
    # the command: each value once, the keys in turn, ``get`` and ``query`` alternately (a
    # command opens the repository afresh, ~0.1 s, so it is sampled more thinly)
    runner = CliRunner()
    for valueIndex, value in enumerate(HOSTILE):
        key = keys[valueIndex % len(keys)]
        command = ("get", "query")[valueIndex % 2]
        text = value if isinstance(value, str) else repr(value)
        result = runner.invoke(cli, [command, str(input_root), choose_dataset_type(mapper, key), f"{key}={text}"])
        lines = [line for line in result.output.splitlines() if line.strip()]
        if "Traceback" in result.output or result.exit_code not in (0, 2) or \
                (result.exit_code == 2 and len(lines) != 1) or \
                (result.exception is not None and not isinstance(result.exception, SystemExit)):
            leaks.append(f"cli {command} {case_key(value, key)}: exit {result.exit_code}: "
                         f"{result.output[:200]!r} {result.exception!r}")

    assert not leaks, f"{len(leaks)} non-package errors or CLI failures:\n" + "\n".join(leaks[:40])
    assert calls >= 4 * len(HOSTILE) * len(keys)
    assert listing(shared_data) == shared_before
    assert listing(tmp_path.parent, skip=out) == around_before
    assert sorted(os.listdir(os.getcwd())) == cwd_before
    written = [path for path in out.rglob("*") if path.is_file() and path.name != "repositoryCfg.yaml"]
    assert written  # the acceptable values were written...
    for path in out.rglob("*"):  # ...inside the output root, with no link out of it
        assert not path.is_symlink() and path.resolve().is_relative_to(out.resolve())
