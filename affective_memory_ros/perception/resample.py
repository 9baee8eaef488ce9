"""Cheap, anti-aliased resampling of a frame region into a square detector input.

OpenCV's ``INTER_AREA`` at a non-integer ratio costs ~0.65 ms for a 375 px
region and ~1.2 ms for a 640x480 frame on the project's CPU, as much as the
rest of a region's detection. Shrinking in two steps is several times
cheaper: 2x2 box filters (``INTER_AREA``'s vectorised fast path) while the
ratio is at least 2, then a bilinear ``warpAffine`` for the rest (< 2, so
little aliasing), with an exact mapping so detections map back to frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np


def resample_square(image: np.ndarray, x0: float, y0: float, scale: float, size: int) -> np.ndarray:
    """A ``size`` x ``size`` view of ``image`` whose pixel (u, v) shows the frame point
    ``((u + 0.5) / scale + x0, (v + 0.5) / scale + y0)`` (pixel-corner coordinates).

    In other words, output pixel coordinates are ``scale * (frame - (x0, y0))``;
    parts outside the image are black, as in a letterbox.
    """
    h, w = image.shape[:2]
    # Crop to the part of the image the output can see (plus a pixel for the bilinear taps).
    span = size / scale
    cx0, cy0 = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
    cx1, cy1 = min(int(np.ceil(x0 + span)) + 1, w), min(int(np.ceil(y0 + span)) + 1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((size, size, 3), np.uint8)
    crop = image[cy0:cy1, cx0:cx1]
    x0, y0 = x0 - cx0, y0 - cy0
    # Halve while the rest of the shrink is >= 2: OpenCV's 2x2 box filter has a vectorised fast path
    # (0.1 ms for 640x480), unlike other integer factors (~1 ms for 3x).
    k = 1
    while scale * k * 2 <= 1.0 and min(crop.shape[:2]) >= 2:
        ch, cw = crop.shape[:2]
        crop = cv2.resize(crop[: ch // 2 * 2, : cw // 2 * 2], (cw // 2, ch // 2), interpolation=cv2.INTER_AREA)
        k *= 2
    # Box-filtered pixel j has its centre at crop pixel-centre k*j + (k-1)/2; output pixel u shows
    # the crop point (u + 0.5) / scale + x0 in corner coordinates, i.e. that point minus 0.5 in centre ones.
    step = 1.0 / (scale * k)
    matrix = np.array([[step, 0.0, (0.5 / scale + x0 - k / 2) / k],
                       [0.0, step, (0.5 / scale + y0 - k / 2) / k]])
    return cv2.warpAffine(np.ascontiguousarray(crop), matrix, (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
