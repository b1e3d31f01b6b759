"""Opening a repository never runs code: mapper names are resolved from trusted sources only,
and cfg/policy YAML is bounded in size, aliases, expansion and depth.

Every attack is a real repository in ``tmp_path``, opened in process (``Butler(inputs=...)``)
and by the real ``butler show`` command in a subprocess.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
import tracemalloc
import uuid

import pytest

import butler
from butler import Butler, RepositoryArgs, RepositoryCfg, Storage
from butler.cfg import MAX_YAML_BYTES, MAX_YAML_DEPTH, load_yaml, resolve_mapper_name
from butler.errors import (
    MapperError,
    MapperImportError,
    RepositoryError,
    UnsafeYamlError,
    UntrustedMapperError,
)
from butler.utils import TRUSTED_MAPPERS_ENV, resolve_mapper

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(butler.__file__)))

CFG = """\
!RepositoryCfg_v1
_mapper: {mapper}
_mapperArgs: {args}
_parents: []
_policy: null
_root: null
"""


def write_cfg(root, mapper: str, args: str = "{}") -> str:
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "repositoryCfg.yaml")
    with open(path, "w") as stream:
        stream.write(CFG.format(mapper=mapper, args=args))
    return path


def run_butler(*args: str, extra_path: str | None = None, env: dict | None = None,
               script: str | None = None) -> subprocess.CompletedProcess:
    """``python -m butler ARGS`` (or ``python -c script``) with this checkout first on the path."""
    environ = {k: v for k, v in os.environ.items() if k != TRUSTED_MAPPERS_ENV}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT, extra_path) if p)
    environ.update(env or {})
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "butler", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- attacks through the mapper name -----------------------------------------------------------

def _popen_cfg(root, marker):
    return write_cfg(root, "subprocess.Popen", f'{{args: "touch {marker}", shell: true}}')


def _python_name_cfg(root, marker):
    return write_cfg(root, "!!python/name:subprocess.Popen ''", f'{{args: "touch {marker}", shell: true}}')


def _mapper_file(root, marker):
    os.makedirs(root)
    path = os.path.join(root, "_mapper")
    with open(path, "w") as stream:
        stream.write("subprocess.Popen\n")
    return path


def _nested_parent_cfg(root, marker):
    """A trusted mapper on top, ``subprocess.Popen`` in a parent cfg recorded inside it."""
    parent = os.path.join(os.path.dirname(root), "parent")
    os.makedirs(parent)
    os.makedirs(root)
    path = os.path.join(root, "repositoryCfg.yaml")
    with open(path, "w") as stream:
        stream.write(textwrap.dedent(f"""\
            !RepositoryCfg_v1
            _mapper: butler.test.EmptyTestMapper
            _mapperArgs: {{}}
            _parents:
            - !RepositoryCfg_v1
              _mapper: subprocess.Popen
              _mapperArgs: {{args: "touch {marker}", shell: true}}
              _parents: []
              _policy: null
              _root: {parent}
            _policy: null
            _root: null
            """))
    return path


ATTACKS = {"popen_cfg": _popen_cfg, "python_name": _python_name_cfg, "mapper_file": _mapper_file,
           "nested_parent": _nested_parent_cfg}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_popen_mapper_is_refused_in_process(tmp_path, attack):
    marker = tmp_path / "marker"
    root = str(tmp_path / "repo")
    path = ATTACKS[attack](root, marker)
    assert "subprocess" in sys.modules  # loaded, so only the Mapper check stands in the way
    with pytest.raises(UntrustedMapperError) as info:
        Butler(inputs=root)
    message = str(info.value)
    assert "subprocess.Popen" in message and "not a subclass of butler.mapper.Mapper" in message
    if attack != "nested_parent":  # a nested cfg names the repository it describes
        assert path in message
    assert isinstance(info.value, MapperError) and isinstance(info.value, ImportError)
    assert not marker.exists()


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_popen_mapper_is_refused_by_butler_show(tmp_path, attack):
    marker = tmp_path / "marker"
    root = str(tmp_path / "repo")
    path = ATTACKS[attack](root, marker)
    result = run_butler("show", root)
    # the command has not imported subprocess: the name is refused before any import
    assert_one_line_error(result, "subprocess.Popen", "not from a trusted module", TRUSTED_MAPPERS_ENV)
    if attack != "nested_parent":
        assert path in result.stderr
    assert not marker.exists()


def test_this_nothing_imports_nothing(tmp_path, capfd):
    root = str(tmp_path / "repo")
    path = write_cfg(root, "this.Nothing")
    assert "this" not in sys.modules
    with pytest.raises(UntrustedMapperError, match="not from a trusted module") as info:
        Butler(inputs=root)
    assert path in str(info.value) and "this.Nothing" in str(info.value)
    assert "this" not in sys.modules
    assert capfd.readouterr().out == ""
    result = run_butler("show", root)
    assert_one_line_error(result, path, "this.Nothing")
    assert result.stdout == ""
    assert "Zen of Python" not in result.stderr


def test_gen2_lookups_use_the_same_rules(tmp_path):
    marker = tmp_path / "marker"
    mapper_file = _mapper_file(str(tmp_path / "v1"), marker)
    cfg_file = _popen_cfg(str(tmp_path / "v2"), marker)
    for root, path in ((tmp_path / "v1", mapper_file), (tmp_path / "v2", cfg_file)):
        for lookup in (Storage.getMapperClass, Butler.getMapperClass):
            with pytest.raises(UntrustedMapperError, match="subprocess.Popen") as info:
                lookup(str(root))
            assert path in str(info.value)
    assert not marker.exists()


def test_package_names_that_are_no_mapper_or_do_not_exist(tmp_path):
    path = write_cfg(str(tmp_path / "a"), "butler.utils.doImport")
    with pytest.raises(UntrustedMapperError, match="not a subclass") as info:
        Butler(inputs=str(tmp_path / "a"))
    assert path in str(info.value)
    path = write_cfg(str(tmp_path / "b"), "butler.nosuchmodule.Mapper")
    with pytest.raises(MapperImportError, match="cannot be imported") as info:
        Butler(inputs=str(tmp_path / "b"))
    assert path in str(info.value) and not isinstance(info.value, UntrustedMapperError)
    write_cfg(str(tmp_path / "c"), "'rm -rf /'")
    with pytest.raises(UntrustedMapperError, match="not a dotted Python name"):
        Butler(inputs=str(tmp_path / "c"))


def test_legacy_names_and_the_package_still_resolve(tmp_path):
    from butler.test import EmptyTestMapper

    assert resolve_mapper("lsst.daf.persistence.test.EmptyTestMapper", "x") is EmptyTestMapper
    assert resolve_mapper("lsst.obs.test.TestMapper", "x").__name__ == "TestMapper"
    write_cfg(str(tmp_path), "lsst.daf.persistence.test.EmptyTestMapper")
    assert isinstance(Butler(inputs=str(tmp_path))._repos.inputs()[0].repo.mapper, EmptyTestMapper)


# -- trusting a third-party mapper module -------------------------------------------------------

@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A mapper module outside the package, on sys.path, that leaves a marker when imported.

    Returns ``(module name, directory on the path, import marker)``; the module
    name is unique so no other test has imported it.
    """
    name = f"thirdcam_{uuid.uuid4().hex[:12]}"
    directory = tmp_path / "site"
    directory.mkdir()
    marker = tmp_path / "imported"
    (directory / f"{name}.py").write_text(textwrap.dedent(f"""\
        import pathlib
        from butler.test import EmptyTestMapper

        pathlib.Path({str(marker)!r}).touch()


        class CamMapper(EmptyTestMapper):
            pass
        """))
    monkeypatch.syspath_prepend(str(directory))
    monkeypatch.delenv(TRUSTED_MAPPERS_ENV, raising=False)
    yield name, str(directory), marker
    sys.modules.pop(name, None)


def test_untrusted_third_party_module_is_not_imported(tmp_path, third_party):
    name, _, imported = third_party
    root = str(tmp_path / "repo")
    path = write_cfg(root, f"{name}.CamMapper")
    with pytest.raises(UntrustedMapperError) as info:
        Butler(inputs=root)
    message = str(info.value)
    assert path in message and f"{name}.CamMapper" in message
    for hint in (f"{TRUSTED_MAPPERS_ENV}={name}", f"trustedMappers=[{name!r}]", f"--mapper {name}.CamMapper"):
        assert hint in message
    assert name not in sys.modules and not imported.exists()
    # comparing names does not import either
    assert resolve_mapper_name(f"{name}.CamMapper") == f"{name}.CamMapper"
    assert RepositoryCfg.read(root) == RepositoryCfg.read(root)
    assert name not in sys.modules and not imported.exists()


def test_trust_by_environment_variable(tmp_path, third_party, monkeypatch):
    name, _, imported = third_party
    root = str(tmp_path / "repo")
    write_cfg(root, f"{name}.CamMapper")
    monkeypatch.setenv(TRUSTED_MAPPERS_ENV, f"other, {name}")
    mapper = Butler(inputs=root)._repos.inputs()[0].repo.mapper
    assert type(mapper).__name__ == "CamMapper" and imported.exists()


def test_environment_prefix_is_a_whole_module_name(tmp_path, third_party, monkeypatch):
    name, _, imported = third_party
    root = str(tmp_path / "repo")
    write_cfg(root, f"{name}.CamMapper")
    monkeypatch.setenv(TRUSTED_MAPPERS_ENV, name[:-3])  # a prefix of the name, not of its module path
    with pytest.raises(UntrustedMapperError):
        Butler(inputs=root)
    assert not imported.exists()


def test_trust_by_argument_kept_across_pickling(tmp_path, third_party):
    name, directory, imported = third_party
    root = str(tmp_path / "repo")
    write_cfg(root, f"{name}.CamMapper")
    opened = Butler(inputs=root, trustedMappers=[name])
    assert type(opened._repos.inputs()[0].repo.mapper).__name__ == "CamMapper" and imported.exists()
    assert Butler.getMapperClass(root, trustedMappers=[name]).__name__ == "CamMapper"
    # a fresh process has not imported the module: only the pickled trust lets it open
    pickled = tmp_path / "butler.pickle"
    pickled.write_bytes(pickle.dumps(opened))
    script = ("import pickle, sys; b = pickle.load(open(sys.argv[1], 'rb')); "
              "print(type(b._repos.inputs()[0].repo.mapper).__name__)")
    result = run_butler(str(pickled), script=script, extra_path=directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CamMapper"


def test_a_fresh_process_refuses_without_trust(tmp_path, third_party):
    name, directory, imported = third_party
    root = str(tmp_path / "repo")
    path = write_cfg(root, f"{name}.CamMapper")
    script = "import sys; from butler import Butler; Butler(inputs=sys.argv[1])"
    result = run_butler(root, script=script, extra_path=directory)
    assert result.returncode != 0 and "UntrustedMapperError" in result.stderr and path in result.stderr
    assert not imported.exists()


def test_trust_by_cli_mapper_option_and_environment(tmp_path, third_party):
    name, directory, imported = third_party
    root = str(tmp_path / "repo")
    path = write_cfg(root, f"{name}.CamMapper")
    refused = run_butler("show", root, extra_path=directory)
    assert_one_line_error(refused, path, f"{name}.CamMapper")
    assert not imported.exists()
    by_option = run_butler("show", root, "--mapper", f"{name}.CamMapper", extra_path=directory)
    assert by_option.returncode == 0, by_option.stderr
    assert f"mapper:     {name}.CamMapper" in by_option.stdout
    imported.unlink()
    by_env = run_butler("show", root, extra_path=directory, env={TRUSTED_MAPPERS_ENV: name})
    assert by_env.returncode == 0, by_env.stderr
    assert imported.exists()


def test_script_that_imports_its_own_mapper_module(tmp_path, third_party):
    name, directory, _ = third_party
    root = str(tmp_path / "repo")
    write_cfg(root, f"{name}.CamMapper")
    script = (f"import sys, {name}; from butler import Butler; "
              "print(type(Butler(inputs=sys.argv[1])._repos.inputs()[0].repo.mapper).__name__)")
    result = run_butler(root, script=script, extra_path=directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CamMapper"


def test_a_mapper_string_the_program_gives_is_trusted(tmp_path, third_party):
    name, _, imported = third_party
    out = str(tmp_path / "out")
    made = Butler(outputs=RepositoryArgs(root=out, mapper=f"{name}.CamMapper"))
    assert type(made._repos.outputs()[0].repo.mapper).__name__ == "CamMapper" and imported.exists()


def test_a_mapper_class_object_is_used_as_before(tmp_path):
    class Plain:  # not a Mapper subclass: a program's own object is trusted
        def __init__(self, root=None):
            self.root = root

    made = Butler(outputs=RepositoryArgs(root=str(tmp_path / "out"), mapper=Plain))
    assert isinstance(made._repos.outputs()[0].repo.mapper, Plain)


# -- YAML bounds -------------------------------------------------------------------------------

def _alias_bomb(path) -> None:
    lines = ["!RepositoryCfg_v1", "_mapper: butler.test.EmptyTestMapper", "_parents: []", "_root: null",
             "_policy:", "  l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 700


def _oversize(path) -> None:
    with open(path, "w") as stream:
        stream.write(CFG.format(mapper="butler.test.EmptyTestMapper", args="{}"))
        stream.write("# padding\n" * (MAX_YAML_BYTES // 10 + 1))


def _deep(path) -> None:
    path.write_text("_policy: " + "[" * 100_000 + "]" * 100_000 + "\n")


def _recursive(path) -> None:
    path.write_text("!RepositoryCfg_v1\n_policy: &a {self: *a}\n")


BAD_YAML = {"alias_bomb": (_alias_bomb, "aliases are expanded"),
            "oversize": (_oversize, f"larger than {MAX_YAML_BYTES} bytes"),
            "deep": (_deep, f"nested deeper than {MAX_YAML_DEPTH}"),
            "recursive": (_recursive, "refers to a node that contains it")}


@pytest.mark.parametrize("kind", sorted(BAD_YAML))
def test_bad_yaml_fails_fast_in_process(tmp_path, kind):
    make, words = BAD_YAML[kind]
    path = tmp_path / "repositoryCfg.yaml"
    make(path)
    for action in (lambda: load_yaml(path), lambda: Butler(inputs=str(tmp_path))):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            with pytest.raises(UnsafeYamlError, match=words) as info:
                action()
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert str(path) in str(info.value)
        assert elapsed < 0.5 and peak < 32 * 2**20, (elapsed, peak)


@pytest.mark.parametrize("kind", sorted(BAD_YAML))
def test_bad_yaml_fails_fast_in_butler_show(tmp_path, kind):
    make, words = BAD_YAML[kind]
    path = tmp_path / "repositoryCfg.yaml"
    make(path)
    start = time.perf_counter()
    result = run_butler("show", str(tmp_path))
    assert time.perf_counter() - start < 30
    assert_one_line_error(result, str(path), words)


def test_limits_leave_ordinary_yaml_alone(tmp_path):
    path = tmp_path / "x.yaml"
    nested = "[" * (MAX_YAML_DEPTH - 1) + "1" + "]" * (MAX_YAML_DEPTH - 1)
    path.write_text(f"a: &a {{b: [1, 2]}}\nc: [*a, *a]\nd: {nested}\n")
    data = load_yaml(path)
    assert data["c"] == [{"b": [1, 2]}] * 2
    inner = data["d"]
    for _ in range(MAX_YAML_DEPTH - 2):
        inner = inner[0]
    assert inner == [1]
    policy = os.path.join(PROJECT, "policy", "datasets.yaml")
    assert isinstance(load_yaml(policy), dict)


def test_policy_file_is_bounded_too(tmp_path):
    from butler import Policy

    path = tmp_path / "policy.yaml"
    _alias_bomb(path)
    with pytest.raises(UnsafeYamlError, match=str(path)):
        Policy(str(path))


# -- other cfg versions ------------------------------------------------------------------------

def test_other_cfg_versions_are_read_as_plain_cfg_fields(tmp_path):
    parent = tmp_path / "parent"
    write_cfg(str(parent), "butler.test.EmptyTestMapper")
    child = tmp_path / "child"
    child.mkdir()
    (child / "repositoryCfg.yaml").write_text(textwrap.dedent(f"""\
        !RepositoryCfg_v0
        _mapper: butler.test.EmptyTestMapper
        _mapperArgs: {{calibRoot: CALIB}}
        _parents:
        - !RepositoryCfg_v2
          _mapper: butler.test.EmptyTestMapper
          _root: {parent}
          _somethingNew: 1
        _policy: null
        _root: null
        """))
    raw = load_yaml(child / "repositoryCfg.yaml")
    assert isinstance(raw, dict) and isinstance(raw["_parents"][0], dict)
    cfg = RepositoryCfg.read(child)
    assert cfg.mapper == "butler.test.EmptyTestMapper" and cfg.mapperArgs == {"calibRoot": "CALIB"}
    assert cfg.root == str(child)
    assert cfg.parents == [RepositoryCfg(str(parent), "butler.test.EmptyTestMapper", None, None, None)]
    opened = Butler(inputs=str(child))
    assert [r.root for r in opened.repositories()] == [str(child), str(parent)]


@pytest.mark.parametrize("document", ["!RepositoryCfg_vX {_mapper: a}", "!RepositoryCfg_v0 [1, 2]"])
def test_malformed_versioned_tags_are_refused(tmp_path, document):
    (tmp_path / "repositoryCfg.yaml").write_text(document + "\n")
    with pytest.raises(UnsafeYamlError, match="RepositoryCfg_v"):
        RepositoryCfg.read(tmp_path)


def test_a_document_that_is_not_a_cfg_is_refused(tmp_path):
    (tmp_path / "repositoryCfg.yaml").write_text("[1, 2]\n")
    with pytest.raises(RepositoryError, match="repositoryCfg.yaml"):
        RepositoryCfg.read(tmp_path)


@pytest.mark.parametrize("text", [
    "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1),          # short, flow style
    "a: &x [1, 2]\nb: [*x, *x]\n" + "c: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1),
], ids=["short-flow", "short-with-alias"])
def test_short_documents_are_still_checked(tmp_path, text):
    """Short cfgs skip the event pass only when their bytes alone keep them within the limits."""
    path = tmp_path / "repositoryCfg.yaml"
    path.write_text(text)
    with pytest.raises(UnsafeYamlError, match="nested deeper"):
        load_yaml(path)
