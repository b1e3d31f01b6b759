"""Tests of `butler.logicalLocation.LogicalLocation`."""

from __future__ import annotations

import pytest

from butler.errors import TemplateError
from butler.logicalLocation import LogicalLocation


@pytest.fixture(autouse=True)
def clear_location_map():
    yield
    LogicalLocation.setLocationMap(None)


def test_substitution_from_the_location_map():
    LogicalLocation.setLocationMap({"foo": "bar", "x": 3})
    assert LogicalLocation("%(foo)xx").locString() == "barxx"
    assert LogicalLocation("%(x)foo").locString() == "3foo"
    assert LogicalLocation("yy%04d(x)yy").locString() == "yy0003yy"
    assert LogicalLocation("no fields").locString() == "no fields"


def test_location_map_wins_over_additional_data():
    LogicalLocation.setLocationMap({"foo": "bar", "x": 3})
    extra = {"foo": "baz", "y": 2009}
    assert LogicalLocation("%(foo)%(x)%(y)", extra).locString() == "bar32009"
    LogicalLocation.setLocationMap({})
    assert LogicalLocation("%(foo)%3d(y)", extra).locString() == "baz2009"
    assert LogicalLocation("%(foo)/%-6s(foo)|%.2f(y)", extra).locString() == "baz/baz   |2009.00"


def test_location_map_is_copied():
    mapping = {"a": 1}
    LogicalLocation.setLocationMap(mapping)
    mapping["a"] = 2
    assert LogicalLocation("%(a)").locString() == "1"


def test_unknown_key_and_bad_format():
    with pytest.raises(TemplateError, match="'missing'"):
        LogicalLocation("a/%(missing)/b", {"other": 1}).locString()
    with pytest.raises(TemplateError, match="%04d"):
        LogicalLocation("%04d(name)", {"name": "text"}).locString()
    assert issubclass(TemplateError, RuntimeError)
