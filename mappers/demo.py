"""The demo camera of ``butler demo``: `DemoMapper` and its raw header translator.

DemoCam has four detectors (``S00``..``S03``, ids 0..3) and the filters g and
r. A raw is one primary HDU; its header names the exposure (``EXPID``), the
detector (``DETECTOR``), the filter and the observation time (``MJD-OBS``).
"""

from __future__ import annotations

from typing import Any

from .camera import Camera, Detector, FilterDefinition
from .cameraMapper import CameraMapper
from .translators import HeaderTranslator

__all__ = ["DemoTranslator", "DemoMapper"]

#: detectors of DemoCam
N_DETECTORS = 4


class DemoTranslator(HeaderTranslator):
    """Raw registry rows of DemoCam: ``visit``, ``detector``, ``filter``, ``dateObs``, ``expTime``, ``object``."""

    camera = "demo"
    columns = (("visit", "INT"), ("detector", "INT"), ("filter", "TEXT"), ("dateObs", "TEXT"),
               ("expTime", "DOUBLE"), ("object", "TEXT"))
    unique = ("visit", "detector")
    visit_columns = ("visit", "filter", "dateObs", "expTime", "object")

    def to_visit(self) -> Any:
        return self.require("EXPID")

    def to_detector(self) -> Any:
        return self.require("DETECTOR")

    def to_filter(self) -> Any:
        return self.require("FILTER")


    def to_object(self) -> Any:
        return self.get("OBJECT", "UNKNOWN")


class DemoMapper(CameraMapper):
    """The mapper of DemoCam; the exposure id of a detector is ``visit * 100 + detector``."""

    packageName = "butler_demo"
    policyFiles = ("demo/demoMapper.yaml",)
    filterDefinitions = (FilterDefinition(physical="g", band="g"), FilterDefinition(physical="r", band="r"))
    translator = DemoTranslator

    def _extractDetectorName(self, dataId: Any) -> str:
        return f"S{int(dataId['detector']):02d}"

    def _computeCcdExposureId(self, dataId: Any) -> int:
        return int(dataId["visit"]) * 100 + int(dataId["detector"])

    def _ccdExposureIdBits(self) -> int:
        return 32

    def _makeCamera(self) -> Camera:
        return Camera.from_detectors("demo", [Detector(f"S{i:02d}", i) for i in range(N_DETECTORS)])
