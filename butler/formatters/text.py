"""`TextStorage`: a text file read and written as one `str`."""

from __future__ import annotations

from typing import Any

from ..errors import UnwritableObjectError
from .base import Formatter

__all__ = ["TextStorage"]


class TextStorage(Formatter):
    """Plain UTF-8 text files."""

    storageName = "TextStorage"
    extensions = (".txt",)

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> str:
        with open(path, encoding="utf-8") as stream:
            return stream.read()

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        if not isinstance(obj, str):
            raise UnwritableObjectError(f"TextStorage writes str, not {type(obj).__name__}")
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(obj)
