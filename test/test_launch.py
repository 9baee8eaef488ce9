"""launch_testing check of launch/robot.launch.py: runs where launch_ros exists (a ROS 2 Jazzy install, see
.github/workflows/ros.yml) and is skipped elsewhere (the PyPI wheels have no launch or launch_ros).

Two instances side by side, each in its namespace, from one parameter file:

* ``a`` is launched without ``device``: the file's ``device: cpu`` must win (before, the launch file wrote its
  own default ``auto`` over the user's file, silently);
* ``b`` is launched with ``device:=auto``: a launch argument that is given overrides the file;
* every topic and service moves with the namespace, and a relative ``camera_topic`` too.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import launch
import launch.launch_description_sources
import launch_testing.actions
import rclpy

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "robot.launch.py"
PARAMS = Path(tempfile.mkdtemp(prefix="launch_test_")) / "params.yaml"
PARAMS.write_text("/**:\n  ros__parameters:\n    device: cpu\n    memory_state_rate: 7.0\n    init_frames: 3\n")


def _include(namespace: str, **arguments: str) -> launch.actions.GroupAction:
    """One instance; the group scopes its launch arguments, so the two includes never see each other's."""
    return launch.actions.GroupAction([launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"namespace": namespace, "params_file": str(PARAMS), **arguments}.items())])


@pytest.mark.launch_test
def generate_test_description() -> launch.LaunchDescription:
    return launch.LaunchDescription([
        _include("a", camera_topic="cam"),
        _include("b", device="auto"),
        launch_testing.actions.ReadyToTest(),
    ])


class TestRobotLaunch(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()
        cls.node = rclpy.create_node("launch_test_probe")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.node.destroy_node()
        rclpy.shutdown()

    def _wait(self, predicate: object, timeout: float = 180.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return True
            time.sleep(0.5)
        return False

    def _parameters(self, namespace: str, *names: str) -> list[object]:
        from rcl_interfaces.srv import GetParameters

        client = self.node.create_client(GetParameters, f"/{namespace}/affective_memory/get_parameters")
        try:
            self.assertTrue(client.wait_for_service(timeout_sec=120))
            future = client.call_async(GetParameters.Request(names=list(names)))
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=30)
            self.assertTrue(future.done())
            return list(future.result().values)
        finally:
            self.node.destroy_client(client)

    def test_both_instances_offer_their_names_in_their_namespace(self) -> None:
        n = self.node
        self.assertTrue(self._wait(lambda: n.count_publishers("/a/affect/av") and n.count_publishers("/b/affect/av")
                                   and n.count_subscribers("/a/cam") and n.count_subscribers("/b/camera/image_raw")))
        services = {name for name, _ in n.get_service_names_and_types()}
        for ns in ("a", "b"):
            self.assertIn(f"/{ns}/affect/reset_person", services)
            self.assertIn(f"/{ns}/affective_memory/get_state", services)
        self.assertEqual(n.count_publishers("/affect/av"), 0)

    def test_the_params_file_wins_unless_a_launch_argument_is_given(self) -> None:
        device_a, rate_a = self._parameters("a", "device", "memory_state_rate")
        device_b, rate_b = self._parameters("b", "device", "memory_state_rate")
        self.assertEqual(device_a.string_value, "cpu", "the user's params_file is not overridden by a default")
        self.assertEqual(device_b.string_value, "auto", "a launch argument that is given overrides the file")
        self.assertEqual(rate_a.double_value, 7.0)
        self.assertEqual(rate_b.double_value, 7.0)
