"""ROS 2 nodes of fusion_ros (the only part of the package that imports rclpy)."""
