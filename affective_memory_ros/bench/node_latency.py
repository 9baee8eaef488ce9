"""Latency and sustained rate of the running node, as JSON.

    python -m affective_memory_ros.bench.node_latency [--seconds 20] [--fps 30] [--device cpu]

Starts the installed node, streams a real clip (letterboxed to 640x480) at the
given rate as a camera, and measures, for every ``ArousalValence`` received,
the time from its image's header stamp to its arrival here (an upper bound on
stamp-to-publication latency; same clock, same machine). DDS stays on localhost
with the benchmark's own domain ID.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..perception.detectors import DEFAULT_DETECTOR, DETECTORS


def main(argv: Sequence[str] | None = None) -> int:
    from ..ros.harness import dds_environment, media_dir, node_command, stop_node

    parser = argparse.ArgumentParser(description=__doc__)
    media = media_dir()
    parser.add_argument("--video", default=str(media / "WolfgangLanger_Pexels.mp4"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTORS)
    args = parser.parse_args(argv)
    os.environ.update(dds_environment())

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from affective_memory_ros.msg import ArousalValence

    from ..ros.camera_player import CameraPlayer
    from ..video import letterbox, read_video

    frames = [letterbox(f) for f in read_video(args.video, max_frames=300)]
    topic = "/bench/camera/image_raw"
    node = subprocess.Popen(node_command(None, f"image_topic:={topic}", f"device:={args.device}",
                                         f"detector:={args.detector}"),
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    player = CameraPlayer(topic)
    latencies: list[float] = []
    stamps: set[tuple[int, int]] = set()

    def on_av(msg: ArousalValence) -> None:
        now = player.get_clock().now().nanoseconds * 1e-9
        latencies.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
        stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))

    player.create_subscription(ArousalValence, "/affect/av", on_av, 100)
    executor = SingleThreadedExecutor()
    executor.add_node(player)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        player.wait_for_subscriber(120.0)
        # Warm up until the memory has finished seeding, then measure.
        warm = player.publish_for(frames, args.fps, 15.0)
        latencies.clear()
        stamps.clear()
        sent = player.publish_for(frames, args.fps, args.seconds, first=warm)
        time.sleep(1.0)
    finally:
        stop_node(node)
        executor.shutdown()
        player.destroy_node()
        rclpy.try_shutdown()
    lat = np.array(latencies) if latencies else np.full(1, np.nan)
    report = {
        "benchmark": "affective_memory.node_latency", "video": Path(args.video).name, "frame_size": [640, 480],
        "input_fps": args.fps, "seconds": args.seconds, "frames_sent": sent, "frames_processed": len(stamps),
        "sustained_output_fps": round(len(stamps) / args.seconds, 2),
        "processed_fraction": round(len(stamps) / max(sent, 1), 3),
        "latency_ms_p50": round(float(np.median(lat)) * 1e3, 1),
        "latency_ms_p99": round(float(np.percentile(lat, 99)) * 1e3, 1),
        "device": args.device, "detector": args.detector,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
