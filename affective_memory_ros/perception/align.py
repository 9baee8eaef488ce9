"""Aligned face crops: rotate so the eyes are level, scale, crop to 96x96 RGB.

The PK model sees faces the way this module cuts them, in training and at run
time, so both use :func:`crop_faces`. The crop is centred between the eye
midpoint and the mouth and sized from the eye-mouth geometry rather than the
detector's box, because keypoints jitter less than box edges from frame to
frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from .detections import FaceDetections

CROP_SIZE = 96
#: Crop side as a multiple of the face's scale (see :func:`alignment_matrices`).
DEFAULT_MARGIN = 2.2


def alignment_matrices(keypoints: np.ndarray, size: int = CROP_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(N, 2, 3) affine maps from frame pixels to the crop, from (N, 6, 2) keypoints.

    Face scale s = max(inter-ocular distance, eye-midpoint-to-mouth distance);
    the crop is ``margin * s`` wide, centred at the midpoint between the eye
    midpoint and the mouth, rotated so the eyes are horizontal.
    """
    kp = np.asarray(keypoints, np.float64).reshape(-1, 6, 2)
    right_eye, left_eye, mouth = kp[:, 0], kp[:, 1], kp[:, 3]
    eyes = left_eye - right_eye  # subject's right eye is on the image's left
    eye_mid = (left_eye + right_eye) / 2
    angle = np.arctan2(eyes[:, 1], eyes[:, 0])
    scale_face = np.maximum(np.linalg.norm(eyes, axis=1), np.linalg.norm(mouth - eye_mid, axis=1))
    scale_face = np.maximum(scale_face, 1e-3)
    centre = (eye_mid + mouth) / 2
    k = size / (margin * scale_face)
    cos, sin = np.cos(angle) * k, np.sin(angle) * k
    # Rotation by -angle and scaling by k about `centre`, which lands at the crop's centre.
    m = np.empty((kp.shape[0], 2, 3))
    m[:, 0, 0], m[:, 0, 1] = cos, sin
    m[:, 1, 0], m[:, 1, 1] = -sin, cos
    m[:, 0, 2] = size / 2 - (cos * centre[:, 0] + sin * centre[:, 1])
    m[:, 1, 2] = size / 2 - (-sin * centre[:, 0] + cos * centre[:, 1])
    return m


def crop_faces(frame_rgb: np.ndarray, detections: FaceDetections, size: int = CROP_SIZE,
               margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB crops, one per detection, in detection order."""
    if len(detections) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    mats = alignment_matrices(detections.keypoints, size, margin)
    return np.stack([
        cv2.warpAffine(frame_rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for m in mats
    ])
