"""REP-104 image conversion, tested on plain objects with the sensor_msgs/Image fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from affective_memory_ros.image_encoding import (
    SUPPORTED_INPUT,
    ImageEncodingError,
    fill_image,
    image_to_array,
    image_to_rgb,
)


@dataclass
class Img:
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: bytes = b""


def make(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Img:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    if pixels.dtype.itemsize > 1:
        rows = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<")).reshape(h, -1).view(np.uint8)
    else:
        rows = rows.view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return Img(h, w, encoding, int(bigendian), padded.shape[1], padded.tobytes())


@pytest.fixture()
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3, 64])
def test_every_accepted_encoding_gives_the_same_rgb(rgb: np.ndarray, pad: int) -> None:
    alpha = np.full((5, 7, 1), 200, np.uint8)
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        out = image_to_rgb(make(np.ascontiguousarray(pixels), encoding, pad))
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)
        assert out.flags.c_contiguous and out.dtype == np.uint8
    grey = rgb[..., 0]
    out = image_to_rgb(make(np.ascontiguousarray(grey), "mono8", pad))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    assert set(SUPPORTED_INPUT) == {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"}


@pytest.mark.parametrize("bigendian", [False, True])
def test_sixteen_bit_honours_byte_order(bigendian: bool) -> None:
    values = np.array([[1, 256, 65535], [2, 513, 4096]], np.uint16)
    out = image_to_array(make(values, "mono16", pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(out, values)
    assert out.dtype == np.uint16


def test_rclpy_style_array_data(rgb: np.ndarray) -> None:
    import array

    msg = make(rgb, "rgb8")
    msg.data = array.array("B", msg.data)  # type: ignore[assignment]
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_round_trip_through_fill_image(rgb: np.ndarray) -> None:
    for encoding in ("bgr8", "rgb8"):
        msg = fill_image(Img(), rgb, encoding)
        assert msg.encoding == encoding and msg.step == 21
        np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding"),
        ({"encoding": "32FC1"}, "unsupported encoding"),
        ({"height": 0, "width": 0}, "empty"),
        ({"step": 20}, "step"),
        ({"data": b"\x00" * 10}, "bytes"),
        ({"data": b"\x00" * (21 * 5 + 1)}, "bytes"),
        ({"height": 100000, "width": 100000}, "too large"),
    ],
)
def test_malformed_images_are_refused_clearly(rgb: np.ndarray, change: dict[str, object], match: str) -> None:
    msg = make(rgb, "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageEncodingError, match=match):
        image_to_rgb(msg)


@settings(max_examples=10_000, deadline=None)
@given(height=st.integers(-2, 40), width=st.integers(-2, 40), step=st.integers(-5, 200),
       encoding=st.sampled_from([*SUPPORTED_INPUT, "mono16", "16UC1", "", "RGB8", "bgr16"]),
       size=st.integers(0, 5000), bigendian=st.integers(0, 1))
def test_any_message_converts_or_fails_cleanly(height: int, width: int, step: int, encoding: str, size: int,
                                               bigendian: int) -> None:
    msg = Img(height, width, encoding, bigendian, step, bytes(size))
    try:
        out = image_to_rgb(msg)
    except ImageEncodingError as exc:
        assert str(exc)
    else:
        assert out.shape == (height, width, 3) and out.dtype == np.uint8
