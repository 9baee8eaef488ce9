"""Reading video files frame by frame (OpenCV), as RGB with timestamps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def video_frames(path: str | os.PathLike[str], *, max_frames: int | None = None,
                 size: tuple[int, int] | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (seconds from start, RGB uint8 frame); ``size`` = (width, height) resizes."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such video: {p}")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {p} (unsupported or corrupt)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    try:
        index = 0
        while max_frames is None or index < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if size is not None and (bgr.shape[1], bgr.shape[0]) != size:
                bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            yield index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def read_video(path: str | os.PathLike[str], **kwargs: object) -> list[np.ndarray]:
    """All frames of a (short) video as RGB arrays."""
    return [frame for _, frame in video_frames(path, **kwargs)]  # type: ignore[arg-type]


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def letterbox(frame: np.ndarray, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Fit a frame into (width, height) without distorting faces, padding with black."""
    w, h = size
    scale = min(w / frame.shape[1], h / frame.shape[0])
    resized = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    top, left = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    return cv2.copyMakeBorder(resized, top, h - resized.shape[0] - top, left, w - resized.shape[1] - left,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))
