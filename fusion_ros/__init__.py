"""fusion_ros: thermal + RGB fused perception (ROS-free core; rclpy only in fusion_ros.nodes)."""

__version__ = "0.1.0"
