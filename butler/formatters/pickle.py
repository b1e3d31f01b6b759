"""`PickleStorage`: any picklable object, highest pickle protocol."""

from __future__ import annotations

import pickle
from typing import IO, Any

from .base import Formatter

__all__ = ["PickleStorage"]


class PickleStorage(Formatter):
    """Pickle files. Only read pickles from repositories you trust."""

    storageName = "PickleStorage"
    extensions = (".pickle", ".pkl")

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        return pickle.load(stream)

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
