"""Issue #12, the camera read of a rerun-chain get: the fast paths of the FITS read and of
``std_calexp`` return what the plain astropy route returns, card by card.

The reference is built here with astropy alone: the merged header of an image in
an extension of a data-less primary is the primary's header extended by the
extension's cards with ``Header.extend(update=True)``; its content cards (the
structural keywords dropped) are the meta; pixels, mask and variance are the
HDUs' data.
"""

from __future__ import annotations

import gzip
import itertools
import random
import re
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.utils.exceptions import AstropyUserWarning

from butler import Butler
from butler.formatters import get_formatter
from butler.formatters.fits import _update_with
from butler.storage import Storage
from mappers.astro import set_keyword

DATA_ID = {"visit": 1, "filter": "g"}

#: what the reference drops from the merged header: the keywords that lay out an HDU
_LAYOUT = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "GROUPS", "BZERO", "BSCALE",
           "EXTNAME", "EXTVER", "EXTTYPE", "INHERIT", "CHECKSUM", "DATASUM"}


def _cards(header: fits.Header) -> list[tuple[str, str]]:
    """Every card as (keyword, 80-column image), in order: order, values, comments and commentary all count."""
    return [(card.keyword, card.image) for card in header.cards]


def _content(header: fits.Header) -> fits.Header:
    return fits.Header([card for card in header.cards
                        if card.keyword not in _LAYOUT and not re.fullmatch(r"NAXIS\d+", card.keyword)])


def _plane(hdu) -> str:
    """The plane an HDU says it is: its EXTTYPE, else its EXTNAME, when that names one."""
    names = [str(hdu.header.get(key, "")).strip().upper() for key in ("EXTTYPE", "EXTNAME")]
    return next((name for name in names if name in ("IMAGE", "MASK", "VARIANCE")), "")


def _reference(path) -> dict:
    """What reading ``path`` as CCDData gives, by astropy alone: an exposure's planes (IMAGE in HDU 1,
    MASK and VARIANCE in HDU 2 or 3), else the first HDU holding pixels."""
    with fits.open(path) as hdul:
        planes = {_plane(hdu): index for index, hdu in enumerate(hdul[1:4], start=1)}
        if len(hdul) > 1 and _plane(hdul[1]) == "IMAGE":
            index = 1
        else:
            index, planes = next(i for i, hdu in enumerate(hdul) if hdu.header.get("NAXIS", 0)), {}
        header = hdul[index].header.copy()
        if index and not hdul[0].header.get("NAXIS", 0):
            header = hdul[0].header.copy()
            header.extend(_content(hdul[index].header).cards, update=True)
        mask = hdul[planes["MASK"]].data.astype(bool) if "MASK" in planes else None
        variance = hdul[planes["VARIANCE"]].data.copy() if "VARIANCE" in planes else None
        return {"data": hdul[index].data.copy(), "meta": _content(header), "mask": mask, "variance": variance}


def _assert_same(ccd: CCDData, reference: dict) -> None:
    np.testing.assert_array_equal(ccd.data, reference["data"])
    assert ccd.data.dtype == reference["data"].dtype
    assert _cards(ccd.meta) == _cards(reference["meta"])
    if reference["mask"] is None:
        assert ccd.mask is None
    else:
        np.testing.assert_array_equal(ccd.mask, reference["mask"])
    if reference["variance"] is None:
        assert ccd.uncertainty is None
    else:
        np.testing.assert_array_equal(ccd.uncertainty.array, reference["variance"])


def _read(path) -> CCDData:
    storage, name = Storage.forFile(str(path))
    return get_formatter("FitsStorage").readFrom(storage, name, hdu=None, pythonType="CCDData", additionalData={})


# -- the merged header: Header.extend(update=True), or the same cards appended ----------------------

#: cards that exercise every case of Header.extend(update=True): keys, clashes (in any case), commentary
#: (repeated text), blanks, record-valued cards, HIERARCH, what Header.strip drops
_POOL = [
    ("FOO", 1, "a key"), ("BAR", "text", ""), ("foo", 2, "FOO again, lower case"), ("BAZ", 2.5, "float"),
    ("COMMENT", "a comment", ""), ("COMMENT", "another comment", ""), ("HISTORY", "made", ""),
    ("", "", ""), ("", "blank with text", ""), ("DP1", "AXIS.1: 1", ""), ("DP1", "AXIS.2: 2", ""),
    ("HIERARCH ESO DET CHIP", 3, "hierarch"), ("HIERARCH eso det chip", 4, "hierarch, lower case"),
    ("TFIELDS", 1, "stripped with its columns"), ("TFORM1", "E", ""), ("BUNIT", "adu", ""), ("QUX", True, ""),
]


def _header(picks: list[int]) -> fits.Header:
    return fits.Header([fits.Card(*_POOL[index]) for index in picks])


@pytest.mark.parametrize("seed", range(40))
def test_update_with_equals_extend_with_update(seed):
    """Whatever the two headers hold, the fast merge gives extend(update=True)'s cards, in its order."""
    rng = random.Random(seed)
    base = [rng.randrange(len(_POOL)) for _ in range(rng.randrange(0, 5))]
    extra = [rng.randrange(len(_POOL)) for _ in range(rng.randrange(0, 6))]
    expected = _header(base)
    expected.extend(_header(extra).cards, update=True)
    assert _cards(_update_with(_header(base), list(_header(extra).cards))) == _cards(expected)


@pytest.mark.parametrize(("base", "extra"), [
    ((0, 1), (3, 15)),  # disjoint keys: appended in order (the fast path)
    ((), (0, 1, 3)),  # an empty primary
    ((0, 1, 4), (3,)),  # a key goes before the primary's trailing comment
    ((0,), (3, 4, 16)),  # the comment stays where it was, the key goes before it
    ((0, 4), (5, 4)),  # a repeated comment text is dropped
    ((0, 7), (3,)),  # a trailing blank card is used up
    ((0, 1), (2, 3)),  # a clash (lower case): updated in the primary's place
    ((9,), (10,)), ((9,), (1,)),  # record-valued cards
    ((11,), (12,)),  # HIERARCH keys differing in case
    ((0,), (13, 14, 3)),  # TFIELDS and its column stripped
])
def test_update_with_equals_extend_in_each_case(base, extra):
    expected = _header(list(base))
    expected.extend(_header(list(extra)).cards, update=True)
    assert _cards(_update_with(_header(list(base)), list(_header(list(extra)).cards))) == _cards(expected)


def test_the_comparison_sees_a_dropped_or_moved_card():
    """The card-by-card comparison the tests above rest on fails on a reordered or a missing card."""
    header = _header([0, 1, 4, 6])
    moved = _header([1, 0, 4, 6])
    dropped = _header([0, 1, 4])
    recommented = _header([0, 1, 4, 6])
    recommented.comments["FOO"] = "another"
    for other in (moved, dropped, recommented):
        assert _cards(other) != _cards(header)


# -- whole reads: generated files and the shared camera data ----------------------------------------


def _mef(path, primary: fits.Header, image_cards=(), planes=("MASK", "VARIANCE"), primary_data=None):
    image = fits.ImageHDU(np.arange(30, dtype=np.float32).reshape(5, 6), name="IMAGE")
    image.header["EXTTYPE"] = "IMAGE"
    image.header.extend(list(image_cards))
    hdus = [fits.PrimaryHDU(data=primary_data, header=primary), image]
    for role in planes:
        data = (np.arange(30).reshape(5, 6) % 3).astype(np.uint8) if role == "MASK" else np.full((5, 6), 2.0, "f4")
        plane = fits.ImageHDU(data, name=role)
        plane.header["EXTTYPE"] = role
        hdus.append(plane)
    fits.HDUList(hdus).writeto(path)
    return path


def _generated(tmp_path) -> list:
    clash = fits.Header([("FOO", 1, "primary"), ("BAR", "b"), ("COMMENT", "primary comment"), ("HISTORY", "h1")])
    disjoint = fits.Header([("OBSERVER", "someone", "who"), ("EXPTIME", 30.0, "s")])
    image_cards = [("BUNIT", "electron"), ("FOO", 2, "image wins"), ("HISTORY", "h1"), ("HISTORY", "h2"),
                   ("COMMENT", "image comment")]
    paths = [
        _mef(tmp_path / "mef.fits", disjoint, [("BUNIT", "adu")]),
        _mef(tmp_path / "clash.fits", clash, image_cards),
        _mef(tmp_path / "image-only.fits", fits.Header(), [("BUNIT", "adu")], planes=()),
        _mef(tmp_path / "mask-only.fits", disjoint, planes=("MASK",)),
        _mef(tmp_path / "pixels-in-primary.fits", disjoint, [("BUNIT", "adu")],
             primary_data=np.ones((2, 3), dtype=np.int16)),
    ]
    fits.PrimaryHDU(np.arange(12, dtype=np.float64).reshape(3, 4), header=clash).writeto(tmp_path / "simple.fits")
    paths.append(tmp_path / "simple.fits")
    gzipped = tmp_path / "clash.fits.gz"
    gzipped.write_bytes(gzip.compress((tmp_path / "clash.fits").read_bytes()))
    paths.append(gzipped)
    compressed = fits.HDUList([fits.PrimaryHDU(header=disjoint)])
    for role, data in (("IMAGE", np.arange(600, dtype=np.float32).reshape(20, 30)),
                       ("MASK", (np.arange(600).reshape(20, 30) % 3).astype(np.int16)),
                       ("VARIANCE", np.full((20, 30), 2.0, dtype=np.float32))):
        compressed.append(fits.CompImageHDU(data, name=role))
        compressed[-1].header["EXTTYPE"] = role
    compressed.writeto(tmp_path / "tiles.fits.fz")  # the planes' HDUs are tile-compressed tables in the file
    paths.append(tmp_path / "tiles.fits.fz")
    padded = tmp_path / "trailing-bytes.fits"  # longer than its HDUs: the look for one more HDU still runs
    padded.write_bytes((tmp_path / "image-only.fits").read_bytes() + b"\0" * 2880)
    paths.append(padded)
    return paths


@pytest.mark.filterwarnings("ignore:Unexpected extra padding:astropy.utils.exceptions.AstropyUserWarning")
def test_generated_files_read_as_the_plain_astropy_route_reads_them(tmp_path):
    for path in _generated(tmp_path):
        _assert_same(_read(path), _reference(path))


def test_a_file_longer_than_its_hdus_is_still_looked_past(tmp_path):
    """Only a file that ends where its last HDU read ends skips astropy's look for one more HDU: on a
    longer one the look still runs (and astropy warns about the bytes it finds)."""
    paths = {path.name: path for path in _generated(tmp_path)}
    with pytest.warns(AstropyUserWarning, match="extra padding"):
        _read(paths["trailing-bytes.fits"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _read(paths["image-only.fits"])


def test_a_clashing_primary_keeps_its_order_and_the_image_value(tmp_path):
    """The merged meta of the clash case: the primary's key keeps its place with the image's value and
    comment, the image's keys come before the primary's trailing commentary, a repeated HISTORY is dropped."""
    meta = _read(_generated(tmp_path)[1]).meta
    assert list(meta.keys())[:3] == ["FOO", "BAR", "BUNIT"] and meta["FOO"] == 2
    assert meta.comments["FOO"] == "image wins" and list(meta["HISTORY"]) == ["h1", "h2"]


def _camera_images(shared_data) -> list:
    """The FITS images under the shared data the formatter reads as CCDData (not the defects table)."""
    return sorted(path for path in itertools.chain(shared_data.rglob("*.fits"), shared_data.rglob("*.fits.gz"))
                  if path.name != "defects.fits")


def test_every_camera_image_reads_as_the_plain_astropy_route_reads_it(shared_data_untouched):
    images = _camera_images(shared_data_untouched)
    assert len(images) >= 20
    for path in images:
        _assert_same(_read(path), _reference(path))


def test_a_calexp_get_through_a_chain_is_the_written_image_with_its_filter(shared_data, tmp_path):
    """std_calexp's meta is the read meta with FILTER set from the data ID's filter, appended last."""
    inputs = str(shared_data / "obs_test" / "data" / "input")
    bottom, top = str(tmp_path / "bottom"), str(tmp_path / "top")
    written = CCDData(np.arange(64, dtype=np.float32).reshape(8, 8), unit="adu",
                      meta=fits.Header([("OBSERVER", "me", "who"), ("COMMENT", "kept")]))
    Butler(inputs=inputs, outputs=bottom).put(written, "calexp", **DATA_ID)
    Butler(inputs=bottom, outputs=top)
    ccd = Butler(inputs=top).get("calexp", **DATA_ID)
    path = tmp_path / "bottom" / "calexp" / "calexp_v1_fg.fits"
    expected = _reference(path)["meta"]
    expected["FILTER"] = "g"
    np.testing.assert_array_equal(ccd.data, written.data)
    assert _cards(ccd.meta) == _cards(expected) and str(ccd.unit) == "adu"


# -- std_calexp: FILTER set as header["FILTER"] = value sets it ----------------------------------------


@pytest.mark.parametrize("picks", [(), (0, 1), (0, 4, 6), (0, 7), (4, 0, 8), (15, 16)])
@pytest.mark.parametrize("value", ["g", "HSC-I2", "x" * 70, 3, None])
def test_set_keyword_equals_setitem(picks, value):
    """A new FILTER goes where ``header[...] = value`` puts it (before trailing commentary, into a
    trailing blank), an existing one is updated in place, a long or non-text value takes astropy's path."""
    expected, header = _header(list(picks)), _header(list(picks))
    expected["FILTER"] = value
    set_keyword(header, "FILTER", value)
    assert _cards(header) == _cards(expected)
    expected["FILTER"] = "r"
    set_keyword(header, "FILTER", "r")
    assert _cards(header) == _cards(expected)


def test_the_filter_of_a_calexp_is_remembered_per_camera_and_filter(obs_test_repo):
    """The best filter is worked out once per (filters, stored label, data-ID filter), and is what
    `best_filter` gives."""
    from mappers.camera import FilterLabel, best_filter
    from mappers.test import TestMapper

    mapper = TestMapper(root=obs_test_repo)
    for stored, idFilter in [(None, "g"), (FilterLabel(physical="r"), None), (FilterLabel(physical="zz"), "zz")]:
        expected = best_filter(mapper.filterDefinitions, stored, idFilter)
        assert mapper._getBestFilter(stored, idFilter) == expected
        assert mapper._getBestFilter(stored, idFilter) is mapper._getBestFilter(stored, idFilter)
