"""`YamlStorage`: plain data (mappings, lists, scalars) in safe YAML.

Reading also accepts the YAML that the Gen2 stack wrote for
``lsst.daf.base.PropertySet`` / ``PropertyList`` objects (task metadata such as
``processCcd_metadata``): a sequence of ``[name, type, value, comment]``
entries tagged ``!<lsst.daf.base.PropertySet>`` or
``!<lsst.daf.base.PropertyList>``. They load as plain dicts, name -> value,
with nested dicts for entries of type ``PropertySet``. No other tag is
constructed.
"""

from __future__ import annotations

from typing import IO, Any, ClassVar

import yaml

from ..cfg import MAX_YAML_BYTES, check_yaml_bytes
from ..errors import UnsafeYamlError
from .base import Formatter

__all__ = ["YamlStorage", "PropertySetLoader", "load_yaml_stream", "dump_yaml_bytes"]


class PropertySetLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that also reads legacy PropertySet / PropertyList YAML as dicts."""


def _construct_property_set(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):  # an empty entry list is written as a bare tag
        return {}
    entries = loader.construct_sequence(node, deep=True)
    result: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, list) or len(entry) < 3:
            raise UnsafeYamlError(f"malformed PropertySet entry {entry!r} at {node.start_mark}")
        name, _type, value = entry[:3]
        result[str(name)] = value
    return result


for _tag in ("lsst.daf.base.PropertySet", "lsst.daf.base.PropertyList"):
    PropertySetLoader.add_constructor(_tag, _construct_property_set)


def load_yaml_stream(stream: IO[bytes], source: str) -> Any:
    """Load a YAML dataset safely from a binary stream, within the limits of repository cfgs.

    Plain YAML and the legacy PropertySet form (as dicts) are read; no other
    tag is constructed. The limits are those of `butler.cfg.load_yaml` (size,
    aliases, expanded nodes, depth), checked before anything is built.

    Parameters
    ----------
    stream : binary file object
        The YAML.
    source : `str`
        The file's name, for messages.

    Raises
    ------
    UnsafeYamlError
        When the document holds a tag the loader does not construct, or goes
        past a limit; the message names ``source``.
    """
    data = stream.read(MAX_YAML_BYTES + 1)
    check_yaml_bytes(data, source)
    try:
        return yaml.load(data, Loader=PropertySetLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        raise UnsafeYamlError(f"{source}: {exc}") from exc


def dump_yaml_bytes(obj: Any) -> bytes:
    """Plain data (mappings, lists, scalars) as UTF-8 YAML, keeping key order."""
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=False).encode("utf-8")


class YamlStorage(Formatter):
    """YAML files of plain data."""

    storageName = "YamlStorage"
    extensions = (".yaml", ".yml")
    writes = "plain data (mappings, lists, strings, numbers, booleans, None, dates)"
    readErrors: ClassVar[tuple[type[BaseException], ...]] = (yaml.YAMLError,)
    writeErrors: ClassVar[tuple[type[BaseException], ...]] = (yaml.YAMLError,)

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        return load_yaml_stream(stream, source)

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        return dump_yaml_bytes(obj)
