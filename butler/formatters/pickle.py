"""`PickleStorage`: any picklable object, highest pickle protocol."""

from __future__ import annotations

import pickle
from typing import Any

from .base import Formatter

__all__ = ["PickleStorage"]


class PickleStorage(Formatter):
    """Pickle files. Only read pickles from repositories you trust."""

    storageName = "PickleStorage"
    extensions = (".pickle", ".pkl")

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        with open(path, "rb") as stream:
            return pickle.load(stream)

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        with open(path, "wb") as stream:
            pickle.dump(obj, stream, protocol=pickle.HIGHEST_PROTOCOL)
