"""Issue #12, the per-repository cost of a camera read and of put: what the fast paths must still do.

A read through a rerun chain finds a file another process wrote after the
Butler was made (nothing about the file system is cached); a data ID is
checked once per map; the write recipe is computed for writes only; put writes
through the temporary file it created, and a directory (or a parent of it) swapped for a
symbolic link after a first write is refused.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from butler import Butler, RepositoryArgs
from butler.errors import NoResults, UnsafePathError
from butler.formatters import get_formatter
from butler.formatters.fits import _content_cards, _unit
from butler.safeio import atomic_write, write_bytes
from butler.storage import Storage
from butler.test import MapperForTestWriting, TestObject
from mappers.test import TestMapper

DATA_ID = {"visit": 1, "filter": "g"}
CALEXP = "calexp/calexp_v1_fg.fits"


def _image(value: float) -> CCDData:
    return CCDData(np.full((4, 5), value, dtype=np.float32), unit="adu")


def _chain(obs_test_input: str, base, depth: int = 4) -> list[str]:
    """A bottom repository holding a calexp of 1.0, then ``depth`` reruns above it; the roots, bottom first."""
    roots = [str(base / f"rerun{i}") for i in range(depth + 1)]
    Butler(inputs=obs_test_input, outputs=roots[0]).put(_image(1.0), "calexp", **DATA_ID)
    for parent, child in zip(roots, roots[1:]):
        Butler(inputs=parent, outputs=child)
    return roots


def _toy_chain(base, depth: int) -> list[str]:
    """A toy repository holding ``foo`` visit 1 (``TestObject("low")``), then ``depth`` repositories above it."""
    roots = [str(base / f"R{i}") for i in range(depth + 1)]
    Butler(outputs=RepositoryArgs(root=roots[0], mapper=MapperForTestWriting)).put(TestObject("low"), "foo", visit=1)
    for parent, child in zip(roots, roots[1:]):
        Butler(inputs=parent, outputs=child)
    return roots


def _in_another_process(code: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True, env=env, timeout=120)


# -- 1. the rerun chain sees what other processes write -------------------------------------------


def test_a_calexp_written_by_another_process_after_the_butler_was_made_is_found(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path)
    reader = Butler(inputs=roots[-1])
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 1.0  # from the bottom, every rerun missed
    _in_another_process(f"""
        from astropy.nddata import CCDData
        import numpy as np
        from butler import Butler
        Butler(inputs={roots[1]!r}, outputs={roots[2]!r}).put(
            CCDData(np.full((4, 5), 2.0, dtype=np.float32), unit="adu"), "calexp", visit=1, filter="g")
    """)
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 2.0
    assert reader.getUri("calexp", **DATA_ID) == os.path.join(roots[2], CALEXP)


def test_a_compressed_variant_written_later_by_another_process_is_found(obs_test_input, tmp_path):
    roots = _chain(obs_test_input, tmp_path)
    reader = Butler(inputs=roots[-1])
    assert reader.getUri("calexp", **DATA_ID) == os.path.join(roots[0], CALEXP)
    source = os.path.join(roots[0], CALEXP)
    target = os.path.join(roots[3], CALEXP + ".gz")
    _in_another_process(f"""
        import gzip, os
        os.makedirs(os.path.dirname({target!r}))
        with open({source!r}, "rb") as f, gzip.open({target!r}, "wb") as out:
            out.write(f.read())
    """)
    assert reader.getUri("calexp", **DATA_ID) == target
    np.testing.assert_array_equal(reader.get("calexp", **DATA_ID).data, fits.getdata(source))
    with gzip.open(target) as stream:  # the variant was read as it is, not rewritten
        assert stream.read(6) == b"SIMPLE"


def test_a_location_says_what_its_own_probe_saw_and_nothing_outlives_the_call(obs_test_input, tmp_path):
    """The map's one existence probe travels on the location (the Butler does not stat again), and
    every call probes afresh: a file removed or written by another process is seen at once."""
    roots = _chain(obs_test_input, tmp_path, depth=2)
    reader = Butler(inputs=roots[-1])
    bottom = TestMapper(root=roots[0])
    assert bottom.map("calexp", DATA_ID).found is True
    assert TestMapper(root=roots[1]).map("calexp", DATA_ID).found is False
    assert bottom.map("calexp", DATA_ID, write=True).found is None  # a write location is not probed
    assert reader.datasetExists("calexp", **DATA_ID)
    _in_another_process(f"import os; os.unlink({os.path.join(roots[0], CALEXP)!r})")
    assert bottom.map("calexp", DATA_ID).found is False
    assert not reader.datasetExists("calexp", **DATA_ID)
    with pytest.raises(NoResults):
        reader.get("calexp", **DATA_ID)
    _in_another_process(f"""
        from astropy.nddata import CCDData
        import numpy as np
        from butler import Butler
        Butler(inputs={roots[0]!r}, outputs={roots[1]!r}).put(
            CCDData(np.full((4, 5), 4.0, dtype=np.float32), unit="adu"), "calexp", visit=1, filter="g")
    """)
    assert reader.datasetExists("calexp", **DATA_ID)
    assert reader.getUri("calexp", **DATA_ID) == os.path.join(roots[1], CALEXP)
    assert reader.get("calexp", **DATA_ID).data[0, 0] == 4.0


def test_compressed_variants_are_probed_only_for_formats_that_read_them(obs_test_input, tmp_path):
    """A pickle's ``.gz`` neighbour is not its dataset (the pickle format cannot read it); a FITS one is."""
    root = tmp_path / "repo"
    Butler(inputs=obs_test_input, outputs=str(root))
    (root / "config").mkdir()
    (root / "config" / "packages.pickle.gz").write_bytes(gzip.compress(b"not a pickle"))
    mapper = TestMapper(root=str(root))
    packages = mapper.map("packages", {})
    assert packages.getLocations() == ["config/packages.pickle"] and packages.found is False
    assert not Butler(inputs=str(root)).datasetExists("packages")
    (root / "calexp").mkdir()
    (root / "calexp" / "calexp_v1_fg.fits.fz").write_bytes(b"")
    calexp = mapper.map("calexp", DATA_ID)
    assert calexp.getLocations() == [CALEXP + ".fz"] and calexp.found is True


def test_the_toy_mapper_answers_each_call_from_the_files_there_now(tmp_path):
    """`MapperForTestWriting` says a read location's file was there; a later call looks again."""
    roots = _toy_chain(tmp_path, depth=2)
    reader = Butler(inputs=roots[-1])
    assert reader.get("foo", visit=1) == TestObject("low") and reader.datasetExists("foo", visit=1)
    _in_another_process(f"""
        from butler import Butler
        from butler.test import TestObject
        Butler(inputs={roots[0]!r}, outputs={roots[1]!r}).put(TestObject("high"), "foo", visit=1)
    """)
    assert reader.get("foo", visit=1) == TestObject("high")
    assert reader.getUri("foo", visit=1) == os.path.join(roots[1], "filename_visit1.txt")
    location = reader.repositories()[1].map("foo", {"visit": 1})
    assert location.found is True and location.repository is reader.repositories()[1]
    _in_another_process(f"import os; [os.unlink(os.path.join(r, 'filename_visit1.txt')) for r in {roots[:2]!r}]")
    assert reader.repositories()[1].map("foo", {"visit": 1}).found is False
    assert not reader.datasetExists("foo", visit=1)


# -- 2. the camera map path ------------------------------------------------------------------------


class CountingTestMapper(TestMapper):
    """obs_test's mapper counting how often a data ID's keys are checked (once per value check)."""

    checks = 0

    def checkDataIdKeys(self, datasetType, dataId):
        type(self).checks += 1
        super().checkDataIdKeys(datasetType, dataId)


def test_a_data_id_is_checked_once_per_map(obs_test_input, tmp_path):
    Butler(inputs=obs_test_input, outputs=str(tmp_path / "out")).put(_image(3.0), "calexp", **DATA_ID)
    mapper = CountingTestMapper(root=str(tmp_path / "out"))
    CountingTestMapper.checks = 0
    location = mapper.map("calexp", {"visit": "1", "filter": "g"})  # validate sees the converted visit
    assert CountingTestMapper.checks == 1
    assert location.getLocations() == [CALEXP] and location.dataId["visit"] == 1


def test_the_write_recipe_is_in_write_locations_only(obs_test_input, tmp_path):
    mapper = TestMapper(root=obs_test_input)
    read = mapper.map("calexp", DATA_ID)
    write = mapper.map("calexp", DATA_ID, write=True)
    assert "image.scaling.seed" not in read.getAdditionalData()
    assert write.getAdditionalData()["image.scaling.seed"] != 0
    assert read.getAdditionalData()["visit"] == write.getAdditionalData()["visit"] == 1


@pytest.mark.parametrize("cards", [
    [("FILTER", "g", "band"), ("EXPTIME", 15.0, ""), ("BUNIT", "adu", ""), ("HIERARCH LONG KEY NAME", 1, "")],
    [("FILTER", "g", ""), ("COMMENT", "first", ""), ("EXPTIME", 15.0, ""), ("HISTORY", "made", ""),
     ("COMMENT", "second", "")],
])
def test_a_standardized_exposure_has_the_header_the_update_gives(cards):
    """The quick copy of a read CCDData's header is taken only where it equals updating an empty one."""
    ccd = CCDData(np.ones((3, 4), dtype=np.float32), unit="adu", meta=fits.Header(cards))
    expected = fits.Header()
    expected.update(ccd.meta)
    standardized = TestMapper(root=".").std_calexp(ccd, {"visit": 1})
    assert standardized.meta.tostring() == expected.tostring()
    assert standardized.meta is not ccd.meta and np.array_equal(standardized.data, ccd.data)


# -- 3. put ----------------------------------------------------------------------------------------


def test_write_bytes_writes_everything_through_its_descriptor_and_leaves_no_temporary(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one write call may take
    write_bytes("sub/big.bin", data, root=str(tmp_path))
    assert (tmp_path / "sub" / "big.bin").read_bytes() == data
    assert os.listdir(tmp_path / "sub") == ["big.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sub" / "big.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_bytes_leaves_the_old_file(tmp_path):
    write_bytes("a.bin", b"old", root=str(tmp_path))
    with pytest.raises(TypeError):
        write_bytes("a.bin", 12345, root=str(tmp_path))  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"old"


def test_a_directory_swapped_for_a_symlink_after_a_write_is_refused(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "outside"
    outside.mkdir()
    butler = Butler(outputs=RepositoryArgs(root=str(root), mapper=MapperForTestWriting, mode="rw"))
    write_bytes("deep/dir/a.bin", b"1", root=str(root))
    write_bytes("deep/dir/b.bin", b"2", root=str(root))
    os.rename(root / "deep" / "dir", tmp_path / "moved")
    (outside / "dir").mkdir()
    os.symlink(outside / "dir", root / "deep" / "dir")
    with pytest.raises(UnsafePathError):
        write_bytes("deep/dir/c.bin", b"3", root=str(root))
    with pytest.raises(UnsafePathError):
        with atomic_write("deep/dir/d.bin", root=str(root)) as tmp:
            open(tmp, "wb").close()  # pragma: no cover - never reached
    assert os.listdir(outside / "dir") == []
    os.unlink(root / "deep" / "dir")  # a real directory again: written into
    write_bytes("deep/dir/e.bin", b"5", root=str(root))
    write_bytes("deep/dir/f.bin", b"6", root=str(root))
    assert sorted(os.listdir(root / "deep" / "dir")) == ["e.bin", "f.bin"]
    butler.put(TestObject(7), "foo", visit=7, ccd=1)
    assert butler.get("foo", visit=7, ccd=1) == TestObject(7)


def test_a_parent_swapped_for_a_symlink_after_a_write_is_refused(tmp_path):
    root, outside = tmp_path / "repo", tmp_path / "outside"
    write_bytes("a/b/c/x.bin", b"1", root=str(root))
    write_bytes("a/b/c/y.bin", b"2", root=str(root))
    os.rename(root / "a", tmp_path / "moved")
    (outside / "b" / "c").mkdir(parents=True)
    os.symlink(outside, root / "a")
    with pytest.raises(UnsafePathError):
        write_bytes("a/b/c/z.bin", b"3", root=str(root))
    assert os.listdir(outside / "b" / "c") == []


def test_a_directory_moved_out_of_the_root_behind_a_link_is_refused(tmp_path):
    """The moved directory keeps its inode: only a look at every component catches it."""
    root, outside = tmp_path / "repo", tmp_path / "outside"
    outside.mkdir()
    write_bytes("a/b/c/x.bin", b"1", root=str(root))
    write_bytes("a/b/c/y.bin", b"2", root=str(root))
    os.rename(root / "a", outside / "a")
    os.symlink(outside / "a", root / "a")
    with pytest.raises(UnsafePathError):
        write_bytes("a/b/c/z.bin", b"3", root=str(root))
    assert sorted(os.listdir(outside / "a" / "b" / "c")) == ["x.bin", "y.bin"]


# -- 4. the FITS read ------------------------------------------------------------------------------


def test_bunit_is_parsed_once_per_text_and_an_unknown_one_is_reported_on_every_read(tmp_path, caplog):
    """The parsed unit is shared between reads (units are immutable); a bad ``BUNIT`` is still named per file."""
    from astropy import units as u

    assert _unit(fits.Header([("BUNIT", "ADU")]), "a.fits") is _unit(fits.Header([("BUNIT", "adu")]), "b.fits")
    assert _unit(fits.Header([("BUNIT", "electron/s")]), "c.fits") == u.electron / u.s
    assert _unit(fits.Header(), "d.fits") == u.adu
    with caplog.at_level("WARNING", logger="butler.formatters.fits"):
        for name in ("e.fits", "f.fits"):
            assert _unit(fits.Header([("BUNIT", "not-a-unit")]), name) == u.adu
    assert [name for name in ("e.fits", "f.fits") if name in caplog.text] == ["e.fits", "f.fits"]


@pytest.mark.parametrize("primary_cards", [
    [("COMMENT", "only commentary in the primary", ""), ("HISTORY", "made", "")],
    [("FOO", 0, ""), ("BAR", "kept", ""), ("COMMENT", "after the keys", "")],
])
def test_a_merged_meta_is_the_content_of_the_whole_merged_header(tmp_path, primary_cards):
    """The meta built from both headers' content cards equals merging the whole headers, then dropping
    the structural cards; the WCS is still read from the whole merged header."""
    primary = fits.PrimaryHDU(header=fits.Header(primary_cards))
    image = fits.ImageHDU(np.arange(12, dtype=np.float32).reshape(3, 4))
    image.header.extend([("FOO", 2), ("BUNIT", "ADU"), ("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"),
                         ("COMMENT", "in the image")])
    path = tmp_path / "merged.fits"
    fits.HDUList([primary, image]).writeto(path)
    with fits.open(path) as hdul:
        merged = hdul[0].header.copy()
        merged.extend(_content_cards(hdul[1].header), update=True)
        expected = fits.Header(_content_cards(merged))
    storage, name = Storage.forFile(str(path))
    ccd = get_formatter("FitsStorage").readFrom(storage, name, hdu=None, pythonType="CCDData", additionalData={})
    assert ccd.meta.tostring() == expected.tostring() and ccd.meta["FOO"] == 2
    assert ccd.wcs is not None and ccd.wcs.wcs.ctype[0] == "RA---TAN" and str(ccd.unit) == "adu"
