"""The `Formatter` base: object <-> file for one storage name.

The base owns the flow (a missing file is reported the same way by every
format); a format fills two hooks, `read_file` and `write_file`.
"""

from __future__ import annotations

import abc
import os
from typing import Any, ClassVar, Mapping

from ..errors import DatasetNotFoundError

__all__ = ["Formatter", "type_name"]


class Formatter(abc.ABC):
    """Read and write one kind of file.

    Subclasses set `storageName` (the key of the formatter table, as found in
    a `ButlerLocation`) and `extensions`, and implement `read_file` and
    `write_file`.
    """

    #: The storage name this formatter answers to, e.g. ``"PickleStorage"``.
    storageName: ClassVar[str]
    #: Filename extensions this formatter writes (for information only).
    extensions: ClassVar[tuple[str, ...]] = ()

    def read(self, path: str, *, hdu: int | None = None, pythonType: Any = None,
             additionalData: Mapping[str, Any] | None = None) -> Any:
        """Read the object stored at ``path``.

        Parameters
        ----------
        path : `str`
            The file (without any ``[N]`` HDU suffix).
        hdu : `int`, optional
            The HDU to read, for formats that have HDUs.
        pythonType : `type` or `str`, optional
            The type asked for; formats that can answer in several shapes use it.
        additionalData : mapping, optional
            Extra values from the mapper (e.g. a sub-image box).

        Raises
        ------
        DatasetNotFoundError
            When there is no file at ``path``.
        """
        try:
            return self.read_file(path, hdu=hdu, pythonType=pythonType,
                                  additionalData=dict(additionalData) if additionalData else {})
        except (FileNotFoundError, IsADirectoryError) as exc:
            # a miss is on the hot path of a search: no stat when the error names the file itself
            if exc.filename != path and os.path.isfile(path):
                raise
            raise DatasetNotFoundError(f"no {self.storageName} file at {path}") from exc

    def write(self, obj: Any, path: str, *, hdu: int | None = None,
              additionalData: Mapping[str, Any] | None = None) -> None:
        """Write ``obj`` as a plain file at ``path``, replacing any file there.

        Atomicity is the caller's job: storages hand in the temporary path of
        a :func:`butler.safeio.atomic_write`.
        """
        self.write_file(obj, path, hdu=hdu, additionalData=dict(additionalData or {}))

    @abc.abstractmethod
    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        """Read an existing file (hook for subclasses)."""

    @abc.abstractmethod
    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        """Write a file, replacing any there (hook for subclasses)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def type_name(pythonType: Any) -> str:
    """Return the last component of a type's name, or of a dotted type-name string.

    ``None`` gives ``""``.
    """
    if pythonType is None:
        return ""
    if isinstance(pythonType, str):
        return pythonType.rpartition(".")[2]
    return getattr(pythonType, "__name__", type(pythonType).__name__)
