"""The node's ROS-side logic on numbers and plain objects: REP-155 face IDs and messages (without hri_msgs, which
is apt-only), the ROS4HRI input collector, diagnostics rates and levels, the lifecycle parameter rule. The real
hri_msgs classes are used where installed (the ros:jazzy workflow)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from affective_memory_ros.ros import hri
from affective_memory_ros.ros.diagnostics import (
    ERROR,
    OK,
    WARN,
    FrameStats,
    RateMeter,
    Thresholds,
    frames_level,
)


def estimate(pid: str, **kw: Any) -> SimpleNamespace:
    base = {"person_id": pid, "box": np.array([10.0, 20.0, 110.0, 140.0]), "arousal": 0.25, "valence": -0.5,
            "encoder_arousal": 0.1, "encoder_valence": 0.2, "confidence": 0.8, "expression": "happiness",
            "expression_confidence": 0.6, "seeding": False, "num_neurons": 7}
    base.update(kw)
    return SimpleNamespace(**base)


# ------------------------------------------------------------------ face IDs
def test_a_person_in_view_keeps_one_face_id_and_a_new_sighting_gets_a_new_one() -> None:
    reg = hri.FaceRegistry(retention=2, rng=random.Random(0))
    first = reg.update(["p1"])
    (face, pid), = first.new
    assert pid == "p1" and len(face) == hri.FACE_ID_LENGTH and face.isalpha() and face.islower()
    for _ in range(5):
        assert reg.update(["p1"]).in_view == [(face, "p1")]
    # Missing for up to `retention` frames: the face stays tracked (detector flicker), then it is retired.
    assert reg.update([]).tracked == [(face, "p1")]
    assert reg.update([]).tracked == [(face, "p1")]
    gone = reg.update([])
    assert gone.gone == [(face, "p1")] and gone.tracked == []
    again = reg.update(["p1"])
    assert again.new and again.new[0][0] != face, "the same person, seen again later: a new face ID"


def test_face_ids_are_short_lived_person_ids_permanent_and_a_recognised_face_keeps_its_face_id() -> None:
    """A new face starts as a provisional person; when the pipeline recognises it as a known person (the
    tracker's rename), the face ID stays and only the person it maps to changes (REP-155)."""
    reg = hri.FaceRegistry(rng=random.Random(1))
    (face, _), = reg.update(["provisional"]).new
    update = reg.update(["knownperson"], renamed={"provisional": "knownperson"})
    assert update.rebound == [(face, "provisional", "knownperson")] and not update.new
    assert update.in_view == [(face, "knownperson")] and reg.face_of("provisional") is None


def test_two_people_never_share_a_face_id_and_ids_are_never_reused() -> None:
    reg = hri.FaceRegistry(retention=0, rng=random.Random(2))
    seen: set[str] = set()
    for i in range(200):
        update = reg.update([f"a{i}", f"b{i}"])
        faces = [f for f, _ in update.in_view]
        assert len(set(faces)) == 2 and not (set(faces) & seen)
        seen |= set(faces)


def test_clear_retires_every_face() -> None:
    reg = hri.FaceRegistry(rng=random.Random(3))
    reg.update(["a", "b"])
    assert sorted(p for _, p in reg.clear()) == ["a", "b"] and reg.update([]).tracked == []


# ------------------------------------------------------------------ messages
@dataclass
class Header:
    frame_id: str = ""


@dataclass
class Expression:
    header: Any = None
    expression: str = ""
    valence: float = 0.0
    arousal: float = 0.0
    confidence: float = 0.0


@dataclass
class IdsList:
    header: Any = None
    ids: list[str] = field(default_factory=list)


@dataclass
class IdsMatch:
    id1: str = ""
    id1_type: int = 0
    id2: str = ""
    id2_type: int = 0
    confidence: float = 0.0


@dataclass
class Roi:
    header: Any = None
    xmin: float = 0.0
    ymin: float = 0.0
    xmax: float = 0.0
    ymax: float = 0.0
    c: float = 0.0


def _types() -> dict[str, Any]:
    """hri_msgs' classes where installed (the ros:jazzy workflow), stand-ins with the same fields here."""
    msgs, _ = hri.hri_messages()
    if msgs is None:
        return {"Expression": Expression, "IdsList": IdsList, "IdsMatch": IdsMatch, "Roi": Roi, "Header": Header}
    from std_msgs.msg import Header as RosHeader

    return {"Expression": msgs.Expression, "IdsList": msgs.IdsList, "IdsMatch": msgs.IdsMatch,
            "Roi": msgs.NormalizedRegionOfInterest2D, "Header": RosHeader}


def test_expression_message_carries_the_memory_reading_and_the_hri_expression_name() -> None:
    t = _types()
    header = t["Header"](frame_id="cam")
    msg = hri.expression_message(t["Expression"], header, estimate("p1"))
    assert msg.header.frame_id == "cam" and msg.expression == "happy"
    assert msg.valence == pytest.approx(-0.5) and msg.arousal == pytest.approx(0.25)
    assert msg.confidence == pytest.approx(0.8), "the memory's confidence once it is ready"
    seeding = hri.expression_message(t["Expression"], header, estimate("p1", seeding=True, confidence=0.0))
    assert seeding.confidence == pytest.approx(0.6), "while seeding, the encoder's expression probability"
    clipped = hri.expression_message(t["Expression"], header, estimate("p1", valence=1.7, arousal=-3.0))
    assert clipped.valence == pytest.approx(1.0) and clipped.arousal == pytest.approx(-1.0)


def test_every_encoder_expression_maps_to_an_hri_msgs_constant_or_nothing() -> None:
    from affective_memory_ros.expressions import EXPRESSIONS

    hri_names = {"neutral", "angry", "sad", "happy", "surprised", "disgusted", "scared"}
    assert set(hri.EXPRESSION_TO_HRI) == set(EXPRESSIONS)
    assert {v for v in hri.EXPRESSION_TO_HRI.values() if v} <= hri_names
    assert hri.EXPRESSION_TO_HRI["contempt"] == "", "hri_msgs/Expression has no contempt"
    msgs, _ = hri.hri_messages()
    if msgs is not None:
        for value in {v for v in hri.EXPRESSION_TO_HRI.values() if v}:
            assert getattr(msgs.Expression, value.upper()) == value, "an hri_msgs/Expression constant"


def test_ids_match_roi_and_ids_list_messages() -> None:
    t = _types()
    match = hri.match_message(t["IdsMatch"], "abcde", "p3k9x0a2vb", 1.0)
    assert (match.id1, match.id1_type, match.id2, match.id2_type) == ("abcde", hri.FACE, "p3k9x0a2vb", hri.PERSON)
    msgs, _ = hri.hri_messages()
    if msgs is not None:
        assert (msgs.IdsMatch.FACE, msgs.IdsMatch.PERSON) == (hri.FACE, hri.PERSON)
    roi = hri.roi_message(t["Roi"], t["Header"](), [-10.0, 48.0, 320.0, 600.0], 640, 480, 0.9)
    assert (roi.xmin, roi.ymin, roi.xmax, roi.ymax) == pytest.approx((0.0, 0.1, 0.5, 1.0)) and roi.c == \
        pytest.approx(0.9)
    ids = hri.ids_list_message(t["IdsList"], t["Header"](frame_id="cam"), ["abcde", "fghij"])
    assert list(ids.ids) == ["abcde", "fghij"] and ids.header.frame_id == "cam"


# ------------------------------------------------------------------ ROS4HRI input
def test_the_collector_hands_over_the_newest_image_of_each_tracked_face_once() -> None:
    c = hri.FaceImageCollector()
    assert c.set_tracked(["aaaaa", "bbbbb"]) == (["aaaaa", "bbbbb"], [])
    img = np.zeros((4, 4, 3), np.uint8)
    assert c.add_image("aaaaa", 1.0, "h1", img)
    assert c.add_image("aaaaa", 2.0, "h2", img + 1)
    assert not c.add_image("aaaaa", 1.5, "old", img), "an older image never replaces a newer one"
    assert not c.add_image("zzzzz", 3.0, "h", img), "faces not in the tracked list are ignored"
    assert c.add_image("bbbbb", 1.8, "hb", img)
    batch = c.take()
    assert batch is not None and batch.face_ids == ["aaaaa", "bbbbb"] and batch.stamp == 2.0
    assert batch.header == "h2" and int(batch.crops[0][0, 0, 0]) == 1
    assert c.take() is None, "each image once"
    assert c.set_tracked(["bbbbb", "ccccc"]) == (["ccccc"], ["aaaaa"])
    assert not c.add_image("aaaaa", 5.0, "h", img)


# ------------------------------------------------------------------ diagnostics
def test_rates_are_events_per_second_of_real_time_at_any_rate() -> None:
    """The old report was 1 / mean processing time; here 5.6 frames/s processed reads 5.6, also at 1 kHz."""
    meter = RateMeter(window=10.0)
    count = 0
    for second in range(30):
        count += 56 if second % 10 else 0  # irregular: 56 frames in 9 of 10 seconds
        meter.sample(float(second), count)
    assert meter.rate() == pytest.approx(50.4, rel=0.02)
    fast = RateMeter(window=10.0)
    for second in range(12):
        fast.sample(float(second), second * 1000)
    assert fast.rate() == pytest.approx(1000.0)


def _stats(received: int, processed: int, dropped: int, latencies: list[float], refused: int = 0) -> FrameStats:
    clock = [0.0]
    stats = FrameStats(window=10.0, clock=lambda: clock[0])
    stats.report()
    for i in range(received):
        stats.on_received(replaced_unprocessed=i < dropped)
    for i in range(processed):
        stats.on_processed(latencies[i % len(latencies)] if latencies else None, 1)
    for _ in range(refused):
        stats.on_refused("unsupported encoding 'yuv422'")
    clock[0] = 10.0
    return stats


def test_frame_stats_report_rates_drop_ratio_and_latency_percentiles() -> None:
    r = _stats(received=300, processed=56, dropped=244, latencies=[0.02] * 54 + [0.9, 1.2]).report()
    assert r.received_rate_hz == pytest.approx(30.0) and r.processed_rate_hz == pytest.approx(5.6)
    assert r.drop_ratio == pytest.approx(244 / 300, abs=1e-3)
    assert r.latency_p50_ms == pytest.approx(20.0) and r.latency_p99_ms >= 900.0


@pytest.mark.parametrize(("kw", "level", "words"), [
    ({"received": 300, "processed": 250, "dropped": 50, "latencies": [0.03]}, OK, "processing 25.0 of 30.0"),
    ({"received": 300, "processed": 56, "dropped": 244, "latencies": [0.03]}, WARN, "dropping 81%"),
    ({"received": 300, "processed": 20, "dropped": 280, "latencies": [0.03]}, ERROR, "dropping 93%"),
    ({"received": 100, "processed": 100, "dropped": 0, "latencies": [0.7]}, WARN, "p99 latency 700 ms"),
    ({"received": 100, "processed": 100, "dropped": 0, "latencies": [2.5]}, ERROR, "p99 latency 2500 ms"),
    ({"received": 50, "processed": 0, "dropped": 49, "latencies": []}, ERROR, "stalled"),
    ({"received": 0, "processed": 0, "dropped": 0, "latencies": []}, OK, "waiting for images"),
    ({"received": 20, "processed": 0, "dropped": 0, "latencies": [], "refused": 20}, WARN, "20 images refused"),
])
def test_levels_follow_drop_ratio_latency_stalls_and_refusals(kw: dict[str, Any], level: Any, words: str) -> None:
    got, message = frames_level(_stats(**kw).report(), Thresholds(0.5, 0.9, 0.5, 2.0))
    assert got == level and words in message, (got, message)


def test_a_worker_stuck_on_one_frame_is_an_error_though_no_frame_is_received_meanwhile() -> None:
    """The node's worker takes images only when it is ready for one, so a worker stuck on a frame takes none:
    "nothing received" must not read as a healthy idle input."""
    clock = [0.0]
    stats = FrameStats(window=10.0, clock=lambda: clock[0])
    stats.on_received(replaced_unprocessed=False)
    stats.working(True)
    clock[0] = 4.0
    assert frames_level(stats.report(), Thresholds())[0] != ERROR  # a slow frame is not yet a stall
    clock[0] = 12.4
    r = stats.report()
    assert r.busy_s == pytest.approx(12.4) and r.received_in_window == 0
    level, message = frames_level(r, Thresholds())
    assert level == ERROR and "one frame has been processing for 12 s" in message, message
    stats.on_processed(0.05, 1)
    stats.working(False)
    assert stats.report().busy_s == 0.0


def test_the_frame_worker_takes_every_held_image_and_keeps_the_newest(rclpy_context: object) -> None:
    """The node's frame worker waits through an executor for the first image, then takes what else DDS holds
    (node.py _take_frame): rclpy's executor alone handed out at most two of five held images, so the worker
    processed a stale one. Real rclpy, one process, a raw subscription as the node's hidden camera node has."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from affective_memory_ros.ros.node import take_all

    node = rclpy.create_node("take_all_probe", context=rclpy_context)
    first: list[bytes] = []
    sub = node.create_subscription(Image, "/take_all/image", first.append, qos_profile_sensor_data, raw=True)
    pub = node.create_publisher(Image, "/take_all/image", 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        for i in range(1, 6):
            msg = Image(height=1, width=1, encoding="mono8", step=1, data=[i])
            msg.header.stamp.sec = i
            pub.publish(msg)
        executor.spin_once(timeout_sec=10.0)
        assert len(first) == 1, "the executor delivers the first"
        taken = first + take_all(sub)
        deadline = time.monotonic() + 10.0
        while len(taken) < 5 and time.monotonic() < deadline:  # the rest may still be arriving
            time.sleep(0.05)
            taken += take_all(sub)
        stamps = [deserialize_message(b, Image).header.stamp.sec for b in taken]
        assert stamps == [1, 2, 3, 4, 5], stamps
        assert take_all(sub) == []
    finally:
        executor.shutdown()
        node.destroy_node()


def test_the_stand_in_updater_publishes_what_diagnostic_updater_publishes(rclpy_context: object) -> None:
    """Same parameter, same status names ("<node>: <task>"), levels and values; real rclpy, one process."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from affective_memory_ros.ros.diagnostics import FallbackUpdater

    node = rclpy.create_node("updater_probe", context=rclpy_context)
    got: list[Any] = []
    node.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    updater = FallbackUpdater(node)
    updater.setHardwareID("cpu")

    def task(stat: Any) -> Any:
        stat.summary(WARN, "slow")
        stat.add("processed_rate_hz", 5.6)
        return stat

    updater.add("frames", task)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        assert node.get_parameter("diagnostic_updater.period").value == 1.0
        for _ in range(200):
            updater.force_update()
            executor.spin_once(timeout_sec=0.05)
            if any(s.level == WARN for a in got for s in a.status):
                break
        status = next(s for a in got for s in a.status if s.level == WARN)
        assert status.name == "updater_probe: frames" and status.message == "slow" and status.hardware_id == "cpu"
        assert [(kv.key, kv.value) for kv in status.values] == [("processed_rate_hz", "5.6")]
    finally:
        executor.shutdown()
        node.destroy_node()


# ------------------------------------------------------------------ lifecycle parameters
def test_settings_read_in_on_configure_change_only_while_unconfigured() -> None:
    from affective_memory_ros.ros.parameters import refuse_while_configured

    state = {"unconfigured": True}
    check = refuse_while_configured(lambda: state["unconfigured"])
    p = SimpleNamespace
    assert check([p(name="init_frames")]).successful
    state["unconfigured"] = False
    refused = check([p(name="init_frames"), p(name="device")])
    assert not refused.successful and "init_frames, device is read-only while the node is configured" in \
        refused.reason
    assert check([p(name="save_on_shutdown"), p(name="diagnostics_drop_warn")]).successful, "run-time settings"
    assert check([p(name="diagnostic_updater.period")]).successful, "not ours to refuse"


def test_a_run_time_change_must_keep_the_config_valid_as_a_whole() -> None:
    """At start, diagnostics_drop_error below diagnostics_drop_warn is refused; a run-time set of the same
    value must be refused too (found by the adversarial run), while a consistent change passes."""
    from affective_memory_ros.ros.config import NODE_CONFIGS
    from affective_memory_ros.ros.parameters import refuse_while_configured
    from affective_memory_ros.settings import infos

    values = {i.name: i.default for ct in NODE_CONFIGS for i in infos(ct)}
    check = refuse_while_configured(lambda: False, values.__getitem__)
    p = SimpleNamespace
    refused = check([p(name="diagnostics_drop_error", value=0.1)])
    assert not refused.successful and "diagnostics_drop_error=0.1 must be at least diagnostics_drop_warn" in \
        refused.reason
    assert not check([p(name="diagnostics_latency_warn", value=values["diagnostics_latency_error"] + 1.0)]).successful
    assert check([p(name="diagnostics_drop_error", value=0.1), p(name="diagnostics_drop_warn", value=0.05)]).successful


# ------------------------------------------------------------------ DDS profile for raw images
def test_the_fast_dds_profile_carries_a_full_hd_rgb_image_in_shared_memory_and_keeps_udp() -> None:
    """The optional profile (docs/pipeline.md, "Raw images and DDS"): Fast DDS's default 512 KB shared-memory
    segment is smaller than one 640x480 RGB image, which then goes over UDP fragments that best-effort camera
    topics lose."""
    import xml.etree.ElementTree as ET

    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(Path(__file__).resolve().parents[1] / "config" / "fastdds_large_images.xml").getroot()
    kinds = {d.findtext("f:transport_id", namespaces=ns): d for d in root.iterfind(".//f:transport_descriptor", ns)}
    shm = [d for d in kinds.values() if d.findtext("f:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("f:segment_size", namespaces=ns)) >= 1920 * 1080 * 3 + 4096
    participant = root.find(".//f:participant", ns)
    assert participant is not None and participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind(".//f:userTransports/f:transport_id", ns)]
    assert set(used) == set(kinds) and any(kinds[t].findtext("f:type", namespaces=ns) == "UDPv4" for t in used)
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=ns) == "false"

