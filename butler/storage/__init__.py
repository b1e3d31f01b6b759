"""Storages: where a repository's bytes live (`PosixStorage` for local directories, `MemStorage` for tests)."""

from .base import Storage, StorageInterface
from .mem import MemStorage
from .posix import PosixStorage

__all__ = ["Storage", "StorageInterface", "PosixStorage", "MemStorage"]
