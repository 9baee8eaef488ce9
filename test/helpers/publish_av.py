"""Child process: publishes ArousalValence messages until killed or --count sent."""

from __future__ import annotations

import argparse
import time

import rclpy
from rclpy.executors import ExternalShutdownException

from affective_memory_ros.msg import ArousalValence


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", default="/affect/av")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node("av_test_publisher")
    pub = node.create_publisher(ArousalValence, args.topic, 10)
    try:
        for i in range(args.count):
            msg = ArousalValence()
            msg.header.frame_id = "camera_optical"
            msg.header.stamp.sec = 1000 + i
            msg.person_id = "p_test"
            msg.arousal, msg.valence = 0.25, -0.5
            msg.roi.x_offset, msg.roi.width = 10, 96
            msg.seeding = True
            msg.num_neurons = 7
            pub.publish(msg)
            time.sleep(0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
