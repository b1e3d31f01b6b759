"""`ConfigStorage`: configuration objects.

An object with a ``save(path)`` method is written with it, and a type with a
``load(path)`` method is read as ``obj = pythonType(); obj.load(path)`` (the
pex_config protocol), where ``pythonType`` is the type the mapper asks for:
a class, or a type name resolved only through trusted modules
(`butler.utils.resolve_type_name`); nothing named inside the file is
imported. Anything else is a mapping stored as safe YAML (read with the
limits of `butler.formatters.yaml.load_yaml_stream`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import IO, Any, ClassVar

import yaml

from ..utils import resolve_type_name
from .base import Formatter
from .yaml import dump_yaml_bytes, load_yaml_stream

__all__ = ["ConfigStorage"]

_log = logging.getLogger(__name__)


def _loadable_type(pythonType: Any) -> type | None:
    """Return ``pythonType`` as a class with a ``load`` method, or None."""
    if isinstance(pythonType, str):
        name = pythonType
        pythonType = resolve_type_name(name)
        if pythonType is None:
            _log.debug("config type %r is not a trusted class; reading the file as YAML", name)
            return None
    if isinstance(pythonType, type) and callable(getattr(pythonType, "load", None)):
        return pythonType
    return None


class ConfigStorage(Formatter):
    """Configuration files: the object's own ``save``/``load``, else a YAML mapping."""

    storageName = "ConfigStorage"
    extensions = (".py", ".yaml")
    writes = "objects with a save(path) method, or mappings of plain data"
    readErrors: ClassVar[tuple[type[BaseException], ...]] = (yaml.YAMLError,)
    writeErrors: ClassVar[tuple[type[BaseException], ...]] = (yaml.YAMLError,)

    def wantsLocalFile(self, storage: Any, pythonType: Any) -> bool:
        return _loadable_type(pythonType) is not None

    def wantsFile(self, obj: Any) -> bool:
        return callable(getattr(obj, "save", None))

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        return load_yaml_stream(stream, source)

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        config = _loadable_type(pythonType)()  # type: ignore[misc]  # wantsLocalFile: a loadable class
        config.load(path)
        return config

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        if not isinstance(obj, Mapping):
            raise TypeError("neither a mapping nor an object with a save(path) method")
        return dump_yaml_bytes(dict(obj))

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        obj.save(path)
