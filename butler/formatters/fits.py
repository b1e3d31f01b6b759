"""FITS formatters on astropy: `FitsStorage` (images, headers, arrays) and `FitsCatalogStorage` (tables).

Through a storage whose local files are the stored files (POSIX), a file is
opened by path, so pixels are memory-mapped and headers or boxes are read
alone; through any other storage (``mem://``) it is read from its bytes with
``fits.open(fileobj)``. Files are recognised by content, not by name: astropy sniffs the gzip magic of
files named ``.fits`` and reads tile-compressed ``CompImageHDU`` extensions.

What a read returns depends on the ``pythonType`` asked for (see `python_kind`):

- a header type (``PropertyList``, ``Header``, ...) gives an `astropy.io.fits.Header`;
- a table type (``*Catalog``, ``BackgroundList``, ``Table``) gives an `astropy.table.Table`;
- ``ndarray`` gives the pixels as a numpy array;
- anything else gives an `astropy.nddata.CCDData`.

Images are written as multi-extension FITS: a primary header holding the
metadata, then ``IMAGE``, ``MASK`` and ``VARIANCE`` extensions (each also
labelled with ``EXTTYPE``, as the LSST stack does, so its files read the same
way). CCDData masks are boolean: they are stored as uint8, and an integer
mask-plane image (the LSST stack's) reads as "any plane set".

Sub-images: when ``additionalData`` holds ``llcX, llcY, width, height`` only
that box is read from the file (``imageOrigin`` ``"PARENT"``, the default,
counts from the image origin recorded in ``LTV1/LTV2``; ``"LOCAL"`` from the
first pixel). The read parameter ``bbox`` (``get(..., parameters={"bbox": (x0,
y0, width, height)})``) reads the same box from any image dataset: only the rows
of the box are read (``.section``; of a tile-compressed image, only its tiles).

Table parameters: ``columns`` and ``rows`` read a table through a memory map
(a local file), copying out only those columns and rows. A FITS binary table
stores its rows one after the other, so the file pages under a column are
those of every row it spans; what is saved is the decoding and copying of the
other columns.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import re
import zlib
from typing import IO, TYPE_CHECKING, Any

from ..errors import FormatterError
from .base import Formatter, type_name
from .parameters import IMAGE_PARAMETERS, TABLE_PARAMETERS, box_of, columns_of, rows_of

if TYPE_CHECKING:
    from astropy.io import fits as fits_types
    from astropy.nddata import CCDData

__all__ = ["FitsStorage", "FitsCatalogStorage", "python_kind", "open_for_every_pixel"]

_log = logging.getLogger(__name__)

_HEADER_TYPES = frozenset({"PropertyList", "PropertySet", "Header", "DecoratedImageMetadata"})
_TABLE_TYPES = frozenset({"Table", "QTable", "BackgroundList", "Defects"})
_ARRAY_TYPES = frozenset({"ndarray"})
_IMAGE_TYPE = re.compile(r"CCDData|NDData|Exposure|Image")

#: Keywords that describe an HDU's layout rather than its content.
_STRUCTURAL = frozenset({"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "GROUPS",
                         "BZERO", "BSCALE", "EXTNAME", "EXTVER", "EXTTYPE", "INHERIT", "CHECKSUM",
                         "DATASUM"})
_NAXIS_N = re.compile(r"NAXIS\d+$")
#: keywords astropy's `Header.strip` removes (with the NAXISn of NAXIS and the table columns of TFIELDS)
_STRIPPED = frozenset({"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "GROUPS", "BSCALE",
                       "BZERO", "TFIELDS"})
#: the keywords of commentary cards (blank ones included), which a header may hold more than once and
#: which `Header.update` and `Header.extend` do not keep in place
COMMENTARY_KEYWORDS = frozenset({"", "COMMENT", "HISTORY"})
_MEF_ROLES = ("IMAGE", "MASK", "VARIANCE")
_BOX_KEYS = ("llcX", "llcY", "width", "height")
_GZIP_MAGIC = b"\x1f\x8b"

#: what gzip raises on a broken stream besides the base's built-ins
_FITS_READ_ERRORS: tuple[type[BaseException], ...] = (zlib.error,)


def python_kind(pythonType: Any) -> str:
    """Classify a Python type (or a legacy type-name string) for FITS reading.

    Parameters
    ----------
    pythonType : `type`, `str` or `None`
        E.g. ``astropy.io.fits.Header``, ``"lsst.afw.image.ExposureF"``,
        ``"lsst.afw.table.SourceCatalog"``.

    Returns
    -------
    kind : `str`
        ``"header"``, ``"table"``, ``"array"``, ``"image"`` (CCDData, NDData,
        exposures and images) or ``"other"`` (anything else, including None).
    """
    name = type_name(pythonType)
    if name in _HEADER_TYPES:
        return "header"
    if name in _TABLE_TYPES or name.endswith("Catalog"):
        return "table"
    if name in _ARRAY_TYPES:
        return "array"
    if _IMAGE_TYPE.search(name):
        return "image"
    return "other"


def _is_structural(keyword: str) -> bool:
    return keyword in _STRUCTURAL or bool(_NAXIS_N.match(keyword))


def _content_cards(header: fits_types.Header) -> list:
    return [card for card in header.cards if not _is_structural(card.keyword)]


def _has_pixels(hdu: Any) -> bool:
    """Whether an HDU is an image with axes (``NAXIS > 0``).

    A plain primary or image HDU's ``shape`` has its ``NAXIS`` axes, read when
    astropy made the HDU: asking it parses no header value again (the first
    look at a value parses its card, ~17 us).
    """
    from astropy.io import fits

    if type(hdu) in (fits.PrimaryHDU, fits.ImageHDU):
        return bool(hdu.is_image and hdu.shape)
    return bool(hdu.is_image and hdu.header.get("NAXIS", 0) > 0)


def _hdu_or_none(hdul: fits_types.HDUList, index: int) -> Any:
    """Return HDU ``index`` without loading the HDUs after it, or None if the file is shorter."""
    try:
        return hdul[index]
    except IndexError:
        return None


def _merges_primary(hdul: fits_types.HDUList, index: int) -> bool:
    """Whether HDU ``index``'s header is read merged onto the primary's: an extension of a data-less primary."""
    return index != 0 and not _has_pixels(hdul[0])


def _update_with(header: fits_types.Header, cards: list) -> fits_types.Header:
    """Update ``header`` with ``cards`` as ``header.extend(cards, update=True)`` does, and return it.

    `Header.extend` is kept for what it alone does: update a keyword ``header``
    already holds in its place, drop a COMMENT or HISTORY card whose text is
    already there, put a keyword before the trailing commentary or blank cards,
    and strip table and structural keywords. When none of that can happen (see
    `_appends_in_order`) the result is the same cards appended in order, which
    is what is done then, at a fraction of the cost.
    """
    if not _appends_in_order(header, cards):
        header.extend(cards, update=True)
        return header
    for card in cards:
        header.append(card, end=True)
    return header


def _appends_in_order(header: fits_types.Header, cards: list) -> bool:
    """Whether ``header.extend(cards, update=True)`` appends ``cards`` as they are, in order.

    True when no card of either is commentary, blank or record-valued, and the
    keywords of ``cards`` are none stripped by `Header.strip`, none in
    ``header`` and all different. Keywords are compared upper-cased, which
    misses no clash: keywords astropy indexes as one (`Card.normalize_keyword`)
    are equal upper-cased too.
    """
    added = len(header)  # the position of the first of ``cards`` in the sequence below
    seen: set[str] = set()
    for position, card in enumerate(itertools.chain(header.cards, cards)):
        keyword = card.keyword.upper()
        if keyword in COMMENTARY_KEYWORDS or card.field_specifier is not None:
            return False
        if position >= added and (keyword in _STRIPPED or keyword in seen):
            return False
        seen.add(keyword)
    return True


def _merged_header(hdul: fits_types.HDUList, index: int) -> fits_types.Header:
    """Return a copy of HDU ``index``'s header, merged onto the primary's when `_merges_primary` (its keys win)."""
    header = hdul[index].header
    if not _merges_primary(hdul, index):
        return header.copy()
    return _update_with(hdul[0].header.copy(), _content_cards(header))


def _default_header_index(hdul: fits_types.HDUList) -> int:
    """The primary, or HDU 1 when the primary has no pixels and HDU 1 is an image."""
    first = _hdu_or_none(hdul, 1)
    if not _has_pixels(hdul[0]) and first is not None and first.is_image:
        return 1
    return 0


def _first_image_index(hdul: fits_types.HDUList, path: str) -> int:
    for index, hdu in enumerate(hdul):
        if _has_pixels(hdu):
            return index
    raise FormatterError(f"{path} has no image HDU")


def _role(hdu: Any) -> str | None:
    for key in ("EXTTYPE", "EXTNAME"):
        value = str(hdu.header.get(key, "")).strip().upper()
        if value in _MEF_ROLES:
            return value
    return None


def _ends_file(hdu: Any) -> bool:
    """Whether the file ends exactly where this HDU's (padded) data ends, so no HDU follows it.

    From the HDU's ``fileinfo()`` (where its data starts, and their padded span; of a tile-compressed
    image, its table's) and the size astropy measured when it opened the file (0 when unknown, as for
    a gzip stream it inflates itself): False whenever that is not known, or the file is longer or
    shorter (astropy's own look past a truncated file warns about it).
    """
    info = hdu.fileinfo()
    size = getattr(info["file"], "size", 0) if info else 0
    return bool(size) and info["datLoc"] + info["datSpan"] == size


def _mef_layout(hdul: fits_types.HDUList) -> dict[str, int] | None:
    """Return {role: HDU index} for an IMAGE/MASK/VARIANCE file (IMAGE in HDU 1), else None."""
    hdu = _hdu_or_none(hdul, 1)
    if hdu is None or _role(hdu) != "IMAGE":
        return None
    layout = {"IMAGE": 1}
    for index in (2, 3):
        # no read past the end of the file for the next index: the sizes tell, else astropy's probe
        hdu = None if _ends_file(hdu) else _hdu_or_none(hdul, index)
        if hdu is None:
            break
        role = _role(hdu)
        if role in ("MASK", "VARIANCE"):
            layout[role] = index
    return layout


def _box(additionalData: dict, header: fits_types.Header, shape: tuple[int, ...],
         path: str) -> tuple[slice, slice] | None:
    """Return the numpy slices of the requested sub-image, or None for the whole image."""
    if not _wants_box(additionalData):
        return None
    x, y, width, height = (int(additionalData[key]) for key in _BOX_KEYS)
    if additionalData.get("imageOrigin", "PARENT") == "PARENT":
        x += int(header.get("LTV1", 0))
        y += int(header.get("LTV2", 0))
    if x < 0 or y < 0 or width <= 0 or height <= 0 or y + height > shape[0] or x + width > shape[1]:
        raise FormatterError(f"box (x={x}, y={y}, width={width}, height={height}) is not inside the "
                         f"{shape[1]}x{shape[0]} image of {path}")
    return slice(y, y + height), slice(x, x + width)


def _pixels(hdu: Any, box: tuple[slice, slice] | None) -> Any:
    """Read an HDU's (scaled) pixels, only the box when one is given.

    The array never refers to the file's memory map: unscaled pixels of a
    mapped file are copied out, so the file can be closed.
    """
    if box is not None:
        return hdu.section[box]
    data = hdu.data
    return data if data is None or data.flags.owndata else data.copy()


def _unit(header: fits_types.Header, path: str) -> Any:
    """The unit named by ``BUNIT`` (case-insensitively, for the common ``ADU``), else adu."""
    text = str(header.get("BUNIT", "")).strip()
    unit = _unit_named(text)
    if unit is None:
        from astropy import units as u

        _log.warning("%s: BUNIT %r is not a unit astropy knows; using adu", path, text)
        return u.adu
    return unit


@functools.lru_cache(maxsize=256)
def _unit_named(text: str) -> Any:
    """The (immutable) astropy unit ``text`` names, as is or lower-cased; adu for no text, None when
    astropy knows neither. Parsed once per text in a process: every read of a camera's files names the same."""
    from astropy import units as u

    if not text:
        return u.adu
    for candidate in (text, text.lower()):
        try:
            return u.Unit(candidate)
        except ValueError:
            continue
    return None


def _wcs(header: fits_types.Header, box: tuple[slice, slice] | None, path: str) -> Any:
    """The WCS of a header with ``CTYPE1`` (sliced to the box), or None when astropy cannot read it."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    except (ValueError, KeyError, MemoryError) as exc:
        _log.warning("%s: ignoring a WCS astropy cannot read: %s", path, exc)
        return None
    return wcs.slice(box) if box is not None else wcs


def _read_ccd(hdul: fits_types.HDUList, path: str, hdu: int | None, additionalData: dict) -> CCDData:
    from astropy.io import fits
    from astropy.nddata import CCDData, VarianceUncertainty

    layout = _mef_layout(hdul) if hdu is None else None
    if layout is not None:
        index = layout["IMAGE"]
    else:
        index = hdu if hdu is not None else _first_image_index(hdul, path)
    image = hdul[index]
    merges = _merges_primary(hdul, index)
    if merges:
        # the meta is the content cards of the merged header: built straight from both headers'
        # content cards (the image's winning), without first copying the primary's whole header
        meta = _update_with(fits.Header(_content_cards(hdul[0].header)), _content_cards(image.header))
        header = meta  # what is looked up below (LTV1/2, BUNIT, CTYPE1) are content cards
    else:
        header = image.header  # read only: the meta is the one copy made
        meta = fits.Header(_content_cards(header))
    box = _box(additionalData, header, image.shape, path)
    mask = variance = None
    if layout is not None and "MASK" in layout:
        mask = _pixels(hdul[layout["MASK"]], box)
    if layout is not None and "VARIANCE" in layout:
        variance = VarianceUncertainty(_pixels(hdul[layout["VARIANCE"]], box))
    wcs = None
    if "CTYPE1" in meta:  # a content card: the meta tells for the whole header
        # a WCS is read from the whole merged header, as it always was (its NAXIS cards count)
        wcs = _wcs(_merged_header(hdul, index) if merges else header, box, path)
    return CCDData(_pixels(image, box), meta=meta, mask=mask, uncertainty=variance, wcs=wcs,
                   unit=_unit(header, path))


def _ccd_to_hdulist(ccd: CCDData) -> fits_types.HDUList:
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import VarianceUncertainty

    image_header = ccd.wcs.to_header(relax=True) if ccd.wcs is not None else fits.Header()
    if ccd.unit is not None:
        image_header["BUNIT"] = ccd.unit.to_string()
    planes = [("IMAGE", np.asarray(ccd.data), image_header)]
    if ccd.mask is not None:
        planes.append(("MASK", np.asarray(ccd.mask).astype(np.uint8), None))
    if ccd.uncertainty is not None:
        planes.append(("VARIANCE", ccd.uncertainty.represent_as(VarianceUncertainty).array, None))
    hdus = [fits.PrimaryHDU(header=_header_from_meta(ccd.meta))]
    for role, data, header in planes:
        extension = fits.ImageHDU(data, header=header, name=role)
        extension.header["EXTTYPE"] = role
        hdus.append(extension)
    return fits.HDUList(hdus)


def _header_from_meta(meta: Any) -> fits_types.Header:
    """A header of the content cards of a `Header` or of a mapping's items."""
    from astropy.io import fits

    if isinstance(meta, fits.Header):
        return fits.Header(_content_cards(meta))
    header = fits.Header()
    for keyword, value in (meta or {}).items():
        if not _is_structural(str(keyword).upper()):
            header[keyword] = value
    return header


def _read_table(source: IO[bytes], hdu: int | None, parameters: dict | None = None) -> Any:
    from astropy.io.fits import open as fits_open
    from astropy.table import Table

    index = 1 if hdu is None else hdu
    if not parameters:
        return Table.read(source, format="fits", hdu=index, character_as_bytes=False)
    # memory-mapped (a local file), unmasked, strings left as bytes: nothing is read until the
    # columns and rows asked for are copied out, and the map is closed with the file
    with fits_open(source, memmap=True, lazy_load_hdus=True) as hdul:
        # checked from the header, before the map exists: an error keeps no reference to it
        names = columns_of(parameters, hdul[index].columns.names,
                           f"HDU {index} of {getattr(source, 'name', 'the file')}")
        rows = rows_of(parameters)
        mapped = Table.read(hdul[index], format="fits", character_as_bytes=True, mask_invalid=False,
                            strip_spaces=False)
        picked = [mapped[name] if rows is None else mapped[name][rows] for name in names or mapped.colnames]
        table = Table(picked, meta=mapped.meta, copy=True)
        del mapped, picked
    _as_whole_read(table)
    return table


def _as_whole_read(table: Any) -> None:
    """Make the columns of a memory-mapped read what a whole read gives (astropy does neither on a map):
    text decoded and stripped of trailing blanks, NaN masked."""
    import numpy as np
    from astropy.table import Column, MaskedColumn

    for name in table.colnames:
        column = table[name]
        if column.dtype.kind == "S":
            replacement = Column(np.char.rstrip(np.char.decode(np.asarray(column), "ascii")), name=name)
        elif column.dtype.kind in "fc" and not isinstance(column, MaskedColumn) and np.isnan(column).any():
            replacement = MaskedColumn(np.asarray(column), name=name, mask=np.isnan(column))
        else:
            continue
        replacement.info.unit, replacement.info.format = column.unit, column.format
        replacement.info.description, replacement.info.meta = column.description, column.meta
        table[name] = replacement


def _wants_box(additionalData: dict) -> bool:
    return all(key in additionalData for key in _BOX_KEYS)


def open_for_every_pixel(path: str) -> fits_types.HDUList:
    """Open a local FITS file whose pixels will all be read, its HDUs loaded on access.

    A plain file is opened as `astropy.io.fits.getdata` opens it, through a
    memory map (`_pixels` copies the pixels out). A gzip stream (astropy
    recognises it by content) is inflated into memory once: astropy reads it
    through `gzip.GzipFile`, where every backward seek (to the pixels of an
    HDU after a look at the next header) restarts decompression from the
    first byte.
    """
    from astropy.io import fits

    hdul = fits.open(path, lazy_load_hdus=True)
    handle = hdul.fileinfo(0)["file"]
    if handle.compression != "gzip":
        return hdul
    with hdul:
        handle.seek(0)
        return fits.open(io.BytesIO(handle.read()), lazy_load_hdus=True)


def _without_keyword_hint(exc: BaseException) -> str:
    """astropy's message without its advice to pass a keyword (``ignore_missing_simple=True``),
    which no butler user can pass."""
    message = str(exc)
    head, _, _ = message.partition(" If this is really a FITS file")
    return head if "ignore_missing_simple" in message else message


def _fits_source(stream: IO[bytes]) -> IO[bytes]:
    """What astropy reads a FITS stream from: the stream itself when it is a seekable plain file
    (a local storage's file: memory maps and partial reads work), else its content in memory,
    inflated once when it is gzipped (astropy's own gzip reader restarts decompression from the
    first byte at every backward seek, and leaks its file when the stream is cut short)."""
    if stream.seekable():
        magic = stream.read(2)
        stream.seek(0)
        if magic != _GZIP_MAGIC:
            return stream
    data = stream.read()
    if data[:2] == _GZIP_MAGIC:
        import gzip  # only for a gzipped file: a command reading none never loads it

        data = gzip.decompress(data)
    return io.BytesIO(data)


def _open(source: IO[bytes], *, everyPixel: bool) -> fits_types.HDUList:
    """Open a FITS stream (`_fits_source`): memory-mapped when every pixel is read (as
    `astropy.io.fits.getdata` does; `_pixels` copies them out), else without a map, so astropy
    reads only the headers, or only the rows of a box."""
    from astropy.io import fits

    if everyPixel or isinstance(source, io.BytesIO):
        return fits.open(source, lazy_load_hdus=True)
    return fits.open(source, memmap=False, lazy_load_hdus=True)


#: the classes a FITS dataset of each kind accepts on put: what its get returns, and lossless forms
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "image": ("CCDData", "HDUList"),  # not a bare array: it has no unit nor WCS (see butler.converters)
    "array": ("ndarray", "HDUList"),
    "header": ("Header", "HDUList"),
    "table": ("Table", "HDUList"),
    "catalog": ("Table",),
}
#: how the classes of `_ACCEPTS` are named in messages
_ACCEPTED_NAMES = {"CCDData": "CCDData", "ndarray": "numpy arrays", "HDUList": "HDULists", "Header": "Headers",
                   "Table": "astropy Tables"}


def _accepted_classes() -> dict[str, type]:
    import numpy as np
    from astropy.io import fits
    from astropy.nddata import CCDData
    from astropy.table import Table

    return {"CCDData": CCDData, "ndarray": np.ndarray, "HDUList": fits.HDUList, "Header": fits.Header,
            "Table": Table}


class _FitsFormat(Formatter):
    """What the FITS formats share: astropy's errors on a bad file, and the objects a put accepts."""

    readErrors = _FITS_READ_ERRORS
    readsCompressed = True

    def describeReadError(self, exc: BaseException) -> str:
        return _without_keyword_hint(exc)

    def acceptedKind(self, pythonType: Any) -> str:
        """The key of `_ACCEPTS` for a dataset of ``pythonType``."""
        raise NotImplementedError

    def acceptedTypes(self, pythonType: Any) -> tuple[type, ...]:
        classes = _accepted_classes()
        return tuple(classes[name] for name in _ACCEPTS[self.acceptedKind(pythonType)])

    def refusal(self, obj: Any, pythonType: Any) -> str | None:
        import numpy as np

        accepted = _ACCEPTS[self.acceptedKind(pythonType)]
        structured = isinstance(obj, np.ndarray) and obj.dtype.names is not None  # a table, not pixels
        if isinstance(obj, self.acceptedTypes(pythonType)) and not structured:
            return None
        phrases = [_ACCEPTED_NAMES[name] for name in accepted]
        return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} or {phrases[-1]}"


class FitsStorage(_FitsFormat):
    """FITS images, headers and tables, by the Python type asked for (see the module notes)."""

    storageName = "FitsStorage"
    extensions = (".fits", ".fits.gz", ".fits.fz")
    writes = "CCDData, numpy arrays, Headers, Tables and HDULists"

    def acceptedKind(self, pythonType: Any) -> str:
        kind = python_kind(pythonType)
        return kind if kind in _ACCEPTS else "image"

    def acceptedParameters(self, pythonType: Any) -> frozenset[str]:
        kind = python_kind(pythonType)
        return TABLE_PARAMETERS if kind == "table" else frozenset() if kind == "header" else IMAGE_PARAMETERS

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict, parameters: dict | None = None) -> Any:
        if parameters and "bbox" in parameters:  # a section: read as an X_sub location's box is
            additionalData = {**additionalData, **box_of(parameters)}
        return self._read(_fits_source(stream), source, hdu, pythonType, additionalData, parameters)

    @staticmethod
    def _read(source: IO[bytes], name: str, hdu: int | None, pythonType: Any,
              additionalData: dict, parameters: dict | None) -> Any:
        kind = python_kind(pythonType)
        if kind == "table":
            return _read_table(source, hdu, parameters)
        with _open(source, everyPixel=kind != "header" and not _wants_box(additionalData)) as hdul:
            if kind == "header":
                return hdul[hdu].header.copy() if hdu is not None else _merged_header(
                    hdul, _default_header_index(hdul))
            if kind == "array":
                index = hdu if hdu is not None else _first_image_index(hdul, name)
                image = hdul[index]
                return _pixels(image, _box(additionalData, image.header, image.shape, name))
            return _read_ccd(hdul, name, hdu, additionalData)

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        import numpy as np
        from astropy.io import fits
        from astropy.nddata import CCDData
        from astropy.table import Table

        if hdu:
            raise ValueError(f"HDU {hdu} cannot be written alone; FitsStorage writes whole files")
        if isinstance(obj, fits.HDUList):
            hdul = obj
        elif isinstance(obj, CCDData):
            hdul = _ccd_to_hdulist(obj)
        elif isinstance(obj, fits.Header):
            hdul = fits.HDUList([fits.PrimaryHDU(header=_header_from_meta(obj))])
        elif isinstance(obj, Table):
            hdul = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(obj)])
        elif isinstance(obj, np.ndarray):
            hdul = fits.HDUList([fits.PrimaryHDU(obj)])
        else:
            raise TypeError("not a FITS object")
        try:
            hdul.writeto(path, overwrite=True)
        except fits.VerifyError as exc:  # an Exception: a ValueError for the base to report
            raise ValueError(str(exc)) from exc


class FitsCatalogStorage(_FitsFormat):
    """FITS binary tables as `astropy.table.Table` (HDU 1 unless an HDU is given)."""

    storageName = "FitsCatalogStorage"
    extensions = (".fits",)
    writes = "astropy Tables and what Table() accepts (mappings of columns, structured arrays)"

    def acceptedKind(self, pythonType: Any) -> str:
        return "catalog"

    def acceptedParameters(self, pythonType: Any) -> frozenset[str]:
        return frozenset() if python_kind(pythonType) == "header" else TABLE_PARAMETERS

    def read_stream(self, stream: IO[bytes], *, source: str, hdu: int | None, pythonType: Any,
                    additionalData: dict, parameters: dict | None = None) -> Any:
        return self._read(_fits_source(stream), hdu, pythonType, parameters)

    @staticmethod
    def _read(source: IO[bytes], hdu: int | None, pythonType: Any, parameters: dict | None) -> Any:
        if python_kind(pythonType) == "header":
            with _open(source, everyPixel=False) as hdul:
                return hdul[1 if hdu is None else hdu].header.copy()
        return _read_table(source, hdu, parameters)

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        from astropy.table import Table

        table = obj if isinstance(obj, Table) else Table(obj)
        table.write(path, format="fits", overwrite=True)
