"""Play a video file as a camera: ``sensor_msgs/Image`` frames at the video's rate, or
``sensor_msgs/CompressedImage`` (JPEG, as image_transport's ``compressed`` plugin publishes them on
``<topic>/compressed``) with ``compressed=True``.

Used by the demo, the tests and the latency benchmark; also handy on a
development machine without a camera::

    python -m affective_memory_ros.ros.camera_player VIDEO --topic /camera/image_raw
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image

from ..image_encoding import fill_compressed, fill_image
from ..video import video_frames


class CameraPlayer(Node):
    def __init__(self, topic: str = "/camera/image_raw", frame_id: str = "camera_optical_frame",
                 compressed: bool = False, **node_kwargs: Any) -> None:
        super().__init__("video_camera", **node_kwargs)
        self.frame_id = frame_id
        self.compressed = compressed
        self.pub = (self.create_publisher(CompressedImage, f"{topic}/compressed", qos_profile_sensor_data)
                    if compressed else self.create_publisher(Image, topic, qos_profile_sensor_data))

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Block until something subscribes to the camera topic (or ``timeout`` s pass)."""
        deadline = time.monotonic() + timeout
        while self.pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def publish_frame(self, rgb: object, encoding: str = "bgr8", stamp_offset: float = 0.0) -> Any:
        """Publish one frame stamped now (plus ``stamp_offset`` seconds: tests use stamps from the past)."""
        msg = CompressedImage() if self.compressed else Image()
        msg.header.stamp = Time(nanoseconds=self.get_clock().now().nanoseconds + int(stamp_offset * 1e9)).to_msg()
        msg.header.frame_id = self.frame_id
        if self.compressed:
            fill_compressed(msg, rgb)  # type: ignore[arg-type]
        else:
            fill_image(msg, rgb, encoding)  # type: ignore[arg-type]
        self.pub.publish(msg)
        return msg

    def publish_for(self, frames: Sequence[np.ndarray], fps: float, seconds: float, first: int = 0,
                    after_each: Callable[[], None] | None = None) -> int:
        """Publish ``frames`` cyclically (from index ``first``) at ``fps`` for ``seconds``; returns the count.

        Paced against the start time, so a slow publish does not make the stream drift.
        """
        sent = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            delay = start + sent / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publish_frame(frames[(first + sent) % len(frames)])
            sent += 1
            if after_each is not None:
                after_each()
        return sent

    def play(self, video: str, fps: float | None = None, loops: int = 1, max_frames: int | None = None,
             size: tuple[int, int] | None = None, stamps: list[tuple[int, int]] | None = None) -> int:
        """Publish the video's frames in real time; returns the number published.

        ``stamps`` collects each published header stamp as (sec, nanosec).
        """
        sent = 0
        for _ in range(loops):
            start = time.monotonic()
            for i, (t, frame) in enumerate(video_frames(video, max_frames=max_frames, size=size)):
                due = start + (i / fps if fps else t)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                msg = self.publish_frame(frame)
                if stamps is not None:
                    stamps.append((msg.header.stamp.sec, msg.header.stamp.nanosec))
                sent += 1
        return sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("video")
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--fps", type=float, help="override the video's frame rate")
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--wait-subscribers", type=float, default=10.0, help="seconds to wait for a subscriber")
    parser.add_argument("--stamps-out", help="write each published stamp (sec nanosec) to this file")
    parser.add_argument("--compressed", action="store_true", help="publish JPEG CompressedImage on TOPIC/compressed")
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=ros_args)
    node = CameraPlayer(args.topic, compressed=args.compressed)
    try:
        node.wait_for_subscriber(args.wait_subscribers)
        size = (args.width, args.height) if args.width and args.height else None
        stamps: list[tuple[int, int]] = []
        node.play(args.video, args.fps, args.loops, size=size, stamps=stamps)
        if args.stamps_out:
            with open(args.stamps_out, "w") as handle:
                handle.writelines(f"{sec} {nsec}\n" for sec, nsec in stamps)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
