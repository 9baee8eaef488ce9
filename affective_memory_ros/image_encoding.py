"""``sensor_msgs/Image`` <-> numpy by REP-104 encodings, without cv_bridge.

The PyPI ``cv-bridge`` is broken on numpy 2 and upstream cv_bridge has an open
numpy-2 problem, so the node uses these few lines unless a working cv_bridge
is importable. They honour ``step`` (row padding) and ``is_bigendian``, check
every size against the buffer, and refuse anything else with a clear
:class:`ImageEncodingError`. Works on any object with the Image fields, so it
is tested without ROS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: encoding -> (channels, dtype, channel order of the result's source)
ENCODINGS: dict[str, tuple[int, np.dtype[Any]]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
}
#: What the node accepts as camera input.
SUPPORTED_INPUT = ("bgr8", "rgb8", "bgra8", "rgba8", "mono8")
#: Refuse frames larger than this many pixels (a 16k x 16k image) before touching the buffer.
MAX_PIXELS = 16384 * 16384


class ImageEncodingError(ValueError):
    """The image message cannot be turned into an RGB frame; the reason says why."""


def image_to_array(msg: Any) -> np.ndarray:
    """The message's pixels as an (H, W, C) or (H, W) array, a view where possible."""
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise ImageEncodingError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_INPUT)}")
    channels, dtype = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageEncodingError(f"empty image ({width}x{height})")
    if height * width > MAX_PIXELS:
        raise ImageEncodingError(f"image too large ({width}x{height})")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageEncodingError(f"step {step} is smaller than width x pixel size ({row_bytes})")
    try:  # bytes, bytearray, array.array('B') (what rclpy gives): no copy
        buffer = memoryview(msg.data).cast("B")
    except TypeError:  # a list of ints
        buffer = memoryview(np.asarray(msg.data, np.uint8).tobytes())
    if len(buffer) != step * height:
        raise ImageEncodingError(f"data has {len(buffer)} bytes, expected step x height = {step * height}")
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    rows = np.frombuffer(buffer, np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = rows.view(dt) if dtype.itemsize == 1 else np.ascontiguousarray(rows).view(dt)
    pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    return pixels.astype(dtype.newbyteorder("="), copy=False)


def image_to_rgb(msg: Any) -> np.ndarray:
    """A contiguous RGB uint8 (H, W, 3) frame from any supported camera encoding."""
    encoding = str(msg.encoding).lower()
    if encoding not in SUPPORTED_INPUT:
        raise ImageEncodingError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_INPUT)}")
    pixels = image_to_array(msg)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[..., :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(np.repeat(pixels[..., None], 3, axis=2))  # mono8


def fill_image(msg: Any, rgb: np.ndarray, encoding: str = "bgr8") -> Any:
    """Write an RGB uint8 frame into an Image message (``bgr8`` or ``rgb8``); returns msg."""
    frame = np.asarray(rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ImageEncodingError(f"expected RGB uint8 (H, W, 3), got {frame.shape} {frame.dtype}")
    if encoding not in ("bgr8", "rgb8"):
        raise ImageEncodingError(f"can only write bgr8 or rgb8, not {encoding!r}")
    pixels = frame[..., ::-1] if encoding == "bgr8" else frame
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(frame.shape[1] * 3)
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg
