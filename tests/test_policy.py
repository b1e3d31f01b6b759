"""Tests of `butler.policy.Policy`."""

from __future__ import annotations

import copy
import os
import pickle

import pytest

from butler.errors import PolicyError, UnsafeYamlError
from butler.policy import Policy

from conftest import SHARED_DATA

POLICY_A = str(SHARED_DATA / "obs_test/tests/policyTest/a/repositoryCfg.yaml")


@pytest.fixture
def policy() -> Policy:
    return Policy({"body": {"job": {"position": "Developer", "company": "Microsoft"}, "name": "John"},
                   "error": False})


def test_empty_and_set_replaces_mapping():
    p = Policy()
    assert p == {} and len(p) == 0
    p["a"] = {1: 2}
    assert p == {"a": {1: 2}}
    p["a"] = {3: 4}
    assert p == {"a": {3: 4}}


def test_dotted_get(policy):
    assert policy["body.job"] == {"position": "Developer", "company": "Microsoft"}
    assert policy["body.job.position"] == "Developer"
    assert isinstance(policy["body"], Policy)
    assert policy["body"]["job.company"] == "Microsoft"
    assert policy["error"] is False


def test_missing_reads_as_none_and_get_default(policy):
    assert policy["nope"] is None
    assert policy["body.job.nope"] is None
    assert policy["error.deeper"] is None
    assert policy.get("body.nope", 5) == 5
    assert policy.get("error", 5) is False
    assert policy.get("body.name") == "John"


def test_contains(policy):
    assert "body.job.position" in policy
    assert "body" in policy
    assert "body.job.salary" not in policy
    assert "error.x" not in policy


def test_set_creates_levels(policy):
    policy["body.job.company"] = "SLAC"
    policy["body.job.salary"] = 100000
    policy["x.y.z"] = 1
    assert policy["body.job"] == {"position": "Developer", "company": "SLAC", "salary": 100000}
    assert policy["x"] == {"y": {"z": 1}}


def test_sub_policy_is_a_view(policy):
    policy["body"]["job.position"] = "Manager"
    assert policy["body.job.position"] == "Manager"


def test_construction_copies(policy):
    source = {"a": {"b": [1, 2]}}
    p = Policy(source)
    p["a.b"].append(3)
    p["a.c"] = 1
    assert source == {"a": {"b": [1, 2]}}
    other = Policy(policy)
    other["body.name"] = "Jane"
    assert policy["body.name"] == "John"
    assert copy.deepcopy(policy) == policy


def test_update_is_recursive_and_other_wins(policy):
    policy.update({"body": {"job": {"position": "Manager"}}})
    assert policy["body"] == {"job": {"position": "Manager", "company": "Microsoft"}, "name": "John"}
    policy.update(Policy({"body": {"name": {"first": "John", "last": "Smith"}}}))
    assert policy["body.name"] == {"first": "John", "last": "Smith"}
    p = Policy({"a": {1: 2}})
    p.update({"a": {3: 4}})
    assert p == {"a": {1: 2, 3: 4}}


def test_merge_adds_only_missing_and_leaves_other():
    a, b = Policy(), Policy()
    a["a.b.c"] = 1
    b["a.b.c"] = 2
    b["a.b.d"] = 3
    b["e"] = {"f": [1]}
    a.merge(b)
    assert a["a.b.c"] == 1 and a["a.b.d"] == 3
    assert b == {"a": {"b": {"c": 2, "d": 3}}, "e": {"f": [1]}}
    a["e.f"].append(2)
    assert b["e.f"] == [1]


def test_names(policy):
    assert sorted(policy.names()) == sorted(
        ["body", "body.job", "body.job.position", "body.job.company", "body.name", "error"])
    assert policy.names(topLevelOnly=True) == ["body", "error"]


def test_mapping_protocol(policy):
    assert list(policy) == ["body", "error"] == list(policy.keys())
    assert dict(policy.items())["body"] == policy["body"]
    assert isinstance(policy.values()[0], Policy)
    assert policy.toDict() == {"body": {"job": {"position": "Developer", "company": "Microsoft"},
                                        "name": "John"}, "error": False}
    assert type(policy.toDict()["body"]) is dict
    assert policy != {"body": {}}
    del policy["body.job"]
    assert "body.job" not in policy
    with pytest.raises(KeyError):
        del policy["body.job"]


def test_pickle(policy):
    assert pickle.loads(pickle.dumps(policy)) == policy


def test_dump_round_trip(policy, tmp_path):
    path = tmp_path / "sub" / "dump.yaml"
    policy["list"] = [1, "two", {"three": 3.0}]
    policy.dumpToFile(path)
    assert Policy(str(path)) == policy
    assert Policy(path) == policy
    assert [p.name for p in path.parent.iterdir()] == ["dump.yaml"]  # no temporary left


def test_file_errors(tmp_path):
    with pytest.raises(OSError, match="nonExistantPath"):
        Policy("/nonExistantPath/policy.yaml")
    with pytest.raises(OSError):
        Policy("/nonExistantPath/policy.paf")
    with pytest.raises(RuntimeError):
        Policy("/policy.txt")
    with pytest.raises(PolicyError):
        Policy(3)
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(PolicyError):
        Policy(str(bad))
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("a: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(UnsafeYamlError, match="unsafe.yaml"):
        Policy(str(unsafe))


def test_file_reread_after_change(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a: 1\n")
    first = Policy(str(path))
    first["a"] = 5
    assert Policy(str(path))["a"] == 1  # the cached parse is never handed out
    path.write_text("a: 22\nb: 3\n")
    assert Policy(str(path)) == {"a": 22, "b": 3}


def test_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert Policy(str(path)) == {}


@pytest.mark.needs_shared_data
def test_embedded_legacy_policy_file():
    from butler.cfg import load_yaml

    cfg = load_yaml(POLICY_A)
    assert cfg.policy["exposures.raw.template"] == "raw/v%(visit)d_f%(filter)s.fits.gz"


def test_default_policy_file(monkeypatch, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__import__("butler").__file__)))
    for product in ("butler", "daf_persistence", "obs_test"):
        monkeypatch.delenv(f"{product.upper()}_DIR", raising=False)
        assert Policy.defaultPolicyFile(product, "x.yaml", "policy") == os.path.join(root, "policy", "x.yaml")
    assert Policy.defaultPolicyFile("butler", "policy/x.yaml") == os.path.join(root, "policy", "x.yaml")
    monkeypatch.setenv("OBS_FOO_DIR", str(tmp_path))
    assert Policy.defaultPolicyFile("obs_foo", "f.yaml", "policy") == str(tmp_path / "policy" / "f.yaml")
    assert Policy.defaultPolicyFile("yaml", "x").startswith(os.path.dirname(__import__("yaml").__file__))
    with pytest.raises(PolicyError):
        Policy.defaultPolicyFile("no_such_product_here", "x.yaml")


def test_dump_replaces_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "dump.yaml"
    Policy({"name": "caméra", "n": 1}).dumpToFile(path)
    assert Policy(path) == {"name": "caméra", "n": 1}  # UTF-8 whatever the locale
    unwritable = Policy({"n": 2})
    unwritable["obj"] = object()
    with pytest.raises(Exception, match="object"):
        unwritable.dumpToFile(path)
    assert Policy(path) == {"name": "caméra", "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["dump.yaml"]
