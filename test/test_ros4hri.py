"""ROS4HRI (REP-155) output of the installed node with the real hri_msgs, in a real graph across processes.

hri_msgs is on apt (ros-jazzy-hri-msgs), not on PyPI: this module runs in the ros:jazzy workflow
(.github/workflows/ros.yml) and is skipped where hri_msgs is missing. There, the message-building logic is
tested by test/test_ros_logic.py, and the node's "ROS4HRI output off, and why" line by test/test_node.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("hri_msgs")

pytestmark = pytest.mark.ros

CAMERA = "/hri_test/image_raw"


@pytest.fixture(scope="module")
def run(ros_env: dict[str, str], media_dir: Path) -> Iterator[dict[str, Any]]:
    import rclpy
    from hri_msgs.msg import Expression, IdsList, IdsMatch
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from affective_memory_ros.image_encoding import fill_image
    from affective_memory_ros.msg import ArousalValence
    from affective_memory_ros.ros.harness import node_command, stop_node

    node = subprocess.Popen(node_command(None, "device:=cpu", "init_frames:=3", "edits_per_frame:=8",
                                         camera=CAMERA, namespace="/robot"),
                            env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(node.stdout or []), daemon=True).start()
    context = Context()
    rclpy.init(context=context)
    probe = rclpy.create_node("hri_probe", context=context)
    got: dict[str, Any] = {"av": [], "tracked": [], "matches": [], "expressions": {}}
    probe.create_subscription(ArousalValence, "/robot/affect/av", got["av"].append, 100)
    probe.create_subscription(IdsMatch, "/robot/humans/candidate_matches", got["matches"].append, 100)
    lock = threading.Lock()

    def follow(msg: Any) -> None:
        got["tracked"].append(msg)
        for face in msg.ids:
            with lock:
                if face not in got["expressions"]:
                    got["expressions"][face] = []
                    probe.create_subscription(Expression, f"/robot/humans/faces/{face}/expression",
                                              got["expressions"][face].append, 100)

    probe.create_subscription(IdsList, "/robot/humans/faces/tracked", follow, 100)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        while probe.count_subscribers(CAMERA) == 0:
            assert node.poll() is None and time.monotonic() < deadline, "".join(log[-40:])
            time.sleep(0.2)
        player = subprocess.run(
            [sys.executable, "-P", "-m", "affective_memory_ros.ros.camera_player",
             str(media_dir / "WolfgangLanger_Pexels.mp4"), "--topic", CAMERA, "--fps", "10", "--wait-subscribers",
             "30"], env=ros_env, capture_output=True, text=True, timeout=300)
        assert player.returncode == 0, player.stdout + player.stderr
        time.sleep(2.0)
        got["during"] = len(got["tracked"])
        # Nobody in view: after a few processed empty frames the face is retired.
        pub = probe.create_publisher(Image, CAMERA, qos_profile_sensor_data)
        for _ in range(40):
            pub.publish(fill_image(Image(), np.full((240, 320, 3), 90, np.uint8)))
            time.sleep(0.2)
            if got["tracked"] and not got["tracked"][-1].ids:
                break
        time.sleep(1.0)
        yield {"got": got, "log": log}
    finally:
        stop_node(node)
        executor.shutdown()
        probe.destroy_node()
        rclpy.try_shutdown(context=context)


def test_the_node_says_ros4hri_output_is_on(run: dict[str, Any]) -> None:
    assert "ROS4HRI output on" in "".join(run["log"])


def test_one_short_lived_face_id_maps_to_the_permanent_person_id(run: dict[str, Any]) -> None:
    from hri_msgs.msg import IdsMatch

    got = run["got"]
    (person,) = {m.person_id for m in got["av"]}
    faces = {f for m in got["tracked"][: got["during"]] for f in m.ids}
    assert len(faces) == 1, faces
    (face,) = faces
    assert len(face) == 5 and face.isalpha() and face != person
    ends = [(m.id1, m.id2, m.confidence) for m in got["matches"]]
    assert (face, person, 1.0) in ends, ends
    assert all(m.id1_type == IdsMatch.FACE and m.id2_type == IdsMatch.PERSON for m in got["matches"])


def test_expressions_carry_the_memory_reading_of_the_same_frames(run: dict[str, Any]) -> None:
    got = run["got"]
    (face,) = {f for m in got["tracked"][: got["during"]] for f in m.ids}
    expressions = got["expressions"][face]
    assert len(expressions) >= 5
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in got["av"]}
    matched = [(e, by_stamp[(e.header.stamp.sec, e.header.stamp.nanosec)]) for e in expressions
               if (e.header.stamp.sec, e.header.stamp.nanosec) in by_stamp]
    assert len(matched) >= 5
    for e, av in matched:
        assert e.valence == pytest.approx(av.valence, abs=1e-6) and e.arousal == pytest.approx(av.arousal, abs=1e-6)
        assert 0.0 <= e.confidence <= 1.0
        assert e.expression in ("", "neutral", "happy", "surprised", "sad", "angry", "disgusted", "scared")


def test_a_face_out_of_view_is_retired(run: dict[str, Any]) -> None:
    got = run["got"]
    assert got["tracked"] and list(got["tracked"][-1].ids) == [], "nobody in view: an empty tracked list"
    (face,) = {f for m in got["tracked"][: got["during"]] for f in m.ids}
    assert any(m.id1 == face and m.confidence == 0.0 for m in got["matches"]), "the association ends"
