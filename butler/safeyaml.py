"""The PyYAML machinery of the one safe loader (`butler.cfg.load_yaml`) and of the cfg dumper.

Imported when a YAML file is first read or written, so that a command over a
repository that holds none (a legacy ``_mapper`` repository, policies from the
user's cache) never loads PyYAML. Everything here is reached through
`butler.cfg`: `load_yaml`, `check_yaml_bytes`, `RepositoryCfg.read` and `RepositoryCfg.text`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import IO, Any

import yaml

from .cfg import (
    CFG_TAG,
    MAX_YAML_ALIASES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    RepositoryCfg,
    _TaggedCfgMapping,
    read_bounded,
)
from .errors import UnsafeYamlError
from .policy import Policy

_log = logging.getLogger(__name__)

#: class paths under which a `Policy` may be embedded in a legacy YAML file
_POLICY_CLASSES = ("lsst.daf.persistence.policy.Policy", "butler.policy.Policy")

_LoaderBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DumperBase = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

_VERSIONED_TAG_PREFIX = "!RepositoryCfg_v"


class _SafeCfgLoader(_LoaderBase):  # type: ignore[misc, valid-type]
    """Safe loader that also understands the tags of Gen2 repository cfg files."""

    source: str = "<stream>"


class _VersionedCfgFields(dict):
    """The fields of a cfg tagged with a version other than 1, read as a plain mapping."""


def _cfg_from_fields(fields: Mapping) -> RepositoryCfg:
    """A cfg from the ``_root``, ``_mapper``, ... fields of a cfg mapping (other keys are ignored)."""
    parents = fields.get("_parents")
    if isinstance(parents, list):
        parents = [_cfg_from_fields(p) if isinstance(p, _VersionedCfgFields) else p for p in parents]
    return RepositoryCfg(root=fields.get("_root"), mapper=fields.get("_mapper"),
                         mapperArgs=fields.get("_mapperArgs"), parents=parents,
                         policy=fields.get("_policy"), dirty=False)


def _construct_cfg(loader: _SafeCfgLoader, node: yaml.MappingNode) -> RepositoryCfg:
    return _cfg_from_fields(loader.construct_mapping(node, deep=True))


def _construct_versioned_cfg(loader: _SafeCfgLoader, suffix: str, node: yaml.Node) -> _VersionedCfgFields:
    if not suffix.isdigit() or not isinstance(node, yaml.MappingNode):
        _refuse(loader, node)
    _log.info("%s: %s%s is read as a plain mapping of cfg fields", loader.source, _VERSIONED_TAG_PREFIX,
              suffix)
    return _VersionedCfgFields(loader.construct_mapping(node, deep=True))


def _construct_python_name(loader: _SafeCfgLoader, suffix: str, node: yaml.Node) -> str:
    return suffix


def _construct_python_object(loader: _SafeCfgLoader, suffix: str, node: yaml.Node) -> Policy:
    if suffix not in _POLICY_CLASSES or not isinstance(node, yaml.MappingNode):
        _refuse(loader, node)
    state = loader.construct_mapping(node, deep=True)
    return Policy(state.get("data"))


def _refuse(loader: _SafeCfgLoader, node: yaml.Node) -> Any:
    raise UnsafeYamlError(f"{loader.source}: refusing YAML tag {node.tag!r} "
                          f"(line {node.start_mark.line + 1}); only plain YAML, {CFG_TAG}, "
                          "!!python/name and embedded Policy objects are read")


_SafeCfgLoader.add_constructor(CFG_TAG, _construct_cfg)
_SafeCfgLoader.add_multi_constructor(_VERSIONED_TAG_PREFIX, _construct_versioned_cfg)
_SafeCfgLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _construct_python_name)
_SafeCfgLoader.add_multi_constructor("tag:yaml.org,2002:python/object:", _construct_python_object)
_SafeCfgLoader.add_constructor(None, _refuse)


#: a document this short with no alias cannot pass the limits (see `_plainly_within_limits`)
_SHORT_YAML_BYTES = 4096


def _plainly_within_limits(data: bytes) -> bool:
    """Whether a document is within the limits by its bytes alone, without parsing it (most cfgs).

    With no alias nothing expands, so it has fewer nodes than bytes; block nesting
    ``d`` deep needs indentation summing to ``d*d/2`` bytes (at most about 90 levels
    in `_SHORT_YAML_BYTES`), and each flow level opens a bracket.
    """
    return (len(data) <= _SHORT_YAML_BYTES and b"*" not in data
            and data.count(b"[") + data.count(b"{") <= MAX_YAML_DEPTH // 2)


def _check_expansion(data: bytes, source: str) -> None:
    """Refuse YAML whose aliases or nesting go past the limits, from its parser events alone.

    Each anchor's size (nodes, with aliases expanded) is counted once when
    its node ends, so the check costs one pass however large the expansion;
    an alias to an anchor whose node is still open (a recursive alias) is
    refused too.
    """
    if _plainly_within_limits(data):
        return

    def refuse(what: str, event: Any) -> UnsafeYamlError:
        return UnsafeYamlError(f"{source}: {what} (line {event.start_mark.line + 1}); refusing to read it")

    loader = _SafeCfgLoader(data)
    try:
        sizes: dict[str, int] = {}
        stack: list[list] = []  # [anchor, node count] of each open mapping or sequence
        aliases = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.DocumentStartEvent):
                sizes = {}
                continue
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([event.anchor, 1])
                if len(stack) > MAX_YAML_DEPTH:
                    raise refuse(f"nested deeper than {MAX_YAML_DEPTH} levels", event)
                continue
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise refuse(f"more than {MAX_YAML_ALIASES} alias uses", event)
                if event.anchor not in sizes:
                    raise refuse(f"alias *{event.anchor} is undefined or refers to a node that contains it",
                                 event)
                count = sizes[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                count = 1
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, count = stack.pop()
                if anchor is not None:
                    sizes[anchor] = count
            else:
                continue
            if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                sizes[event.anchor] = 1
            if stack:
                stack[-1][1] += count
                count = stack[-1][1]
            if count > MAX_YAML_NODES:
                raise refuse(f"more than {MAX_YAML_NODES} nodes once its aliases are expanded", event)
    finally:
        loader.dispose()


def load(file: str | os.PathLike | IO[bytes], source: str | None = None) -> Any:
    """`butler.cfg.load_yaml` (see there)."""
    if isinstance(file, (str, os.PathLike)):
        from .storage import Storage

        path = os.fspath(file)
        storage, name = Storage.forFile(path)
        with storage.openRead(name) as stream:
            return load(stream, source if source is not None else path)
    if source is None:
        source = str(getattr(file, "name", "<stream>"))
    data = read_bounded(file, source)
    _check_expansion(data, source)
    loader = _SafeCfgLoader(data)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _CfgDumper(_DumperBase):  # type: ignore[misc, valid-type]
    """Safe dumper writing cfg mappings under their version tag."""


_CfgDumper.add_representer(_TaggedCfgMapping,
                           lambda dumper, data: dumper.represent_mapping(CFG_TAG, data))


def cfg_of_other_version(data: dict) -> Any:
    """The cfg of the fields a ``!RepositoryCfg_v<N>`` document (N other than 1) was read as; any other
    mapping as it is (`RepositoryCfg.read` then says the file holds no cfg)."""
    return _cfg_from_fields(data) if isinstance(data, _VersionedCfgFields) else data


def dump_cfg(mapping: _TaggedCfgMapping) -> str:
    """The text of a cfg mapping, under its version tag."""
    return yaml.dump(mapping, Dumper=_CfgDumper, default_flow_style=False, sort_keys=False)


def check_bytes(data: bytes, name: str) -> None:
    """`butler.cfg.check_yaml_bytes` (see there)."""
    if len(data) > MAX_YAML_BYTES:
        raise UnsafeYamlError(f"{name}: larger than {MAX_YAML_BYTES} bytes, the limit for a YAML file read "
                              "from a repository; it is not read")
    _check_expansion(data, name)
