"""A pytest plugin: a real PostgreSQL server for the tests, started once per session (per xdist worker).

`pg_server` starts PostgreSQL in a temporary directory: ``initdb -A trust
--no-sync``, then ``pg_ctl -w start`` listening on a Unix socket only (no TCP),
``fsync=off``; it is stopped with ``pg_ctl -m fast stop`` when the session ends.
As root, the directory is given to the ``postgres`` user and both commands run
through ``runuser -u postgres --`` (PostgreSQL refuses to run as root).

The binaries are found on ``PATH``, else in ``/usr/lib/postgresql/<version>/bin``
(the newest). When they are missing or the server does not start, the tests
using it are skipped, or fail when the environment variable ``CI`` is set (CI
installs PostgreSQL: a server that does not start there is a failure).

Every server has its own socket directory, so xdist workers never share one;
the PostgreSQL tests are in one ``xdist_group`` so that one worker runs them all.

The server has ``max_connections=12`` and one role with a password
(`PgServer.password_role`, authenticated by SCRAM over the socket; every
other role is trusted).
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator

import attrs
import pytest

_log = logging.getLogger(__name__)

#: the xdist group of every test that uses the server
XDIST_GROUP = "postgres"
MAX_CONNECTIONS = 12
SUPERUSER = "postgres"
PASSWORD_ROLE = "butler_pw"
PASSWORD = "correct-horse-battery-staple"


def find_bindir() -> str | None:
    """The directory of ``initdb`` and ``pg_ctl``: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0)
    return os.path.dirname(candidates[-1]) if candidates else None


@attrs.define
class PgServer:
    """A running PostgreSQL server: its directories, and helpers to reach it.

    Attributes
    ----------
    bindir : `str`
        Where its binaries are.
    base : `str`
        The temporary directory holding ``data`` (the cluster) and ``sock`` (the socket directory).
    port : `int`
        The port number (names the socket file; no TCP).
    """

    bindir: str
    base: str
    port: int = 5432
    _names: Iterator[int] = attrs.field(factory=itertools.count)

    @property
    def datadir(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def sockdir(self) -> str:
        return os.path.join(self.base, "sock")

    password_role = PASSWORD_ROLE
    password = PASSWORD

    def _run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [os.path.join(self.bindir, command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def init(self) -> None:
        """Create the cluster (``initdb -A trust --no-sync``), the password role's pg_hba line first."""
        os.makedirs(self.sockdir)
        if os.geteuid() == 0:
            shutil.chown(self.base, SUPERUSER)
            shutil.chown(self.sockdir, SUPERUSER)
        done = self._run("initdb", "-D", self.datadir, "-A", "trust", "--no-sync", "-U", SUPERUSER,
                         "--locale=C", "-E", "UTF8")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        hba = os.path.join(self.datadir, "pg_hba.conf")
        with open(hba) as stream:
            rules = stream.read()
        with open(hba, "w") as stream:  # root keeps the file's owner (postgres)
            stream.write(f"local all {PASSWORD_ROLE} scram-sha-256\n{rules}")

    def start(self) -> None:
        """``pg_ctl -w start`` on the socket directory only, fsync off."""
        options = (f"-k {self.sockdir} -c listen_addresses='' -c fsync=off -p {self.port} "
                   f"-c max_connections={MAX_CONNECTIONS} -c superuser_reserved_connections=1 "
                   "-c shared_preload_libraries=pg_stat_statements")
        done = self._run("pg_ctl", "-w", "-D", self.datadir, "-l", os.path.join(self.base, "log"),
                         "-o", options, "start")
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}; "
                               f"log: {self.log_tail()}")

    def stop(self) -> None:
        """``pg_ctl -m fast stop``."""
        self._run("pg_ctl", "-w", "-D", self.datadir, "-m", "fast", "stop")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.base, "log")) as stream:
                return stream.read()[-2000:]
        except OSError:
            return "(no log)"

    def uri(self, database: str = "postgres", user: str = SUPERUSER, schema: str | None = None) -> str:
        """``postgresql://user@<socket dir, percent-encoded>:port/database[?schema=...]``."""
        host = urllib.parse.quote(self.sockdir, safe="")
        query = f"?schema={urllib.parse.quote(schema)}" if schema else ""
        return f"postgresql://{user}@{host}:{self.port}/{database}{query}"

    def connect(self, database: str = "postgres"):  # noqa: ANN201 (psycopg is imported lazily)
        """A new autocommit superuser connection (the caller closes it)."""
        import psycopg

        return psycopg.connect(host=self.sockdir, port=self.port, dbname=database, user=SUPERUSER,
                               autocommit=True)

    def new_database(self, prefix: str = "db") -> str:
        """Create an empty database, named uniquely; return its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f'GRANT ALL ON DATABASE "{name}" TO {PASSWORD_ROLE}')
        with self.connect(name) as conn:
            conn.execute(f"GRANT ALL ON SCHEMA public TO {PASSWORD_ROLE}")
        return name

    def setup_roles(self) -> None:
        with self.connect() as conn:
            conn.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute("CREATE EXTENSION pg_stat_statements")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A running PostgreSQL 15 server, for the session (skipped, or failed under CI, when it cannot start)."""
    bindir = find_bindir()
    if bindir is None:
        _unavailable("initdb not found on PATH nor in /usr/lib/postgresql/*/bin")
    base = tempfile.mkdtemp(prefix="butler-pg-")
    server = PgServer(bindir, base)
    try:
        server.init()
        server.start()
        server.setup_roles()
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(str(err))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PgServer) -> str:
    """A new empty database of the session server (its name)."""
    return pg_server.new_database()
