"""Which Image -> RGB converter the node uses: cv_bridge where it imports and
passes a probe, else the package's own REP-104 converter.

The probe converts a small image with a padded ``step`` in every accepted
encoding and compares with the known answer, because some cv_bridge builds
(the PyPI port, and upstream on numpy 2) import fine but convert wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from ..image_encoding import SUPPORTED_INPUT, ImageEncodingError, image_to_rgb

Converter = Callable[[Any], np.ndarray]


def _probe_images() -> list[tuple[Image, np.ndarray]]:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    alpha = np.full((2, 3, 1), 255, np.uint8)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.concatenate([rgb, alpha], 2),
              "bgra8": np.concatenate([rgb[..., ::-1], alpha], 2), "mono8": rgb[..., 0]}
    probes = []
    for encoding in SUPPORTED_INPUT:
        p = np.ascontiguousarray(pixels[encoding]).reshape(2, -1)
        padded = np.concatenate([p, np.zeros((2, 4), np.uint8)], axis=1)  # 4 bytes of row padding
        msg = Image(height=2, width=3, encoding=encoding, is_bigendian=0, step=padded.shape[1],
                    data=padded.tobytes())
        expected = rgb if encoding != "mono8" else np.repeat(rgb[..., :1], 3, axis=2)
        probes.append((msg, expected))
    return probes


def choose_converter() -> tuple[Converter, str]:
    """(converter, its name) for the node."""
    try:
        from cv_bridge import CvBridge

        bridge = CvBridge()
        for msg, expected in _probe_images():
            if not np.array_equal(np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")), expected):
                raise ValueError("cv_bridge converted the probe wrongly")
    except Exception:  # not installed, broken on this numpy, or wrong: use ours
        return image_to_rgb, "affective_memory_ros.image_encoding"

    def convert(msg: Any) -> np.ndarray:
        if msg.encoding not in SUPPORTED_INPUT:
            raise ImageEncodingError(f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_INPUT)}")
        image_to_rgb(msg)  # our size/step checks first: cv_bridge's errors are less clear
        return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))

    return convert, "cv_bridge"
