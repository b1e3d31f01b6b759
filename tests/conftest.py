"""Shared test helpers: the read-only camera data, tree fingerprints, processes, the command in-process.

Tests that read the real camera data (``shared/data`` beside the checkout, or the
directory named by ``BUTLER_SHARED_DATA``) say so in one of two ways, and are then
all skipped for the one reason `NO_SHARED_DATA` when it is absent:

* take the `shared_data` fixture (a `~pathlib.Path` to its root), directly or
  through another fixture;
* or carry the ``needs_shared_data`` marker (``pytestmark = pytest.mark.needs_shared_data``
  for a whole module), when they use paths built from `SHARED_DATA` at import time.

Module-level paths into the data may be built from `SHARED_DATA` freely (it is only a
path); whatever is read from it at import time (a parameter list) must be guarded by
`HAVE_SHARED_DATA`. ``-m "not needs_shared_data"`` selects the tests that run without it.
"""

from __future__ import annotations

import atexit
import gc
import hashlib
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

# the kept parsed policies and entry-point tables (butler.utils.CACHE_ENV) of a test run live in a temporary
# directory of its own, never in the user's ~/.cache (subprocesses inherit it; removed when the run ends)
if "BUTLER_CACHE_DIR" not in os.environ:
    os.environ["BUTLER_CACHE_DIR"] = tempfile.mkdtemp(prefix="butler-test-cache-")
    atexit.register(shutil.rmtree, os.environ["BUTLER_CACHE_DIR"], ignore_errors=True)

# real servers the tests start: PostgreSQL (tests/pg_server.py), `butler serve` (tests/service_server.py),
# S3 (rclone serve s3 and moto_server, tests/s3_server.py)
pytest_plugins = ["pg_server", "service_server", "s3_server"]

#: environment variable naming the shared camera data, in place of ``shared/data`` beside the checkout
SHARED_DATA_ENV = "BUTLER_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(SHARED_DATA_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data"
                   ).resolve()
HAVE_SHARED_DATA = SHARED_DATA.is_dir()
#: the one reason every test needing the shared data is skipped for when it is absent
NO_SHARED_DATA = f"shared camera data not found at {SHARED_DATA} (set {SHARED_DATA_ENV} to its directory)"
#: the marker name of a test that reads the shared data
NEEDS_SHARED_DATA = "needs_shared_data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{NEEDS_SHARED_DATA}: reads the real camera data under SHARED_DATA "
                                       "(given to every test that uses the shared_data fixture)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses `shared_data`; skip the marked ones when the data is absent.

    The skip goes first, so its reason wins over another skip, such as pytest's for a
    parameter list read from the data (empty without it).
    """
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(NEEDS_SHARED_DATA)
        if not HAVE_SHARED_DATA and item.get_closest_marker(NEEDS_SHARED_DATA):
            item.add_marker(pytest.mark.skip(reason=NO_SHARED_DATA), append=False)


def tree_fingerprint(root: os.PathLike | str) -> dict[str, str]:
    """{relative path: sha256 (or link target)} of every file and link under ``root``."""
    result = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                result[rel] = "link:" + os.readlink(path)
            else:
                result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def _released(start, target, args) -> None:
    start.wait()
    target(*args)


def run_together(target, argsets, timeout: float = 60) -> list:
    """Run ``target(*args)`` for each ``args`` in a process of its own, all released at once.

    Returns the exit codes, in order (None for a process still running after ``timeout``).
    """
    context = multiprocessing.get_context("fork")
    start = context.Event()
    processes = [context.Process(target=_released, args=(start, target, args)) for args in argsets]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout)
    return [process.exitcode for process in processes]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The root of the read-only real camera data (tests taking it are skipped when it is absent)."""
    if not HAVE_SHARED_DATA:  # reached only when requested with request.getfixturevalue
        pytest.skip(NO_SHARED_DATA)
    return SHARED_DATA


@pytest.fixture(scope="module")
def shared_data_untouched(shared_data: Path) -> Iterator[Path]:
    """`shared_data`, fingerprinted before its first use in a module and compared after the module's end."""
    before = tree_fingerprint(shared_data)
    yield shared_data
    assert tree_fingerprint(shared_data) == before, f"the shared camera data under {shared_data} was modified"


@pytest.fixture
def obs_test_input(shared_data_untouched: Path) -> str:
    """The obs_test camera repository of the shared data (read only: compared after the module)."""
    return str(shared_data_untouched / "obs_test" / "data" / "input")


@pytest.fixture
def obs_test_repo(tmp_path: Path) -> str:
    """An empty obs_test camera repository (a legacy ``_mapper`` file only) under ``tmp_path``."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_text("lsst.obs.test.testMapper.TestMapper\n")
    return str(root)


def run_demo(tmp_path_factory) -> dict:
    """Run ``butler demo`` into a new directory; return its directory (``dir``), its output
    (``out``) and its repositories (``input``, ``v1``, ``v2``)."""
    directory = str(tmp_path_factory.mktemp("demo") / "run")
    result = run_cli("demo", directory)
    assert result.exit_code == 0, result.stderr
    gc.collect()  # the command's Butlers are finalized (their provenance folded), as when its process ends
    return {"dir": directory, "out": result.stdout,
            **{name: os.path.join(directory, name) for name in ("input", "v1", "v2")}}


def run_cli(*args: str) -> Result:
    """Run the ``butler`` command with ``args`` in this process and return click's `Result`.

    Standard output and standard error are captured apart (``result.stdout``,
    ``result.stderr``). An exception the command does not turn into an exit code
    is re-raised, so a test fails with its traceback. The root logger is restored
    afterwards: the command configures logging as a process would.
    """
    from butler.cli import cli

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, list(args), prog_name="butler")
    finally:
        root.handlers[:], root.level = handlers, level
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_user_error(result: Result | subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and one line ``Error: ...`` naming each of ``words`` on standard error; return it.

    ``result`` is a `run_cli` result or a finished ``python -m butler`` process.
    """
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _open_files() -> set[str]:
    """Regular files this process has open, SQLite databases aside."""
    files = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")) \
                and not target.endswith((".sqlite3", ".sqlite3-journal", ".sqlite3-wal", ".sqlite3-shm", ".sqlite")) \
                and os.path.isfile(target):
            files.add(target)
    return files


@pytest.fixture(autouse=True)
def no_file_left_open():
    """Every file the package opens during a test is closed by its end (SQLite aside)."""
    if not os.path.isdir("/proc/self/fd"):
        yield
        return
    before = _open_files()
    yield
    leaked = _open_files() - before
    assert not leaked, f"files left open: {sorted(leaked)}"
