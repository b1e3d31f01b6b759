"""The repository graph as pure logic: no files, a dict stands for the disk."""

from __future__ import annotations

import time

import attrs
import pytest

from butler.cfg import RepositoryArgs, RepositoryCfg
from butler.errors import MapperError, ParentCycleError, ParentsMismatch, RepositoryError, RepositoryModeError
from butler.graph import MissingParent, RepoSpec, build_graph

MAPPER_A = "butler.test.EmptyTestMapper"
MAPPER_B = "butler.test.MapperForTestWriting"


class FakeDisk:
    """``describe(root)`` over a dict of cfgs and legacy markers; ``links`` maps a root to its real one."""

    def __init__(self, links: dict[str, str] | None = None, **specs: RepoSpec):
        self.specs = {f"/{name}": spec for name, spec in specs.items()}
        self.links = {f"/{link}": f"/{real}" for link, real in (links or {}).items()}
        self.described: list[str] = []

    def __call__(self, root: str) -> RepoSpec:
        self.described.append(root)
        real = self.links.get(root, root)
        spec = self.specs.get(real, RepoSpec(root=real, present=False))
        return attrs.evolve(spec, root=root, identity=real)


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


def test_recorded_parent_cfg_without_a_root_is_an_error():
    nested = RepositoryCfg(root=None, mapper=MAPPER_A, mapperArgs=None, parents=[], policy=None)
    child = RepoSpec(root="/a", cfg=RepositoryCfg(root="/a", mapper=MAPPER_A, mapperArgs=None,
                                                  parents=[nested], policy=None))
    with pytest.raises(RepositoryError, match="names no root"):
        build_graph([args("a")], [], FakeDisk(a=child))


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


def test_missing_recorded_parent_is_a_gap_where_the_search_would_reach_it():
    disk = FakeDisk(calib=cfg("calib", ["gone"]), a=cfg("a"), b=cfg("b"), x=cfg("x", ["a", "lost", "b"]))
    graph = build_graph([args("calib")], [], disk)
    assert roots(graph.search_order()) == ["/calib"]
    assert graph.missing_parents() == {1: MissingParent(root="/gone", recordedBy="/calib")}
    middle = build_graph([args("x")], [], disk)
    assert roots(middle.search_order()) == ["/x", "/a", "/b"]
    assert middle.missing_parents() == {2: MissingParent(root="/lost", recordedBy="/x")}
    assert middle.missing_parents({"untagged"}) == {}


def test_lone_rw_output_keeps_its_missing_parents_in_place():
    disk = FakeDisk(a=cfg("a"), out=cfg("out", ["gone", "a"]))
    graph = build_graph([], [args("out", mode="rw")], disk)
    assert roots(graph.search_order()) == ["/out", "/a"]
    assert graph.missing_parents() == {1: MissingParent(root="/gone", recordedBy="/out")}
    assert not graph.outputs[0].mustWriteCfg


# -- one repository, several spellings -------------------------------------------------------

def test_output_that_is_an_input_under_another_spelling_is_refused():
    disk = FakeDisk(links={"a_link": "a"}, a=cfg("a"))
    with pytest.raises(RepositoryError, match="both an input and an output"):
        build_graph([args("a")], [args("a_link")], disk)
    with pytest.raises(RepositoryError, match="both an input and an output"):
        build_graph([args("a_link")], [args("a", mode="rw")], disk)


def test_two_spellings_of_one_output_are_refused():
    disk = FakeDisk(links={"o_link": "o"}, a=cfg("a"))
    with pytest.raises(RepositoryError, match="one repository"):
        build_graph([args("a")], [args("o"), args("o_link")], disk)


def test_two_spellings_of_one_input_are_one_node():
    disk = FakeDisk(links={"a_link": "a"}, a=cfg("a"), b=cfg("b", ["a_link"]))
    graph = build_graph([args("b"), args("a")], [], disk)
    order = graph.search_order()
    assert roots(order) == ["/b", "/a"]
    assert graph.inputs[1] is order[1]


# -- cycles and depth --------------------------------------------------------------------------

@pytest.mark.parametrize("disk, start, cycle", [
    (FakeDisk(a=cfg("a", ["a"])), "a", ["/a", "/a"]),  # _parents: [.]
    (FakeDisk(a=cfg("a", ["b"]), b=cfg("b", ["a"])), "a", ["/a", "/b", "/a"]),
    (FakeDisk(top=cfg("top", ["a"]), a=cfg("a", ["b"]), b=cfg("b", ["a"])), "top", ["/a", "/b", "/a"]),
    (FakeDisk(v1=RepoSpec(root="/v1", legacyMapper=MAPPER_A, legacyParent="/v1")), "v1", ["/v1", "/v1"]),
    (FakeDisk(links={"a_link": "a"}, a=cfg("a", ["a_link"])), "a", ["/a", "/a_link"]),
], ids=["self", "a-b", "below-an-input", "legacy-link-to-itself", "through-a-link"])
def test_parent_cycle_is_an_error_naming_the_repositories(disk, start, cycle):
    with pytest.raises(ParentCycleError) as err:
        build_graph([args(start)], [], disk)
    assert err.value.roots == cycle
    assert " -> ".join(cycle) in str(err.value)


def test_output_that_is_already_an_ancestor_of_its_input_is_a_cycle():
    disk = FakeDisk(out=cfg("out"), mid=cfg("mid", ["out"]), top=cfg("top", ["mid"]))
    with pytest.raises(ParentCycleError) as err:
        build_graph([args("top")], [args("out")], disk)
    assert err.value.roots == ["/out", "/top", "/mid", "/out"]


def test_a_chain_of_two_thousand_builds_quickly():
    depth = 2000
    disk = FakeDisk(c0=cfg("c0"), **{f"c{i}": cfg(f"c{i}", [f"c{i - 1}"]) for i in range(1, depth)})
    start = time.perf_counter()
    graph = build_graph([args(f"c{depth - 1}", tags="t")], [args("out")], disk)
    order = graph.search_order({"t"})
    elapsed = time.perf_counter() - start
    assert len(order) == depth and order[-1].root == "/c0" and "t" in order[-1].tags
    assert elapsed < 2.0


# -- outputs: mapper, reopening, cfgRoot -------------------------------------------------------

def test_output_without_a_mapper_is_refused():
    disk = FakeDisk(a=cfg("a", mapper=None))
    with pytest.raises(MapperError, match="'/out' has no mapper"):
        build_graph([], [args("out")], disk)
    with pytest.raises(MapperError, match="no mapper"):
        build_graph([args("a")], [args("out")], disk)


def test_reopened_output_keeps_its_mapper_mapper_args_and_policy():
    recorded = RepoSpec(root="/out", cfg=RepositoryCfg(root="/out", mapper=MAPPER_A, mapperArgs={"x": 1},
                                                       parents=[], policy={"p": 1}))
    disk = FakeDisk(out=recorded)
    same = build_graph([], [args("out", mapper=MAPPER_A, mapperArgs={"x": 1}, policy={"p": 1})], disk)
    assert not same.outputs[0].mustWriteCfg
    with pytest.raises(MapperError, match="records mapper"):
        build_graph([], [args("out", mapper=MAPPER_B)], disk)
    with pytest.raises(RepositoryError, match="records mapperArgs"):
        build_graph([], [args("out", mapperArgs={"x": 2})], disk)
    with pytest.raises(RepositoryError, match="records mapperArgs"):
        build_graph([], [args("out", mapperArgs={})], disk)
    with pytest.raises(RepositoryError, match="policy"):
        build_graph([], [args("out", policy={"p": 2})], disk)


def test_output_cfg_lives_at_its_cfg_root():
    disk = FakeDisk(a=cfg("a"))
    graph = build_graph([args("a")], [RepositoryArgs(cfgRoot="/cfgs", root="/data")], disk)
    (out,) = graph.outputs
    assert (out.root, out.location, out.mustWriteCfg) == ("/data", "/cfgs", True)
    assert out.cfg.parents == ["/a"]


def test_v1_parent_recorded_by_path_opens_with_its_childs_mapper_args():
    child = RepoSpec(root="/b", cfg=RepositoryCfg(root="/b", mapper=MAPPER_A, mapperArgs={"calib": "foo"},
                                                  parents=["/a"], policy=None))
    disk = FakeDisk(a=RepoSpec(root="/a", legacyMapper=MAPPER_A), b=child)
    graph = build_graph([args("b")], [], disk)
    assert graph.search_order()[1].cfg.mapperArgs == {"calib": "foo"}
    alone = build_graph([], [args("b", mode="rw")], disk)
    assert alone.inputs[0].cfg.mapperArgs == {"calib": "foo"}
    assert not alone.outputs[0].mustWriteCfg


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
