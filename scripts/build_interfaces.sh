#!/usr/bin/env bash
# Build the ROS 2 interface packages that PyPI lacks (interfaces/*, today only vision_msgs 4.x, plus
# composition_interfaces from the vendored ROS 2 sources when they are present: launch_ros needs it) with
# the colcon + rosidl toolchain installed from PyPI into VENV, into OUTDIR/{build,install,log}.
#
#   usage: bash scripts/build_interfaces.sh VENV OUTDIR      (the Makefile: .venv .ros_interfaces)
#   VENDOR_ROS2=DIR overrides where composition_interfaces is looked for (default ../shared/vendor/ros2
#   beside the checkout; absent: vision_msgs only).
#
# Afterwards `source OUTDIR/install/setup.bash` (scripts/with_ros_env.sh does it) makes
# `import vision_msgs.msg` work in VENV's python. OUTDIR/install/.built is written last, only on
# success; it records a hash of the inputs, so a second run with unchanged inputs returns at once.
# Any failure exits non-zero with the tail of the build log (full log: OUTDIR/build.log).
#
# Fixes applied (see shared/notes/ros2-from-pypi.md, "Building an interface package with colcon"):
#   * AMENT_PREFIX_PATH / CMAKE_PREFIX_PATH = VENV (the wheels install their share/ there), VENV/bin
#     first on PATH and -DPython3_EXECUTABLE so CMake uses the venv's interpreter;
#   * the wheels' exported *.cmake files in VENV/share carry the include dirs of the machine that
#     built them (/opt/python/cp311-cp311/include/python3.11 and its numpy include). Every such path
#     that does not exist here is rewritten to this venv's python include dir and numpy include dir.
#     Paths that exist are left alone, so the rewrite is idempotent and a no-op on a second run;
#   * -DBUILD_TESTING=OFF (the lint/test packages are not installed).
#
# colcon package discovery (why there is no COLCON_IGNORE file in the source tree):
#   colcon's recursive crawl stops descending as soon as a directory is identified as a package, and
#   it never enters directories whose name starts with a dot. Hence
#     * `colcon build --base-paths interfaces` (this script) only walks down from interfaces/ and
#       finds vision_msgs; it never sees the top-level fusion_ros package;
#     * `colcon build --base-paths .` (or plain `colcon build`) at the repo root identifies the root
#       itself as fusion_ros (ament_python) and stops there: it does NOT recurse into interfaces/,
#       training/, .venv/ (which holds dozens of package.xml files under .venv/share), .ros_interfaces/
#       etc. test/test_colcon_build.py checks this with `colcon list`.
#   A COLCON_IGNORE in interfaces/ would break this script (colcon honours it on a base path too),
#   so none is placed. To build fusion_ros and vision_msgs in one colcon workspace, name both base
#   paths: `colcon build --base-paths . interfaces` (vision_msgs is then built first, as a dependency).
set -euo pipefail

die() { echo "build_interfaces: ERROR: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 VENV OUTDIR"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$1" ] || die "venv '$1' does not exist (run 'make setup' first)"
venv=$(cd "$1" && pwd)
py="$venv/bin/python"
colcon="$venv/bin/colcon"
[ -x "$py" ] || die "$py not found"
[ -x "$colcon" ] || die "$colcon not found: install requirements-colcon.txt into the venv"
command -v cmake >/dev/null || die "cmake not found on PATH (apt-get install cmake)"
command -v c++ >/dev/null || die "no C/C++ compiler on PATH (apt-get install build-essential)"
mkdir -p "$2"
out=$(cd "$2" && pwd)
stamp="$out/install/.built"
log="$out/build.log"
vendor="${VENDOR_ROS2:-$root/../shared/vendor/ros2}"
base_paths=("$root/interfaces")
if [ -f "$vendor/composition_interfaces/package.xml" ]; then
  vendor=$(cd "$vendor" && pwd)
  base_paths+=("$vendor/composition_interfaces")
else
  vendor=""
fi

# One build at a time per OUTDIR (parallel test runs / make invocations).
if command -v flock >/dev/null; then
  exec 9>"$out/.lock"
  flock 9
fi

# Inputs that define the result: the interface sources, this script, the pinned toolchain and
# ROS wheels (requirements*.txt), the venv and its python.
inputs_hash=$(
  cd "$root"
  {
    find interfaces -type f \( -name '*.msg' -o -name '*.srv' -o -name '*.action' \
      -o -name package.xml -o -name CMakeLists.txt \) -print0 | sort -z | xargs -0 -r sha256sum
    find . -maxdepth 1 -name 'requirements*.txt' -print0 | sort -z | xargs -0 -r sha256sum
    sha256sum scripts/build_interfaces.sh
    if [ -n "$vendor" ]; then
      (cd "$vendor" && find composition_interfaces -type f \( -name '*.srv' -o -name '*.msg' -o -name package.xml \
        -o -name CMakeLists.txt \) -print0 | sort -z | xargs -0 -r sha256sum)
    fi
    echo "venv=$venv"
    "$py" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs_hash" ]; then
  echo "build_interfaces: up to date ($out/install)"
  exit 0
fi

# Environment for the toolchain: only the venv as underlay, whatever the caller has sourced.
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"
export AMENT_PREFIX_PATH="$venv"
export CMAKE_PREFIX_PATH="$venv"
unset COLCON_PREFIX_PATH PYTHONHOME
export PYTHONDONTWRITEBYTECODE=1

# Rewrite the baked-in include dirs of the build machine in the wheels' CMake exports.
"$py" - "$venv" <<'PY' || die "could not rewrite the include paths in $venv/share/**/*.cmake"
import numpy, os, re, sys, sysconfig
venv = sys.argv[1]
py_inc = sysconfig.get_paths()["include"]
np_inc = numpy.get_include()
if not os.path.isfile(os.path.join(py_inc, "Python.h")):
    sys.exit(f"Python.h not found in {py_inc}: install the python development headers")
patterns = [
    (re.compile(r'[^;"\s]*/include/python3\.\d+t?(?=[;"\s])'), py_inc),
    (re.compile(r'[^;"\s]*/numpy/(?:_core|core)/include(?=[;"\s])'), np_inc),
]
changed = 0
for dirpath, _, files in os.walk(os.path.join(venv, "share")):
    for name in files:
        if not name.endswith(".cmake"):
            continue
        path = os.path.join(dirpath, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = text
        for rx, repl in patterns:
            new = rx.sub(lambda m, r=repl: m.group(0) if os.path.exists(m.group(0)) else r, new)
        if new != text:
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(new)
            os.replace(tmp, path)
            changed += 1
if changed:
    print(f"build_interfaces: rewrote build-machine include paths in {changed} cmake files")
PY

# A build tree configured for another venv cannot be reused; the install tree is rebuilt whenever
# the inputs changed so that deleted messages do not linger in it.
if [ -f "$out/.venv_path" ] && [ "$(cat "$out/.venv_path")" != "$venv" ]; then
  rm -rf "$out/build"
fi
rm -rf "$out/install"
echo "$venv" >"$out/.venv_path"

npkg=$(( $(find "$root/interfaces" -mindepth 2 -maxdepth 2 -name package.xml | wc -l) + ${#base_paths[@]} - 1 ))
nmsg=$(find "$root/interfaces" -path '*/msg/*.msg' | wc -l)
echo "build_interfaces: building $npkg interface package(s), $nmsg messages -> $out/install (log: $log)"
start=$SECONDS
if ! (cd "$out" && "$colcon" --log-base "$out/log" build \
      --base-paths "${base_paths[@]}" \
      --build-base "$out/build" --install-base "$out/install" \
      --event-handlers console_direct+ console_stderr- console_start_end+ summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$py" -DPython3_FIND_VIRTUALENV=ONLY \
      ) >"$log" 2>&1; then
  echo "----- last 60 lines of $log -----" >&2
  tail -n 60 "$log" >&2
  die "colcon build of interfaces/ failed after $((SECONDS - start)) s (full log: $log, per-package logs: $out/log/latest_build)"
fi

# Check that the result imports in the venv's python, as the tests will use it.
check_out=$(
  set +u
  # shellcheck disable=SC1091
  source "$out/install/setup.bash"
  extra=""
  [ -z "$vendor" ] || extra="import composition_interfaces.srv as s; s.LoadNode.Request(); "
  "$py" -c "import vision_msgs.msg as m; m.Detection2DArray(); ${extra}print('ok')" 2>&1
) || true
if [ "$(printf '%s\n' "$check_out" | tail -n 1)" != "ok" ]; then
  printf '%s\n' "$check_out" >&2
  die "vision_msgs (or composition_interfaces) built but does not import with $out/install/setup.bash sourced"
fi

echo "$inputs_hash" >"$stamp"
echo "build_interfaces: OK, $npkg package(s) / $nmsg messages built in $((SECONDS - start)) s -> $out/install"
