"""Bag replay: the fused-perception node on simulated time (use_sim_time:=true).

    ros2 launch fusion_ros replay.launch.py thermal_topic:=/flir/image_raw rgb_topic:=/camera/image_raw
    ros2 bag play <bag> --clock          # in a second terminal: publishes /clock and the recorded topics

The node follows the bag's /clock, so output stamps equal the recorded RGB stamps and a paused or
looping bag is handled (a jump back in time resets the synchroniser). Diagnostics keep a steady-clock
period, so a paused bag shows up as silent inputs (WARN).

This launch starts the node only. A bag player launched from here (instead of `ros2 bag play` in a
second terminal) comes with the bag-replay issue: rosbag2_py / ros2cli are not installable from PyPI, so
the project's own player will be added to this file then. The arguments are those of fusion.launch.py
(params_file, namespace, thermal_topic, rgb_topic, autostart, log_level); use_sim_time is forced true.
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

_HERE = os.path.dirname(os.path.abspath(__file__))
_PASSED = ("params_file", "namespace", "thermal_topic", "rgb_topic", "autostart", "log_level")


def generate_launch_description() -> LaunchDescription:
    # the pass-through arguments, re-declared so `ros2 launch --show-args` lists them here too;
    # params_file is not: fusion.launch.py defaults it to the package's config/fusion.yaml, and a
    # params_file:=... given on the command line reaches it anyway
    defaults = {
        "namespace": "",
        "thermal_topic": "thermal/image_raw",
        "rgb_topic": "rgb/image_raw",
        "autostart": "true",
        "log_level": "info",
    }
    args = [DeclareLaunchArgument(name, default_value=defaults[name]) for name in _PASSED if name in defaults]
    passed = {name: LaunchConfiguration(name) for name in _PASSED if name in defaults}
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(_HERE, "fusion.launch.py")),
        launch_arguments={**passed, "use_sim_time": "true"}.items(),
    )
    return LaunchDescription(args + [include])
