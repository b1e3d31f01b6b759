"""Metadata registries: the `Registry` protocol, `SqliteRegistry`, `PosixRegistry`, `FsScanner`.

``sqlite3`` is imported with this package, never by ``import butler``.
"""

from .base import Registry, TableSpec
from .fsScanner import FsScanner, strip_hdu, template_fields
from .posix import PosixRegistry
from .sqlite import SqliteRegistry

__all__ = ["Registry", "TableSpec", "SqliteRegistry", "PosixRegistry", "FsScanner", "template_fields",
           "strip_hdu"]
