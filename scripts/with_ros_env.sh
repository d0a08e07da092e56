#!/usr/bin/env bash
# Runs a command with the interface packages this repo builds itself (vision_msgs, see
# scripts/build_interfaces.sh) on the ROS search paths, as a sourced colcon workspace would.
set -eo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -f "$root/.ros_interfaces/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$root/.ros_interfaces/install/setup.bash"
fi
exec "$@"
