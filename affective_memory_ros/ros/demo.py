"""The README's demo: a bundled real clip played to the node as a camera.

Starts the installed ``affective_memory_node`` with the package's parameter
file, plays the video as ``sensor_msgs/Image`` in real time, listens on
``/affect/av``, then prints arousal/valence per person and writes a CSV and a
plot. DDS stays on this machine: the demo sets localhost-only discovery and a
domain ID of its own for itself and the node.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .harness import dds_environment, media_dir, node_command, stop_node


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--video", default=str(media_dir() / "WolfgangLanger_Pexels.mp4"))
    parser.add_argument("--out", default="runs/demo", help="folder for av.csv and av.png")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--print-every", type=float, default=1.0, help="seconds between printed rows")
    args = parser.parse_args(argv)
    os.environ.update(dds_environment())

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from affective_memory_ros.msg import ArousalValence

    from .camera_player import CameraPlayer

    topic = "/demo/camera/image_raw"
    node_proc = subprocess.Popen(node_command(None, f"device:={args.device}", camera=topic),
                                 env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log_lines: list[str] = []
    threading.Thread(target=lambda: log_lines.extend(node_proc.stdout or []), daemon=True).start()

    rclpy.init()
    player = CameraPlayer(topic, frame_id="demo_camera")
    rows: list[dict[str, object]] = []
    first_stamp: list[float] = []

    def on_av(msg: ArousalValence) -> None:
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if not first_stamp:
            first_stamp.append(t)
        rows.append({"time": round(t - first_stamp[0], 3), "person_id": msg.person_id,
                     "arousal": round(msg.arousal, 4), "valence": round(msg.valence, 4),
                     "encoder_arousal": round(msg.encoder_arousal, 4), "encoder_valence": round(msg.encoder_valence, 4),
                     "confidence": round(msg.confidence, 4), "seeding": int(msg.seeding),
                     "neurons": msg.num_neurons})

    player.create_subscription(ArousalValence, "/affect/av", on_av, 100)
    executor = SingleThreadedExecutor()
    executor.add_node(player)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        print("[demo] waiting for the node (log below on failure) ...", flush=True)
        deadline = time.monotonic() + 120
        while player.pub.get_subscription_count() == 0:
            if node_proc.poll() is not None or time.monotonic() > deadline:
                print("".join(log_lines[-40:]), file=sys.stderr)
                print("[demo] the node did not come up", file=sys.stderr)
                return 1
            time.sleep(0.2)
        time.sleep(1.0)
        print(f"[demo] playing {args.video} to the node in real time", flush=True)
        sent = player.play(args.video)
        time.sleep(2.0)
        print(f"[demo] sent {sent} frames, received {len(rows)} ArousalValence messages", flush=True)
    finally:
        stop_node(node_proc)
        executor.shutdown()
        player.destroy_node()
        rclpy.try_shutdown()
    if not rows:
        print("".join(log_lines[-40:]), file=sys.stderr)
        print("[demo] no arousal/valence arrived", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "av.csv", rows)
    print_table(rows, args.print_every)
    from ..visualize import plot_timeline

    plot_timeline(rows, out / "av.png", title=f"{Path(args.video).name}: arousal/valence per person")
    print(f"[demo] wrote {out / 'av.csv'} and {out / 'av.png'}")
    return 0


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def print_table(rows: list[dict[str, object]], every: float) -> None:
    print(f"{'time':>6}  {'person':<10} {'arousal':>8} {'valence':>8}   {'enc a':>6} {'enc v':>6}  "
          f"{'neurons':>7}  phase")
    shown: dict[str, float] = {}
    for r in rows:
        pid, t = str(r["person_id"]), float(r["time"])  # type: ignore[arg-type]
        if t - shown.get(pid, -1e9) < every:
            continue
        shown[pid] = t
        phase = "seeding" if r["seeding"] else "online"
        print(f"{t:6.1f}  {pid:<10} {r['arousal']:>+8.2f} {r['valence']:>+8.2f}   {r['encoder_arousal']:>+6.2f} "
              f"{r['encoder_valence']:>+6.2f}  {r['neurons']:>7}  {phase}")


if __name__ == "__main__":
    sys.exit(main())
