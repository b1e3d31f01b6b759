"""The `Formatter` base: object <-> file for one storage name.

The base owns the flow (through a storage or at a local path; a missing file
is reported the same way by every format); a format fills the hooks its
library allows: `read_stream` or `read_file`, `to_bytes` or `write_file`.
"""

from __future__ import annotations

import os
from typing import IO, Any, ClassVar, Mapping

from ..errors import DatasetNotFoundError

__all__ = ["Formatter", "type_name"]


class Formatter:
    """Read and write one kind of file, through a storage or at a local path.

    Subclasses set `storageName` (the key of the formatter table, as found in
    a `ButlerLocation`) and `extensions`, and fill the hooks their libraries
    allow: a format that reads from a binary stream implements `read_stream`,
    one that needs a local file `read_file`; a format that can serialise to
    bytes implements `to_bytes`, one whose library writes files `write_file`.
    The base reads and writes through a storage's primitives
    (`StorageInterface.openRead`, ``localFile``, ``writeBytes``, ``writer``),
    asking for a local file only where a hook needs one.
    """

    #: The storage name this formatter answers to, e.g. ``"PickleStorage"``.
    storageName: ClassVar[str]
    #: Filename extensions this formatter writes (for information only).
    extensions: ClassVar[tuple[str, ...]] = ()
    #: Read through `read_file` when the storage's local files are the stored files
    #: themselves (memory maps, partial reads), even though `read_stream` exists.
    prefersLocalFile: ClassVar[bool] = False
    _readsStreams: ClassVar[bool] = False
    _writesBytes: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> "Formatter":
        readable = cls._overrides("read_stream") or cls._overrides("read_file")
        writable = cls._overrides("to_bytes") or cls._overrides("write_file")
        if not (readable and writable):
            raise TypeError(f"{cls.__name__} cannot be instantiated: a formatter implements read_stream or "
                            "read_file, and to_bytes or write_file")
        return super().__new__(cls)

    # -- hooks -----------------------------------------------------------------------------

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        """Read from a binary stream (hook); ``source`` names the file in messages."""
        raise NotImplementedError

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        """Serialise an object to the bytes of a file (hook)."""
        raise NotImplementedError

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        """Read an existing local file (hook; by default through `read_stream`)."""
        with open(path, "rb") as stream:
            return self.read_stream(stream, source=path, hdu=hdu, pythonType=pythonType,
                                    additionalData=additionalData)

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        """Write a local file, replacing any there (hook; by default the bytes of `to_bytes`)."""
        data = self.to_bytes(obj, hdu=hdu, additionalData=additionalData)
        with open(path, "wb") as stream:
            stream.write(data)

    @classmethod
    def _overrides(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(Formatter, hook)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # decided once per class: readFrom and writeTo are on every get and put
        cls._readsStreams = cls._overrides("read_stream")
        cls._writesBytes = cls._overrides("to_bytes")

    # -- through a storage -----------------------------------------------------------------

    def readFrom(self, storage: Any, path: str, *, hdu: int | None = None, pythonType: Any = None,
                 additionalData: Mapping[str, Any] | None = None) -> Any:
        """Read the object stored at ``path`` in ``storage``.

        Parameters
        ----------
        storage : `butler.storage.StorageInterface`
            The storage.
        path : `str`
            Relative to the storage's root (without any ``[N]`` HDU suffix).
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
        extra = dict(additionalData) if additionalData else {}
        if self._readsStreams and not (self.prefersLocalFile and storage.hasLocalFiles):
            with storage.openRead(path) as stream:
                return self.read_stream(stream, source=storage.locationWithRoot(path), hdu=hdu,
                                        pythonType=pythonType, additionalData=extra)
        with storage.localFile(path) as local:
            return self._read_local(local, hdu, pythonType, extra)

    def writeTo(self, storage: Any, path: str, obj: Any, *, hdu: int | None = None,
                additionalData: Mapping[str, Any] | None = None) -> None:
        """Write ``obj`` at ``path`` in ``storage`` through its one atomic write.

        Nothing is visible at ``path`` until the whole file is, and a failed
        write leaves what was there.
        """
        extra = dict(additionalData or {})
        if self._writesBytes:
            storage.writeBytes(path, self.to_bytes(obj, hdu=hdu, additionalData=extra))
            return
        with storage.writer(path) as tmp:
            self.write_file(obj, tmp, hdu=hdu, additionalData=extra)

    # -- at a local path -------------------------------------------------------------------

    def read(self, path: str, *, hdu: int | None = None, pythonType: Any = None,
             additionalData: Mapping[str, Any] | None = None) -> Any:
        """Read the object stored in the local file ``path`` (see `readFrom`).

        Raises
        ------
        DatasetNotFoundError
            When there is no file at ``path``.
        """
        return self._read_local(path, hdu, pythonType, dict(additionalData) if additionalData else {})

    def _read_local(self, path: str, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        try:
            return self.read_file(path, hdu=hdu, pythonType=pythonType, additionalData=additionalData)
        except (FileNotFoundError, IsADirectoryError) as exc:
            # a miss is on the hot path of a search: no stat when the error names the file itself
            if exc.filename != path and os.path.isfile(path):
                raise
            raise DatasetNotFoundError(f"no {self.storageName} file at {path}") from exc

    def write(self, obj: Any, path: str, *, hdu: int | None = None,
              additionalData: Mapping[str, Any] | None = None) -> None:
        """Write ``obj`` as a plain local file at ``path``, replacing any file there.

        Not atomic: storages write through `writeTo`.
        """
        self.write_file(obj, path, hdu=hdu, additionalData=dict(additionalData or {}))

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
