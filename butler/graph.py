"""The repository graph: parents, modes, tags, mapper inference and search order.

Pure logic. The graph is built once, when a Butler is made, from the user's
input and output arguments and from what is already on disk; what is on disk
reaches it only through a ``describe`` callable returning `RepoSpec` values, so
the rules can be tested without files.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Sequence

import attrs

from .cfg import RepositoryArgs, RepositoryCfg, resolve_mapper_name
from .errors import MapperError, ParentsMismatch, RepositoryError, RepositoryModeError

__all__ = ["RepoSpec", "RepositoryNode", "RepositoryGraph", "build_graph"]

_log = logging.getLogger(__name__)

INPUT_MODES = ("r", "rw")
OUTPUT_MODES = ("w", "rw")


@attrs.frozen
class RepoSpec:
    """What is on disk at one repository root.

    Parameters
    ----------
    root : `str`
        Absolute root of the repository.
    cfg : `RepositoryCfg` or `None`
        The persisted ``repositoryCfg.yaml``, if any.
    legacyMapper : `str` or `None`
        The class named by a ``_mapper`` file at the root or up its ``_parent`` links.
    legacyParent : `str` or `None`
        Absolute path of the ``_parent`` link's target.
    hasRegistry : `bool`
        The root holds ``registry.sqlite3``.
    present : `bool`
        The root directory exists.
    """

    root: str
    cfg: RepositoryCfg | None = None
    legacyMapper: str | None = None
    legacyParent: str | None = None
    hasRegistry: bool = False
    present: bool = True

    @property
    def isLegacy(self) -> bool:
        """An old-style (V1) repository: no cfg, but a ``_mapper``, ``_parent`` or registry."""
        return self.cfg is None and (self.legacyMapper is not None or self.legacyParent is not None
                                     or self.hasRegistry)

    @property
    def exists(self) -> bool:
        """Something at the root makes it a repository."""
        return self.cfg is not None or self.isLegacy


@attrs.define(eq=False, repr=False)
class RepositoryNode:
    """One repository in the graph.

    Attributes
    ----------
    cfg : `RepositoryCfg`
        The effective configuration (persisted, synthesized for a V1
        repository, or new for a new output).
    mode : `str`
        ``'r'``, ``'w'`` or ``'rw'``.
    tags : `frozenset`
        Tags given to this repository (inputs and outputs) or inherited from
        the repositories it is a parent of.
    role : `str`
        ``'output'``, ``'input'`` or ``'parent'``.
    parents : `list` of `RepositoryNode`
        Parents in search order.
    legacy : `bool`
        An old-style repository: its cfg is never written.
    mustWriteCfg : `bool`
        The cfg is new or extended and must be persisted.
    hasRegistry : `bool`
        The root holds ``registry.sqlite3``.
    """

    cfg: RepositoryCfg
    mode: str
    role: str
    tags: frozenset = frozenset()
    parents: list["RepositoryNode"] = attrs.Factory(list)
    legacy: bool = False
    mustWriteCfg: bool = False
    hasRegistry: bool = False

    @property
    def root(self) -> str:
        """Absolute root of the repository."""
        return self.cfg.root

    @property
    def readable(self) -> bool:
        """Reads may search this repository."""
        return "r" in self.mode

    @property
    def writable(self) -> bool:
        """Writes may go to this repository."""
        return "w" in self.mode

    def __repr__(self) -> str:
        return f"RepositoryNode({self.root!r}, mode={self.mode!r}, role={self.role!r}, tags={set(self.tags)!r})"


@attrs.define(eq=False)
class RepositoryGraph:
    """The repositories of one Butler and the order reads search them in.

    Attributes
    ----------
    outputs : `list` of `RepositoryNode`
        The output repositories, in the order given.
    inputs : `list` of `RepositoryNode`
        The input repositories, in the order given (parents not included).
    """

    outputs: list[RepositoryNode]
    inputs: list[RepositoryNode]
    _orders: dict = attrs.field(factory=dict, init=False)

    def search_order(self, tags: Iterable = ()) -> list[RepositoryNode]:
        """Return the repositories a read searches, in order.

        Readable outputs first, then each input followed depth-first by its
        parents, each repository once. With tags, only the outputs and inputs
        carrying one of them are searched, each with all of its parents.
        """
        key = frozenset(tags)
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = self._read_order(key)
        return order

    def _read_order(self, tags: frozenset) -> list[RepositoryNode]:
        seen: set[int] = set()
        order: list[RepositoryNode] = []

        def visit(node: RepositoryNode) -> None:
            if id(node) in seen:
                return
            seen.add(id(node))
            order.append(node)
            for parent in node.parents:
                visit(parent)

        def selected(node: RepositoryNode) -> bool:
            return not tags or bool(node.tags & tags)

        for node in self.outputs:
            if node.readable and selected(node):
                seen.add(id(node))
                order.append(node)
        for node in self.inputs:
            if selected(node):
                visit(node)
        return order

    def all_nodes(self) -> list[RepositoryNode]:
        """Every repository: outputs (readable or not), then the read order."""
        nodes = list(self.outputs)
        nodes += [n for n in self.search_order() if n not in nodes]
        return nodes


class _Builder:
    """Builds a `RepositoryGraph`; one instance per Butler construction."""

    def __init__(self, describe: Callable[[str], RepoSpec]):
        self._describe = describe
        self._specs: dict[str, RepoSpec] = {}
        self._nodes: dict[str, RepositoryNode] = {}

    def spec(self, root: str) -> RepoSpec:
        spec = self._specs.get(root)
        if spec is None:
            spec = self._specs[root] = self._describe(root)
        return spec

    # -- nodes for existing repositories ------------------------------------------------

    def existing_node(self, args: RepositoryArgs | RepositoryCfg, role: str, mode: str,
                      tags: frozenset = frozenset()) -> RepositoryNode:
        """The node of an existing repository (an input or a parent), with its parents."""
        root = args.root
        given = args if isinstance(args, RepositoryCfg) else None
        node = self._nodes.get(root)
        if node is not None:
            node.tags = node.tags | tags
            self._propagate_tags(node, tags)
            return node
        spec = self.spec(root)
        if given is None and not spec.exists:
            raise RepositoryError(f"no repository at {root!r}: no repositoryCfg.yaml, _mapper, _parent "
                                  f"or registry.sqlite3 there")
        cfg = given if given is not None else self._effective_cfg(spec, args)
        node = RepositoryNode(cfg=cfg, mode=mode, role=role, tags=tags, legacy=spec.isLegacy,
                              hasRegistry=spec.hasRegistry)
        self._nodes[root] = node
        node.parents = self.parent_nodes(self._parent_entries(spec, cfg), tags)
        return node

    def parent_nodes(self, entries: Iterable[str | RepositoryCfg], tags: frozenset) -> list[RepositoryNode]:
        """The nodes of recorded parents; a parent whose root is gone is skipped with a warning.

        Legacy cfgs written elsewhere record absolute parent roots on their
        author's machine; a repository must still open without them.
        """
        nodes = []
        for entry in entries:
            root = entry.root if isinstance(entry, RepositoryCfg) else entry
            if not self.spec(root).present:
                _log.warning("parent repository %r does not exist; it is left out of the search", root)
                continue
            if isinstance(entry, RepositoryCfg):
                nodes.append(self.existing_node(entry, "parent", "r", tags))
            else:
                nodes.append(self.existing_node(RepositoryArgs(root=root, mode="r"), "parent", "r", tags))
        return nodes

    def _propagate_tags(self, node: RepositoryNode, tags: frozenset) -> None:
        for parent in node.parents:
            if not tags <= parent.tags:
                parent.tags = parent.tags | tags
                self._propagate_tags(parent, tags)

    @staticmethod
    def _parent_entries(spec: RepoSpec, cfg: RepositoryCfg) -> list:
        if cfg.parents:
            return list(cfg.parents)
        if spec.legacyParent is not None:
            return [spec.legacyParent]
        return []

    @staticmethod
    def _effective_cfg(spec: RepoSpec, args: RepositoryArgs) -> RepositoryCfg:
        """The cfg of an existing repository as the arguments open it."""
        if spec.cfg is not None:
            cfg = spec.cfg
            if args.mapper is None and not args.mapperArgs and args.policy is None:
                return cfg
            return RepositoryCfg(root=spec.root, mapper=args.mapper or cfg.mapper,
                                 mapperArgs=args.mapperArgs or cfg.mapperArgs,
                                 parents=list(cfg.parents), policy=args.policy or cfg.policy)
        parents = [spec.legacyParent] if spec.legacyParent is not None else []
        return RepositoryCfg(root=spec.root, mapper=args.mapper or spec.legacyMapper,
                             mapperArgs=args.mapperArgs, parents=parents, policy=args.policy)

    def parent_entry(self, node: RepositoryNode) -> str | RepositoryCfg:
        """How an output records an input as a parent: a path, or a nested cfg.

        A nested cfg is recorded for an old-style repository and for a
        repository opened with arguments that differ from its persisted cfg.
        """
        spec = self.spec(node.root)
        if spec.cfg is not None and node.cfg is spec.cfg:
            return node.root
        return node.cfg

    # -- outputs ------------------------------------------------------------------------

    def output_node(self, args: RepositoryArgs, inputs: list[RepositoryNode]) -> RepositoryNode:
        mode = args.mode or "w"
        spec = self.spec(args.root)
        entries = [self.parent_entry(n) for n in inputs]
        if spec.cfg is not None:
            cfg, must_write = self._reopen(spec.cfg, entries, mode, args)
        else:
            mapper = args.mapper or spec.legacyMapper or infer_mapper(inputs, args.root)
            if spec.legacyParent is not None:
                entries = [spec.legacyParent] + [e for e in entries if e != spec.legacyParent]
            cfg = RepositoryCfg(root=args.root, mapper=mapper, mapperArgs=args.mapperArgs,
                                parents=entries, policy=args.policy)
            must_write = not spec.isLegacy
        node = RepositoryNode(cfg=cfg, mode=mode, role="output", tags=frozenset(args.tags or ()),
                              legacy=spec.isLegacy, mustWriteCfg=must_write, hasRegistry=spec.hasRegistry)
        self._nodes[args.root] = node
        return node

    @staticmethod
    def _reopen(cfg: RepositoryCfg, entries: list, mode: str,
                args: RepositoryArgs) -> tuple[RepositoryCfg, bool]:
        """Check the parents an existing output is reopened with; extend them if asked."""
        recorded = list(cfg.parents)
        if not entries:
            if recorded and mode == "w":
                raise ParentsMismatch(
                    f"output repository {cfg.root!r} was written with parents {_roots(recorded)}; "
                    f"reopen it with those inputs (or in mode 'rw' to read them back)")
            return cfg, False
        if entries == recorded:
            return cfg, False
        updated = attrs.evolve(cfg, parents=recorded)
        try:
            updated.extendParents(entries)
        except ParentsMismatch as exc:
            raise ParentsMismatch(
                f"output repository {cfg.root!r} has parents {_roots(recorded)}; the inputs "
                f"{_roots(entries)} neither equal them nor extend them at the end") from exc
        if args.mapper is not None and resolve_mapper_name(args.mapper) != resolve_mapper_name(cfg.mapper):
            raise MapperError(f"output repository {cfg.root!r} uses mapper {cfg.mapper!r}, "
                              f"not {args.mapper!r}")
        return updated, True


def _roots(entries: Iterable[str | RepositoryCfg]) -> list[str]:
    """The roots of parent entries (paths or nested cfgs), for messages."""
    return [e.root if isinstance(e, RepositoryCfg) else e for e in entries]


def infer_mapper(inputs: Sequence[RepositoryNode], root: str) -> Any:
    """The mapper an output without one takes: its inputs' mapper, when they all agree."""
    mappers = [n.cfg.mapper for n in inputs if n.cfg.mapper is not None]
    names = {resolve_mapper_name(m) for m in mappers}
    if len(names) > 1:
        raise MapperError(f"cannot infer a mapper for output {root!r}: the inputs use different mappers "
                          f"{sorted(names)}; give the output a mapper")
    return mappers[0] if mappers else None


def _check_roles(inputs: Sequence[RepositoryArgs | RepositoryCfg], outputs: Sequence[RepositoryArgs]) -> None:
    """A repository is an input or an output, never both (it would be its own parent)."""
    output_roots = {a.root for a in outputs}
    for args in inputs:
        root = args.root
        if root in output_roots:
            raise RepositoryError(f"repository {root!r} is given as both an input and an output; to read "
                                  f"and write one repository, give it as the only output, in mode 'rw'")


def _check_modes(inputs: Sequence[RepositoryArgs], outputs: Sequence[RepositoryArgs]) -> None:
    for args in inputs:
        if (args.mode or "r") not in INPUT_MODES:
            raise RepositoryModeError(f"input repository {args.root!r} has mode {args.mode!r}; "
                                      f"inputs must be readable ('r' or 'rw')")
    for args in outputs:
        if (args.mode or "w") not in OUTPUT_MODES:
            raise RepositoryModeError(f"output repository {args.root!r} has mode {args.mode!r}; "
                                      f"outputs must be writable ('w' or 'rw')")
        if args.mode == "rw" and len(outputs) > 1:
            raise RepositoryModeError(f"output repository {args.root!r} has mode 'rw', so it must be "
                                      f"the only output; {len(outputs)} outputs were given")


def build_graph(inputs: Sequence[RepositoryArgs | RepositoryCfg], outputs: Sequence[RepositoryArgs],
                describe: Callable[[str], RepoSpec]) -> RepositoryGraph:
    """Build the repository graph of one Butler.

    Parameters
    ----------
    inputs : sequence of `RepositoryArgs` or `RepositoryCfg`
        The inputs, in search order; roots are absolute.
    outputs : sequence of `RepositoryArgs`
        The outputs; roots are absolute.
    describe : callable
        ``describe(root) -> RepoSpec``: what is on disk at a root.

    Raises
    ------
    RepositoryModeError
        An input that is write-only, an output that is read-only, or an 'rw'
        output that is not the only output.
    RepositoryError
        An input that is not a repository.
    ParentsMismatch
        An existing output reopened with inputs that are not its recorded parents.
    MapperError
        An output whose mapper cannot be inferred from its inputs.
    """
    input_args = [a for a in inputs if isinstance(a, RepositoryArgs)]
    _check_modes(input_args, outputs)
    _check_roles(inputs, outputs)
    builder = _Builder(describe)
    input_nodes = [_input_node(builder, a) for a in inputs]
    if not input_nodes:
        input_nodes = _recorded_parents_as_inputs(builder, outputs)
    output_nodes = [builder.output_node(a, input_nodes) for a in outputs]
    for node in output_nodes:
        node.parents = input_nodes
    return RepositoryGraph(outputs=output_nodes, inputs=input_nodes)


def _input_node(builder: _Builder, args: RepositoryArgs | RepositoryCfg) -> RepositoryNode:
    if isinstance(args, RepositoryCfg):
        return builder.existing_node(args, "input", "r")
    tags = frozenset(args.tags or ())
    return builder.existing_node(args, "input", args.mode or "r", tags)


def _recorded_parents_as_inputs(builder: _Builder, outputs: Sequence[RepositoryArgs]) -> list[RepositoryNode]:
    """A lone 'rw' output reopened without inputs reads its recorded parents back."""
    if len(outputs) != 1 or outputs[0].mode != "rw":
        return []
    spec = builder.spec(outputs[0].root)
    if spec.cfg is None:
        return []
    return builder.parent_nodes(spec.cfg.parents, frozenset())
