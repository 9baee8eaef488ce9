"""The rclpy adapter. The only part of the package that imports rclpy."""
