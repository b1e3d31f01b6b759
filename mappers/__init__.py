"""Camera mappers: the policy-driven `CameraMapper`, its mappings, and one module per camera.

Cameras are found through the ``butler.mappers`` entry-point group (legacy Gen2
class names resolve to the classes here).
"""

from .cameraMapper import CameraMapper
from .mapping import CalibrationMapping, DatasetMapping, ExposureMapping, ImageMapping, Mapping

__all__ = ["CameraMapper", "Mapping", "ImageMapping", "ExposureMapping", "CalibrationMapping", "DatasetMapping"]
