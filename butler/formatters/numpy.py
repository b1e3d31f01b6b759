"""`NumpyStorage`: one numpy array in ``.npy`` format (never pickled objects)."""

from __future__ import annotations

import io
from typing import IO, Any

from .base import Formatter

__all__ = ["NumpyStorage"]


class NumpyStorage(Formatter):
    """``.npy`` files, read with ``allow_pickle=False``."""

    storageName = "NumpyStorage"
    extensions = (".npy",)
    writes = "numpy arrays (and array-likes) of plain dtypes, never object arrays"

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> Any:
        import numpy as np

        return np.load(stream, allow_pickle=False)

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.asanyarray(obj), allow_pickle=False)
        return buffer.getvalue()
