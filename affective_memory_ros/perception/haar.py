"""OpenCV Haar-cascade face detector: the fallback where BlazeFace cannot run.

It needs nothing beyond ``opencv-python-headless<5`` (5.x dropped the
cascades). Haar gives boxes only, so the six keypoints are placed at their
typical positions inside a frontal face box; alignment then does no rotation.
"""

from __future__ import annotations

import cv2
import numpy as np

from .detections import FaceDetections, check_frames

#: Typical keypoint positions in a frontal Haar box, as fractions of (width, height).
_KEYPOINT_LAYOUT = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.58], [0.50, 0.76], [0.08, 0.50], [0.92, 0.50]],
                            np.float32)


class HaarFaceDetector:
    def __init__(self, min_size: int = 40, scale_factor: float = 1.1, min_neighbors: int = 5) -> None:
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError("this OpenCV has no Haar cascades (OpenCV 5 removed them); install opencv<5")
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load {path}")
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors

    def __call__(self, frames: np.ndarray | list[np.ndarray]) -> list[FaceDetections]:
        return [self._detect(frame) for frame in check_frames(frames)]

    def _detect(self, frame_rgb: np.ndarray) -> FaceDetections:
        grey = cv2.equalizeHist(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        if len(boxes) == 0:
            return FaceDetections.empty()
        xywh = np.asarray(boxes, np.float32).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        # Level weights are unbounded margins; squash them into (0, 1) as a score.
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
        keypoints = xywh[:, None, :2] + _KEYPOINT_LAYOUT[None] * xywh[:, None, 2:]
        return FaceDetections(xyxy, scores.astype(np.float32), keypoints.astype(np.float32))
