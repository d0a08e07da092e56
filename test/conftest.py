"""Shared test set-up: private ROS logs and DDS domain, deterministic small torch."""
import os
import tempfile

# Before any rclpy import: keep ROS logs out of ~/.ros and keep parallel runs off each other's DDS traffic.
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="fusion_ros_test_logs_"))
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
