"""Metadata registries: the `Registry` protocol, `SqliteRegistry`, `PostgresRegistry`, `PosixRegistry`, `FsScanner`.

``sqlite3`` is imported with this package, never by ``import butler``; the PostgreSQL
module (and ``psycopg``) only when `PostgresRegistry` is first asked for.
"""

from typing import Any

from .base import Registry, TableSpec
from .fsScanner import FsScanner, strip_hdu, template_fields
from .posix import PosixRegistry
from .sqlite import SqliteRegistry

__all__ = ["Registry", "TableSpec", "SqliteRegistry", "PostgresRegistry", "PosixRegistry", "FsScanner",
           "template_fields", "strip_hdu"]


def __getattr__(name: str) -> Any:
    """`PostgresRegistry`, imported on first use: a command over SQLite never loads the PostgreSQL module."""
    if name == "PostgresRegistry":
        from .postgres import PostgresRegistry

        return PostgresRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
