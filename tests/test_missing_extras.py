"""An optional package that is not installed is a one-line package error naming the extra that installs it.

The package is made absent in a fresh interpreter (``sys.modules[name] = None``
makes its import fail as if it were not installed), then the real command or
call runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from astropy.table import Table

from butler import Butler, RepositoryArgs
from butler.test import TestObject

REPO = Path(__file__).resolve().parents[1]


def butler_without(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``butler ARGS`` in a fresh interpreter where ``module`` cannot be imported."""
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['butler', *sys.argv[1:]]; "
            "from butler.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


@pytest.fixture
def recorded(tmp_path) -> str:
    """A repository holding one dataset with a provenance record."""
    root = str(tmp_path / "repo")
    Butler(outputs=RepositoryArgs(root=root, mapper="butler.test.MapperForTestWriting")).put(TestObject(1), "foo", id=1)
    return root


@pytest.mark.parametrize(("module", "args", "extra"), [
    ("starlette", ("serve", "{root}", "--port", "0"), "serve"),
    ("prov", ("provenance", "{root}", "foo", "id=1", "--format", "prov-json"), "provenance"),
    ("graphviz", ("provenance", "{root}", "foo", "id=1", "--format", "dot"), "provenance"),
])
def test_a_command_needing_a_missing_extra_says_which(recorded, module, args, extra):
    result = butler_without(module, *(arg.format(root=recorded) for arg in args))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'butler[{extra}]'" in lines[0] and module in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_as_type_needing_a_missing_package_says_which(tmp_path):
    """In a fresh interpreter without pandas (this one's imports stay as they are)."""
    root = str(tmp_path / "repo")
    Butler(outputs=RepositoryArgs(root=root, mapper="butler.test.MapperForTestWriting")).put(
        Table({"a": [1, 2]}), "foo", id=2)
    code = ("import sys; sys.modules['pandas'] = None\n"
            "from butler import Butler, MissingDependencyError\n"
            "try:\n"
            f"    Butler(inputs={root!r}).get('foo', id=2, as_type='pandas')\n"
            "except MissingDependencyError as exc:\n"
            "    print(isinstance(exc, ImportError), exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.stdout.startswith("True "), result.stdout + result.stderr
    assert "pip install 'butler[pandas]'" in result.stdout and "datasetType: foo" in result.stdout
