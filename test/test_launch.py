"""launch_testing check of launch/robot.launch.py: runs where launch_ros exists
(a ROS 2 Jazzy install, see .github/workflows/ros.yml) and is skipped elsewhere
(the PyPI wheels have no launch or launch_ros)."""

from __future__ import annotations

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


@pytest.mark.launch_test
def generate_test_description() -> launch.LaunchDescription:
    robot = launch.actions.IncludeLaunchDescription(
        launch.launch_description_sources.PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={"camera_topic": "/launch_test/image_raw", "device": "cpu"}.items())
    return launch.LaunchDescription([robot, launch_testing.actions.ReadyToTest()])


class TestRobotLaunch(unittest.TestCase):
    def test_node_offers_its_topics_and_services(self) -> None:
        rclpy.init()
        node = rclpy.create_node("launch_test_probe")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                services = {name for name, _ in node.get_service_names_and_types()}
                if node.count_publishers("/affect/av") and "/affect/reset_person" in services \
                        and node.count_subscribers("/launch_test/image_raw"):
                    break
                time.sleep(0.5)
            self.assertGreater(node.count_publishers("/affect/av"), 0)
            self.assertGreater(node.count_subscribers("/launch_test/image_raw"), 0)
            self.assertIn("/affect/reset_person", {name for name, _ in node.get_service_names_and_types()})
        finally:
            node.destroy_node()
            rclpy.shutdown()
