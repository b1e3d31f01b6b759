"""The `Formatter` base: object <-> file for one storage name, through a storage.

The base owns the flow: it reads from the stream or the local file a storage
hands it and writes through the storage's atomic writer (formatters never
open files themselves), reports a missing file the same way for every
format, and turns what a format's library raises on a bad file or an object
it cannot write into `FormatterError` or `UnwritableObjectError`, in one
place per direction. A format fills the hooks its library allows:
`read_stream` or `read_file`, `to_bytes` or `write_file`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any, ClassVar

from ..errors import ButlerError, DatasetNotFoundError, FormatterError, UnwritableObjectError
from .parameters import check_names

__all__ = ["Formatter", "type_name"]

#: what a library raises on a corrupt, truncated or foreign file (with a format's `readErrors`)
_BAD_FILE: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError,
                                              AttributeError, ArithmeticError, RecursionError, MemoryError)
#: what a library raises on an object it cannot write (with a format's `writeErrors`)
_BAD_OBJECT: tuple[type[BaseException], ...] = (TypeError, ValueError, AttributeError, KeyError, IndexError,
                                                RecursionError)
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class Formatter:
    """Read and write one kind of file through a storage.

    Subclasses set `storageName` (the key of the formatter table, as found in
    a `ButlerLocation`), `extensions` and `writes`, and fill the hooks their
    libraries allow: a format that reads from a binary stream implements
    `read_stream`, one that needs a local file `read_file`; a format that can
    serialise to bytes implements `to_bytes`, one whose library writes files
    `write_file`. The base reads and writes through a storage's primitives
    (`StorageInterface.openRead`, ``localFile``, ``writeBytes``, ``writer``),
    asking for a local file only where a hook needs one.
    """

    #: The storage name this formatter answers to, e.g. ``"PickleStorage"``.
    storageName: ClassVar[str]
    #: Filename extensions this formatter writes (for information only).
    extensions: ClassVar[tuple[str, ...]] = ()
    #: What this formatter writes, for the message of an `UnwritableObjectError`.
    writes: ClassVar[str] = "objects of its format"
    #: Read through `read_file` when the storage's local files are the stored files
    #: themselves (memory maps, partial reads), even though `read_stream` exists.
    prefersLocalFile: ClassVar[bool] = False
    #: The read parameters (``get(..., parameters=...)``) the format takes; see `acceptedParameters`.
    parameters: ClassVar[frozenset[str]] = frozenset()
    #: More exceptions the format's library raises on a file it cannot read.
    readErrors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: More exceptions the format's library raises on an object it cannot write.
    writeErrors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: The format reads files compressed whole (``.gz``) or tile-compressed (``.fz``), so a
    #: mapper looks for those variants of a missing file (`StorageInterface.probe`).
    readsCompressed: ClassVar[bool] = False
    _readsStreams: ClassVar[bool] = False
    _writesBytes: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Formatter:
        readable = cls._overrides("read_stream") or cls._overrides("read_file")
        writable = cls._overrides("to_bytes") or cls._overrides("write_file")
        if not (readable and writable):
            raise TypeError(f"{cls.__name__} cannot be instantiated: a formatter implements read_stream or "
                            "read_file, and to_bytes or write_file")
        return super().__new__(cls)

    # -- hooks -----------------------------------------------------------------------------

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        """Read from a binary stream the storage opened (hook); ``source`` names the file in messages."""
        raise NotImplementedError

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        """Serialise an object to the bytes of a file (hook)."""
        raise NotImplementedError

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        """Read the local file the storage gives (hook)."""
        raise NotImplementedError

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        """Write the storage writer's new temporary file ``path`` (hook)."""
        raise NotImplementedError

    def acceptedParameters(self, pythonType: Any) -> frozenset[str]:
        """The read parameters a read of ``pythonType`` takes (by default: `parameters`).

        A format that declares parameters receives them as the ``parameters``
        keyword of its read hook, and reads only what they select.
        """
        return self.parameters

    def acceptedTypes(self, pythonType: Any) -> tuple[type, ...] | None:
        """The classes a put of a dataset of ``pythonType`` takes unconverted; None: whatever the format writes.

        `butler.Butler.put` converts another object only through a lossless
        converter to one of these (`butler.converters`).
        """
        return None

    def wantsLocalFile(self, storage: Any, pythonType: Any) -> bool:
        """Whether to read through `read_file` (by default: `prefersLocalFile`, on local storages)."""
        return self.prefersLocalFile and storage.hasLocalFiles

    def wantsFile(self, obj: Any) -> bool:
        """Whether to write ``obj`` through `write_file` (by default: when the format has no `to_bytes`)."""
        return not self._writesBytes

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
                 additionalData: Mapping[str, Any] | None = None,
                 parameters: Mapping[str, Any] | None = None) -> Any:
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
        parameters : mapping, optional
            What part of the dataset to read (see `acceptedParameters`).

        Raises
        ------
        UnknownParameterError
            A parameter the format does not take for ``pythonType`` (checked
            before the file is opened), or a bad value.
        DatasetNotFoundError
            When there is no file at ``path``.
        FormatterError
            When the file cannot be read as this format (corrupt, truncated,
            of another format, refused by a safe loader); the message names it.
        """
        extra = dict(additionalData) if additionalData else {}
        selection: dict[str, Any] = {}
        if parameters:
            check_names(parameters, self.acceptedParameters(pythonType),
                        f"{self.storageName} reading {type_name(pythonType) or 'its default type'}")
            selection["parameters"] = dict(parameters)
        try:
            if self._readsStreams and not self.wantsLocalFile(storage, pythonType):
                with storage.openRead(path) as stream:
                    return self.read_stream(stream, source=storage.locationWithRoot(path), hdu=hdu,
                                            pythonType=pythonType, additionalData=extra, **selection)
            with storage.localFile(path) as local:
                return self.read_file(local, hdu=hdu, pythonType=pythonType, additionalData=extra, **selection)
        except ButlerError:
            raise
        except _MISSING as exc:
            source = storage.locationWithRoot(path)
            if not storage.exists(path) or source == exc.filename:
                raise DatasetNotFoundError(f"no {self.storageName} file at {source}") from exc
            raise self._unreadable(storage, path, exc) from exc
        except _BAD_FILE + self.readErrors as exc:
            raise self._unreadable(storage, path, exc) from exc

    def _unreadable(self, storage: Any, path: str, exc: BaseException) -> FormatterError:
        return FormatterError(f"cannot read {storage.locationWithRoot(path)} as {self.storageName}: "
                              f"{type(exc).__name__}: {self.describeReadError(exc)}")

    def describeReadError(self, exc: BaseException) -> str:
        """What a library's error on a bad file says, for a user (hook; by default its message)."""
        return str(exc)

    def refusal(self, obj: Any, pythonType: Any) -> str | None:
        """What the format takes instead, when ``obj`` is not what a read of ``pythonType`` gives back
        (or a lossless form of it); None when it is (hook; the base takes anything it can write).

        `butler.Butler.put` asks before any byte is written, so nothing is converted
        silently and nothing is written that its get cannot read.
        """
        return None

    def writeTo(self, storage: Any, path: str, obj: Any, *, hdu: int | None = None,
                additionalData: Mapping[str, Any] | None = None) -> None:
        """Write ``obj`` at ``path`` in ``storage`` through its one atomic write.

        Nothing is visible at ``path`` until the whole file is, and a failed
        write leaves what was there.

        Raises
        ------
        UnwritableObjectError
            When the format cannot write ``obj``; the message names the type
            given and the types the format writes, and nothing is written.
        """
        extra = dict(additionalData) if additionalData else {}
        if not self.wantsFile(obj):
            try:
                data = self.to_bytes(obj, hdu=hdu, additionalData=extra)
            except ButlerError:
                raise
            except _BAD_OBJECT + self.writeErrors as exc:
                raise self._unwritable(obj, exc) from exc
            storage.writeBytes(path, data)
            return
        with storage.writer(path) as tmp:
            try:
                self.write_file(obj, tmp, hdu=hdu, additionalData=extra)
            except ButlerError:
                raise
            except _BAD_OBJECT + self.writeErrors as exc:
                raise self._unwritable(obj, exc) from exc

    def _unwritable(self, obj: Any, exc: BaseException) -> UnwritableObjectError:
        given = type(obj)
        return UnwritableObjectError(f"{self.storageName} cannot write a {given.__module__}."
                                     f"{given.__qualname__} ({type(exc).__name__}: {exc}); "
                                     f"it writes {self.writes}")

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
