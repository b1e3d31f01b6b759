"""Astropy helpers of the camera mappers: headers, boxes, WCS, amplifier assembly, CCDData.

Everything here reads FITS through `astropy.io.fits` (which recognises gzip
streams by their magic bytes, whatever the file name says).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from butler.formatters.fits import COMMENTARY_KEYWORDS, open_for_every_pixel

if TYPE_CHECKING:
    from astropy.io.fits import Header
    from astropy.nddata import CCDData
    from astropy.wcs import WCS

__all__ = ["read_header", "read_image_header", "image_bbox", "header_wcs", "assemble_amplifiers",
           "read_amplifier", "to_ccddata", "set_keyword", "catalog_length", "catalog_schema"]

_SECTION = re.compile(r"\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]")


def read_header(path: str, hdu: int | None = None) -> Header:
    """Return the header of an HDU; without ``hdu`` the primary, merged with HDU 1 when it holds no data.

    In the merged header the keys of HDU 1 win.

    Parameters
    ----------
    path : `str`
        The FITS file (gzip-compressed or not).
    hdu : `int`, optional
        The HDU to read.
    """
    from astropy.io import fits

    with fits.open(path) as hdus:
        if hdu is not None:
            return hdus[hdu].header.copy()
        primary = hdus[0].header.copy()
        if primary.get("NAXIS", 0) == 0 and len(hdus) > 1:
            primary.strip()
            primary.update(_image_header(hdus[1]))
        return primary


def read_image_header(path: str, hdu: int | None = None) -> Header:
    """Return the header of the HDU that holds the image, ``NAXIS1/2`` kept.

    Parameters
    ----------
    path : `str`
        The FITS file (gzip-compressed or not).
    hdu : `int`, optional
        The HDU to read; without it the primary when it holds pixels, else HDU 1
        (the ``IMAGE`` plane of a multi-extension exposure).
    """
    from astropy.io import fits

    with fits.open(path) as hdus:
        if hdu is None:
            hdu = 0 if hdus[0].header.get("NAXIS", 0) or len(hdus) == 1 else 1
        return hdus[hdu].header.copy()


def _image_header(hdu: Any) -> Header:
    """The header of an HDU as it describes the image (tile compression unwrapped)."""
    header = hdu.header.copy()
    header.strip()
    return header


def image_bbox(header: Header) -> tuple[int, int, int, int]:
    """Return ``(x0, y0, width, height)`` of an image: origin ``-LTV1, -LTV2``, size ``NAXIS1/2``."""
    x0 = -int(round(header.get("LTV1", 0)))
    y0 = -int(round(header.get("LTV2", 0)))
    return x0, y0, int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0))


def header_wcs(header: Header) -> WCS:
    """Return the `astropy.wcs.WCS` a header describes (celestial part)."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2) if "CTYPE1" in header else WCS(naxis=2)


def catalog_length(path: str) -> int:
    """Return the number of rows (``NAXIS2`` of HDU 1) of a FITS catalog."""
    return int(read_header(path, 1).get("NAXIS2", 0))


def catalog_schema(path: str) -> Any:
    """Return a zero-row `astropy.table.Table` with the columns of a FITS catalog."""
    from astropy.table import Table

    return Table.read(path, hdu=1)[:0]


def _section(text: str) -> tuple[int, int, int, int]:
    match = _SECTION.match(text or "")
    if match is None:
        raise ValueError(f"not a FITS section: {text!r}")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    return x1, x2, y1, y2


def assemble_amplifiers(path: str) -> CCDData:
    """Return a raw file as one untrimmed `CCDData`, its amplifiers tiled by ``DETSEC``.

    Every image HDU with a ``DETSEC`` is one amplifier. Amplifiers are placed on
    a grid ordered by the lower corner of their ``DETSEC``, each flipped along
    an axis where its ``DETSEC`` runs backwards; overscan is kept. ``meta`` is
    the primary header. A file whose amplifiers hold no pixels gives a 0×0 image.
    """
    import numpy as np

    with open_for_every_pixel(path) as hdus:
        primary = hdus[0].header.copy()
        amps = [(_section(hdu.header["DETSEC"]), hdu.data) for hdu in hdus[1:]
                if hdu.is_image and "DETSEC" in hdu.header]
        amps = [(sec, np.asarray(data)) for sec, data in amps if data is not None and data.size]
    if not amps:
        return to_ccddata(np.zeros((0, 0), dtype=np.float32), primary)
    shapes = {data.shape for _, data in amps}
    if len(shapes) != 1:
        raise ValueError(f"{path}: amplifiers of different shapes {sorted(shapes)} cannot be tiled")
    height, width = shapes.pop()
    columns = sorted({min(x1, x2) for (x1, x2, _, _), _ in amps})
    rows = sorted({min(y1, y2) for (_, _, y1, y2), _ in amps})
    image = np.zeros((len(rows) * height, len(columns) * width), dtype=amps[0][1].dtype)
    for (x1, x2, y1, y2), data in amps:
        tile = data[:, ::-1] if x1 > x2 else data
        tile = tile[::-1, :] if y1 > y2 else tile
        row, col = rows.index(min(y1, y2)), columns.index(min(x1, x2))
        image[row * height:(row + 1) * height, col * width:(col + 1) * width] = tile
    return to_ccddata(image, primary)


def read_amplifier(path: str, hdu: int) -> CCDData:
    """Return one amplifier HDU as a `CCDData` (a 0×0 image when it holds no pixels)."""
    import numpy as np
    from astropy.io import fits

    with fits.open(path) as hdus:
        data = hdus[hdu].data
        header = hdus[hdu].header.copy()
        data = np.zeros((0, 0), dtype=np.float32) if data is None else np.array(data)
    return to_ccddata(data, header)


def _updates_as_copied(meta: Any) -> bool:
    """Whether updating an empty `~astropy.io.fits.Header` with ``meta`` gives a copy of it.

    True for a header whose keywords are all different and none commentary:
    `Header.update` then sets each card in order, as `Header.copy` keeps them.
    """
    from astropy.io.fits import Header

    if type(meta) is not Header:
        return False
    keywords = list(meta.keys())
    return len(set(keywords)) == len(keywords) and COMMENTARY_KEYWORDS.isdisjoint(keywords)


def to_ccddata(item: Any, header: Header | None = None) -> CCDData:
    """Return ``item`` as a `CCDData` whose ``meta`` is ``header`` (image keys winning).

    Parameters
    ----------
    item : `CCDData`, `numpy.ndarray` or an object with ``.data``
        What a formatter read.
    header : `astropy.io.fits.Header`, optional
        The header as the ``_md`` dataset gives it.

    Notes
    -----
    The unit is ``BUNIT`` or ``adu``; the WCS comes from the header when it has ``CTYPE1``.
    """
    import numpy as np
    from astropy import units
    from astropy.io.fits import Header
    from astropy.nddata import CCDData

    if isinstance(item, CCDData):
        if header is None and _updates_as_copied(item.meta):
            meta = item.meta.copy()  # what the update below makes of it, in a tenth of the time
        else:
            meta = Header(header) if header is not None else Header()
            meta.update(item.meta if isinstance(item.meta, Header) else Header(dict(item.meta)))
        data, mask, uncertainty, wcs, unit = item.data, item.mask, item.uncertainty, item.wcs, item.unit
    else:
        meta = Header(header) if header is not None else Header()
        data = np.asarray(getattr(item, "data", item))
        mask = uncertainty = wcs = unit = None
    if unit is None:
        try:
            unit = units.Unit(meta.get("BUNIT", "adu"))
        except ValueError:
            unit = units.adu
    if wcs is None and "CTYPE1" in meta:
        wcs = header_wcs(meta)
    return CCDData(data, unit=unit, mask=mask, uncertainty=uncertainty, meta=meta, wcs=wcs)


def set_keyword(header: Header, keyword: str, value: Any) -> None:
    """Do ``header[keyword] = value``, faster for a new keyword with a short text value.

    Parameters
    ----------
    header : `astropy.io.fits.Header`
        The header to change.
    keyword : `str`
        A standard (upper-case, at most 8 characters) keyword.
    value
        Its value.

    Notes
    -----
    Building a `~astropy.io.fits.Card` from a value costs tens of microseconds
    (astropy checks and formats it); parsing one from its 80-column image, about
    one. So a new keyword whose text value fits one card is appended as the card
    parsed from the image astropy formats for it, made once per keyword and
    value, where ``header[keyword] = value`` appends its card. Anything else
    (the keyword is already there, a value of another type or a long one) is
    left to ``header[keyword] = value``.
    """
    from astropy.io.fits import Card

    image = _card_image(keyword, value) if type(value) is str and keyword not in header else None
    if image is None:
        header[keyword] = value
        return
    # where `Header.append` puts a new key: before the trailing commentary and blank cards, so at the
    # end (its cheaper case) when the last card is neither
    at_end = not header or header.cards[-1].keyword not in COMMENTARY_KEYWORDS
    header.append(Card.fromstring(image), end=at_end)


@functools.lru_cache(maxsize=256)
def _card_image(keyword: str, value: str) -> str | None:
    """The image of the card astropy makes of ``keyword = value``; None when it takes more than one card."""
    from astropy.io.fits import Card

    image = Card(keyword, value).image
    return image if len(image) == Card.length else None
