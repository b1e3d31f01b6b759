"""`NumpyStorage`: one numpy array in ``.npy`` format (never pickled objects)."""

from __future__ import annotations

from typing import Any

from .base import Formatter

__all__ = ["NumpyStorage"]


class NumpyStorage(Formatter):
    """``.npy`` files, read with ``allow_pickle=False``."""

    storageName = "NumpyStorage"
    extensions = (".npy",)

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        import numpy as np

        with open(path, "rb") as stream:
            return np.load(stream, allow_pickle=False)

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        import numpy as np

        # A file object, not a name: np.save would append ".npy" to a temporary name.
        with open(path, "wb") as stream:
            np.save(stream, np.asanyarray(obj), allow_pickle=False)
