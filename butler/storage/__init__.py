"""Storages: where a repository's bytes live (`PosixStorage` for local directories)."""

from .base import Storage, StorageInterface
from .posix import PosixStorage

__all__ = ["Storage", "StorageInterface", "PosixStorage"]
