"""Tests of butler.formatters: the table, round trips of every format, and real camera files."""

from __future__ import annotations

import gzip
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty, VarianceUncertainty
from astropy.table import Table
from astropy.wcs import WCS

from butler.errors import DatasetNotFoundError, UnknownStorageError, UnsafeYamlError, UnwritableObjectError
from butler.formatters import (
    Formatter,
    FormatterTable,
    get_formatter,
    known_storage_names,
    python_kind,
)
from butler.formatters.pickle import PickleStorage
from butler.storage.posix import PosixStorage

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning",
                                        "error::pytest.PytestUnraisableExceptionWarning")

LSST = "obs_lsst/data/input"
LSSTCAM_RAW = f"{LSST}/lsstCam/raw/2019-03-22/3019032200002/3019032200002-R10-S22-det035.fits"
IMSIM_RAW = f"{LSST}/imsim/raw/204595/R11/00204595-R11-S20-det042.fits"
IMSIM_BIAS = f"{LSST}/imsim/CALIB/bias/2022-01-01/bias-R11-S20-det042_2022-01-01.fits"
PHOSIM_METADATA = (f"{LSST}/phosim/processCcd_metadata/00204595-i/R11/"
                   "processCcdMetadata_00204595-i-R11-S11-det040.yaml")
OBS_TEST_RAW = "obs_test/data/input/raw/raw_v1_fg.fits.gz"
OBS_TEST_DEFECTS = "obs_test/data/input/defects/defects.fits"
CALEXP = "obs_test/data/calexpMetadataObjectsTest/example-calexp.fits.gz"


def _storage(directory) -> PosixStorage:
    return PosixStorage(str(directory), create=False)


def _read(storageName: str, path, **kwargs):
    """Read a local file with a formatter, through the storage of its directory."""
    path = Path(path)
    return get_formatter(storageName).readFrom(_storage(path.parent), path.name, **kwargs)


def _write(storageName: str, obj, path, **kwargs):
    """Write a local file with a formatter, through the storage of its directory."""
    path = Path(path)
    get_formatter(storageName).writeTo(_storage(path.parent), path.name, obj, **kwargs)


def _roundtrip(storageName: str, obj, path, **read_kwargs):
    _write(storageName, obj, path)
    return _read(storageName, path, **read_kwargs)


# -- the table ----------------------------------------------------------------------------------


def test_unknown_storage_name_lists_known_ones():
    with pytest.raises(UnknownStorageError) as info:
        get_formatter("NoSuchStorage")
    message = str(info.value)
    assert "NoSuchStorage" in message
    for name in ("PickleStorage", "FitsStorage", "FitsCatalogStorage", "YamlStorage"):
        assert name in message


def test_standard_formatters_are_registered():
    assert {"PickleStorage", "YamlStorage", "NumpyStorage", "ConfigStorage", "FitsStorage",
            "FitsCatalogStorage", "TextStorage"} <= set(known_storage_names())
    has_pyarrow = importlib.util.find_spec("pyarrow") is not None
    assert ("ParquetStorage" in known_storage_names()) == has_pyarrow
    assert get_formatter("PickleStorage").storageName == "PickleStorage"


def test_duplicate_registration_needs_force():
    table = FormatterTable()
    table.register(PickleStorage)
    with pytest.raises(ValueError, match="PickleStorage"):
        table.register(PickleStorage)

    class OtherPickle(PickleStorage):
        pass

    table.register(OtherPickle, force=True)
    assert isinstance(table.get("PickleStorage"), OtherPickle)


def test_import_does_not_load_numpy_or_astropy():
    code = ("import sys, butler, butler.formatters, butler.storage, butler.safeFileIo; "
            "print(sorted(m for m in ('numpy', 'astropy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("pythonType, kind", [
    ("lsst.daf.base.PropertyList", "header"), (fits.Header, "header"), ("PropertySet", "header"),
    ("lsst.afw.table.SourceCatalog", "table"), ("lsst.afw.math.BackgroundList", "table"), (Table, "table"),
    (np.ndarray, "array"), ("numpy.ndarray", "array"),
    ("lsst.afw.image.ExposureF", "image"), ("lsst.afw.image.DecoratedImageU", "image"), (CCDData, "image"),
    (None, "other"), ("lsst.afw.geom.SkyWcs", "other"),
])
def test_python_kind(pythonType, kind):
    assert python_kind(pythonType) == kind


def test_missing_file_raises_dataset_not_found(tmp_path):
    missing = str(tmp_path / "nope.fits")
    for name in known_storage_names():
        with pytest.raises(DatasetNotFoundError) as info:
            _read(name, missing)
        assert missing in str(info.value)
        assert isinstance(info.value, FileNotFoundError)


# -- simple formats ---------------------------------------------------------------------------


def test_pickle_roundtrip(tmp_path):
    obj = {"a": (1, 2.5), "b": [None, "x"], "c": {3, 4}}
    assert _roundtrip("PickleStorage", obj, tmp_path / "o.pickle") == obj


def test_yaml_roundtrip_keeps_order(tmp_path):
    obj = {"z": 1, "a": [1.5, "two", None], "m": {"nested": True}}
    result = _roundtrip("YamlStorage", obj, tmp_path / "o.yaml")
    assert result == obj and list(result) == ["z", "a", "m"]


def test_yaml_refuses_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(UnsafeYamlError, match="evil.yaml"):
        _read("YamlStorage", path)


def test_yaml_reads_legacy_property_set(shared_data):
    metadata = _read("YamlStorage", shared_data / PHOSIM_METADATA)
    assert isinstance(metadata, dict)
    assert "processCcd" in metadata and "processCcd:charImage:detection" in metadata
    assert metadata["processCcd"]["runDataRefEndCpuTime"] == 326.86
    assert metadata["processCcd:calibrate:deblend"]["runStartUtc"] == "2018-12-11T17:51:12.280088"
    assert metadata["processCcd:charImage:detection"]["runStartCpuTime"] == [50.19, 74.08]
    assert metadata["processCcd:calibrate:detection:background"] == {}
    assert metadata["processCcd:charImage:applyApCorr"] == {}


def test_numpy_roundtrip_on_a_name_without_npy_suffix(tmp_path):
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    path = tmp_path / ".o.npy.123.tmp"
    result = _roundtrip("NumpyStorage", array, path)
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.int32
    assert os.listdir(tmp_path) == [path.name]


def test_numpy_refuses_object_arrays(tmp_path):
    with pytest.raises(UnwritableObjectError, match="NumpyStorage"):
        _write("NumpyStorage", np.array([{"a": 1}], dtype=object), tmp_path / "o.npy")


def test_text_roundtrip(tmp_path):
    assert _roundtrip("TextStorage", "line 1\nlíne 2\n", tmp_path / "o.txt") == "line 1\nlíne 2\n"


class _SavableConfig:
    """A config with the pex_config save/load protocol."""

    def __init__(self):
        self.value = 0

    def save(self, path):
        with open(path, "w") as stream:
            stream.write(f"config.value = {self.value}\n")

    def load(self, path):
        with open(path) as stream:
            self.value = int(stream.read().split("=")[1])

    def __eq__(self, other):
        return isinstance(other, _SavableConfig) and other.value == self.value


def test_config_roundtrip_with_save_and_load(tmp_path):
    config = _SavableConfig()
    config.value = 42
    result = _roundtrip("ConfigStorage", config, tmp_path / "c.py", pythonType=_SavableConfig)
    assert result == config
    assert (tmp_path / "c.py").read_text() == "config.value = 42\n"


def test_config_roundtrip_as_yaml_mapping(tmp_path):
    config = {"doWrite": True, "nested": {"threshold": 5.0}}
    assert _roundtrip("ConfigStorage", config, tmp_path / "c.yaml",
                      pythonType="lsst.pipe.tasks.NoSuchConfig") == config
    with pytest.raises(TypeError):
        _write("ConfigStorage", [1, 2], tmp_path / "bad.yaml")


def test_parquet_roundtrip(tmp_path):
    pytest.importorskip("pyarrow")
    table = Table({"id": np.arange(5), "flux": np.linspace(0, 1, 5), "name": ["a", "b", "c", "d", "e"]})
    result = _roundtrip("ParquetStorage", table, tmp_path / "t.parq")
    assert result.colnames == ["id", "flux", "name"]
    np.testing.assert_array_equal(result["flux"], table["flux"])
    assert list(result["name"]) == ["a", "b", "c", "d", "e"]


# -- FITS tables -------------------------------------------------------------------------------


def test_fits_catalog_roundtrip(tmp_path):
    table = Table({"id": np.arange(4, dtype=np.int64), "x": [1.0, 2.0, 3.0, 4.0],
                   "tag": ["a", "bb", "c", "d"]})
    table.meta["SURVEY"] = "test"
    path = tmp_path / "src.fits"
    result = _roundtrip("FitsCatalogStorage", table, path)
    assert isinstance(result, Table)
    np.testing.assert_array_equal(result["x"], table["x"])
    assert list(result["tag"]) == ["a", "bb", "c", "d"]
    header = _read("FitsCatalogStorage", path, pythonType="PropertyList")
    assert isinstance(header, fits.Header)
    assert header["SURVEY"] == "test" and header["TTYPE1"] == "id"


def test_fits_catalog_reads_obs_test_defects(shared_data):
    defects = _read("FitsCatalogStorage", shared_data / OBS_TEST_DEFECTS)
    assert len(defects) == 504
    assert defects.colnames == ["X", "Y", "SHAPE", "R", "ROTANG", "COMPONENT"]
    as_catalog = _read("FitsStorage", shared_data / OBS_TEST_DEFECTS,
                                                   pythonType="lsst.afw.table.BaseCatalog")
    assert len(as_catalog) == 504


# -- FITS images: round trips ------------------------------------------------------------------


def _simple_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [10.0, 5.0]
    wcs.wcs.cdelt = [-0.0002, 0.0002]
    return wcs


def test_ccddata_mef_roundtrip_with_mask_variance_and_wcs(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(100, 5, (30, 40)).astype(np.float32)
    mask = np.zeros((30, 40), dtype=bool)
    mask[3, 7] = True
    ccd = CCDData(data, unit="electron", mask=mask, uncertainty=VarianceUncertainty(np.full((30, 40), 4.0)),
                  wcs=_simple_wcs(), meta={"FILTER": "r", "EXPTIME": 30.0, "OBSERVER": "me"})
    path = tmp_path / "calexp.fits"
    result = _roundtrip("FitsStorage", ccd, path, pythonType="lsst.afw.image.ExposureF")
    assert isinstance(result, CCDData)
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(result.mask, mask)
    assert isinstance(result.uncertainty, VarianceUncertainty)
    np.testing.assert_array_equal(result.uncertainty.array, 4.0)
    assert result.unit == u.electron
    assert (result.meta["FILTER"], result.meta["EXPTIME"]) == ("r", 30.0)
    np.testing.assert_allclose(result.wcs.wcs.crval, [150.0, 2.0])
    with fits.open(path) as hdul:
        assert [hdu.name for hdu in hdul] == ["PRIMARY", "IMAGE", "MASK", "VARIANCE"]
        assert hdul[0].header["FILTER"] == "r"


def test_stddev_uncertainty_is_written_as_variance(tmp_path):
    ccd = CCDData(np.ones((4, 5)), unit="adu", uncertainty=StdDevUncertainty(np.full((4, 5), 3.0)))
    result = _roundtrip("FitsStorage", ccd, tmp_path / "i.fits")
    np.testing.assert_allclose(result.uncertainty.array, 9.0)
    assert result.mask is None
    assert result.unit == u.adu


def test_fits_array_header_hdulist_and_table_writes(tmp_path):
    array = np.arange(20, dtype=np.int16).reshape(4, 5)
    read = _roundtrip("FitsStorage", array, tmp_path / "a.fits", pythonType=np.ndarray)
    np.testing.assert_array_equal(read, array)
    header = fits.Header({"KEY": 5, "NAME": "x"})
    result = _roundtrip("FitsStorage", header, tmp_path / "h.fits", pythonType=fits.Header)
    assert (result["KEY"], result["NAME"]) == (5, "x")
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(array.astype(np.float64), name="SCI")])
    _write("FitsStorage", hdul, tmp_path / "l.fits")
    np.testing.assert_array_equal(_read("FitsStorage", tmp_path / "l.fits", hdu=1).data, array)
    table = Table({"a": [1, 2]})
    assert list(_roundtrip("FitsStorage", table, tmp_path / "t.fits", pythonType=Table)["a"]) == [1, 2]
    with pytest.raises(TypeError):
        _write("FitsStorage", {"not": "fits"}, tmp_path / "bad.fits")


def test_uint16_with_bzero_reads_as_uint16(tmp_path):
    array = np.array([[0, 1], [40000, 65535]], dtype=np.uint16)
    path = tmp_path / "u.fits"
    _write("FitsStorage", array, path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        assert hdul[0].header["BZERO"] == 32768
    result = _read("FitsStorage", path)
    assert result.data.dtype == np.uint16
    np.testing.assert_array_equal(result.data, array)


# -- FITS images: real camera files ------------------------------------------------------------


def test_obs_test_gzip_raw(shared_data):
    raw = _read("FitsStorage", shared_data / OBS_TEST_RAW, pythonType="DecoratedImageU")
    assert isinstance(raw, CCDData)
    assert raw.shape == (2000, 1026)
    assert raw.data.dtype == np.uint16
    assert 0 <= raw.data.min() and raw.data.max() <= 65535 and raw.data.max() > 30000
    assert raw.meta["CCDID"] == "R22_S00_C00"
    assert raw.meta["EXPTIME"] == 15.0
    assert raw.unit == u.adu


def test_lsstcam_raw_named_fits_but_gzipped(shared_data):
    path = shared_data / LSSTCAM_RAW
    with open(path, "rb") as stream:
        assert stream.read(2) == b"\x1f\x8b"
    amp = _read("FitsStorage", path, hdu=1)
    assert amp.shape == (2048, 576)
    assert amp.meta["RAFTBAY"] == "R10"  # primary keys merged into the amplifier's
    header = _read("FitsStorage", path, hdu=16, pythonType="PropertyList")
    assert header["EXTNAME"] == "Segment00"
    merged = _read("FitsStorage", path, pythonType="PropertyList")
    assert merged["RAFTBAY"] == "R10" and merged["CHANNEL"] == 1  # primary merged with HDU 1
    assert "EXTNAME" not in merged


def test_tile_compressed_imsim_raw(shared_data):
    amp = _read("FitsStorage", shared_data / IMSIM_RAW, hdu=1, pythonType=np.ndarray)
    assert amp.shape == (2048, 544)


def test_tile_compressed_calib(shared_data):
    bias = _read("FitsStorage", shared_data / IMSIM_BIAS, hdu=1)
    assert bias.shape == (4000, 4072)
    assert bias.data.dtype == np.float32
    assert bias.meta["OBSTYPE"].strip().lower() == "bias"


def test_lsst_stack_mef_reads_with_mask_and_variance(shared_data):
    calexp = _read("FitsStorage", shared_data / CALEXP, pythonType="ExposureF")
    assert calexp.shape == (4, 8)
    assert calexp.mask is not None and calexp.mask.shape == (4, 8)
    assert isinstance(calexp.uncertainty, VarianceUncertainty)
    assert (calexp.meta["FILTER"], calexp.meta["EXPTIME"]) == ("i", 30.0)
    assert calexp.wcs is not None and calexp.wcs.wcs.ctype[0].startswith("RA---TAN")


# -- sub-images -------------------------------------------------------------------------------


def _box(x, y, width, height, **extra):
    return {"llcX": x, "llcY": y, "width": width, "height": height, **extra}


def test_sub_image_of_gzip_raw(shared_data):
    path = str(shared_data / OBS_TEST_RAW)
    full = _read("FitsStorage", path, pythonType=np.ndarray)
    cut = _read("FitsStorage", path, additionalData=_box(100, 200, 30, 20))
    assert cut.shape == (20, 30)
    np.testing.assert_array_equal(cut.data, full[200:220, 100:130])
    with pytest.raises(ValueError, match="not inside"):
        _read("FitsStorage", path, additionalData=_box(1020, 0, 30, 20))


def test_sub_image_of_tile_compressed_hdu(shared_data):
    path = str(shared_data / IMSIM_RAW)
    full = _read("FitsStorage", path, hdu=1, pythonType=np.ndarray)
    cut = _read("FitsStorage", path, hdu=1, pythonType=np.ndarray, additionalData=_box(5, 7, 11, 13))
    np.testing.assert_array_equal(cut, full[7:20, 5:16])


def test_sub_image_honours_parent_origin(tmp_path):
    data = np.arange(100, dtype=np.float32).reshape(10, 10)
    header = fits.Header({"LTV1": -1000, "LTV2": -2000})
    path = str(tmp_path / "patch.fits")
    fits.PrimaryHDU(data, header=header).writeto(path)
    parent = _read("FitsStorage", path, additionalData=_box(1002, 2003, 4, 2))
    local = _read("FitsStorage", path, additionalData=_box(2, 3, 4, 2, imageOrigin="LOCAL"))
    np.testing.assert_array_equal(parent.data, data[3:5, 2:6])
    np.testing.assert_array_equal(local.data, data[3:5, 2:6])


def _bytes_read() -> int:
    with open("/proc/self/io") as stream:
        for line in stream:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")  # pragma: no cover


def test_sub_image_reads_only_the_box(tmp_path):
    if not os.path.exists("/proc/self/io"):
        pytest.skip("needs /proc/self/io to count bytes read")
    path = str(tmp_path / "big.fits")
    data = np.zeros((4096, 4096), dtype=np.int16)
    data[1000:1100, 2000:2100] = 7
    fits.PrimaryHDU(data).writeto(path)
    del data
    before = _bytes_read()
    cut = _read("FitsStorage", path, pythonType=np.ndarray, additionalData=_box(2000, 1000, 100, 100))
    used = _bytes_read() - before
    assert cut.shape == (100, 100) and (cut == 7).all()
    assert used < 2_000_000, f"read {used} bytes of a {os.path.getsize(path)}-byte file for a 100x100 box"


def test_formatter_base_is_abstract():
    with pytest.raises(TypeError):
        Formatter()


# -- through a storage ------------------------------------------------------------------------


class _PathOnly(Formatter):
    """A format whose library reads and writes only named files."""

    storageName = "PathOnlyStorage"

    def read_file(self, path, *, hdu, pythonType, additionalData):
        assert os.path.isfile(path)
        with open(path) as stream:
            return stream.read()[::-1]

    def write_file(self, obj, path, *, hdu, additionalData):
        with open(path, "w") as stream:
            stream.write(obj[::-1])


def test_a_path_only_format_goes_through_local_files_of_any_storage():
    from butler.storage import MemStorage, mem

    try:
        storage = MemStorage("mem://formatters/path-only", create=True)
        _PathOnly().writeTo(storage, "x/a.txt", "hello")
        assert storage.readBytes("x/a.txt") == b"olleh"
        assert _PathOnly().readFrom(storage, "x/a.txt") == "hello"
        with pytest.raises(DatasetNotFoundError, match="missing.txt"):
            _PathOnly().readFrom(storage, "missing.txt")
    finally:
        mem.clear()


def test_a_format_without_a_write_hook_cannot_be_made():
    class ReadOnly(Formatter):
        storageName = "ReadOnlyStorage"

        def read_file(self, path, *, hdu, pythonType, additionalData):
            return None

    with pytest.raises(TypeError, match="to_bytes or write_file"):
        ReadOnly()


def test_fits_from_bytes_gzipped_and_plain(tmp_path):
    from butler.storage import MemStorage, mem

    data = np.arange(20, dtype=np.int16).reshape(4, 5)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(tmp_path / "p.fits")
    plain = (tmp_path / "p.fits").read_bytes()
    try:
        storage = MemStorage("mem://formatters/fits", create=True)
        storage.writeBytes("p.fits", plain)
        storage.writeBytes("p.fits.gz", gzip.compress(plain))
        formatter = get_formatter("FitsStorage")
        for name in ("p.fits", "p.fits.gz"):
            np.testing.assert_array_equal(formatter.readFrom(storage, name, hdu=1, pythonType=np.ndarray), data)
            assert formatter.readFrom(storage, name, hdu=1, pythonType="PropertyList")["NAXIS1"] == 5
    finally:
        mem.clear()
