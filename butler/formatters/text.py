"""`TextStorage`: a text file read and written as one `str`."""

from __future__ import annotations

from typing import IO, Any

from .base import Formatter

__all__ = ["TextStorage"]


class TextStorage(Formatter):
    """Plain UTF-8 text files."""

    storageName = "TextStorage"
    extensions = (".txt",)
    writes = "str"

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict) -> str:
        return stream.read().decode("utf-8")

    def to_bytes(self, obj: Any, *, hdu: int | None, additionalData: dict) -> bytes:
        if not isinstance(obj, str):
            raise TypeError("not a str")
        return obj.encode("utf-8")
