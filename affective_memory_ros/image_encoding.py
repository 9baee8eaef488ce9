"""``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` <-> numpy, without cv_bridge.

The PyPI ``cv-bridge`` is broken on numpy 2 and upstream cv_bridge has an open
numpy-2 problem, so the node uses these few lines unless a working cv_bridge
is importable. They honour ``step`` (row padding) and ``is_bigendian``, check
every size against the buffer, and refuse anything else with a clear
:class:`ImageEncodingError`. Compressed images (what image_transport's
``compressed`` plugin publishes on ``<image>/compressed`` and what robots
record) are JPEG or PNG; their size is read from the file header and checked
before anything is decoded, so a small file that claims a huge image is
refused without allocating it. Works on any object with the message fields,
so it is tested without ROS.
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


# ------------------------------------------------------------------ compressed images
#: Compressed payloads larger than this are refused before they are looked at (a 4K JPEG is a few MB).
MAX_COMPRESSED_BYTES = 64 << 20


def compressed_format(fmt: str) -> str:
    """``jpeg`` or ``png`` from a CompressedImage ``format`` field.

    image_transport writes ``"<source encoding>; jpeg compressed <encoding>"``
    (or ``png``); older drivers write just ``"jpeg"`` or ``"png"``. Depth
    images (``compressedDepth``) are refused: they are not camera pictures.
    """
    text = str(fmt).strip().lower()
    if "compresseddepth" in text.replace(" ", ""):
        raise ImageEncodingError(f"compressed depth images ({fmt!r}) are not supported; give a colour camera")
    tail = text.split(";")[-1]
    for name, aliases in (("jpeg", ("jpeg", "jpg")), ("png", ("png",))):
        if any(a in tail for a in aliases):
            return name
    raise ImageEncodingError(f"unsupported compressed format {fmt!r}; supported: jpeg, png")


def compressed_size(data: bytes | memoryview) -> tuple[int, int]:
    """(width, height) from a JPEG or PNG header, without decoding; raises ImageEncodingError."""
    buf = bytes(data[:2]) if len(data) >= 2 else b""
    if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
            raise ImageEncodingError("truncated PNG header")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if buf == b"\xff\xd8":
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                raise ImageEncodingError("corrupt JPEG header")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                i += 2
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                if i + 9 > n:
                    break
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            if length < 2:
                raise ImageEncodingError("corrupt JPEG header")
            i += 2 + length
        raise ImageEncodingError("truncated JPEG: no frame header")
    raise ImageEncodingError("compressed data is neither JPEG nor PNG")


def compressed_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A contiguous RGB uint8 (H, W, 3) frame from a ``sensor_msgs/CompressedImage`` (JPEG or PNG).

    The header's size is checked against ``max_pixels`` before decoding.
    """
    import cv2

    kind = compressed_format(msg.format)
    try:
        data = memoryview(msg.data).cast("B")
    except TypeError:  # a list of ints
        data = memoryview(np.asarray(msg.data, np.uint8).tobytes())
    if len(data) == 0:
        raise ImageEncodingError("empty compressed image")
    if len(data) > MAX_COMPRESSED_BYTES:
        raise ImageEncodingError(f"compressed image of {len(data)} bytes is larger than {MAX_COMPRESSED_BYTES}")
    width, height = compressed_size(data)
    if width <= 0 or height <= 0:
        raise ImageEncodingError(f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageEncodingError(f"frame of {width}x{height} pixels is larger than max_frame_pixels={max_pixels}; "
                                 "refused")
    header_kind = "png" if bytes(data[:4]) == b"\x89PNG" else "jpeg"
    if header_kind != kind:
        raise ImageEncodingError(f"format says {kind} but the data is {header_kind}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[:2] != (height, width):
        raise ImageEncodingError(f"cannot decode the {kind} image (corrupt or truncated)")
    return np.ascontiguousarray(bgr[..., ::-1])


def fill_compressed(msg: Any, rgb: np.ndarray, kind: str = "jpeg", quality: int = 90) -> Any:
    """Write an RGB uint8 frame into a CompressedImage as image_transport does (``bgr8; jpeg compressed bgr8``)."""
    import cv2

    frame = np.asarray(rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ImageEncodingError(f"expected RGB uint8 (H, W, 3), got {frame.shape} {frame.dtype}")
    if kind not in ("jpeg", "png"):
        raise ImageEncodingError(f"can only write jpeg or png, not {kind!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if kind == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png", np.ascontiguousarray(frame[..., ::-1]), params)
    if not ok:
        raise ImageEncodingError(f"cannot encode {kind}")
    msg.format = f"bgr8; {kind} compressed bgr8"
    msg.data = encoded.tobytes()
    return msg
