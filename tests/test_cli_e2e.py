"""The ``butler`` command as a process: ``python -m butler``, exit codes, standard error, a closed pipe.

Everything else about the command is tested in this process, in ``test_cli.py``
and ``test_acceptance.py``.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from conftest import assert_user_error

HERE = os.path.dirname(os.path.abspath(__file__))
COMMANDS = ("create", "mappers", "demo", "show", "query", "get", "compare", "ingest", "registry", "serve",
            "provenance", "verify", "map")


def butler(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m butler ARGS`` and return the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "butler", *args], capture_output=True, text=True,
                          cwd=HERE, timeout=120)


def test_python_m_butler_help_and_version():
    result = butler("--help")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: butler [OPTIONS] COMMAND [ARGS]...")
    commands = result.stdout.split("Commands:")[1].split("Exit codes:")[0]
    listed = [line.split()[0] for line in commands.splitlines() if line.strip()]
    assert sorted(listed) == sorted(COMMANDS)
    result = butler("--version")
    assert result.returncode == 0 and importlib.metadata.version("butler") in result.stdout


def test_user_errors_exit_with_2_and_one_line(tmp_path):
    assert_user_error(butler("show", str(tmp_path / "nowhere")), "no such repository root")
    assert_user_error(butler("query", str(tmp_path), "raw", "visit"), "no repository at")
    result = butler("query")  # click's usage error: the same exit code, with the usage
    assert result.returncode == 2 and "Missing argument 'ROOT'" in result.stderr and result.stdout == ""


def test_ingest_failure_exits_with_1_and_names_the_file_once_on_stderr(obs_test_repo, tmp_path):
    bad = str(tmp_path / "no_visit_here.fits")
    fits.PrimaryHDU(np.zeros((2, 2), "u2")).writeto(bad)
    result = butler("ingest", obs_test_repo, bad)
    assert result.returncode == 1
    problem = [line for line in result.stderr.splitlines() if bad in line]
    assert len(problem) == 1, result.stderr
    assert problem[0].count(bad) == 1 and "_v<visit>_f" in problem[0]
    # with warnings hidden, the command still says which file failed and why
    result = butler("--log-level", "ERROR", "ingest", obs_test_repo, bad)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if bad in line] == \
        [f"{bad}: the file name has no _v<visit>_f part (obs_test visits come from it)"]


def test_query_pipe_closed_early(shared_data: Path):
    """``butler query ... | head -1`` ends quietly, whatever the moment the reader goes."""
    cfht = shared_data / "obs_base" / "tests"
    args = [sys.executable, "-m", "butler", "query", str(cfht), "raw",
            "--mapper", "mappers.testing.MinMapper2", "--registry", str(cfht / "cfhtls.sqlite3")]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE) as writer:
        with subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE, text=True) as head:
            writer.stdout.close()  # head alone reads the pipe
            assert head.communicate(timeout=120)[0] == "ccd\n"
        assert writer.stderr.read() == b"" and writer.wait(timeout=120) in (0, 1)
    # a reader gone before the first write: click's quiet exit code 1
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE) as writer:
        writer.stdout.close()
        assert writer.stderr.read() == b"" and writer.wait(timeout=120) == 1


def test_a_library_bug_exits_with_3_and_a_short_traceback(tmp_path):
    """A mapper failing inside (a third-party one, trusted with --mapper) is a bug, not a user error."""
    (tmp_path / "failing_camera.py").write_text(
        "from butler.mapper import Mapper\n\n\nclass FailingMapper(Mapper):\n"
        "    def getDatasetTypes(self):\n        raise RuntimeError('inconsistent camera')\n")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "_mapper").write_text("failing_camera.FailingMapper\n")
    result = subprocess.run([sys.executable, "-m", "butler", "query", str(root), "raw", "--mapper",
                             "failing_camera.FailingMapper"], capture_output=True, text=True, cwd=HERE,
                            timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "RuntimeError: inconsistent camera" in lines
    assert "bug" in lines[-1] and result.stdout == ""
