"""Tests of `butler.compare` on synthetic objects and on a stand-in Butler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.table import Table

from butler.compare import (
    ComparisonReport,
    DatasetComparison,
    Difference,
    compare_objects,
    compare_versions,
    text_table,
)
from butler.errors import NoResults


def by_where(differences: list[Difference]) -> dict[str, Difference]:
    return {d.where: d for d in differences}


def make_ccd(data: np.ndarray, **header: object) -> CCDData:
    hdr = fits.Header({"EXPTIME": 30.0, "FILTER": "r", **header})
    hdr["HISTORY"] = "made by a test"
    return CCDData(data, unit="adu", meta=hdr, mask=np.zeros(data.shape, bool),
                   uncertainty=StdDevUncertainty(np.ones_like(data)))


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(1000.0, 10.0, size=(32, 48))


class TestImages:
    def test_identical_arrays(self, image):
        assert compare_objects(image, image.copy()) == []

    def test_one_pixel(self, image):
        other = image.copy()
        other[5, 17] += 3.0
        (diff,) = compare_objects(image, other)
        assert diff.kind == "values" and diff.where == "data"
        stats = diff.stats
        assert (stats.count, stats.total, stats.unit) == (1, image.size, "pixels")
        assert stats.maxAbsDiff == pytest.approx(3.0)
        assert stats.rms == pytest.approx(3.0 / np.sqrt(image.size))
        assert stats.positions == ((5, 17),)
        assert "1 of 1536 pixels differ" in diff.describe()

    def test_tolerance(self, image):
        other = image * (1 + 1e-9)
        assert compare_objects(image, other)
        assert compare_objects(image, other, rtol=1e-8) == []
        assert compare_objects(image, image + 0.01, atol=0.02) == []
        assert compare_objects(image, image + 0.03, atol=0.02)[0].stats.count == image.size

    def test_negative_tolerance_is_refused(self, image):
        with pytest.raises(ValueError):
            compare_objects(image, image, atol=-1)

    def test_nans(self, image):
        a, b = image.copy(), image.copy()
        a[0, :3] = b[0, :3] = np.nan
        assert compare_objects(a, b) == []
        b[1, 1] = np.nan
        (diff,) = compare_objects(a, b)
        assert diff.stats.count == 1
        assert diff.stats.maxAbsDiff is None  # the only differing pixel is NaN in B

    def test_shape_mismatch(self, image):
        (diff,) = compare_objects(image, image[:, :40])
        assert diff.kind == "shape" and diff.a == [32, 48] and diff.b == [32, 40]

    def test_integer_arrays_do_not_wrap(self):
        a = np.array([[0, 5]], dtype=np.uint16)
        b = np.array([[1, 5]], dtype=np.uint16)
        (diff,) = compare_objects(a, b)
        assert diff.stats.maxAbsDiff == 1.0

    def test_ccddata(self, image):
        a = make_ccd(image)
        b = make_ccd(image.copy(), EXPTIME=31.0, GAIN=1.5)
        del b.meta["FILTER"]
        b.data[2, 3] = -1
        b.mask[0, 0] = True
        diffs = by_where(compare_objects(a, b))
        assert set(diffs) == {"data", "mask", "header.EXPTIME", "header.FILTER", "header.GAIN"}
        assert (diffs["header.EXPTIME"].a, diffs["header.EXPTIME"].b) == (30.0, 31.0)
        assert diffs["header.FILTER"].kind == "removed" and diffs["header.FILTER"].a == "r"
        assert diffs["header.GAIN"].kind == "added" and diffs["header.GAIN"].b == 1.5
        assert diffs["mask"].stats.count == 1

    def test_ccddata_uncertainty_and_unit(self, image):
        a = make_ccd(image)
        b = make_ccd(image.copy())
        b.uncertainty.array[4, 4] = 2.0
        b.unit = "electron"
        assert set(by_where(compare_objects(a, b))) == {"uncertainty", "unit"}
        b.uncertainty = None
        assert by_where(compare_objects(a, b))["uncertainty"].kind == "removed"

    def test_ccddata_equal_to_itself(self, image):
        assert compare_objects(make_ccd(image), make_ccd(image.copy())) == []

    def test_hdulist(self, image):
        def hdus(value: float) -> fits.HDUList:
            data = image.copy()
            data[0, 0] = value
            return fits.HDUList([fits.PrimaryHDU(header=fits.Header({"OBSID": "x"})),
                                 fits.ImageHDU(data, name="SCI")])

        assert compare_objects(hdus(1.0), hdus(1.0)) == []
        diffs = by_where(compare_objects(hdus(1.0), hdus(2.0)))
        assert set(diffs) == {"hdu1.data"}
        shorter = hdus(1.0)[:1]
        assert by_where(compare_objects(hdus(1.0), fits.HDUList(shorter)))["hdus"].kind == "length"


class TestHeaders:
    def test_changed_added_removed(self):
        a = fits.Header({"A": 1, "B": "x", "C": 2.5})
        b = fits.Header({"A": 1, "B": "y", "D": True})
        diffs = by_where(compare_objects(a, b))
        assert diffs["B"].describe() == "changed: 'x' -> 'y'"
        assert diffs["C"].kind == "removed" and diffs["D"].kind == "added"
        assert "A" not in diffs

    def test_float_keyword_tolerance(self):
        a, b = fits.Header({"X": 1.0}), fits.Header({"X": 1.0 + 1e-12})
        assert compare_objects(a, b)
        assert compare_objects(a, b, atol=1e-9) == []

    def test_repeated_keywords(self):
        a, b = fits.Header(), fits.Header()
        for text in ("one", "two"):
            a["HISTORY"] = text
            b["HISTORY"] = text
        assert compare_objects(a, b) == []
        b["HISTORY"] = "three"
        (diff,) = compare_objects(a, b)
        assert diff.where == "HISTORY" and diff.kind == "length"


class TestTables:
    def table(self) -> Table:
        return Table({"id": [1, 2, 3, 4], "flux": [10.0, 20.0, np.nan, 40.0], "name": ["a", "b", "c", "d"]},
                     meta={"VERSION": 1})

    def test_identical(self):
        assert compare_objects(self.table(), self.table()) == []

    def test_value_change(self):
        b = self.table()
        b["flux"][3] = 41.0
        b["name"][0] = "z"
        diffs = by_where(compare_objects(self.table(), b))
        assert set(diffs) == {"column flux", "column name"}
        assert diffs["column flux"].stats.positions == (3,)
        assert diffs["column flux"].stats.maxAbsDiff == 1.0
        assert diffs["column flux"].describe() == "1 of 4 rows differ; max |diff| 1; rms 0.57735; rows 3"
        assert diffs["column name"].stats.maxAbsDiff is None
        assert compare_objects(self.table(), b, atol=1.5).__len__() == 1  # the string column still differs

    def test_columns_rows_meta_units(self):
        b = self.table()
        b.remove_column("name")
        b["extra"] = [0, 0, 0, 0]
        b.meta["VERSION"] = 2
        b["flux"].unit = "Jy"
        diffs = by_where(compare_objects(self.table(), b))
        assert diffs["column name"].kind == "removed"
        assert diffs["column extra"].kind == "added"
        assert diffs["meta.VERSION"].kind == "changed"
        assert diffs["column flux.unit"].b == "Jy"
        b.remove_row(0)
        assert by_where(compare_objects(self.table(), b))["rows"].a == 4

    def test_structured_array(self):
        a = np.array([(1, 2.0), (2, 3.0)], dtype=[("i", "i4"), ("x", "f8")])
        b = a.copy()
        b["x"][1] = 3.5
        assert [d.where for d in compare_objects(a, b)] == ["column x"]


class TestPlainData:
    def test_deep_paths(self):
        a = {"calib": {"flats": [1, 2, 3], "name": "x"}, "scale": 1.0}
        b = {"calib": {"flats": [1, 5, 3, 4], "name": "x"}, "scale": 1.0, "new": None}
        diffs = by_where(compare_objects(a, b))
        assert set(diffs) == {"calib.flats", "calib.flats[1]", "new"}
        assert diffs["calib.flats"].kind == "length"
        assert (diffs["calib.flats[1]"].a, diffs["calib.flats[1]"].b) == (2, 5)

    def test_scalars(self):
        assert compare_objects(1, 1.0) == []
        assert compare_objects(float("nan"), float("nan")) == []
        assert compare_objects(np.float32(2.0), 2.0) == []
        assert compare_objects("a", "a") == []
        assert compare_objects(1.0, 1.1, rtol=0.2) == []
        assert compare_objects(None, 0)[0].kind == "changed"
        assert compare_objects([1], {"a": 1})[0].kind == "type"

    def test_difference_is_plain_data(self):
        (diff,) = compare_objects({"x": np.int64(3)}, {"x": np.int64(4)})
        assert type(diff.a) is int
        json.dumps(diff.to_dict())


class TestReport:
    def report(self) -> ComparisonReport:
        diffs = compare_objects(fits.Header({"GAIN": 1.0}), fits.Header({"GAIN": 1.2}))
        return ComparisonReport("calexp", "v1", "v2", 0.0, 0.0,
                                [DatasetComparison({"visit": 1, "ccd": 0}, diffs),
                                 DatasetComparison({"visit": 2, "ccd": 0})],
                                onlyInB=[{"visit": 3, "ccd": 0}])

    def test_text(self):
        text = self.report().to_text()
        assert "visit=1 ccd=0  different" in text
        assert "GAIN" in text and "changed: 1.0 -> 1.2" in text
        assert "visit=2 ccd=0  identical" in text
        assert "visit=3 ccd=0  only in v2" in text
        assert text.splitlines()[-1].endswith("DIFFERENT")

    def test_json(self):
        data = json.loads(self.report().to_json())
        assert data["identical"] is False
        assert data["onlyInB"] == [{"visit": 3, "ccd": 0}]
        assert data["results"][0]["differences"][0]["where"] == "GAIN"

    def test_json_non_finite(self):
        diffs = compare_objects({"x": 1.0}, {"x": float("inf")})
        report = ComparisonReport("t", "A", "B", results=[DatasetComparison({}, diffs)])
        assert json.loads(report.to_json())["results"][0]["differences"][0]["b"] == "inf"

    def test_identical(self):
        report = ComparisonReport("t", "A", "B", results=[DatasetComparison({"visit": 1})])
        assert report.identical and report.summary().endswith("IDENTICAL")

    def test_text_table(self):
        assert text_table(("a", "bb"), [(1, 2), ("long", "")]).splitlines() == [
            "a     bb", "----  --", "1     2", "long"]


class FakeRef:
    def __init__(self, dataId: dict):
        self.dataId = dataId


class FakeButler:
    """Two tagged versions held in dicts keyed by visit; the subset lists every visit known."""

    def __init__(self, versions: dict[str, dict[int, object]]):
        self.versions = versions
        self.calls: list = []

    def subset(self, datasetType, dataId):
        visits = self.versions[next(iter(dataId.tag))]
        return [FakeRef({"visit": v}) for v in sorted(visits) if dataId.get("visit", v) == v]

    def datasetExists(self, datasetType, dataId):
        return dataId["visit"] in self.versions[next(iter(dataId.tag))]

    def get(self, datasetType, dataId):
        self.calls.append((dict(dataId), set(dataId.tag)))
        return self.versions[next(iter(dataId.tag))][dataId["visit"]]


class TestCompareVersions:
    def test_versions(self, image):
        changed = image.copy()
        changed[0, 0] += 1
        butler = FakeButler({"v1": {1: image, 2: image, 3: image}, "v2": {1: image, 2: changed, 4: image}})
        report = compare_versions(butler, "calexp", {}, "v1", "v2")
        assert [r.dataId for r in report.results] == [{"visit": 1}, {"visit": 2}]
        assert [r.identical for r in report.results] == [True, False]
        assert report.onlyInA == ({"visit": 3},) and report.onlyInB == ({"visit": 4},)
        assert not report.identical
        assert ({"visit": 2}, {"v1"}) in butler.calls and ({"visit": 2}, {"v2"}) in butler.calls

    def test_partial_data_id_and_tolerance(self, image):
        butler = FakeButler({"A": {1: image, 2: image}, "B": {1: image + 1e-6, 2: image}})
        report = compare_versions(butler, "calexp", {"visit": 1}, atol=1e-5, progress=True)
        assert report.identical and [r.dataId for r in report.results] == [{"visit": 1}]

    def test_nothing_matches(self):
        with pytest.raises(NoResults):
            compare_versions(FakeButler({"A": {}, "B": {}}), "calexp", {"visit": 9})
