"""Registry speed: the lookups a raw map makes are answered from an index, never a scan of ``raw``."""

from __future__ import annotations

import pytest

from butler.ingest import _create_schema
from butler.registry import SqliteRegistry
from mappers.lsst import LatissMapper, LsstCamMapper, Ts8Mapper
from mappers.test import TestMapper


@pytest.mark.parametrize("mapperClass", [LsstCamMapper, LatissMapper, Ts8Mapper, TestMapper])
def test_raw_lookups_use_an_index(tmp_path, mapperClass):
    """Every one-key partial data ID of the raw template completes through an index of the ingest schema."""
    (tmp_path / "_mapper").write_text(f"{mapperClass.__module__}.{mapperClass.__name__}\n")
    keys = list(mapperClass(root=str(tmp_path)).getKeys("raw", None))
    registry = SqliteRegistry(tmp_path / "registry.sqlite3", readOnly=False)
    with registry.transaction():
        _create_schema(registry, mapperClass.translator, keys)
    columns = registry.columns("raw")
    queried = [key for key in keys if key in columns]
    assert queried, keys
    for key in queried:
        others = [other for other in queried if other != key] or ["id"]
        plan = " / ".join(registry.queryPlan(others, "raw", {key: 1}))
        assert "SCAN raw" not in plan, (mapperClass.__name__, key, plan)
        assert "SEARCH raw USING" in plan and "INDEX" in plan, (mapperClass.__name__, key, plan)
