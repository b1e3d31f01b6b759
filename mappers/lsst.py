"""Mappers of the obs_lsst cameras (LSSTCam, ComCam, LATISS, TS8, TS3, UCDCam, imsim, phosim).

Every camera composes ``obs_lsst/lsstCamMapper.yaml`` under its own policy file
(the first file wins). ``raw`` is the whole file: one `CCDData` tiling the
amplifiers by ``DETSEC``, untrimmed; ``raw_amp`` is one amplifier.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from butler.errors import IncompleteDataIdError, describe_data_id

from . import astro, translators
from .camera import Camera, Detector
from .cameraMapper import CameraMapper, local_file

__all__ = ["LsstCamMapper", "LsstComCamMapper", "LatissMapper", "Ts8Mapper", "Ts3Mapper", "UcdMapper",
           "ImsimMapper", "PhosimMapper"]

_log = logging.getLogger(__name__)

_BASE_POLICY = "obs_lsst/lsstCamMapper.yaml"
_DETECTOR_KEYS = ("raftName", "detectorName", "detector")


class LsstCamMapper(CameraMapper):
    """LSSTCam. Detector names are ``<raftName>_<detectorName>``.

    Calibrations are found in ``<root>/CALIB`` (else a parent's ``CALIB`` or root)
    when that directory holds ``calibRegistry.sqlite3`` and no calibration root is given.
    """

    packageName = "obs_lsst"
    policyFiles: ClassVar[tuple[str, ...]] = (_BASE_POLICY,)
    # every obs_lsst camera's translator, so the cameras below may name theirs
    translator: ClassVar[type[translators.LsstTranslator]] = translators.LsstCamTranslator
    calibSubdir = "CALIB"
    #: multiplier of the visit in the exposure id (room for every detector)
    detectorMax = 1000

    def _detectorId(self, dataId: Any) -> dict:
        """The data ID completed with the raft, detector name and detector number from the registry."""
        return self.mappings["raw"].need(self._detectorColumns(), dataId)

    def _detectorColumns(self) -> list[str]:
        """The detector columns (of raftName, detectorName, detector) the raw registry has."""
        known = set(self.registry.columns("raw")) if self.registry is not None else set()
        known = known or set(self.mappings["raw"].keyDict)  # no raw table (file names): the template's keys
        return [key for key in _DETECTOR_KEYS if key in known]

    def _extractDetectorName(self, dataId: Any) -> str:
        fullId = self._detectorId(dataId)
        return f"{fullId.get('raftName', 'RXX')}_{fullId['detectorName']}"

    def _computeCcdExposureId(self, dataId: Any) -> int:
        fullId = self._detectorId(dataId)
        visit = fullId.get("visit", fullId.get("expId"))
        if visit is None:
            raise IncompleteDataIdError(f"cannot compute the ccdExposureId of data ID {describe_data_id(dataId)} "
                                        f"in repository {self.root}: it has neither visit nor expId")
        return int(visit) * self.detectorMax + int(fullId["detector"])

    def _ccdExposureIdBits(self) -> int:
        return 36

    def _makeCamera(self) -> Camera | None:
        """The camera, finding each detector in the raw registry when it is asked for (never a scan at
        construction); None without a registry.
        """
        if self.registry is None:
            return None
        return Camera.lazy(self.getCameraName(), self._findDetector, lambda: self._registryDetectors({}))

    def _findDetector(self, name: str) -> Detector | None:
        """The detector named ``<raftName>_<detectorName>`` in the raw registry, or None."""
        raft, _, detectorName = name.rpartition("_")
        where = {"detectorName": detectorName}
        if "raftName" in self._detectorColumns():
            where["raftName"] = raft
        elif raft != "RXX":
            return None
        found = self._registryDetectors(where)
        return found[0] if found else None

    def _registryDetectors(self, where: dict[str, Any]) -> list[Detector]:
        """The detectors of the raw registry rows matching ``where`` (none from a registry without them)."""
        columns = self._detectorColumns()
        try:
            rows = self.registry.lookup(columns, "raw", where)
        except Exception as exc:  # a POSIX registry or a foreign schema: no detectors
            _log.debug("%s: no detectors from the registry (%s)", self.root, exc)
            return []
        detectors = [dict(zip(columns, row)) for row in rows]
        return [Detector(f"{det.get('raftName', 'RXX')}_{det['detectorName']}", int(det["detector"]))
                for det in detectors]

    def bypass_raw(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> Any:
        """Return the whole raw file as one `CCDData`, amplifiers tiled by ``DETSEC`` (untrimmed)."""
        with local_file(location) as (path, _):
            return astro.assemble_amplifiers(path)

    def bypass_raw_amp(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> Any:
        """Return one amplifier as a `CCDData` (0×0 when the file keeps headers only)."""
        with local_file(location) as (path, hdu):
            assert hdu is not None, "every obs_lsst raw_amp template names the amplifier's HDU"
            return astro.read_amplifier(path, hdu)


class LsstComCamMapper(LsstCamMapper):
    """ComCam: the LSSTCam policy unchanged."""

    translator = translators.LsstComCamTranslator


class LatissMapper(LsstCamMapper):
    """LATISS (AuxTel): one detector; calibrations looked up by ``dayObs``."""

    policyFiles = ("obs_lsst/latiss/latissMapper.yaml", _BASE_POLICY)
    translator = translators.LatissTranslator


class Ts8Mapper(LsstCamMapper):
    """TS8, the raft test stand."""

    policyFiles = ("obs_lsst/ts8/ts8Mapper.yaml", _BASE_POLICY)
    translator = translators.Ts8Translator


class Ts3Mapper(LsstCamMapper):
    """TS3, the single-sensor test stand."""

    policyFiles = ("obs_lsst/ts3/ts3Mapper.yaml", _BASE_POLICY)
    translator = translators.Ts3Translator


class UcdMapper(LsstCamMapper):
    """The UC Davis test stand (raw files keep headers only)."""

    policyFiles = ("obs_lsst/ucd/ucdMapper.yaml", _BASE_POLICY)
    translator = translators.UcdTranslator


class ImsimMapper(LsstCamMapper):
    """imsim simulations."""

    policyFiles = ("obs_lsst/imsim/imsimMapper.yaml", _BASE_POLICY)
    translator = translators.ImsimTranslator


class PhosimMapper(LsstCamMapper):
    """phosim simulations (the imsim policy)."""

    policyFiles = ("obs_lsst/imsim/imsimMapper.yaml", _BASE_POLICY)
    translator = translators.PhosimTranslator
