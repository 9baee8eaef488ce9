"""Personalized Affective Memory (P-AffMem) for robots.

The subpackages below ``affective_memory_ros`` form a ROS-free core (memory,
models, perception, pipeline); only :mod:`affective_memory_ros.ros` imports
rclpy. The generated ROS interfaces live in ``affective_memory_ros.msg`` and
``affective_memory_ros.srv`` once the package is built with colcon.
"""

__version__ = "0.1.0"
