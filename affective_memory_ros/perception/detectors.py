"""One place that turns a detector name from the configuration into a detector."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .detections import FaceDetections

Detector = Callable[[np.ndarray | list[np.ndarray]], list[FaceDetections]]
DETECTORS = ("blazeface_full", "blazeface_short", "haar")


def make_detector(name: str, device: str | torch.device = "cpu") -> Detector:
    """``blazeface_full`` (default; faces up to ~5 m), ``blazeface_short`` (~2 m), or ``haar`` (fallback)."""
    if name == "haar":
        from .haar import HaarFaceDetector

        return HaarFaceDetector()
    if name in ("blazeface_full", "blazeface_short"):
        from .blazeface import BlazeFaceDetector

        return BlazeFaceDetector(name.removeprefix("blazeface_"), device=device)
    raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
