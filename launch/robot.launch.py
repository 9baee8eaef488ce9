"""Start the affective memory node on a robot.

    ros2 launch affective_memory_ros robot.launch.py camera_topic:=/camera/color/image_raw device:=cuda
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("affective_memory_ros"), "config",
                                           "affective_memory.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic of the robot's camera"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file of the node"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        Node(
            package="affective_memory_ros",
            executable="affective_memory_node",
            name="affective_memory",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"),
                        {"image_topic": LaunchConfiguration("camera_topic"),
                         "device": LaunchConfiguration("device")}],
        ),
    ])
