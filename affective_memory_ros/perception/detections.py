"""The detector output shared by every face detector of the package."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: MediaPipe's keypoint order (subject's right/left).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in one frame, in frame pixels.

    ``boxes`` (N, 4) as x1, y1, x2, y2; ``scores`` (N,); ``keypoints`` (N, 6, 2)
    as x, y in :data:`KEYPOINTS` order.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> FaceDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 6, 2), np.float32))
