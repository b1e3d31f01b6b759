"""butler: a pure-Python data butler with the LSST Gen2 (``lsst.daf.persistence``) API.

The public names are loaded on first use, so ``import butler`` stays cheap;
astropy, numpy and sqlite3 are imported only when a formatter or a registry
first needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module (relative to this package) that defines it
_PUBLIC = {
    "Butler": "butler",
    "ButlerSubset": "subset",
    "ButlerDataRef": "subset",
    "ButlerLocation": "location",
    "ButlerComposite": "location",
    "DataId": "dataId",
    "Policy": "policy",
    "Mapper": "mapper",
    "RepositoryArgs": "cfg",
    "RepositoryCfg": "cfg",
    "Storage": "storage",
    "StorageInterface": "storage",
    "PosixStorage": "storage",
    "Registry": "registry",
    "SqliteRegistry": "registry",
    "PosixRegistry": "registry",
    "FsScanner": "registry",
    "LogicalLocation": "logicalLocation",
    "ReadProxy": "readProxy",
    "sequencify": "utils",
    "iterify": "utils",
    "doImport": "utils",
    "ButlerError": "errors",
    "NoResults": "errors",
    "UnknownDataIdKeyError": "errors",
    "RegistryUnavailable": "errors",
    "StorageUnavailable": "errors",
    "AccessDenied": "errors",
    "MissingDependencyError": "errors",
    "UnknownConversionError": "errors",
    "UnknownParameterError": "errors",
    "ParentsMismatch": "errors",
    "RepositoryError": "errors",
    "RepositoryModeError": "errors",
    "MapperError": "errors",
    "TemplateError": "errors",
    "AliasError": "errors",
    "UnsafePathError": "errors",
    "UnsafeYamlError": "errors",
    "DatasetNotFoundError": "errors",
    "FormatterError": "errors",
    "UnwritableObjectError": "errors",
    "UnknownStorageError": "errors",
    "FileContentMismatch": "errors",
    "RegistryError": "errors",
    "DuplicatePolicyError": "errors",
    "PolicyError": "errors",
    "IngestError": "errors",
    "MapperImportError": "errors",
    "UntrustedMapperError": "errors",
    "DataIdValueError": "errors",
    "UnsafeDataIdValueError": "errors",
    "IncompleteDataIdError": "errors",
    "RegistrySchemaError": "errors",
    "RegistryConflictError": "errors",
    "ParentCycleError": "errors",
    "MissingParentError": "errors",
    "UnsafePickleError": "errors",
    "MapArgumentError": "errors",
}

#: submodules reachable as attributes of the package
_SUBMODULES = {
    "readProxy", "safeFileIo", "deprecation", "test", "safeio", "errors", "cfg", "policy",
    "dataId", "utils", "location", "mapper", "graph", "repository", "subset", "storage",
    "formatters", "registry", "logicalLocation", "compare", "ingest", "demo", "cli", "converters",
    "parallel",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module_name = _PUBLIC.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(f".{module_name}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'butler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | _SUBMODULES)
