"""Command start-up (issue 12): the command and the mappers import astropy only to touch a FITS,
time or table value, and a command imports what it uses: no format it does not read, no digest
library, no provenance store before a record, no attrs for ``--help``.

Each check runs in a fresh interpreter (this process has astropy loaded already)
and reads its ``sys.modules``; how long start-up takes is `bench/bench_cli.py`'s business.
"""

from __future__ import annotations

import marshal
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from butler.formatters import BUILT_IN, FormatterTable
from butler.utils import CACHE_ENV, keep, read_kept

#: the checkout under test, first on the child's path (not an installed copy)
CHECKOUT = str(Path(__file__).resolve().parent.parent)

ASTROPY = ("astropy", "erfa")
POSTGRES = ("butler.registry.postgres", "psycopg")
YAML = ("yaml", "butler.safeyaml", "butler.formatters.yaml", "butler.formatters.config")
ATTRS = ("attr", "attrs")
#: the formats a query over a camera registry reads none of (FITS is the camera's: its mapper imports it)
UNUSED_FORMATS = ("pickle", "_pickle", "butler.formatters.pickle", "butler.formatters.numpy",
                  "butler.formatters.text", "butler.formatters.parquet")
#: what only an error message (close matches) or a gzipped file needs
RARE = ("difflib", "gzip")
#: the provenance store and lineage: a Butler that has recorded nothing reads and writes no record
PROVENANCE_STORE = ("butler.registry.provenance", "butler.provenance.lineage")
#: the recorder: a Butler without outputs records nothing, so a read-only command never loads it
RECORDING = ("butler.provenance.recording",)
#: digests and random tokens: OpenSSL's ``_hashlib`` (``secrets`` loads it through ``hmac``)
DIGESTS = ("hashlib", "_hashlib", "hmac", "secrets")


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


def test_help_loads_no_attrs() -> None:
    """The help lists commands: nothing of the library's value classes is needed."""
    assert modules_loaded_by(run_command("--help"), ATTRS) == "[]"


def test_query_of_a_camera_registry_loads_no_format_it_does_not_read(obs_test_registry: str) -> None:
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), UNUSED_FORMATS) == "[]"


def test_query_of_a_camera_registry_loads_no_digest_library(obs_test_registry: str) -> None:
    """The kept policies and entry points are found without a digest, and nothing is written."""
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), DIGESTS) == "[]"


def test_query_of_a_camera_registry_loads_nothing_only_a_mistake_or_a_gzipped_file_needs(
        obs_test_registry: str) -> None:
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), RARE) == "[]"


def test_a_mistyped_data_id_key_loads_difflib(obs_test_registry: str) -> None:
    """The check can fail: a mapper asked for a data ID with an unknown key suggests close ones."""
    code = ("from butler import Butler\nfrom butler.errors import UnknownDataIdKeyError\n"
            f"butler = Butler(inputs={obs_test_registry!r})\n"
            "try:\n    butler.subset('raw', dataId={'vist': 1})\nexcept UnknownDataIdKeyError as exc:\n"
            "    assert 'visit' in str(exc), exc\nelse:\n    raise AssertionError('vist taken')\n")
    assert "difflib" in modules_loaded_by(code, RARE)


def test_query_of_a_camera_registry_loads_no_provenance_store(obs_test_registry: str) -> None:
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), PROVENANCE_STORE) == "[]"


def test_query_of_a_camera_registry_loads_no_recorder(obs_test_registry: str) -> None:
    assert modules_loaded_by(run_command("query", obs_test_registry, "raw"), RECORDING) == "[]"


def test_a_recorded_put_loads_the_provenance_store(tmp_path: Path) -> None:
    """The check can fail: a put of a Butler that records provenance writes its record through the store."""
    code = (f"from butler import Butler\nbutler = Butler(outputs={{'root': {str(tmp_path)!r}, "
            "'mapper': 'butler.test.MapperForTestWriting'}, recordProvenance=True)\n"
            "butler.put({'a': 1}, 'foo', {'visit': 1})\n")
    loaded = modules_loaded_by(code, PROVENANCE_STORE + RECORDING)
    assert "butler.registry.provenance" in loaded and "butler.provenance.recording" in loaded


def test_asking_for_a_format_or_a_digest_loads_its_module(tmp_path: Path) -> None:
    """The checks can fail: the pickle format is there by name, and a put digests what it writes."""
    code = ("from butler.formatters import get_formatter\n"
            "assert get_formatter('PickleStorage').storageName == 'PickleStorage'\n"
            "from butler.storage import Storage\n"
            f"open({str(tmp_path / 'f')!r}, 'wb').close()\n"
            f"assert Storage.makeFromURI({str(tmp_path)!r}).checksum('f')\n")
    loaded = modules_loaded_by(code, UNUSED_FORMATS + DIGESTS)
    assert "butler.formatters.pickle" in loaded and "'_hashlib'" in loaded


def test_attrs_is_loaded_by_the_library() -> None:
    """The check can fail: a command that opens a repository uses the library's attrs value classes."""
    assert "'attrs'" in modules_loaded_by("import butler.cli\nfrom butler.cfg import RepositoryCfg", ATTRS)


def test_a_deferred_formatter_asked_from_many_threads_is_made_once() -> None:
    table = FormatterTable()
    table.register_deferred("TextStorage", f"butler.formatters.{BUILT_IN['TextStorage']}")
    barrier = threading.Barrier(8)
    found = []

    def ask() -> None:
        barrier.wait()
        found.append(table.get("TextStorage"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len({id(formatter) for formatter in found}) == 1
    assert list(table) == ["TextStorage"]


def test_a_kept_result_answers_only_its_own_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept files are named by a checksum, so a file of the right name made from another
    fingerprint (a checksum collision) is not taken for the result."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    keep("policy", b"camera: one\n", 1, {"camera": "one"})
    assert read_kept("policy", b"camera: one\n", 1) == {"camera": "one"}
    assert read_kept("policy", b"camera: one\n", 2) is None  # another format
    assert read_kept("policy", b"camera: two\n", 1) is None
    (kept,) = (tmp_path / "policy").iterdir()
    kept.write_bytes(marshal.dumps((b"camera: two\n", {"camera": "two"})))
    assert read_kept("policy", b"camera: one\n", 1) is None
