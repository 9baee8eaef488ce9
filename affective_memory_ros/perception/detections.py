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


def check_frames(frames: np.ndarray | list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Pass through RGB uint8 frames of one shape (a list, or a (B, H, W, 3) array); a clear error otherwise."""
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"expected RGB uint8 frames of shape (B, H, W, 3), got {frames.shape} {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("expected at least one frame")
    shape = frames[0].shape
    for f in frames:
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[-1] != 3 or f.dtype != np.uint8 or f.shape != shape:
            got = f"{getattr(f, 'shape', None)} {getattr(f, 'dtype', type(f).__name__)}"
            raise ValueError(f"expected RGB uint8 frames of one shape (B, H, W, 3), got {got}")
    return frames
