"""The repository graph as pure logic: no files, a dict stands for the disk."""

from __future__ import annotations

import pytest

from butler.cfg import RepositoryArgs, RepositoryCfg
from butler.errors import MapperError, ParentsMismatch, RepositoryError, RepositoryModeError
from butler.graph import RepoSpec, build_graph

MAPPER_A = "butler.test.EmptyTestMapper"
MAPPER_B = "butler.test.MapperForTestWriting"


class FakeDisk:
    """``describe(root)`` over a dict of cfgs and legacy markers."""

    def __init__(self, **specs: RepoSpec):
        self.specs = {f"/{name}": spec for name, spec in specs.items()}
        self.described: list[str] = []

    def __call__(self, root: str) -> RepoSpec:
        self.described.append(root)
        return self.specs.get(root, RepoSpec(root=root, present=False))


def cfg(name: str, parents=(), mapper=MAPPER_A) -> RepoSpec:
    return RepoSpec(root=f"/{name}", cfg=RepositoryCfg(root=f"/{name}", mapper=mapper, mapperArgs=None,
                                                       parents=[f"/{p}" for p in parents], policy=None))


def args(name: str, **kw) -> RepositoryArgs:
    return RepositoryArgs(root=f"/{name}", **kw)


def roots(nodes) -> list[str]:
    return [n.root for n in nodes]


def test_inputs_then_parents_depth_first_left_to_right():
    disk = FakeDisk(a=cfg("a"), b=cfg("b", ["a"]), c=cfg("c", ["a"]), d=cfg("d", ["b", "c"]),
                    e=cfg("e"))
    graph = build_graph([args("d"), args("e")], [], disk)
    assert roots(graph.search_order()) == ["/d", "/b", "/a", "/c", "/e"]


def test_readable_output_comes_first_and_write_only_output_is_not_searched():
    disk = FakeDisk(a=cfg("a"))
    rw = build_graph([args("a")], [args("out", mode="rw")], disk)
    assert roots(rw.search_order()) == ["/out", "/a"]
    w = build_graph([args("a")], [args("out")], disk)
    assert roots(w.search_order()) == ["/a"]
    assert w.outputs[0].mustWriteCfg
    assert w.outputs[0].cfg.parents == ["/a"]


def test_tags_restrict_search_and_are_inherited_by_parents():
    disk = FakeDisk(base=cfg("base"), v1=cfg("v1", ["base"]), v2=cfg("v2", ["base"]))
    graph = build_graph([args("v1", tags="one"), args("v2", tags={"two"})], [], disk)
    assert roots(graph.search_order({"one"})) == ["/v1", "/base"]
    assert roots(graph.search_order({"two"})) == ["/base", "/v2"][::-1]
    assert roots(graph.search_order({"three"})) == []
    assert roots(graph.search_order()) == ["/v1", "/base", "/v2"]


def test_each_repository_is_visited_once_in_a_diamond():
    disk = FakeDisk(a=cfg("a"), b=cfg("b", ["a"]), c=cfg("c", ["a"]))
    graph = build_graph([args("b"), args("c")], [], disk)
    order = graph.search_order()
    assert roots(order) == ["/b", "/a", "/c"]
    assert len({id(n) for n in order}) == 3


def test_modes_are_enforced():
    disk = FakeDisk(a=cfg("a"))
    with pytest.raises(RepositoryModeError):
        build_graph([args("a", mode="w")], [], disk)
    with pytest.raises(RepositoryModeError):
        build_graph([], [args("out", mode="r")], disk)
    with pytest.raises(RepositoryModeError, match="only output"):
        build_graph([args("a")], [args("o1", mode="rw"), args("o2")], disk)
    graph = build_graph([args("a", mode="rw")], [], disk)
    assert graph.inputs[0].mode == "rw"


def test_missing_input_is_an_error():
    with pytest.raises(RepositoryError, match="/nowhere"):
        build_graph([args("nowhere")], [], FakeDisk())


def test_mapper_inferred_from_uniform_inputs_and_conflict_is_an_error():
    disk = FakeDisk(a=cfg("a"), b=cfg("b"), c=cfg("c", mapper=MAPPER_B))
    graph = build_graph([args("a"), args("b")], [args("out")], disk)
    assert graph.outputs[0].cfg.mapper == MAPPER_A
    with pytest.raises(MapperError, match="different mappers"):
        build_graph([args("a"), args("c")], [args("out")], disk)
    explicit = build_graph([args("a"), args("c")], [args("out", mapper=MAPPER_B)], disk)
    assert explicit.outputs[0].cfg.mapper == MAPPER_B


def test_legacy_input_is_recorded_as_a_nested_cfg_with_its_mapper_args():
    disk = FakeDisk(old=RepoSpec(root="/old", legacyMapper=MAPPER_A, hasRegistry=True))
    graph = build_graph([args("old", mapperArgs={"calibRoot": "/calib"})], [args("out")], disk)
    (parent,) = graph.outputs[0].cfg.parents
    assert isinstance(parent, RepositoryCfg)
    assert parent.root == "/old"
    assert parent.mapperArgs == {"calibRoot": "/calib"}
    assert graph.inputs[0].legacy


def test_legacy_parent_link_is_followed():
    disk = FakeDisk(child=RepoSpec(root="/child", legacyParent="/parent"),
                    parent=RepoSpec(root="/parent", legacyMapper=MAPPER_A))
    graph = build_graph([args("child")], [], disk)
    assert roots(graph.search_order()) == ["/child", "/parent"]


def test_missing_recorded_parent_is_skipped():
    disk = FakeDisk(calib=cfg("calib", ["gone"]))
    graph = build_graph([args("calib")], [], disk)
    assert roots(graph.search_order()) == ["/calib"]


def test_reopening_an_output():
    disk = FakeDisk(a=cfg("a"), b=cfg("b"), out=cfg("out", ["a"]))
    same = build_graph([args("a")], [args("out")], disk)
    assert not same.outputs[0].mustWriteCfg
    extended = build_graph([args("a"), args("b")], [args("out")], disk)
    assert extended.outputs[0].mustWriteCfg
    assert extended.outputs[0].cfg.parents == ["/a", "/b"]
    with pytest.raises(ParentsMismatch):
        build_graph([args("b")], [args("out")], disk)
    with pytest.raises(ParentsMismatch):
        build_graph([], [args("out")], disk)
    alone = build_graph([], [args("out", mode="rw")], disk)
    assert roots(alone.search_order()) == ["/out", "/a"]
