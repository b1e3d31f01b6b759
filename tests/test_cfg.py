"""Tests of `butler.cfg`: RepositoryArgs, RepositoryCfg and the safe YAML form."""

from __future__ import annotations

import glob
import os
import pathlib
import shutil

import pytest
import yaml

from butler.cfg import (
    RepositoryArgs,
    RepositoryCfg,
    as_repository_args,
    load_yaml,
    read_mapper_file,
    resolve_mapper_name,
)
from butler.errors import ParentsMismatch, RepositoryError, RepositoryModeError, UnsafeYamlError
from butler.policy import Policy
from butler.test import EmptyTestMapper

from conftest import SHARED_DATA, run_together

DATA = str(SHARED_DATA)
POLICY_TEST = f"{DATA}/obs_test/tests/policyTest"
OBS_LSST = f"{DATA}/obs_lsst/data/input"
TEST_MAPPER = "lsst.obs.test.testMapper.TestMapper"


# -- RepositoryArgs ----------------------------------------------------------------------------

def test_args_defaults_and_cfgRoot(monkeypatch, tmp_path):
    args = RepositoryArgs()
    assert (args.root, args.cfgRoot, args.mapper, args.mapperArgs, args.tags, args.mode, args.policy) == \
        (None, None, None, None, set(), None, None)
    monkeypatch.chdir(tmp_path)
    args = RepositoryArgs(root="repo")
    assert args.root == args.cfgRoot == str(tmp_path / "repo")
    args = RepositoryArgs(cfgRoot="cfgs", root="file:///data/x/")
    assert (args.root, args.cfgRoot) == ("/data/x", str(tmp_path / "cfgs"))
    assert RepositoryArgs(root=pathlib.Path("/a/b/")).root == "/a/b"
    assert RepositoryArgs(root="s3://bucket/repo/").root == "s3://bucket/repo"


@pytest.mark.parametrize("tags, expected", [
    ("a", {"a"}), (["a", "b"], {"a", "b"}), (("a",), {"a"}), ({"a"}, {"a"}), (3, {3}), (None, set())])
def test_args_tags(tags, expected):
    assert RepositoryArgs(tags=tags).tags == expected


def test_args_mode_and_policy():
    for mode in ("r", "w", "rw", None):
        assert RepositoryArgs(mode=mode).mode == mode
    with pytest.raises(RepositoryModeError):
        RepositoryArgs(mode="x")
    args = RepositoryArgs(mode="r")
    with pytest.raises(RuntimeError):
        args.mode = "rwx"
    policy = RepositoryArgs(policy={"a": {"b": 1}}).policy
    assert isinstance(policy, Policy) and policy["a.b"] == 1


def test_as_repository_args(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = RepositoryArgs(root="/x")
    assert as_repository_args(args) is args
    assert as_repository_args("rel").root == str(tmp_path / "rel")
    assert as_repository_args("/abs/path").root == "/abs/path"
    assert as_repository_args("file:///abs/uri").root == "/abs/uri"
    assert as_repository_args(tmp_path / "p").root == str(tmp_path / "p")
    from_dict = as_repository_args({"root": "/d", "mode": "rw", "tags": "t", "mapper": EmptyTestMapper})
    assert (from_dict.root, from_dict.mode, from_dict.tags, from_dict.mapper) == ("/d", "rw", {"t"},
                                                                                 EmptyTestMapper)
    cfg = RepositoryCfg(root="/c", mapper=TEST_MAPPER, mapperArgs={"k": 1}, parents=["/p"], policy={"a": 1})
    from_cfg = as_repository_args(cfg)
    assert (from_cfg.root, from_cfg.mapper, from_cfg.mapperArgs, from_cfg.policy) == \
        ("/c", TEST_MAPPER, {"k": 1}, {"a": 1})
    with pytest.raises(TypeError):
        as_repository_args(3)
    with pytest.raises(TypeError):
        as_repository_args({"rooot": "/x"})


# -- RepositoryCfg -----------------------------------------------------------------------------

def test_cfg_defaults():
    cfg = RepositoryCfg(root="/r", mapper=None, mapperArgs=None, parents=None, policy=None)
    assert cfg.mapperArgs == {} and cfg.parents == [] and cfg.policy is None
    assert RepositoryCfg("/r", None, None, "/p", None).parents == ["/p"]


def test_cfg_mapper_equality():
    string = RepositoryCfg("/r", "butler.test.EmptyTestMapper", {}, [], None)
    legacy = RepositoryCfg("/r", "lsst.daf.persistence.test.EmptyTestMapper", {}, [], None)
    klass = RepositoryCfg("/r", EmptyTestMapper, None, None, None)
    instance = RepositoryCfg("/r", EmptyTestMapper(root="/r"), {}, [], None)
    assert string == legacy == klass == instance
    assert resolve_mapper_name(EmptyTestMapper) == "butler.test.EmptyTestMapper"
    unknown = RepositoryCfg("/r", "no.such.Mapper", {}, [], None)
    assert unknown == RepositoryCfg("/r", "no.such.Mapper", {}, [], None)
    assert unknown != string
    assert resolve_mapper_name(" no.such.Mapper ") == "no.such.Mapper"


@pytest.mark.parametrize("change", [
    {"root": "/other"}, {"mapperArgs": {"a": 2}}, {"parents": ["/p", "/q"]}, {"policy": {"a": 1}},
    {"mapper": "no.such.Mapper"}])
def test_cfg_inequality(change):
    base = dict(root="/r", mapper=EmptyTestMapper, mapperArgs={"a": 1}, parents=["/p"], policy=None)
    assert RepositoryCfg(**base) == RepositoryCfg(**base)
    assert RepositoryCfg(**base) != RepositoryCfg(**{**base, **change})
    assert RepositoryCfg(**base) != "not a cfg"


def test_extend_parents():
    nested = RepositoryCfg("/old", TEST_MAPPER, {}, [], None)
    cfg = RepositoryCfg("/r", None, None, ["/a", nested], None, dirty=False)
    cfg.extendParents(["/a", nested])
    assert cfg.parents == ["/a", nested] and not cfg.dirty
    cfg.extendParents(["/a", RepositoryCfg("/old", TEST_MAPPER, None, None, None), "/b"])
    assert cfg.parents == ["/a", nested, "/b"] and cfg.dirty
    for bad in (["/b"], ["/a"], ["/b", "/a", nested], ["/a", "/old", "/b"]):
        with pytest.raises(ParentsMismatch):
            cfg.extendParents(bad)
    assert cfg.parents == ["/a", nested, "/b"]
    assert issubclass(ParentsMismatch, RuntimeError)


def test_make_from_args_and_matches_args():
    args = RepositoryArgs(root="/r", mapper="butler.test.EmptyTestMapper", mapperArgs={"calibRoot": "/c"},
                          policy={"a": 1})
    cfg = RepositoryCfg.makeFromArgs(args, parents=["/p"])
    assert cfg == RepositoryCfg("/r", EmptyTestMapper, {"calibRoot": "/c"}, ["/p"], {"a": 1})
    assert RepositoryCfg.makeFromArgs("/r").parents == []
    assert cfg.matchesArgs(args)
    assert cfg.matchesArgs(RepositoryArgs())
    assert cfg.matchesArgs(RepositoryArgs(root="/r", mapper=EmptyTestMapper, mapperArgs={"other": 1}))
    assert not cfg.matchesArgs(RepositoryArgs(root="/elsewhere"))
    assert not cfg.matchesArgs(RepositoryArgs(mapper="no.such.Mapper"))
    assert not cfg.matchesArgs(RepositoryArgs(mapperArgs={"calibRoot": "/d"}))
    assert not cfg.matchesArgs(RepositoryArgs(policy={"a": 2}))
    assert cfg.matchesArgs("/r")


# -- the shipped legacy files ------------------------------------------------------------------

@pytest.mark.needs_shared_data
def test_read_every_shipped_cfg():
    paths = sorted(glob.glob(f"{DATA}/**/repositoryCfg.yaml", recursive=True))
    assert len(paths) == 6
    cfgs = {os.path.relpath(os.path.dirname(p), DATA): RepositoryCfg.read(p) for p in paths}
    assert all(cfg is not None and not cfg.dirty for cfg in cfgs.values())
    for key, cfg in cfgs.items():
        assert cfg.root == os.path.join(DATA, key)

    a = cfgs["obs_test/tests/policyTest/a"]
    assert a.mapper == TEST_MAPPER and a.mapperArgs == {} and a.parents == []
    assert isinstance(a.policy, Policy)
    assert a.policy["exposures.raw.template"] == "raw/v%(visit)d_f%(filter)s.fits.gz"
    assert a.policy.names() == ["exposures", "exposures.raw", "exposures.raw.template"]

    b = cfgs["obs_test/tests/policyTest/b"]
    assert b.mapper == TEST_MAPPER and b.policy is None
    assert b.parents == [os.path.realpath(f"{POLICY_TEST}/a")]

    calexp = cfgs["obs_test/data/calexpMetadataObjectsTest"]
    assert calexp.mapper == "lsst.obs.test.MapperForTestCalexpMetadataObjects"
    assert (calexp.mapperArgs, calexp.parents, calexp.policy) == ({}, [], None)

    for camera, mapper in (("latiss", "lsst.obs.lsst.latiss.LatissMapper"),
                           ("ts8", "lsst.obs.lsst.ts8.Ts8Mapper"),
                           ("imsim", "lsst.obs.lsst.imsim.ImsimMapper")):
        cfg = cfgs[f"obs_lsst/data/input/{camera}/CALIB"]
        assert cfg.mapper == mapper and cfg.mapperArgs == {} and cfg.policy is None
        (parent,) = cfg.parents
        assert isinstance(parent, RepositoryCfg)
        assert parent.root == f"/Users/timj/work/lsstsw3/build/obs_lsst/data/input/{camera}"
        assert not os.path.exists(parent.root)
        assert (parent.mapper, parent.mapperArgs, parent.parents, parent.policy) == (mapper, {}, [], None)


@pytest.mark.needs_shared_data
def test_read_from_root_or_file_and_missing(tmp_path):
    assert RepositoryCfg.read(f"{POLICY_TEST}/b") == RepositoryCfg.read(f"{POLICY_TEST}/b/repositoryCfg.yaml")
    assert RepositoryCfg.read(pathlib.Path(POLICY_TEST) / "b").root == f"{POLICY_TEST}/b"
    assert RepositoryCfg.read(tmp_path) is None
    assert RepositoryCfg.read(tmp_path / "missing") is None
    (tmp_path / "repositoryCfg.yaml").write_text("a: 1\n")
    with pytest.raises(RepositoryError):
        RepositoryCfg.read(tmp_path)


@pytest.mark.needs_shared_data
def test_read_every_shipped_mapper_file(tmp_path):
    expected = {
        "obs_test/data/input": TEST_MAPPER,
        "obs_lsst/data/input/lsstCam": "lsst.obs.lsst.LsstCamMapper",
        "obs_lsst/data/input/comCam": "lsst.obs.lsst.comCam.LsstComCamMapper",
        "obs_lsst/data/input/latiss": "lsst.obs.lsst.latiss.LatissMapper",
        "obs_lsst/data/input/ts8": "lsst.obs.lsst.ts8.Ts8Mapper",
        "obs_lsst/data/input/ts3": "lsst.obs.lsst.ts3.Ts3Mapper",
        "obs_lsst/data/input/ucd": "lsst.obs.lsst.ucd.UcdMapper",
        "obs_lsst/data/input/imsim": "lsst.obs.lsst.imsim.ImsimMapper",
        "obs_lsst/data/input/phosim": "lsst.obs.lsst.phosim.PhosimMapper",
    }
    found = {os.path.relpath(os.path.dirname(p), DATA): read_mapper_file(os.path.dirname(p))
             for p in glob.glob(f"{DATA}/**/_mapper", recursive=True)}
    assert found == expected
    assert read_mapper_file(tmp_path) is None
    (tmp_path / "_mapper").write_text("\n")
    assert read_mapper_file(tmp_path) is None


# -- safety ------------------------------------------------------------------------------------

def test_loader_is_safe():
    from butler.safeyaml import _SafeCfgLoader

    assert issubclass(_SafeCfgLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert not issubclass(_SafeCfgLoader, (yaml.FullLoader, yaml.UnsafeLoader, yaml.Loader))


@pytest.mark.parametrize("document, tag", [
    ("!!python/object/apply:os.system ['touch {marker}']", "tag:yaml.org,2002:python/object/apply:os.system"),
    ("!RepositoryCfg_v1\n_mapper: !!python/object/apply:os.system ['touch {marker}']\n",
     "python/object/apply:os.system"),
    ("!!python/object/new:os.system ['touch {marker}']", "python/object/new:os.system"),
    ("!!python/object:os.stat_result {{}}", "python/object:os.stat_result"),
    ("!!python/module:os ''", "python/module:os"),
    ("!!python/tuple [1, 2]", "python/tuple"),
    ("!Whatever {{a: 1}}", "!Whatever"),
])
def test_unsafe_tags_are_refused(tmp_path, document, tag):
    marker = tmp_path / "marker"
    path = tmp_path / "repositoryCfg.yaml"
    path.write_text(document.format(marker=marker))
    with pytest.raises(UnsafeYamlError) as info:
        RepositoryCfg.read(tmp_path)
    assert str(path) in str(info.value) and tag in str(info.value)
    assert not marker.exists()
    assert isinstance(info.value, ValueError)


@pytest.mark.needs_shared_data
def test_loads_without_any_unsafe_yaml_entry_point(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("unsafe YAML entry point used")

    for name in ("load", "unsafe_load", "full_load", "load_all"):
        monkeypatch.setattr(yaml, name, forbidden)
    assert RepositoryCfg.read(f"{POLICY_TEST}/a").policy is not None


def test_load_yaml_plain_anchors_and_python_name(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: &x {b: 1}\nc: *x\nm: !!python/name:os.system ''\n"
                    "p: !!python/object:butler.policy.Policy {data: {k: v}}\n")
    data = load_yaml(path)
    assert data["c"] == {"b": 1} and data["m"] == "os.system" and data["p"] == Policy({"k": "v"})


# -- writing -----------------------------------------------------------------------------------

def test_write_round_trip_with_relative_parents(tmp_path):
    parent = tmp_path / "parent"
    child = tmp_path / "child"
    nested = RepositoryCfg(str(tmp_path / "old"), TEST_MAPPER, {"calibRoot": "CALIB"}, [str(parent)], None)
    cfg = RepositoryCfg(str(child), EmptyTestMapper, None, [str(parent), nested, "s3://bucket/x"],
                        {"datasets": {"x": {"template": "x/%(a)d.pickle"}}})
    path = cfg.write(child)
    assert path == str(child / "repositoryCfg.yaml") and not cfg.dirty
    assert [p.name for p in child.iterdir()] == ["repositoryCfg.yaml"]
    text = pathlib.Path(path).read_text()
    assert text.startswith("!RepositoryCfg_v1")
    raw = yaml.safe_load(text.replace("!RepositoryCfg_v1", ""))
    assert raw["_root"] is None
    assert raw["_mapper"] == "butler.test.EmptyTestMapper"
    assert raw["_parents"][0] == "../parent" and raw["_parents"][2] == "s3://bucket/x"
    assert raw["_policy"] == {"datasets": {"x": {"template": "x/%(a)d.pickle"}}}
    assert "python" not in text
    assert RepositoryCfg.read(child) == cfg


def test_moved_repository_keeps_relative_parents(tmp_path):
    (tmp_path / "a").mkdir()
    RepositoryCfg(str(tmp_path / "b"), TEST_MAPPER, None, [str(tmp_path / "a")], None).write(tmp_path / "b")
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "a", moved / "a")
    shutil.move(tmp_path / "b", moved / "b")
    cfg = RepositoryCfg.read(moved / "b")
    assert cfg.root == str(moved / "b") and cfg.parents == [str(moved / "a")]


def test_parents_relative_to_the_real_location(tmp_path):
    real = tmp_path / "deep" / "real"
    real.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    parent = tmp_path / "parent"
    RepositoryCfg(str(link), None, None, [str(parent)], None).write(link)
    raw = yaml.safe_load((real / "repositoryCfg.yaml").read_text().replace("!RepositoryCfg_v1", ""))
    assert raw["_root"] is None and raw["_parents"] == ["../../parent"]
    cfg = RepositoryCfg.read(link)
    assert cfg.root == str(link) and cfg.parents == [str(parent)]


def test_write_elsewhere_records_the_root(tmp_path):
    cfg = RepositoryCfg("/data/repo", None, None, None, None)
    cfg.write(tmp_path / "cfgs")
    assert RepositoryCfg.read(tmp_path / "cfgs").root == "/data/repo"


def _write_many(root: str) -> None:
    cfg = RepositoryCfg(root, TEST_MAPPER, {"k": "v" * 2000}, ["/p1", "/p2"], {"a": {"b": list(range(200))}})
    for _ in range(30):
        cfg.write(root)


def test_concurrent_writers(tmp_path):
    assert run_together(_write_many, [(str(tmp_path),)] * 3) == [0, 0, 0]
    assert os.listdir(tmp_path) == ["repositoryCfg.yaml"]
    cfg = RepositoryCfg.read(tmp_path)
    assert cfg.mapperArgs == {"k": "v" * 2000} and cfg.parents == ["/p1", "/p2"]


def test_load_yaml_reads_a_stream_at_most_one_byte_past_the_limit(tmp_path):
    from butler.cfg import MAX_YAML_BYTES

    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n" + b"#" * (3 * MAX_YAML_BYTES) + b"\n")
    with open(path, "rb") as stream:
        with pytest.raises(UnsafeYamlError, match="stored/big.yaml"):
            load_yaml(stream, source="stored/big.yaml")
        assert stream.tell() == MAX_YAML_BYTES + 1
    with open(path, "rb") as stream:
        stream.seek(len(b"a: 1\n") + 3 * MAX_YAML_BYTES - 10)  # read from the stream's position
        assert load_yaml(stream) is None  # a comment only
    small = tmp_path / "small.yaml"
    small.write_text("b: [1, 2]\n")
    with open(small, "rb") as stream:
        assert load_yaml(stream) == {"b": [1, 2]}


def test_cfg_read_from_a_storage_without_local_files():
    from butler.storage import Storage

    root = "mem://cfg-test/repo"
    RepositoryCfg(root=None, mapper="butler.test.EmptyTestMapper", mapperArgs=None, parents=[],
                  policy=None).write(root)
    cfg = RepositoryCfg.read(root)
    assert cfg.mapper == "butler.test.EmptyTestMapper" and cfg.root == root
    Storage.makeFromURI("mem://cfg-test/bad").writeBytes(
        "repositoryCfg.yaml", b"a: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(UnsafeYamlError, match="mem://cfg-test/bad/repositoryCfg.yaml"):
        RepositoryCfg.read("mem://cfg-test/bad")
