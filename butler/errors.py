"""The exceptions of the butler package.

Every error subclasses :class:`ButlerError` and, where the Gen2 contract names a
built-in type, that type too, so code written against ``lsst.daf.persistence``
that catches ``RuntimeError`` or ``OSError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "ButlerError",
    "NoResults",
    "ParentsMismatch",
    "RepositoryError",
    "RepositoryModeError",
    "MapperError",
    "TemplateError",
    "AliasError",
    "UnsafePathError",
    "UnsafeYamlError",
    "DatasetNotFoundError",
    "FormatterError",
    "UnwritableObjectError",
    "UnsafePickleError",
    "UnknownStorageError",
    "FileContentMismatch",
    "RegistryError",
    "DuplicatePolicyError",
    "PolicyError",
    "IngestError",
    "MapperImportError",
    "UntrustedMapperError",
    "DataIdValueError",
    "UnsafeDataIdValueError",
    "IncompleteDataIdError",
    "RegistrySchemaError",
    "RegistryConflictError",
    "ParentCycleError",
    "MissingParentError",
    "UnknownDataIdKeyError",
    "RegistryUnavailable",
    "StorageUnavailable",
    "AccessDenied",
    "UnknownConversionError",
    "UnknownParameterError",
    "MapArgumentError",
    "MissingDependencyError",
]


class ButlerError(Exception):
    """Base class of every error raised by the butler package."""

    def add_context(self, context: str) -> None:
        """Append ``context`` (the dataset type, data ID, repository...) to the message.

        Used where an error raised low down (a formatter) passes a place that
        knows what the user asked for.
        """
        if len(self.args) == 1 and isinstance(self.args[0], str):
            self.args = (f"{self.args[0]}; {context}",)


class NoResults(ButlerError, RuntimeError):
    """A lookup found no dataset (or not exactly one registry row).

    Parameters
    ----------
    message : `str`
        What went wrong.
    datasetType : `str`, optional
        The dataset type asked for.
    dataId : mapping, optional
        The data ID asked for.
    repositories : iterable of `str`, optional
        The repositories searched, in search order.
    """

    def __init__(self, message: str, datasetType: str | None = None, dataId: Any = None,
                 repositories: Iterable[str] | None = None):
        self.datasetType = datasetType
        self.dataId = dataId
        self.repositories = list(repositories) if repositories is not None else []
        parts = [message]
        if datasetType is not None:
            parts.append(f"datasetType: {datasetType}")
        if dataId is not None:
            parts.append(f"dataId: {describe_data_id(dataId)}")
        if self.repositories:
            parts.append("searched: " + ", ".join(self.repositories))
        super().__init__("; ".join(parts))


class ParentsMismatch(ButlerError, RuntimeError):
    """A repository's recorded parents do not match the parents it is opened with."""


class RepositoryError(ButlerError, RuntimeError):
    """A repository cannot be opened or used as asked."""


class RepositoryModeError(RepositoryError):
    """A repository was used against its mode ('r', 'w' or 'rw')."""


class MapperError(ButlerError, RuntimeError):
    """A mapper cannot be found, inferred, constructed or asked for a location."""


class TemplateError(MapperError):
    """A filename template is missing or cannot be filled from a data ID."""


class AliasError(ButlerError, RuntimeError):
    """A dataset-type alias is malformed, conflicts with another, or is undefined."""


class UnsafePathError(ButlerError, ValueError):
    """A path would resolve outside its repository root, or a data-ID value would make it so."""


class UnsafeYamlError(ButlerError, ValueError):
    """A YAML file holds a tag that the safe loader refuses to construct."""


class DatasetNotFoundError(ButlerError, FileNotFoundError):
    """A location's file does not exist."""


class FormatterError(ButlerError, ValueError):
    """A file cannot be read or written as asked (no image HDU, a box outside the image, ...)."""


class UnwritableObjectError(ButlerError, TypeError):
    """A formatter cannot write an object of this type."""


class UnknownStorageError(ButlerError, LookupError):
    """No formatter or storage is registered for a storage name or URI scheme."""


class FileContentMismatch(ButlerError, RuntimeError):
    """A write-once file already exists with different content."""


class RegistryError(ButlerError, RuntimeError):
    """A registry cannot be opened or queried."""


class DuplicatePolicyError(ButlerError, ValueError):
    """A dataset type is defined in more than one section of a mapper policy."""


class PolicyError(ButlerError, RuntimeError):
    """A policy cannot be made from what it was given (wrong file type, not a mapping)."""


class IngestError(ButlerError, RuntimeError):
    """A file cannot be ingested into a repository."""


class DataIdValueError(ButlerError, ValueError):
    """A data-ID value is of the wrong kind for its key, or converts to it only with a loss."""


class UnsafeDataIdValueError(DataIdValueError, UnsafePathError):
    """A data-ID value would make an unsafe or impossible path (a separator, ``..``, a control
    character, text that cannot be encoded, a name over the file-name length limit)."""


class IncompleteDataIdError(MapperError):
    """A data ID lacks template keys that the mapper cannot look up."""


def describe_location(location: Any, root: str) -> str:
    """Render what a location stands for (dataset type, data ID, repository) for an error message."""
    return (f"datasetType: {getattr(location, 'datasetType', None)}; "
            f"dataId: {describe_data_id(getattr(location, 'dataId', None))}; repository: {root}")


def describe_data_id(dataId: Any) -> str:
    """Render a data ID (with its tags, if any) for an error message."""
    if dataId is None:
        return "{}"
    items = ", ".join(f"{k!r}: {v!r}" for k, v in sorted(dict(dataId).items(), key=lambda kv: str(kv[0])))
    tags = getattr(dataId, "tag", None)
    if tags:
        return "{" + items + "} tags=" + repr(sorted(map(str, tags)))
    return "{" + items + "}"


class MapperImportError(MapperError, ImportError):
    """A mapper named in a repository's files cannot be imported; the message names the file."""


class UntrustedMapperError(MapperImportError):
    """A repository's files name a mapper from no trusted source, or something that is no mapper class.

    Nothing was imported from an untrusted module and nothing was constructed;
    the message names the file, the name and how to trust its module.
    """


class RegistrySchemaError(RegistryError):
    """A registry lacks a table or column that is asked for (an unknown data-ID key, another schema)."""


class RegistryConflictError(RegistryError):
    """A registry write would break a UNIQUE constraint (the row is registered already)."""


class ParentCycleError(RepositoryError):
    """Repositories are recorded as parents of each other, so none can be searched to the end.

    Parameters
    ----------
    message : `str`
        What went wrong.
    roots : iterable of `str`
        The repositories in the cycle, in parent order, the first repeated last.
    """

    def __init__(self, message: str, roots: Iterable[str]):
        self.roots = list(roots)
        super().__init__(f"{message}: {' -> '.join(self.roots)}")


class MissingParentError(RepositoryError):
    """A read reached a parent that a repository records but that does not exist.

    Searching past it could answer with an older version of the dataset, or
    with nothing, as if that were the answer; so the read stops there.

    Parameters
    ----------
    root : `str`
        The missing parent.
    recordedBy : `str`
        The repository whose cfg (or ``_parent`` link) records it.
    datasetType : `str`
        The dataset type read.
    dataId : mapping
        The data ID read.
    searched : iterable of `str`
        The repositories searched before it, in order.
    """

    def __init__(self, root: str, recordedBy: str, datasetType: str, dataId: Any,
                 searched: Iterable[str] = ()):
        self.root = root
        self.recordedBy = recordedBy
        self.searched = list(searched)
        message = (f"parent repository {root} recorded by repository {recordedBy} does not exist, so the "
                   f"search cannot go on past it; datasetType: {datasetType}; "
                   f"dataId: {describe_data_id(dataId)}")
        if self.searched:
            message += "; searched: " + ", ".join(self.searched)
        super().__init__(message)


class UnsafePickleError(FormatterError):
    """A pickle file names a global (a class or function) that reading a repository must not use.

    Nothing was imported or called; the message names the file, the module and
    name refused, and how to trust the module.
    """


class UnknownDataIdKeyError(DataIdValueError):
    """A data ID has a key that no template and no registry column of the camera knows (a typo).

    Gen2 ignored such a key, so a mistyped key silently selected everything;
    the message names the key, the closest known keys, the dataset type, the
    data ID and the repository.
    """


class RegistryUnavailable(ButlerError, ConnectionError):
    """A registry's database server cannot be reached or dropped the connection.

    The message names the host (or socket directory), port and database, and the
    data ID being looked up where there is one; never a password.
    """


class StorageUnavailable(ButlerError, ConnectionError):
    """A storage's server (an object store's endpoint) cannot be reached or failed.

    The message names the endpoint, bucket and key, and the dataset type and data
    ID where known; never a secret.
    """


class AccessDenied(ButlerError, PermissionError):
    """A server refused the credentials or the operation (wrong password, wrong secret, no right).

    The message names what was refused (host and database, or endpoint, bucket and
    key) and by whom it was asked; never the password or secret itself.
    """


class UnknownConversionError(ButlerError, LookupError):
    """No converter turns what a dataset reads as into the Python form asked for (``get(as_type=...)``).

    The message names the dataset type, the data ID, the form asked for, and
    the forms the dataset's type converts to.
    """


class UnknownParameterError(ButlerError, ValueError):
    """A read parameter (``get(parameters=...)``) that the dataset's format does not take, or a bad value.

    The message names the parameter, the parameters the format accepts, the
    dataset type, the data ID and the repository.
    """


class MapArgumentError(ButlerError, ValueError):
    """`butler.parallel.map` was given arguments that cannot work (``skipExisting`` with no outputs declared)."""


class MissingDependencyError(ButlerError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra that installs it."""
