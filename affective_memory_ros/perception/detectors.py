"""One place that turns a detector name from the configuration into a detector."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .detections import FaceDetections

if TYPE_CHECKING:  # argument parsers import the names below; only building a detector loads torch
    import torch

#: A detector maps a batch of RGB uint8 frames to one :class:`FaceDetections` per frame.
Detector = Callable[[np.ndarray | list[np.ndarray]], list[FaceDetections]]
DETECTORS = ("blazeface_tracked", "blazeface_full", "blazeface_short", "haar")
DEFAULT_DETECTOR = "blazeface_tracked"


def make_detector(name: str, device: str | torch.device = "cpu") -> Detector:
    """Build a face detector by its configuration name.

    * ``blazeface_tracked`` (default): full-range search every 10 frames, short-range
      re-detection around known faces in between; faces up to ~5 m at about the
      short-range model's cost. Stateful: one instance per camera stream.
    * ``blazeface_full``: the full-range model on every frame (faces up to ~5 m).
    * ``blazeface_short``: the short-range model on every frame (~2 m).
    * ``haar``: OpenCV's Haar cascade, the fallback where torch cannot run BlazeFace.
    """
    if name == "haar":
        from .haar import HaarFaceDetector

        return HaarFaceDetector()
    if name == "blazeface_tracked":
        from .region_tracking import RegionTrackingDetector

        return RegionTrackingDetector(device=device)
    if name in ("blazeface_full", "blazeface_short"):
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector(name.removeprefix("blazeface_"), device=device)
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
