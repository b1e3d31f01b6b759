"""Mappers of the obs_test "test camera" (one CCD, keys ``visit`` and ``filter``)."""

from __future__ import annotations

from typing import Any

from . import translators
from .camera import Camera, Detector, FilterDefinition
from .cameraMapper import CameraMapper

__all__ = ["TestMapper", "MapperForTestCalexpMetadataObjects"]


class TestMapper(CameraMapper):
    """The obs_test camera: one detector named ``"0"``; the exposure id is the visit."""

    __test__ = False  # not a pytest test class
    packageName = "obs_test"
    policyFiles = ("obs_test/testMapper.yaml",)
    translator = translators.TestCamTranslator
    filterDefinitions = tuple(FilterDefinition(physical=band, band=band) for band in "ugrizy")

    def validate(self, dataId: Any) -> Any:
        """Return the data ID with ``visit`` cast to `int`."""
        visit = (dataId or {}).get("visit")
        if visit is None or isinstance(visit, int):
            return dataId
        dataId = dataId.copy()
        dataId["visit"] = int(visit)
        return dataId

    def _extractDetectorName(self, dataId: Any) -> str:
        return "0"

    def _computeCcdExposureId(self, dataId: Any) -> int:
        return int(dataId["visit"])

    def _ccdExposureIdBits(self) -> int:
        return 41

    def _makeCamera(self) -> Camera:
        return Camera.from_detectors("test", [Detector("0", 0)])


class MapperForTestCalexpMetadataObjects(TestMapper):
    """The obs_test mapper of the one-exposure repository: ``calexp`` has no keys."""

    policyFiles = ("obs_test/calexpMetadataObjects.yaml",)
