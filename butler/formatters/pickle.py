"""`PickleStorage`: any picklable object, highest pickle protocol; read back with a restricted unpickler.

Unpickling calls whatever globals the file names, so a pickle planted in a
repository could run ``os.system``. Reads therefore resolve each global the
file names through `RestrictedUnpickler.find_class`, which allows only:

- the plain builtin types, the classes of ``collections``, ``datetime``,
  ``decimal``, ``fractions`` and ``uuid``, and the classes of numpy, astropy,
  this package and the module prefixes you trust (``BUTLER_TRUSTED_MAPPERS``,
  the same trust as for mapper names): see `butler.utils.trusted_type`;
- classes of the program's own modules that are already imported (a script's
  or a test's class round-trips; standard-library and installed-package
  modules are not the program's own, so ``subprocess.Popen`` is refused);
- the few functions that pickles of those classes call to rebuild them
  (`RECONSTRUCTORS`: ``copyreg._reconstructor``, numpy's ``_reconstruct`` ...).

Anything else (``os.system``, ``builtins.eval``, ``getattr``,
``functools.partial``, any other function) raises `UnsafePickleError` before
it is imported or called. Writes are plain `pickle.dumps`.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
from typing import IO, Any, ClassVar

from ..errors import UnsafePickleError
from ..utils import TRUSTED_MAPPERS_ENV, trusted_prefixes, trusted_type
from .base import Formatter

__all__ = ["PickleStorage", "RestrictedUnpickler", "RECONSTRUCTORS"]

#: the functions (not classes) a pickle may name: each rebuilds an object of an allowed class
#: from its state, and none reads, writes or imports anything
RECONSTRUCTORS = frozenset({
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # bytes in protocol 0-2 pickles
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy.ma.core", "_mareconstruct"),
    ("astropy.units.core", "_recreate_irreducible_unit"),
    ("astropy.wcs.wcs", "__WCS_unpickle__"),
})


def _reconstructor(module: str, name: str) -> Any:
    """The function of `RECONSTRUCTORS` (numpy 1 names read through numpy 2's ``numpy._core``)."""
    if module.startswith("numpy.core."):
        try:
            return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
        except ImportError:  # numpy 1: numpy.core is the real module
            pass
    return getattr(importlib.import_module(module), name)


#: (module, name) -> what a pickle's global resolved to; refusals are not kept (the module may be
#: imported or trusted later), and a resolved global stays resolved for the process
_RESOLVED: dict[tuple[str, str], Any] = {}


def _resolve(module: str, name: str) -> Any:
    """The object a pickle's global stands for, or None when it is refused."""
    found = _RESOLVED.get((module, name))
    if found is not None:
        return found
    mapped_module, mapped_name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    mapped_module = _compat_pickle.IMPORT_MAPPING.get(mapped_module, mapped_module)
    if (mapped_module, mapped_name) in RECONSTRUCTORS:
        found = _reconstructor(mapped_module, mapped_name)
    else:
        found = trusted_type(mapped_module, mapped_name, trusted_prefixes())
    if found is not None:
        _RESOLVED[(module, name)] = found
    return found


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals described in the module notes.

    Parameters
    ----------
    stream : binary file object
        The pickle.
    source : `str`
        The file's name, for messages.
    """

    def __init__(self, stream: IO[bytes], source: str):
        super().__init__(stream)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _resolve(module, name)
        if found is None:
            raise UnsafePickleError(
                f"{self._source}: refusing to unpickle global {module}.{name}: only plain data, numpy, "
                f"astropy, butler and trusted classes are read from a repository (nothing was imported or "
                f"called); if you trust its module, set {TRUSTED_MAPPERS_ENV}={module} or import it first")
        return found


class PickleStorage(Formatter):
    """Pickle files, read with `RestrictedUnpickler`."""

    storageName = "PickleStorage"
    extensions = (".pickle", ".pkl")
    writes = "any picklable object"
    readErrors: ClassVar[tuple[type[BaseException], ...]] = (pickle.UnpicklingError,)
    writeErrors: ClassVar[tuple[type[BaseException], ...]] = (pickle.PicklingError,)

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        return RestrictedUnpickler(stream, source).load()

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
