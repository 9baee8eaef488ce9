"""Compressed camera input (sensor_msgs/CompressedImage): decoding, and `affective-memory run` on bags that hold
only compressed images, as robots record them (``.../image_raw/compressed``)."""

from __future__ import annotations

import csv
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from affective_memory_ros.image_encoding import (
    ImageEncodingError,
    compressed_format,
    compressed_size,
    compressed_to_rgb,
    fill_compressed,
)
from affective_memory_ros.recordings import check_recording, recording_frames, write_image_bag
from affective_memory_ros.video import read_video


def _frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    smooth = np.kron(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), np.ones((10, 10, 1), np.uint8))
    return np.ascontiguousarray(smooth)  # 60 x 80, blocks survive JPEG well


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_a_compressed_image_decodes_to_the_same_rgb_frame(kind: str) -> None:
    rgb = _frame()
    msg = fill_compressed(SimpleNamespace(), rgb, kind)
    assert msg.format == f"bgr8; {kind} compressed bgr8", "image_transport's format string"
    assert compressed_size(msg.data) == (80, 60)
    out = compressed_to_rgb(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    if kind == "png":
        assert np.array_equal(out, rgb), "PNG is lossless: channel order must be exact"
    else:
        err = np.abs(out.astype(int) - rgb.astype(int)).mean()
        swapped = np.abs(out[..., ::-1].astype(int) - rgb.astype(int)).mean()
        assert err < 12 and swapped > 4 * err, ("JPEG keeps the colours in RGB order", err, swapped)


@pytest.mark.parametrize(("fmt", "kind"), [("jpeg", "jpeg"), ("png", "png"), ("rgb8; jpeg compressed bgr8", "jpeg"),
                                           ("mono8; png compressed mono8", "png"), ("JPG", "jpeg")])
def test_format_strings_of_drivers_and_image_transport(fmt: str, kind: str) -> None:
    assert compressed_format(fmt) == kind


def test_a_mono_jpeg_becomes_grey_rgb() -> None:
    import cv2

    grey = _frame()[..., 0]
    ok, data = cv2.imencode(".png", grey)
    assert ok
    out = compressed_to_rgb(SimpleNamespace(format="mono8; png compressed mono8", data=data.tobytes()))
    assert out.shape == (60, 80, 3) and np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 2], grey)


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.mark.parametrize(("msg", "reason"), [
    (SimpleNamespace(format="16UC1; compressedDepth png", data=b"x"), "depth"),
    (SimpleNamespace(format="theora", data=b"x"), "unsupported compressed format"),
    (SimpleNamespace(format="jpeg", data=b""), "empty"),
    (SimpleNamespace(format="jpeg", data=b"GIF89a...."), "neither JPEG nor PNG"),
    (SimpleNamespace(format="png", data=_png_claiming(100_000, 100_000)), "larger than max_frame_pixels"),
    (SimpleNamespace(format="jpeg", data=_png_claiming(8, 8)), "format says jpeg but the data is png"),
    (SimpleNamespace(format="png", data=_png_claiming(8, 8)), "cannot decode"),
    (SimpleNamespace(format="jpeg", data=b"\xff\xd8\xff\xe0\x00\x10JFIF"), "truncated JPEG"),
])
def test_bad_compressed_images_are_refused_with_a_reason(msg: SimpleNamespace, reason: str) -> None:
    with pytest.raises(ImageEncodingError, match=reason):
        compressed_to_rgb(msg, max_pixels=8_388_608)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    """A 40-byte PNG claiming 100000 x 100000 pixels never reaches the decoder (which would try 30 GB)."""
    with pytest.raises(ImageEncodingError, match="100000x100000"):
        compressed_to_rgb(SimpleNamespace(format="png", data=_png_claiming(100_000, 100_000)), max_pixels=1 << 24)


def test_a_bag_with_only_compressed_images_is_read(media_dir: Path, tmp_path: Path) -> None:
    frames = read_video(media_dir / "single_face.mp4", max_frames=6)
    bag = write_image_bag(tmp_path / "bag", frames, topic="/head_camera/image_raw/compressed", compressed="jpeg")
    assert check_recording(bag) == 6
    got = list(recording_frames(bag))
    assert len(got) == 6 and got[0][1].shape == frames[0].shape
    assert np.abs(got[0][1].astype(int) - frames[0].astype(int)).mean() < 8


def test_a_bag_with_raw_and_compressed_topics_asks_which(media_dir: Path, tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: F401 - the writer the helper uses

    from affective_memory_ros.recordings import RecordingError

    frames = read_video(media_dir / "single_face.mp4", max_frames=2)
    raw = write_image_bag(tmp_path / "raw", frames, topic="/cam/image_raw")
    comp = write_image_bag(tmp_path / "comp", frames, topic="/cam/image_raw/compressed", compressed="png")
    both = tmp_path / "both.mcap"
    _merge_mcaps([next(raw.glob("*.mcap")), next(comp.glob("*.mcap"))], both)
    with pytest.raises(RecordingError, match="several image topics"):
        check_recording(both)
    assert check_recording(both, "/cam/image_raw/compressed") == 2


def _merge_mcaps(parts: list[Path], out: Path) -> None:
    """One MCAP file with every channel of ``parts`` (the mcap package, no ROS)."""
    from mcap.reader import make_reader
    from mcap.writer import Writer

    with out.open("wb") as handle:
        writer = Writer(handle)
        writer.start(profile="ros2", library="test")
        for part in parts:
            with part.open("rb") as src:
                reader = make_reader(src)
                schemas: dict[int, int] = {}
                channels: dict[int, int] = {}
                for schema, channel, message in reader.iter_messages():
                    if schema is not None and schema.id not in schemas:
                        schemas[schema.id] = writer.register_schema(schema.name, schema.encoding, schema.data)
                    if channel.id not in channels:
                        channels[channel.id] = writer.register_channel(channel.topic, channel.message_encoding,
                                                                       schemas.get(schema.id, 0) if schema else 0)
                    writer.add_message(channels[channel.id], message.log_time, message.data, message.publish_time)
        writer.finish()


def test_affective_memory_run_on_a_compressed_only_bag(media_dir: Path, tmp_path: Path) -> None:
    """The issue's case: a robot's bag that recorded only ``.../compressed``. The CLI is unchanged; the
    recording reader decodes the images, so every frame gets its row and one person."""
    frames = read_video(media_dir / "single_face.mp4", max_frames=12)
    bag = write_image_bag(tmp_path / "robot_bag", frames, topic="/camera/color/image_raw/compressed",
                          compressed="jpeg")
    exe = shutil.which("affective-memory")
    assert exe
    out = tmp_path / "av.csv"
    done = subprocess.run([exe, "run", str(bag), "--out", str(out), "--quiet", "--device", "cpu",
                           "--init-frames", "3", "--edits-per-frame", "8"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and len({r["person_id"] for r in rows}) == 1
    assert float(rows[-1]["time"]) == pytest.approx(11 / 25, abs=1e-3)
