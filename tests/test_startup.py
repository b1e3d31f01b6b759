"""Command start-up (issue 12): the command and the mappers import astropy only to touch a FITS,
time or table value.

Each check runs in a fresh interpreter (this process has astropy loaded already)
and reads its ``sys.modules``; how long start-up takes is `bench/bench_cli.py`'s business.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

#: the checkout under test, first on the child's path (not an installed copy)
CHECKOUT = str(Path(__file__).resolve().parent.parent)

ASTROPY = ("astropy", "erfa")
POSTGRES = ("butler.registry.postgres", "psycopg")
YAML = ("yaml", "butler.safeyaml", "butler.formatters.yaml", "butler.formatters.config")


def modules_loaded_by(code: str, packages: tuple[str, ...] = ASTROPY) -> str:
    """What of astropy and erfa (or of other ``packages``) a fresh interpreter has imported after running ``code``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [CHECKOUT, os.environ.get("PYTHONPATH")])))
    loaded = f"sorted(name for name in sys.modules if name.startswith({packages!r}))"
    script = f"import sys\n{code}\nprint('LOADED', {loaded})"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.rsplit("LOADED", 1)[1].strip()


def run_command(*args: str) -> str:
    """Code running the ``butler`` command with ``args`` in the interpreter, as its entry point does."""
    return (f"from butler.cli import main\ntry:\n    main({list(args)!r})\n"
            f"except SystemExit as exc:\n    assert not exc.code, exc.code")


@pytest.fixture
def obs_test_registry(tmp_path: Path) -> str:
    """An obs_test repository whose registry lists 10 raws (no files)."""
    root = tmp_path / "obs_test"
    root.mkdir()
    (root / "_mapper").write_text("lsst.obs.test.testMapper.TestMapper\n")
    with sqlite3.connect(root / "registry.sqlite3") as conn:
        conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, visit INT, filter TEXT, "
                     "taiObs TEXT, expTime DOUBLE, UNIQUE(visit))")
        conn.execute("CREATE TABLE raw_visit (visit INT, filter TEXT, taiObs TEXT, expTime DOUBLE)")
        conn.execute("CREATE TABLE raw_skyTile (id INTEGER, skyTile INTEGER)")
        conn.executemany("INSERT INTO raw (visit, filter) VALUES (?, 'g')", [(v,) for v in range(1, 11)])
    conn.close()
    return str(root)


def test_import_of_the_command_loads_no_astropy() -> None:
    assert modules_loaded_by("import butler.cli") == "[]"


def test_help_loads_no_astropy() -> None:
    assert modules_loaded_by(run_command("--help")) == "[]"


def test_query_of_a_camera_registry_loads_no_astropy(obs_test_registry: str) -> None:
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw")) == "[]"


def test_query_of_a_sqlite_registry_loads_no_postgresql_module(obs_test_registry: str) -> None:
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), POSTGRES) == "[]"


def test_query_of_a_legacy_repository_loads_no_yaml(obs_test_registry: str) -> None:
    """A repository of a ``_mapper`` file and a registry holds no YAML: PyYAML is not imported."""
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), YAML) == "[]"


def test_reading_a_cfg_or_asking_for_the_yaml_format_loads_yaml(tmp_path: Path) -> None:
    """The check can fail: a repository cfg is read with PyYAML, and the YAML format is there by name."""
    root = str(tmp_path)
    code = (f"from butler.cfg import RepositoryCfg\n"
            f"RepositoryCfg(root={root!r}, mapper='butler.test.MapperForTestWriting').write({root!r})\n"
            f"assert RepositoryCfg.read({root!r}).mapper\n"
            "from butler.formatters import get_formatter, known_storage_names\n"
            "assert 'YamlStorage' in known_storage_names() and 'ConfigStorage' in known_storage_names()\n"
            "assert get_formatter('YamlStorage').storageName == 'YamlStorage'\n")
    loaded = modules_loaded_by(code, YAML)
    assert "'yaml'" in loaded and "butler.safeyaml" in loaded and "butler.formatters.yaml" in loaded


def test_asking_for_the_postgresql_registry_loads_its_module() -> None:
    """The check can fail: the class is there when asked for, from its package."""
    loaded = modules_loaded_by("from butler.registry import PostgresRegistry\nassert PostgresRegistry.__name__",
                               POSTGRES)
    assert "butler.registry.postgres" in loaded


def test_touching_a_time_value_loads_astropy() -> None:
    """The check can fail: computing a time through the mappers does import astropy."""
    loaded = modules_loaded_by("from mappers import translators\n"
                               "assert translators.observing_day('2020-01-02T03:00:00') == '2020-01-01'")
    assert "astropy.time" in loaded
