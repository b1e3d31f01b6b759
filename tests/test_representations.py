"""Representations (``get(as_type=...)``, put through lossless converters) and read parameters
(``get(parameters=...)``), on real files in temporary repositories and on the obs_lsst data.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, NDData, VarianceUncertainty
from astropy.table import Table
from astropy.wcs import WCS

from butler import Butler, ButlerLocation, RepositoryArgs, converters
from butler.converters import ConverterTable
from butler.errors import FormatterError, UnknownConversionError, UnknownParameterError, UnwritableObjectError
from butler.test import MapperForTestWriting

# -- a repository with one dataset type per kind --------------------------------------------------------

#: dataset type -> (storage name, policy Python type, file suffix)
KINDS = {
    "img": ("FitsStorage", "lsst.afw.image.ExposureF", ".fits"),
    "arr": ("FitsStorage", "numpy.ndarray", ".fits"),
    "hdr": ("FitsStorage", "lsst.daf.base.PropertyList", ".fits"),
    "tbl": ("FitsStorage", "astropy.table.Table", ".fits"),
    "cat": ("FitsCatalogStorage", "lsst.afw.table.SourceCatalog", ".fits"),
    "pq": ("ParquetStorage", "astropy.table.Table", ".parq"),
}


class KindsMapper(MapperForTestWriting):
    """One dataset type per kind of file (`KINDS`), and ``made``: a table a bypass makes, with no file."""

    def _at(self, datasetType, dataId, write):
        storageName, pythonType, suffix = KINDS[datasetType]
        name = f"{datasetType}-{dataId['visit']}{suffix}"
        if not write and not self.storage.exists(name):
            return None
        return ButlerLocation(pythonType, None, storageName, name, dataId, self, self.storage)

    def map(self, datasetType, dataId, write=False):
        if datasetType in KINDS:
            return self._at(datasetType, dataId, write)
        if datasetType == "made":
            return ButlerLocation("astropy.table.Table", None, "PickleStorage", "made.pickle", dataId, self,
                                  self.storage)
        return super().map(datasetType, dataId, write)

    def bypass_made(self, datasetType, pythonType, location, dataId):
        return Table({"a": [1, 2, 3], "b": [4.0, 5.0, 6.0]})


def catalog(rows: int = 10) -> Table:
    table = Table({"id": np.arange(rows), "flux": np.linspace(1, 2, rows), "name": [f"s{i}" for i in range(rows)],
                   "flag": np.arange(rows) % 2 == 0})
    table["flux"].unit = u.nJy
    table.meta["RUN"] = "r1"
    return table


def image() -> CCDData:
    data = np.arange(60 * 80, dtype=np.float32).reshape(60, 80)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [40, 30]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    return CCDData(data, unit="adu", wcs=wcs, mask=data % 7 == 0, uncertainty=VarianceUncertainty(data + 1),
                   meta={"LTV1": -5, "LTV2": -3, "OBJECT": "field"})


@pytest.fixture
def repo(tmp_path) -> Butler:
    butler = Butler(outputs=RepositoryArgs(root=str(tmp_path / "repo"), mapper=KindsMapper, mode="rw"))
    butler.put(image(), "img", visit=1)
    butler.put(np.arange(24.0).reshape(4, 6), "arr", visit=1)
    butler.put(fits.Header({"OBJECT": "field", "EXPTIME": 30.0}), "hdr", visit=1)
    butler.put(catalog(), "tbl", visit=1)
    butler.put(catalog(), "cat", visit=1)
    butler.put(catalog(), "pq", visit=1)
    return butler


@pytest.fixture
def standard_table(monkeypatch) -> ConverterTable:
    """A fresh package converter table (built-ins; plug-ins not loaded yet)."""
    table = ConverterTable.standard()
    monkeypatch.setattr(converters, "_table", table)
    return table


# -- representations ------------------------------------------------------------------------------------


def test_image_as_array_and_nddata(repo):
    ccd = repo.get("img", visit=1)
    for as_type in ("numpy", "ndarray", np.ndarray):
        array = repo.get("img", visit=1, as_type=as_type)
        assert type(array) is np.ndarray
        np.testing.assert_array_equal(array, ccd.data)
    nd = repo.get("img", visit=1, as_type="nddata")
    assert type(nd) is NDData and nd.unit == u.adu
    np.testing.assert_array_equal(nd.mask, ccd.mask)
    np.testing.assert_array_equal(nd.uncertainty.array, ccd.uncertainty.array)
    assert nd.wcs.wcs.crval[0] == pytest.approx(150.0)
    assert type(repo.get("img", visit=1, as_type=NDData)) is NDData  # a CCDData is an NDData: converted all the same
    assert repo.get("img", visit=1, as_type=CCDData).__class__ is CCDData  # its own form: unchanged


def test_table_as_dataframe_and_structured_array(repo):
    for datasetType in ("tbl", "cat", "pq"):
        table = repo.get(datasetType, visit=1)
        frame = repo.get(datasetType, visit=1, as_type="pandas")
        assert isinstance(frame, pd.DataFrame) and list(frame.columns) == table.colnames
        np.testing.assert_array_equal(frame["flux"].to_numpy(), table["flux"])
        assert list(frame["name"]) == list(table["name"])
        for as_type in ("numpy", np.ndarray):
            array = repo.get(datasetType, visit=1, as_type=as_type)
            assert isinstance(array, np.ndarray) and array.dtype.names == tuple(table.colnames)
            np.testing.assert_array_equal(array["id"], np.arange(10))
        assert isinstance(repo.get(datasetType, visit=1, as_type=pd.DataFrame), pd.DataFrame)


def test_header_as_dict(repo):
    values = repo.get("hdr", visit=1, as_type="dict")
    assert type(values) is dict
    assert values["OBJECT"] == "field" and values["EXPTIME"] == 30.0
    assert repo.get("hdr", visit=1, as_type=dict) == values


def test_unknown_conversion_names_the_dataset_and_the_known_ones(repo):
    with pytest.raises(UnknownConversionError) as info:
        repo.get("img", visit=1, as_type="pandas")
    message = str(info.value)
    for word in ["'pandas'", "datasetType: img", "'visit': 1", "CCDData -> ndarray", "CCDData -> NDData"]:
        assert word in message
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownConversionError, match="Table -> DataFrame"):
        repo.get("cat", visit=1, as_type="nothing-like-this")


def test_as_type_through_the_read_proxy_and_a_data_ref(repo):
    proxy = repo.get("cat", visit=1, immediate=False, as_type="pandas", parameters={"columns": ["id"]})
    assert list(proxy.columns) == ["id"]  # read on first use
    assert isinstance(proxy.__subject__, pd.DataFrame)
    ref = repo.dataRef("img", visit=1)
    np.testing.assert_array_equal(ref.get(as_type="numpy", parameters={"bbox": (0, 0, 4, 2),
                                                                          "imageOrigin": "LOCAL"}),
                                  repo.get("img", visit=1).data[:2, :4])


def test_put_through_a_lossless_converter(repo):
    frame = catalog().to_pandas()
    repo.put(frame, "cat", visit=2)
    back = repo.get("cat", visit=2)
    assert isinstance(back, Table) and back.colnames == list(frame.columns)
    np.testing.assert_array_equal(back["flux"], frame["flux"])
    structured = np.array([(1, 2.5), (2, 3.5)], dtype=[("id", "i8"), ("flux", "f8")])
    repo.put(structured, "tbl", visit=3)
    np.testing.assert_array_equal(repo.get("tbl", visit=3)["flux"], [2.5, 3.5])


def test_put_refuses_a_lossy_conversion_and_writes_nothing(repo, tmp_path):
    before = sorted(p.name for p in (tmp_path / "repo").iterdir())
    with pytest.raises(UnwritableObjectError) as info:
        repo.put(np.ones((4, 4)), "img", visit=2)
    message = str(info.value)
    for word in ["numpy.ndarray", "ndarray -> CCDData loses information", "datasetType: img", "'visit': 2"]:
        assert word in message
    with pytest.raises(UnwritableObjectError, match="only a structured array is a table"):
        repo.put(np.ones((4, 4)), "cat", visit=2)  # a lossless converter that refuses this array
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == before


def test_a_plugin_converter_from_an_entry_point(tmp_path, monkeypatch, repo, standard_table):
    site = tmp_path / "site"
    info = site / "butler_rows_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: butler-rows-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[butler.converters]\nrows = butler_rows_plugin:register\n")
    (site / "butler_rows_plugin.py").write_text(textwrap.dedent("""
        class Rows(list):
            '''A table as a list of row dicts.'''

        def register(table):
            table.register("astropy.table:Table", Rows, lambda t: Rows(dict(zip(t.colnames, r)) for r in t),
                           names=("rows",))
    """))
    monkeypatch.syspath_prepend(str(site))
    assert repo.get("cat", visit=1, as_type="numpy").dtype.names  # built-ins answer without the plug-ins
    assert "butler_rows_plugin" not in sys.modules
    rows = repo.get("cat", visit=1, as_type="rows")  # a miss: the entry points are loaded
    assert type(rows).__name__ == "Rows" and rows[2]["id"] == 2 and len(rows) == 10
    monkeypatch.delitem(sys.modules, "butler_rows_plugin")


def test_converter_table_registration_is_strict():
    table = ConverterTable(entryPointGroup=None)
    table.register(list, tuple, tuple, lossless=True, names=("tuple",))
    with pytest.raises(ValueError, match="registered already"):
        table.register(list, tuple, tuple)
    with pytest.raises(ValueError, match="names builtins:tuple already"):
        table.register(list, set, set, names=("tuple",))
    table.register(list, tuple, lambda v: tuple(reversed(v)), force=True)
    assert table.convert([1, 2], "tuple") == (2, 1)
    assert table.known([1]) == ["list -> tuple"]
    with pytest.raises(UnknownConversionError, match="known from list: list -> tuple"):
        table.convert([1], set)


def test_importing_the_converters_imports_no_astropy_nor_pandas():
    from test_startup import modules_loaded_by

    assert modules_loaded_by("import butler.converters, butler.formatters.parameters\n"
                             "assert 'pandas' not in sys.modules") == "[]"


# -- parameters -----------------------------------------------------------------------------------------


def test_bbox_of_an_image_reads_that_section(repo):
    whole = repo.get("img", visit=1)
    part = repo.get("img", visit=1, parameters={"bbox": (10, 5, 20, 8)})  # from the origin LTV1/2 = -5/-3
    assert part.shape == (8, 20)
    np.testing.assert_array_equal(part.data, whole.data[2:10, 5:25])
    np.testing.assert_array_equal(part.mask, whole.mask[2:10, 5:25])
    np.testing.assert_array_equal(part.uncertainty.array, whole.uncertainty.array[2:10, 5:25])
    assert part.wcs.wcs.crpix[0] == pytest.approx(whole.wcs.wcs.crpix[0] - 5)
    local = repo.get("img", visit=1, parameters={"bbox": (10, 5, 20, 8), "imageOrigin": "LOCAL"})
    np.testing.assert_array_equal(local.data, whole.data[5:13, 10:30])
    np.testing.assert_array_equal(repo.get("arr", visit=1, parameters={"bbox": (1, 2, 3, 2)}),
                                  np.arange(24.0).reshape(4, 6)[2:4, 1:4])


def test_a_box_outside_the_image_is_an_error(repo):
    with pytest.raises(FormatterError, match="not inside"):
        repo.get("img", visit=1, parameters={"bbox": (0, 0, 500, 2), "imageOrigin": "LOCAL"})
    with pytest.raises(UnknownParameterError, match="x0, y0, width, height"):
        repo.get("img", visit=1, parameters={"bbox": (0, 0)})


@pytest.mark.parametrize("datasetType", ["tbl", "cat", "pq"])
def test_columns_and_rows_of_a_table(repo, datasetType):
    whole = repo.get(datasetType, visit=1)
    part = repo.get(datasetType, visit=1, parameters={"columns": ["name", "flux"], "rows": slice(2, 8, 2)})
    assert part.colnames == ["name", "flux"] and len(part) == 3
    assert list(part["name"]) == list(whole["name"][2:8:2]) == ["s2", "s4", "s6"]
    np.testing.assert_array_equal(part["flux"], whole["flux"][2:8:2])
    assert part["flux"].unit == u.nJy and part.meta["RUN"] == "r1"
    assert repo.get(datasetType, visit=1, parameters={"columns": ["flag"]}).colnames == ["flag"]
    np.testing.assert_array_equal(repo.get(datasetType, visit=1, parameters={"rows": [9, 0]})["id"], [9, 0])
    with pytest.raises(UnknownParameterError) as info:
        repo.get(datasetType, visit=1, parameters={"columns": ["nope"]})
    assert "'nope'" in str(info.value) and "id, flux, name, flag" in str(info.value)


@pytest.mark.parametrize("datasetType", ["tbl", "cat"])
def test_a_fits_column_read_masks_and_strips_as_the_whole_read(repo, datasetType):
    table = Table({"x": [1.0, np.nan, 3.0], "s": ["a ", "", "c"], "k": [1, 2, 3]})
    repo.put(table, datasetType, visit=4)
    whole = repo.get(datasetType, visit=4)
    part = repo.get(datasetType, visit=4, parameters={"columns": ["s", "x", "k"]})
    for name in ("x", "s", "k"):
        assert type(part[name]) is type(whole[name])
    assert list(part["x"].mask) == list(whole["x"].mask) == [False, True, False]
    assert list(part["s"]) == list(whole["s"]) == ["a", "", "c"]


def test_a_column_read_keeps_no_map_of_the_file(repo, tmp_path):
    part = repo.get("cat", visit=1, parameters={"columns": ["id"]})
    assert part["id"].base is None or not isinstance(part["id"].base, np.memmap)  # owned: the file can go
    (tmp_path / "repo" / "cat-1.fits").unlink()
    np.testing.assert_array_equal(part["id"], np.arange(10))


@pytest.mark.parametrize("datasetType, parameters, accepted", [
    ("img", {"columns": ["a"]}, "bbox, imageOrigin"),
    ("cat", {"bbox": (0, 0, 1, 1)}, "columns, rows"),
    ("pq", {"size": 3}, "columns, rows"),
    ("hdr", {"bbox": (0, 0, 1, 1)}, "no parameters"),
    ("foo", {"rows": slice(1)}, "no parameters"),
])
def test_unknown_parameters_name_the_accepted_ones(repo, datasetType, parameters, accepted):
    if datasetType == "foo":
        from butler.test import TestObject

        repo.put(TestObject(1), "foo", visit=1)
    with pytest.raises(UnknownParameterError) as info:
        repo.get(datasetType, visit=1, parameters=parameters)
    message = str(info.value)
    for word in [repr(next(iter(parameters))), f"it accepts: {accepted}", f"datasetType: {datasetType}",
                 "'visit': 1"]:
        assert word in message
    assert isinstance(info.value, ValueError)


def test_parameters_on_what_a_bypass_makes(repo):
    part = repo.get("made", visit=1, parameters={"columns": ["b"], "rows": slice(1, None)})
    assert part.colnames == ["b"] and list(part["b"]) == [5.0, 6.0]
    with pytest.raises(UnknownParameterError, match="it accepts: columns, rows"):
        repo.get("made", visit=1, parameters={"bbox": (0, 0, 1, 1)})


def test_parameters_on_a_memory_repository():
    butler = Butler(outputs=RepositoryArgs(root="mem://representations", mapper=KindsMapper, mode="rw"))
    butler.put(catalog(), "cat", visit=1)
    butler.put(image(), "img", visit=1)
    assert list(butler.get("cat", visit=1, parameters={"columns": ["id"], "rows": slice(0, 2)})["id"]) == [0, 1]
    assert butler.get("img", visit=1, parameters={"bbox": (5, 3, 3, 2)}).shape == (2, 3)


# -- obs_lsst --------------------------------------------------------------------------------------------

IMSIM = {"expId": 204595, "detector": 42, "filter": "i_sim_1.4"}


@pytest.fixture(scope="module")
def imsim(shared_data_untouched):
    return Butler(inputs=str(shared_data_untouched / "obs_lsst" / "data" / "input" / "imsim"))


@pytest.fixture(scope="module")
def imsim_bias(imsim):
    return imsim.get("bias", IMSIM)


def test_obs_lsst_compressed_bias_section(imsim, imsim_bias):
    part = imsim.get("bias", IMSIM, parameters={"bbox": (100, 200, 30, 40)})  # tile-compressed HDUs
    assert isinstance(part, CCDData) and part.shape == (40, 30)
    np.testing.assert_array_equal(part.data, imsim_bias.data[200:240, 100:130])
    np.testing.assert_array_equal(part.uncertainty.array, imsim_bias.uncertainty.array[200:240, 100:130])


def test_obs_lsst_bias_in_other_forms(imsim, imsim_bias):
    array = imsim.get("bias", IMSIM, as_type="numpy", parameters={"bbox": (0, 0, 8, 4)})
    assert type(array) is np.ndarray
    np.testing.assert_array_equal(array, imsim_bias.data[:4, :8])
    nd = imsim.get("bias", IMSIM, as_type=NDData, parameters={"bbox": (0, 0, 8, 4)})
    assert type(nd) is NDData and nd.meta["DETNAME"] == imsim_bias.meta["DETNAME"] == "R11_S20"


def test_obs_lsst_raw_section_through_its_bypass(imsim):
    raw = imsim.get("raw", IMSIM)  # assembled from its amplifiers by the mapper
    part = imsim.get("raw", IMSIM, parameters={"bbox": (500, 1000, 64, 32), "imageOrigin": "LOCAL"})
    np.testing.assert_array_equal(part.data, raw.data[1000:1032, 500:564])
    with pytest.raises(UnknownParameterError, match="datasetType: raw"):
        imsim.get("raw", IMSIM, parameters={"columns": ["a"]})


def test_obs_lsst_header_as_dict(imsim, imsim_bias):
    values = imsim.get("bias_md", IMSIM, as_type="dict")
    assert values["DETNAME"] == imsim_bias.meta["DETNAME"] == "R11_S20"
    assert isinstance(values, dict) and not isinstance(values, fits.Header)
