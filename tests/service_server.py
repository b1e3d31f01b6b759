"""pytest plugin: ``butler serve`` as a real process on 127.0.0.1, a port the system picks.

`start_server` runs ``python -m butler serve ROOT ... --port 0`` with this
checkout first on the path, waits for the URL it prints, and returns a
`Server`; `stop` ends it (terminate, then kill). The ``butler_server``
fixture starts servers for one test, ``module_server`` for a module; both
stop theirs at the end. `served_scratch` serves one scratch directory for the
whole session (the storage conformance suite's roots), stopped and removed
when the session ends. The server's standard error goes to a file
(`Server.log`), so a test can read what it logged.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest

PROJECT = Path(__file__).resolve().parent.parent
#: seconds to wait for a server to print its URL (imports on a loaded machine)
START_TIMEOUT = 60.0


@attrs.define
class Server:
    """A running ``butler serve``: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def repo(self, name: str) -> str:
        """The URL a Butler opens the served repository ``name`` at."""
        return f"{self.url}/{name}"

    def api(self, path: str = "") -> str:
        """The URL of an API path (below ``/api/v1``)."""
        return f"{self.url}/api/v1{path}"


def start_server(roots: Sequence[os.PathLike | str], *options: str, log_dir: os.PathLike | str | None = None,
                 env: dict[str, str] | None = None) -> Server:
    """Start ``butler serve`` on ``roots`` (with ``options``) and wait until it listens."""
    log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="butler-serve-"))
    log = log_dir / f"serve-{time.monotonic_ns()}.log"
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), environment.get("PYTHONPATH")]))
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "butler", "serve", *map(str, roots), "--port", "0",
                                    *options], stdout=subprocess.PIPE, stderr=stderr, env=environment)
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready = select.select([process.stdout], [], [], max(remaining, 0))[0] if remaining > 0 else []
        if not ready:
            stop(process)
            raise RuntimeError(f"butler serve did not start within {START_TIMEOUT} s: {log.read_text()}")
        chunk = os.read(process.stdout.fileno(), 1)
        if not chunk:
            stop(process)
            raise RuntimeError(f"butler serve exited with {process.returncode}: {log.read_text()}")
        line += chunk
    url = line.decode().split(" at ")[-1].strip()
    assert url.startswith("http://127.0.0.1:"), line
    return Server(url=url, process=process, log=log)


def stop(server: Server | subprocess.Popen) -> None:
    """End a server's process (terminate, then kill after 10 s) and close its pipe."""
    process = server.process if isinstance(server, Server) else server
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _factory(log_dir: Path) -> tuple[Callable[..., Server], list[Server]]:
    started: list[Server] = []

    def start(roots: Sequence[os.PathLike | str], *options: str, env: dict[str, str] | None = None) -> Server:
        server = start_server(roots, *options, log_dir=log_dir, env=env)
        started.append(server)
        return server

    return start, started


@pytest.fixture
def butler_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start(roots, *options, env=None)``: a `Server` for this test, stopped at its end."""
    start, started = _factory(tmp_path)
    yield start
    for server in started:
        stop(server)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """``start(roots, *options, env=None)``: a `Server` for this module, stopped at its end."""
    start, started = _factory(tmp_path_factory.mktemp("serve"))
    yield start
    for server in started:
        stop(server)


_scratch: list[tuple[Path, Server]] = []


def served_scratch() -> tuple[Path, Server]:
    """A scratch directory served (as ``scratch``) for the whole session: tests make repositories in it.

    Started on first use; the server is stopped and the directory removed when the session ends.
    """
    if not _scratch:
        directory = Path(tempfile.mkdtemp(prefix="butler-served-")) / "scratch"
        directory.mkdir()
        (directory / "_mapper").write_text("butler.test.EmptyTestMapper\n")  # a repository, of no camera
        try:
            _scratch.append((directory, start_server([directory], log_dir=directory.parent)))
        except BaseException:
            shutil.rmtree(directory.parent, ignore_errors=True)
            raise
    return _scratch[0]


def pytest_sessionfinish(session: pytest.Session) -> None:
    for directory, server in _scratch:
        stop(server)
        shutil.rmtree(directory.parent, ignore_errors=True)
    _scratch.clear()
