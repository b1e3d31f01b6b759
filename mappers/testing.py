"""Minimal camera mappers for tests of the obs_base registries (README §3)."""

from __future__ import annotations

from typing import Any

from .camera import Camera, Detector
from .cameraMapper import CameraMapper

__all__ = ["MinMapper1", "MinMapper2"]


class MinMapper1(CameraMapper):
    """One pickled dataset type ``x`` over the small LSST-sim registry (table ``x``)."""

    packageName = "butler"
    policyFiles = ("testing/minMapper1.yaml",)

    def std_x(self, item: Any, dataId: Any) -> float:
        """Standardize ``x`` to a float."""
        return float(item)


class MinMapper2(CameraMapper):
    """Images, catalogs and a validity-range flat over the CFHTLS registries."""

    packageName = "butler"
    policyFiles = ("testing/minMapper2.yaml",)

    def _extractDetectorName(self, dataId: Any) -> str:
        return f"ccd{int(dataId['ccd']):02d}"

    def _makeCamera(self) -> Camera:
        return Camera.from_detectors("min", [Detector(f"ccd{ccd:02d}", ccd) for ccd in range(36)])
