# fusion_ros — set-up, demo and tests. Everything the project needs is installed from here.
#   make demo   set up .venv (first run ~2 min) and run the main job on the bundled default
#   make test   set up .venv and run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The pinned CPU torch wheel lies in /opt/wheels on our machines; elsewhere pip takes it from PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(PY) -m pip install --disable-pip-version-check -q $(FIND_LINKS)
# this machine's pip config names local package mirrors that may be absent: hide that noise only
QUIET := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
STAMP := $(VENV)/.installed
INTERFACES := .ros_interfaces/install/.built
# The ROS 2 launch system and `ros2` command line (not on PyPI), as sources beside the checkout; optional:
# without them everything else sets up and the real-launch tests say that they skip and why.
VENDOR_ROS2 ?= ../shared/vendor/ros2
VENDOR_STAMP := $(VENV)/.vendor_ros2
HAVE_VENDOR := $(wildcard $(VENDOR_ROS2)/launch/setup.py)
VENDOR_DEP := $(if $(HAVE_VENDOR),$(VENDOR_STAMP),)
DEMO_OUT ?= demo_out

.PHONY: setup demo test interfaces clean

setup: $(STAMP) $(VENDOR_DEP) $(INTERFACES)

$(STAMP): requirements.txt requirements-colcon.txt setup.py setup.cfg package.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt -r requirements-colcon.txt $(QUIET)
	$(PIP) --no-deps --no-build-isolation -e . $(QUIET)
	touch $@

$(VENDOR_STAMP): $(STAMP) requirements-launch.txt scripts/install_vendor_ros2.sh
	$(PIP) -r requirements-launch.txt $(QUIET)
	bash scripts/install_vendor_ros2.sh $(VENV) $(VENDOR_ROS2)
	touch $@

# vision_msgs is not on PyPI: build our copy of its interface package once with colcon and cache it
# (with composition_interfaces from $(VENDOR_ROS2) when present: launch_ros imports it).
$(INTERFACES): $(STAMP) $(VENDOR_DEP) $(wildcard interfaces/*/msg/*.msg interfaces/*/package.xml interfaces/*/CMakeLists.txt) scripts/build_interfaces.sh
	VENDOR_ROS2=$(VENDOR_ROS2) bash scripts/build_interfaces.sh $(VENV) .ros_interfaces

interfaces: $(INTERFACES)

demo: setup
	bash scripts/with_ros_env.sh $(VENV)/bin/fusion-demo --out $(DEMO_OUT)

test: setup
	bash scripts/with_ros_env.sh $(PY) -m pytest -q test

clean:
	rm -rf $(VENV) .ros_interfaces build install log $(DEMO_OUT)
