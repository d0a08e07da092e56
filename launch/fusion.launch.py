"""Vehicle launch: the fused-perception node with its parameter file.

    ros2 launch fusion_ros fusion.launch.py \
        thermal_topic:=/flir/image_raw rgb_topic:=/camera/color/image_raw namespace:=perception

Arguments:
  params_file    node parameters (default: the package's config/fusion.yaml)
  use_sim_time   true when replaying bags / simulating (default false)
  namespace      node namespace; outputs go to <namespace>/fused/image, <namespace>/detections, ...
  thermal_topic  the thermal camera topic, remapped onto the node's thermal/image_raw (and, with
                 thermal_transport: compressed, <thermal_topic>/compressed onto thermal/image_raw/compressed)
  rgb_topic      the RGB camera topic, remapped onto the node's rgb/image_raw (and .../compressed alike)
  autostart      true: the node configures and activates itself (parameter lifecycle:=false);
                 false: it stays unconfigured until a lifecycle manager / `ros2 lifecycle set` drives it
  log_level      node log level (default info)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

from fusion_ros.topics import COMPRESSED_SUFFIX, RGB_TOPIC, THERMAL_TOPIC


def _default_params_file() -> str:
    try:
        share = get_package_share_directory("fusion_ros")
    except (LookupError, OSError):  # a source checkout (not installed, no AMENT_PREFIX_PATH)
        share = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    return os.path.join(share, "config", "fusion.yaml")


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("params_file", default_value=_default_params_file(),
                              description="YAML file with the node's ros__parameters"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="use /clock (bag replay, simulation)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("thermal_topic", default_value=THERMAL_TOPIC,
                              description="thermal image topic (sensor_msgs/Image; its /compressed sub-topic "
                                          "with thermal_transport: compressed)"),
        DeclareLaunchArgument("rgb_topic", default_value=RGB_TOPIC,
                              description="RGB image topic (sensor_msgs/Image; or its /compressed sub-topic)"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="configure + activate at start (false: wait for a lifecycle manager)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug|info|warn|error"),
    ]
    # LifecycleNode (not Node): launch then sees the node's state transitions and can drive them
    node = LifecycleNode(
        package="fusion_ros",
        executable="fusion_node",
        name="fusion_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
                # autostart:=true -> lifecycle:=false: the node drives its own transitions
                "lifecycle": ParameterValue(
                    PythonExpression(["'", LaunchConfiguration("autostart"), "' != 'true'"]), value_type=bool
                ),
            },
        ],
        # the node's inputs are the relative THERMAL_TOPIC / RGB_TOPIC (fusion_ros/topics.py); the same
        # arguments remap the compressed transport's sub-topics
        remappings=[
            (THERMAL_TOPIC, LaunchConfiguration("thermal_topic")),
            (RGB_TOPIC, LaunchConfiguration("rgb_topic")),
            (f"{THERMAL_TOPIC}/{COMPRESSED_SUFFIX}", [LaunchConfiguration("thermal_topic"), f"/{COMPRESSED_SUFFIX}"]),
            (f"{RGB_TOPIC}/{COMPRESSED_SUFFIX}", [LaunchConfiguration("rgb_topic"), f"/{COMPRESSED_SUFFIX}"]),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    return LaunchDescription(args + [node])
