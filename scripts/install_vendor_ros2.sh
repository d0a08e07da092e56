#!/usr/bin/env bash
# Install the ROS 2 launch system and `ros2` command line from source folders (../shared/vendor/ros2:
# launch, launch_ros, ros2cli and its verbs, ...: not on PyPI) into VENV, as pip packages, --no-deps.
#
#   usage: bash scripts/install_vendor_ros2.sh VENV VENDOR_DIR
#
# Each folder is copied to a scratch directory first (setuptools writes build/ and *.egg-info into the
# source tree; the shared folder is left untouched). Order matters: launch before launch_ros, ros2cli
# before the ros2* verbs, ros2launch last. composition_interfaces (an interface package, needed by
# launch_ros at start-up) is built by scripts/build_interfaces.sh, like vision_msgs.
set -euo pipefail
die() { echo "install_vendor_ros2: ERROR: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 VENV VENDOR_DIR"
py="$1/bin/python"
vendor="$2"
[ -x "$py" ] || die "$py not found"
[ -d "$vendor" ] || die "$vendor does not exist"
order=(launch launch_xml launch_yaml launch_ros rosidl_runtime_py ros2cli ros2pkg ros2run ros2node ros2topic
       ros2service ros2param ros2lifecycle ros2interface ros2launch)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for name in "${order[@]}"; do
  [ -f "$vendor/$name/setup.py" ] || die "$vendor/$name/setup.py missing"
  cp -r "$vendor/$name" "$scratch/$name"
  rm -rf "$scratch/$name/build" "$scratch/$name"/*.egg-info
done
"$py" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation \
  $(for name in "${order[@]}"; do printf '%s ' "$scratch/$name"; done) 2>&1 \
  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
# (launch_ros imports composition_interfaces, built afterwards by build_interfaces.sh: not checked here)
"$py" -c 'import launch, ros2cli' || die "installed, but launch / ros2cli do not import"
echo "install_vendor_ros2: launch, launch_ros and the ros2 command line installed into $1"
