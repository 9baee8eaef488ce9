"""Frames from recordings without ROS: video files, rosbag2 folders and MCAP files.

Bags are read with ``rosbags`` (rosbag2 folders, sqlite3 or MCAP storage, and
bare ``.mcap`` files), so ``affective-memory run`` works on a laptop with no
ROS installed. Image messages go through the same converters as the node:
``sensor_msgs/Image`` by REP-104 encodings, ``sensor_msgs/CompressedImage``
(JPEG or PNG, what robots usually record on ``.../compressed``) decoded after
its header's size is checked. A bag with both a raw and a compressed camera
topic needs ``--topic``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .image_encoding import MAX_PIXELS, compressed_to_rgb, fill_compressed, image_to_rgb
from .video import video_frames

RAW_IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (RAW_IMAGE, COMPRESSED_IMAGE)


def is_bag(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.suffix == ".mcap" or (p.is_dir() and (p / "metadata.yaml").exists())


class RecordingError(ValueError):
    """A recording cannot be read: not a video or bag, corrupt, or without the asked-for images."""


def _open_bag(p: Path) -> object:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not p.exists():
        raise FileNotFoundError(f"no such bag: {p}")
    return AnyReader([p], default_typestore=get_typestore(Stores.ROS2_JAZZY))


def _image_connections(reader: object, p: Path, topic: str | None) -> list[object]:
    conns = reader.connections  # type: ignore[attr-defined]
    connections = [c for c in conns if c.msgtype in IMAGE_TYPES and (topic is None or c.topic == topic)]
    if not connections:
        found = sorted({f"{c.topic} ({c.msgtype})" for c in conns})
        raise RecordingError(f"{p}: no sensor_msgs/Image or CompressedImage topic{f' {topic!r}' if topic else ''}; "
                             f"found {found}")
    topics = {c.topic for c in connections}
    if topic is None and len(topics) > 1:
        raise RecordingError(f"{p}: several image topics {sorted(topics)}; choose one with --topic")
    return connections


def message_to_rgb(msg: object, msgtype: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An RGB frame from a deserialised Image or CompressedImage of type ``msgtype``."""
    if msgtype == COMPRESSED_IMAGE:
        return compressed_to_rgb(msg, max_pixels)
    return image_to_rgb(msg)


def bag_frames(path: str | os.PathLike[str], topic: str | None = None,
               max_pixels: int = MAX_PIXELS) -> Iterator[tuple[float, np.ndarray]]:
    """(header stamp in seconds, RGB frame) for each image message (raw or compressed), in log-time order."""
    p = Path(path)
    try:
        with _open_bag(p) as reader:  # type: ignore[attr-defined]
            connections = _image_connections(reader, p, topic)
            for connection, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                yield (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                       message_to_rgb(msg, connection.msgtype, max_pixels))
    except (RecordingError, FileNotFoundError):
        raise
    except Exception as exc:  # rosbags and mcap raise their own types for damaged files
        raise RecordingError(f"{p}: cannot read the bag ({type(exc).__name__}: {exc})") from None


def check_recording(path: str | os.PathLike[str], topic: str | None = None) -> int | None:
    """Check a recording before any model is loaded; returns its frame count when known.

    Raises FileNotFoundError or :class:`RecordingError` with a reason a user can act on.
    """
    p = Path(path)
    if p.suffix == ".db3":
        raise RecordingError(f"{p} is one file of a rosbag2 recording; a bag is the folder that holds it and "
                             f"its metadata.yaml: give {p.parent}")
    if not p.exists():
        raise FileNotFoundError(f"no such recording: {p}")
    if is_bag(p):
        try:
            with _open_bag(p) as reader:  # type: ignore[attr-defined]
                connections = _image_connections(reader, p, topic)
                return int(sum(getattr(c, "msgcount", 0) for c in connections)) or None
        except (RecordingError, FileNotFoundError):
            raise
        except Exception as exc:
            raise RecordingError(f"{p}: not a readable bag ({type(exc).__name__}: {exc})") from None
    if p.is_dir():
        raise RecordingError(f"{p} is a folder without metadata.yaml: not a rosbag2 recording")
    import cv2

    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise RecordingError(f"cannot open {p} as a video (unsupported or corrupt), and it is not a bag")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count > 0 else None
    finally:
        cap.release()


def recording_frames(path: str | os.PathLike[str], topic: str | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of a video file or a bag, with their times in seconds."""
    return bag_frames(path, topic) if is_bag(path) else video_frames(path)


def write_image_bag(path: str | os.PathLike[str], frames: list[np.ndarray], topic: str = "/camera/image_raw",
                    fps: float = 25.0, frame_id: str = "camera", compressed: str | None = None) -> Path:
    """A rosbag2 folder (MCAP storage) of ``bgr8`` images, or of CompressedImage (``compressed`` = ``"jpeg"``
    or ``"png"``, as image_transport writes them); for tests and for turning videos into bags."""
    from types import SimpleNamespace

    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    msgtype = COMPRESSED_IMAGE if compressed else RAW_IMAGE
    image_t, header_t, time_t = (store.types[n] for n in
                                 (msgtype, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    out = Path(path)
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, image_t.__msgtype__, typestore=store)
        for i, rgb in enumerate(frames):
            t_ns = int(1_700_000_000 * 1e9 + i * 1e9 / fps)
            header = header_t(stamp=time_t(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame_id)
            if compressed:
                packed = fill_compressed(SimpleNamespace(), rgb, compressed)
                msg = image_t(header=header, format=packed.format, data=np.frombuffer(packed.data, np.uint8))
            else:
                bgr = np.ascontiguousarray(rgb[..., ::-1])
                msg = image_t(header=header, height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8",
                              is_bigendian=0, step=bgr.shape[1] * 3, data=bgr.reshape(-1))
            writer.write(conn, t_ns, store.serialize_cdr(msg, image_t.__msgtype__))
    return out
