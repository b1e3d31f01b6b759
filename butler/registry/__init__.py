"""Metadata registries: the `Registry` protocol, `SqliteRegistry`, `PostgresRegistry`, `PosixRegistry`, `FsScanner`.

``sqlite3`` is imported with this package, never by ``import butler``; ``psycopg``
only when a PostgreSQL registry is used.
"""

from .base import Registry, TableSpec
from .fsScanner import FsScanner, strip_hdu, template_fields
from .posix import PosixRegistry
from .postgres import PostgresRegistry
from .sqlite import SqliteRegistry

__all__ = ["Registry", "TableSpec", "SqliteRegistry", "PostgresRegistry", "PosixRegistry", "FsScanner",
           "template_fields", "strip_hdu"]
