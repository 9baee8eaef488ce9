"""The package as colcon installs it: interfaces, layout, and the ROS-free core."""

from __future__ import annotations

import ast
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HELPERS, REPO, python_command

CORE = REPO / "affective_memory_ros"


def test_core_never_imports_rclpy() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        if "ros" in path.relative_to(CORE).parts[:1]:
            continue  # affective_memory_ros/ros/ is the rclpy adapter
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"the ROS-free core imports rclpy: {offenders}"


def test_installed_package_is_the_one_under_test() -> None:
    import affective_memory_ros

    # The generated interfaces only exist in the colcon install, not in the source tree.
    assert "install" in Path(affective_memory_ros.__file__).parts
    from affective_memory_ros.msg import ArousalValence, MemoryState, PersonMemory
    from affective_memory_ros.srv import LoadPerson, ResetPerson, SavePerson

    fields = ArousalValence.get_fields_and_field_types()
    assert fields["header"] == "std_msgs/Header" and fields["roi"] == "sensor_msgs/RegionOfInterest"
    for name in ("person_id", "arousal", "valence", "confidence", "pk_arousal", "pk_valence", "seeding",
                 "num_neurons"):
        assert name in fields
    assert MemoryState.get_fields_and_field_types()["persons"] == "sequence<affective_memory_ros/PersonMemory>"
    assert "last_seen" in PersonMemory.get_fields_and_field_types()
    for srv in (ResetPerson, SavePerson, LoadPerson):
        response = srv.Response.get_fields_and_field_types()
        assert response["success"] == "boolean" and response["message"] == "string"


@pytest.mark.ros
def test_arousal_valence_crosses_processes(ros_env: dict[str, str], rclpy_context: object) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from affective_memory_ros.msg import ArousalValence

    received: list[ArousalValence] = []
    node = rclpy.create_node("av_test_listener", context=rclpy_context)
    node.create_subscription(ArousalValence, "/affect/av", received.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    child = subprocess.Popen(python_command(HELPERS / "publish_av.py"), env=ros_env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        child.terminate()
        out, _ = child.communicate(timeout=10)
        executor.shutdown()
        node.destroy_node()
    assert received, f"no ArousalValence arrived from the child process; its output:\n{out.decode()[-2000:]}"
    msg = received[-1]
    assert msg.person_id == "p_test" and msg.header.frame_id == "camera_optical"
    assert msg.arousal == pytest.approx(0.25) and msg.valence == pytest.approx(-0.5)
    assert msg.roi.width == 96 and msg.seeding and msg.num_neurons == 7


def test_cli_bench_memory_prints_json() -> None:
    import json
    import shutil

    exe = shutil.which("affective-memory")
    assert exe and "install" in Path(exe).parts, "the colcon install must put affective-memory on PATH"
    out = subprocess.run([exe, "bench-memory", "--sizes", "100,300", "--steps", "50"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    report = json.loads(out)
    assert set(report["scaling"]) == {"100", "300"}
    assert report["scaling"]["100"]["step_us_median"] > 0
    assert 0 < report["state_bytes_at_2000"] < 1_500_000


def test_cli_bench_perception_prints_json(media_dir: Path) -> None:
    import json
    import shutil

    exe = shutil.which("affective-memory")
    assert exe
    out = subprocess.run([exe, "bench-perception", "--frames", "12", "--device", "cpu",
                          "--video", str(media_dir / "single_face.mp4")],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    report = json.loads(out)
    full = report["results"]["blazeface_full@cpu"]
    assert full["faces_per_frame"] == 1.0 and full["total_ms_median"] > 0
