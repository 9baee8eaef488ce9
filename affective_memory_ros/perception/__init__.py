"""Perception: face detection, tracking with re-identification, aligned crops. ROS-free."""
