"""Gen2 name of the safe file I/O module; everything lives in :mod:`butler.safeio`."""

from .safeio import FileForWriteOnceCompareSame, SafeLockedFileForRead, SafeLockedFileForWrite, safeMakeDir

__all__ = ["FileForWriteOnceCompareSame", "SafeLockedFileForRead", "SafeLockedFileForWrite", "safeMakeDir"]
