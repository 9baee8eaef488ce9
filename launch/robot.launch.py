"""Start the affective memory node on a robot.

    ros2 launch affective_memory_ros robot.launch.py camera_topic:=/camera/color/image_raw device:=cuda

Launch arguments never override the parameter file silently: ``device``,
``image_transport`` and ``autostart`` are passed to the node only when given
on the command line (their default, empty, means "as in params_file").
``camera_topic`` is a remapping of the node's relative ``image`` input, not a
parameter; a relative ``camera_topic`` (the default, ``camera/image_raw``)
moves with ``namespace``. Two cameras: include this file twice with two
namespaces (docs/ros.md).
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

#: Launch arguments that become parameters, but only when given.
OPTIONAL_PARAMETERS = ("device", "image_transport", "autostart")


def _node(context: LaunchContext) -> list[Node]:
    value = {name: LaunchConfiguration(name).perform(context) for name in
             ("params_file", "camera_topic", "namespace", "name", *OPTIONAL_PARAMETERS)}
    overrides: dict[str, object] = {}
    for name in OPTIONAL_PARAMETERS:
        if value[name] != "":
            overrides[name] = value[name].lower() == "true" if name == "autostart" else value[name]
    return [Node(
        package="affective_memory_ros",
        executable="affective_memory_node",
        name=value["name"],
        namespace=value["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[value["params_file"], *([overrides] if overrides else [])],
        remappings=[("image", value["camera_topic"])] if value["camera_topic"] else [],
    )]


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("affective_memory_ros"), "config",
                                           "affective_memory.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="camera/image_raw",
                              description="the camera's sensor_msgs/Image topic (its .../compressed with "
                                          "image_transport:=compressed); relative names move with namespace"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file of the node"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda or cuda:N; empty: as in params_file"),
        DeclareLaunchArgument("image_transport", default_value="",
                              description="raw or compressed; empty: as in params_file"),
        DeclareLaunchArgument("autostart", default_value="",
                              description="true or false (wait for a lifecycle manager); empty: as in params_file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and all its names"),
        DeclareLaunchArgument("name", default_value="affective_memory", description="node name"),
        OpaqueFunction(function=_node),
    ])
