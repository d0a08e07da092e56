"""Bag replay: the fused-perception node on simulated time (use_sim_time:=true).

    ros2 launch fusion_ros replay.launch.py bag:=drive.mcap rate:=0.5
    ros2 launch fusion_ros replay.launch.py thermal_topic:=/flir/image_raw rgb_topic:=/camera/image_raw
    ros2 bag play <bag> --clock          # (second form) in a second terminal

The node follows the bag's /clock, so output stamps equal the recorded RGB stamps and a paused or
looping bag is handled (a jump back in time resets the synchroniser). Diagnostics keep a steady-clock
period, so a paused bag shows up as silent inputs (WARN).

With `bag:=PATH` the project's own player (fusion_ros/nodes/bag_player.py, `fusion-play-bag`: it needs
no rosbag2_py) publishes the bag's topics and /clock at `rate` (optionally `loop`), once the node
subscribes; with no bag, play it yourself. The other arguments are those of fusion.launch.py
(params_file, namespace, thermal_topic, rgb_topic, autostart, log_level); use_sim_time is forced true.
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression

from fusion_ros.topics import RGB_TOPIC, THERMAL_TOPIC

_HERE = os.path.dirname(os.path.abspath(__file__))
_PASSED = ("params_file", "namespace", "thermal_topic", "rgb_topic", "autostart", "log_level")


def generate_launch_description() -> LaunchDescription:
    # the pass-through arguments, re-declared so `ros2 launch --show-args` lists them here too;
    # params_file is not: fusion.launch.py defaults it to the package's config/fusion.yaml, and a
    # params_file:=... given on the command line reaches it anyway
    defaults = {
        "namespace": "",
        "thermal_topic": THERMAL_TOPIC,
        "rgb_topic": RGB_TOPIC,
        "autostart": "true",
        "log_level": "info",
    }
    args = [DeclareLaunchArgument(name, default_value=defaults[name]) for name in _PASSED if name in defaults]
    passed = {name: LaunchConfiguration(name) for name in _PASSED if name in defaults}
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(_HERE, "fusion.launch.py")),
        launch_arguments={**passed, "use_sim_time": "true"}.items(),
    )
    play_args = [
        DeclareLaunchArgument("bag", default_value="", description="rosbag2 to play; empty: play it yourself"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate factor"),
        DeclareLaunchArgument("loop", default_value="false", choices=["true", "false"]),
    ]
    player = ExecuteProcess(
        cmd=[sys.executable, "-m", "fusion_ros.nodes.bag_player", LaunchConfiguration("bag"),
             "--rate", LaunchConfiguration("rate"), "--loop", LaunchConfiguration("loop"),
             "--wait-for-subscribers", "10"],
        condition=IfCondition(PythonExpression(["'", LaunchConfiguration("bag"), "' != ''"])),
        output="screen",
    )
    return LaunchDescription(args + play_args + [include, player])
