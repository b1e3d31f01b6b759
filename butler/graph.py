"""The repository graph: parents, modes, tags, mapper inference and search order.

Pure logic. The graph is built once, when a Butler is made, from the user's
input and output arguments and from what is already on disk; what is on disk
reaches it only through a ``describe`` callable returning `RepoSpec` values, so
the rules can be tested without files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from .cfg import RepositoryArgs, RepositoryCfg, resolve_mapper_name
from .errors import MapperError, ParentCycleError, ParentsMismatch, RepositoryError, RepositoryModeError

__all__ = ["MissingParent", "RepoSpec", "RepositoryNode", "RepositoryGraph", "build_graph"]

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
        Absolute path of the ``_parent`` link's target (which may not exist).
    hasRegistry : `bool`
        The root holds ``registry.sqlite3``.
    present : `bool`
        The root directory exists.
    identity : `str` or `None`
        What the root really is (its symlink-resolved path, or a normalised
        URI): two roots with one identity are one repository. `None` means
        the root itself.
    """

    root: str
    cfg: RepositoryCfg | None = None
    legacyMapper: str | None = None
    legacyParent: str | None = None
    hasRegistry: bool = False
    present: bool = True
    identity: str | None = None

    @property
    def isLegacy(self) -> bool:
        """An old-style (V1) repository: no cfg, but a ``_mapper``, ``_parent`` or registry."""
        return self.cfg is None and (self.legacyMapper is not None or self.legacyParent is not None
                                     or self.hasRegistry)

    @property
    def exists(self) -> bool:
        """Something at the root makes it a repository."""
        return self.cfg is not None or self.isLegacy

    @property
    def key(self) -> str:
        """The identity of the repository: equal for every spelling of one root."""
        return self.identity if self.identity is not None else self.root


@attrs.frozen
class MissingParent:
    """A parent recorded by a repository that does not exist.

    Attributes
    ----------
    root : `str`
        The recorded root of the missing parent.
    recordedBy : `str`
        The root of the repository that records it.
    """

    root: str
    recordedBy: str


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
    cfgRoot : `str` or `None`
        Where the cfg lives when not at the root (`RepositoryArgs.cfgRoot`).
    gaps : `list` of ``(int, MissingParent)``
        Recorded parents that do not exist, each with the index in
        ``parents`` it comes before: a read that reaches one stops there.
    """

    cfg: RepositoryCfg
    mode: str
    role: str
    tags: frozenset = frozenset()
    parents: list[RepositoryNode] = attrs.Factory(list)
    legacy: bool = False
    mustWriteCfg: bool = False
    hasRegistry: bool = False
    cfgRoot: str | None = None
    gaps: list[tuple[int, MissingParent]] = attrs.Factory(list)

    @property
    def root(self) -> str:
        """Absolute root of the repository."""
        return _entry_root(self.cfg)

    @property
    def location(self) -> str:
        """Where the repository's cfg is read and written: ``cfgRoot``, else the root."""
        return self.cfgRoot if self.cfgRoot is not None else self.root

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
    inputGaps : `list` of ``(int, MissingParent)``
        Missing repositories among the inputs (a lone 'rw' output's recorded
        parents), each with the index in ``inputs`` it comes before.
    """

    outputs: list[RepositoryNode]
    inputs: list[RepositoryNode]
    inputGaps: list[tuple[int, MissingParent]] = attrs.Factory(list)
    _plans: dict = attrs.field(factory=dict, init=False)

    def search_order(self, tags: Iterable = ()) -> list[RepositoryNode]:
        """Return the repositories a read searches, in order.

        Readable outputs first, then each input followed depth-first by its
        parents, each repository once. With tags, only the outputs and inputs
        carrying one of them are searched, each with all of its parents.
        """
        return self._plan(tags)[0]

    def missing_parents(self, tags: Iterable = ()) -> dict[int, MissingParent]:
        """Return the missing parents a read would reach, by position in `search_order`.

        ``{i: parent}`` means the search reaches ``parent`` after the first
        ``i`` repositories of the search order (only the first at each place).
        """
        return self._plan(tags)[1]

    def _plan(self, tags: Iterable) -> tuple[list[RepositoryNode], dict[int, MissingParent]]:
        key = frozenset(tags)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._read_plan(key)
        return plan

    def _read_plan(self, tags: frozenset) -> tuple[list[RepositoryNode], dict[int, MissingParent]]:
        seen: set[int] = set()
        order: list[RepositoryNode] = []
        gaps: dict[int, MissingParent] = {}

        def selected(node: RepositoryNode) -> bool:
            return not tags or bool(node.tags & tags)

        def walk(nodes: Sequence[RepositoryNode], node_gaps: Sequence[tuple[int, MissingParent]]) -> None:
            """Depth-first over ``nodes`` and their parents, without recursion."""
            stack: list[Any] = _reversed_with_gaps(nodes, node_gaps)
            while stack:
                item = stack.pop()
                if isinstance(item, MissingParent):
                    gaps.setdefault(len(order), item)
                    continue
                if id(item) in seen:
                    continue
                seen.add(id(item))
                order.append(item)
                stack.extend(_reversed_with_gaps(item.parents, item.gaps))

        for node in self.outputs:
            if node.readable and selected(node):
                seen.add(id(node))
                order.append(node)
        walk([n for n in self.inputs if selected(n)],
             [] if tags else self.inputGaps)
        return order, gaps

    def all_nodes(self) -> list[RepositoryNode]:
        """Every repository: outputs (readable or not), then the read order."""
        nodes = list(self.outputs)
        nodes += [n for n in self.search_order() if n not in nodes]
        return nodes


def _reversed_with_gaps(nodes: Sequence[RepositoryNode], gaps: Sequence[tuple[int, MissingParent]]) -> list:
    """Nodes and the missing parents among them, in reverse order (for a stack)."""
    items: list[Any] = []
    for i, node in enumerate(nodes):
        items += [gap for index, gap in gaps if index == i]
        items.append(node)
    items += [gap for index, gap in gaps if index >= len(nodes)]
    return items[::-1]


def _entry_root(entry: str | RepositoryCfg | RepositoryArgs) -> str:
    """Where a parent entry or input is described: a path, a nested cfg's root, or args' cfg root.

    Raises
    ------
    RepositoryError
        A cfg (such as a parent recorded in a ``repositoryCfg.yaml``) that names no root.
    """
    if isinstance(entry, RepositoryArgs):
        return _given(entry.cfgRoot, entry)
    if isinstance(entry, RepositoryCfg):
        if entry.root is None:
            raise RepositoryError(f"repository cfg {entry!r} names no root, so it cannot be opened")
        return entry.root
    return entry


def _given(root: str | None, args: RepositoryArgs) -> str:
    """``root`` or ``cfgRoot`` of input or output arguments: the Butler gives every one an absolute root."""
    assert root is not None, f"{args!r} reached the graph without a root"
    return root


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

    def key(self, root: str) -> str:
        """The identity of a root: every spelling of one repository has the same key."""
        return self.spec(root).key

    def node_at(self, root: str) -> RepositoryNode | None:
        """The node already opened for the repository at ``root`` (by any spelling), if any."""
        return self._nodes.get(self.key(root))

    # -- nodes for existing repositories ------------------------------------------------

    def existing_node(self, entry: RepositoryArgs | RepositoryCfg | str, role: str, mode: str,
                      tags: frozenset = frozenset(), child: RepositoryCfg | None = None) -> RepositoryNode:
        """The node of an existing repository (an input), with all its ancestors.

        Ancestors are opened depth-first with an explicit stack, so a chain of
        any depth builds; a repository that is its own ancestor is an error.
        ``child`` is the cfg that records ``entry`` as a parent, if any.

        Raises
        ------
        RepositoryError
            Nothing is at the root (for a cfg given as an input: the root does not exist).
        ParentCycleError
            The recorded parents form a cycle.
        """
        node, new = self._node_for(entry, role, mode, tags, child)
        if not new:
            _add_tags(node, tags)
            return node
        path = {self.key(node.location): node}  # the nodes being opened, from ``node`` down
        stack = [(node, iter(node.cfg.parents))]
        while stack:
            current, entries = stack[-1]
            parent_entry = next(entries, None)
            if parent_entry is None:
                stack.pop()
                del path[self.key(current.location)]
                continue
            root = _entry_root(parent_entry)
            spec = self.spec(root)
            if not spec.present:
                _log.debug("parent %s of %s does not exist; a read reaching it stops", root, current.root)
                current.gaps.append((len(current.parents), MissingParent(root=root, recordedBy=current.root)))
                continue
            if spec.key in path:
                names = list(path)
                cycle = [path[k].root for k in names[names.index(spec.key):]] + [root]
                raise ParentCycleError("repositories are recorded as parents of each other", cycle)
            parent, new = self._node_for(parent_entry, "parent", "r", tags, current.cfg)
            current.parents.append(parent)
            if new:
                path[spec.key] = parent
                stack.append((parent, iter(parent.cfg.parents)))
            else:
                _add_tags(parent, tags)
        return node

    def _node_for(self, entry: RepositoryArgs | RepositoryCfg | str, role: str, mode: str, tags: frozenset,
                  child: RepositoryCfg | None) -> tuple[RepositoryNode, bool]:
        """The node of one entry (input args, a given or nested cfg, a parent path) and whether it is new."""
        location = _entry_root(entry)
        spec = self.spec(location)
        node = self._nodes.get(spec.key)
        if node is not None:
            return node, False
        if isinstance(entry, RepositoryCfg):
            if not spec.present:
                raise RepositoryError(f"no repository at {location!r}: the directory does not exist")
            cfg = entry
        else:
            if not spec.exists:
                raise RepositoryError(f"no repository at {location!r}: no repositoryCfg.yaml, _mapper, "
                                      f"_parent or registry.sqlite3 there")
            if isinstance(entry, str):
                entry = self._path_parent_args(entry, child)
            cfg = self._effective_cfg(spec, entry)
        node = RepositoryNode(cfg=cfg, mode=mode, role=role, tags=tags, legacy=spec.isLegacy,
                              hasRegistry=spec.hasRegistry,
                              cfgRoot=location if location != cfg.root else None)
        self._nodes[spec.key] = node
        return node, True

    def _path_parent_args(self, root: str, child: RepositoryCfg | None) -> RepositoryArgs:
        """How a parent recorded by path opens: a V1 parent with its child's mapperArgs, as Gen2 did.

        (Gen2 once recorded V1 parents by path, and their mapperArgs were the child's.)
        """
        inherited = child.mapperArgs if child is not None and self.spec(root).isLegacy else None
        return RepositoryArgs(root=root, mode="r", mapperArgs=inherited or None)

    @staticmethod
    def _effective_cfg(spec: RepoSpec, args: RepositoryArgs) -> RepositoryCfg:
        """The cfg of an existing repository as the arguments open it."""
        if spec.cfg is not None:
            cfg = spec.cfg
            if args.mapper is None and not args.mapperArgs and args.policy is None:
                return cfg
            return RepositoryCfg(root=cfg.root, mapper=args.mapper or cfg.mapper,
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
        spec = self.spec(node.location)
        if spec.cfg is not None and node.cfg is spec.cfg:
            return node.location
        return node.cfg

    def same_entry(self, a: str | RepositoryCfg, b: str | RepositoryCfg) -> bool:
        """Whether two parent entries stand for one repository opened the same way."""
        if isinstance(a, str) and isinstance(b, str):
            return self.key(a) == self.key(b)
        if isinstance(a, RepositoryCfg) and isinstance(b, RepositoryCfg):
            return self.key(_entry_root(a)) == self.key(_entry_root(b)) and attrs.evolve(a, root=b.root) == b
        return False

    def _as_recorded(self, entry: str | RepositoryCfg, child: RepositoryCfg) -> str | RepositoryCfg:
        """A recorded parent as an input opened for it would be recorded now.

        A V1 parent recorded by path compares as the nested cfg it opens with.
        """
        if isinstance(entry, str) and self.spec(entry).isLegacy:
            return self._effective_cfg(self.spec(entry), self._path_parent_args(entry, child))
        return entry

    # -- outputs ------------------------------------------------------------------------

    def output_node(self, args: RepositoryArgs, entries: list | None,
                    inputs: list[RepositoryNode]) -> RepositoryNode:
        """The node of an output; ``entries`` are its parents to record (None: as recorded).

        Raises
        ------
        MapperError
            The output has no mapper (none given, recorded or inferable), or
            its recorded mapper differs from the one given.
        RepositoryError
            Its recorded mapperArgs or policy differ from those given.
        ParentsMismatch
            Its recorded parents are neither equal to nor extended by ``entries``.
        """
        mode = args.mode or "w"
        location = _given(args.cfgRoot, args)
        spec = self.spec(location)
        if spec.cfg is not None:
            _check_reopen_args(spec.cfg, args, location)
            cfg, must_write = self._reopen(spec.cfg, entries, mode)
        else:
            entries = entries or []
            mapper = args.mapper or spec.legacyMapper or infer_mapper(inputs, _given(args.root, args))
            if spec.legacyParent is not None:
                entries = [spec.legacyParent] + [e for e in entries if e != spec.legacyParent]
            cfg = RepositoryCfg(root=args.root, mapper=mapper, mapperArgs=args.mapperArgs,
                                parents=entries, policy=args.policy)
            must_write = not spec.isLegacy
        if cfg.mapper is None:
            raise MapperError(f"output repository {cfg.root!r} has no mapper: none was given, none is "
                              f"recorded there and there are no inputs to take one from; give the output "
                              f"a mapper")
        return RepositoryNode(cfg=cfg, mode=mode, role="output", tags=frozenset(args.tags or ()),
                              legacy=spec.isLegacy, mustWriteCfg=must_write, hasRegistry=spec.hasRegistry,
                              cfgRoot=location if location != cfg.root else None)

    def _reopen(self, cfg: RepositoryCfg, entries: list | None, mode: str) -> tuple[RepositoryCfg, bool]:
        """Check the parents an existing output is reopened with; extend them if asked."""
        recorded = list(cfg.parents)
        if entries is None:
            return cfg, False
        if not entries:
            if recorded and mode == "w":
                raise ParentsMismatch(
                    f"output repository {cfg.root!r} was written with parents {_roots(recorded)}; "
                    f"reopen it with those inputs (or in mode 'rw' to read them back)")
            return cfg, False
        compared = [self._as_recorded(e, cfg) for e in recorded]
        if len(entries) < len(compared) or not all(map(self.same_entry, compared, entries)):
            raise ParentsMismatch(
                f"output repository {cfg.root!r} has parents {_roots(recorded)}; the inputs "
                f"{_roots(entries)} neither equal them nor extend them at the end")
        if len(entries) == len(recorded):
            return cfg, False
        return attrs.evolve(cfg, parents=recorded + list(entries[len(recorded):])), True


def _add_tags(node: RepositoryNode, tags: frozenset) -> None:
    """Give a node and all its ancestors ``tags`` (a repository's tags apply to its parents)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if tags <= current.tags:
            continue
        current.tags = current.tags | tags
        stack.extend(current.parents)


def _check_reopen_args(cfg: RepositoryCfg, args: RepositoryArgs, location: str) -> None:
    """An existing output must be reopened with the mapper, mapperArgs and policy it records, as in Gen2."""
    if args.mapper is not None and resolve_mapper_name(args.mapper) != resolve_mapper_name(cfg.mapper):
        raise MapperError(f"output repository {location!r} records mapper {cfg.mapper!r}, not "
                          f"{resolve_mapper_name(args.mapper)!r}")
    if args.mapperArgs is not None and dict(args.mapperArgs) != cfg.mapperArgs:
        raise RepositoryError(f"output repository {location!r} records mapperArgs {cfg.mapperArgs!r}, not "
                              f"{dict(args.mapperArgs)!r}")
    if args.policy is not None and args.policy != cfg.policy:
        raise RepositoryError(f"output repository {location!r} records another policy than the one given")


def _roots(entries: Iterable[str | RepositoryCfg]) -> list[str | None]:
    """The roots of parent entries (paths or nested cfgs), for messages."""
    return [e.root if isinstance(e, RepositoryCfg) else e for e in entries]


def infer_mapper(inputs: Sequence[RepositoryNode], root: str) -> Any:
    """The mapper an output without one takes: its inputs' mapper, when they all agree."""
    mappers = [n.cfg.mapper for n in inputs if n.cfg.mapper is not None]
    names = {name for name in map(resolve_mapper_name, mappers) if name is not None}  # None: no mapper
    if len(names) > 1:
        raise MapperError(f"cannot infer a mapper for output {root!r}: the inputs use different mappers "
                          f"{sorted(names)}; give the output a mapper")
    return mappers[0] if mappers else None


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


def _check_outputs(builder: _Builder, inputs: Sequence[RepositoryArgs | RepositoryCfg],
                   outputs: Sequence[RepositoryArgs]) -> None:
    """No repository is given twice as an output, or as an input and an output, however spelled."""
    seen: dict[str, str] = {}
    for args in outputs:
        root = _given(args.root, args)
        keys = {builder.key(root), builder.key(_entry_root(args))}
        for key in keys:
            if key in seen:
                raise RepositoryError(f"output repositories {seen[key]!r} and {root!r} are one "
                                      f"repository ({key}); give it once")
        seen.update(dict.fromkeys(keys, root))
    for item in inputs:
        root = _entry_root(item)
        output = seen.get(builder.key(root))
        if output is not None:
            raise RepositoryError(f"repository {root!r} is given as both an input and an output "
                                  f"({output!r}); to read and write one repository, give it as the only "
                                  f"output, in mode 'rw'")


def _check_not_ancestor(builder: _Builder, outputs: Sequence[RepositoryArgs],
                        inputs: Sequence[RepositoryNode]) -> None:
    """An output that is already an ancestor of an input would become its own parent."""
    for args in outputs:
        root = _given(args.root, args)
        node = builder.node_at(_entry_root(args)) or builder.node_at(root)
        if node is not None:
            cycle = [root] + [n.root for n in _path_to(inputs, node)]
            raise ParentCycleError(f"output repository {root!r} is already an ancestor of its inputs, "
                                   f"so writing it would make it its own parent", cycle)


def _path_to(starts: Sequence[RepositoryNode], target: RepositoryNode) -> list[RepositoryNode]:
    """A path of parent links from one of ``starts`` to ``target`` (breadth-first, no recursion)."""
    previous: dict[int, RepositoryNode | None] = {id(n): None for n in starts}
    queue = list(starts)
    for node in queue:
        if node is target:
            path = [node]
            step = previous[id(node)]
            while step is not None:
                path.append(step)
                step = previous[id(step)]
            return path[::-1]
        for parent in node.parents:
            if id(parent) not in previous:
                previous[id(parent)] = node
                queue.append(parent)
    return [target]


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
        An input that is not a repository; one repository given twice as an
        output, or as an input and an output; an output reopened with other
        mapperArgs or policy than it records.
    ParentCycleError
        Parents that form a cycle, or an output that is an ancestor of an input.
    ParentsMismatch
        An existing output reopened with inputs that are not its recorded parents.
    MapperError
        An output without a mapper, or whose mapper cannot be inferred from
        its inputs or differs from the one it records.
    """
    input_args = [a for a in inputs if isinstance(a, RepositoryArgs)]
    _check_modes(input_args, outputs)
    builder = _Builder(describe)
    _check_outputs(builder, inputs, outputs)
    input_nodes = [_input_node(builder, a) for a in inputs]
    _check_not_ancestor(builder, outputs, input_nodes)
    input_gaps: list[tuple[int, MissingParent]] = []
    entries: list | None = [builder.parent_entry(n) for n in input_nodes]
    if not input_nodes and len(outputs) == 1 and outputs[0].mode == "rw":
        input_nodes, input_gaps = _recorded_parents_as_inputs(builder, outputs[0])
        _check_not_ancestor(builder, outputs, input_nodes)
        entries = None
    output_nodes = [builder.output_node(a, entries, input_nodes) for a in outputs]
    for node in output_nodes:
        node.parents = input_nodes
    return RepositoryGraph(outputs=output_nodes, inputs=input_nodes, inputGaps=input_gaps)


def _input_node(builder: _Builder, args: RepositoryArgs | RepositoryCfg) -> RepositoryNode:
    if isinstance(args, RepositoryCfg):
        return builder.existing_node(args, "input", "r")
    tags = frozenset(args.tags or ())
    return builder.existing_node(args, "input", args.mode or "r", tags)


def _recorded_parents_as_inputs(builder: _Builder, output: RepositoryArgs
                                ) -> tuple[list[RepositoryNode], list[tuple[int, MissingParent]]]:
    """A lone 'rw' output reopened without inputs reads its recorded parents back."""
    cfg = builder.spec(_entry_root(output)).cfg
    if cfg is None:
        return [], []
    nodes: list[RepositoryNode] = []
    gaps: list[tuple[int, MissingParent]] = []
    for entry in cfg.parents:
        root = _entry_root(entry)
        if builder.spec(root).present:
            nodes.append(builder.existing_node(entry, "input", "r", child=cfg))
        else:
            gaps.append((len(nodes), MissingParent(root=root, recordedBy=_entry_root(cfg))))
    return nodes, gaps
