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
DEMO_OUT ?= demo_out

.PHONY: setup demo test interfaces clean

setup: $(STAMP) $(INTERFACES)

$(STAMP): requirements.txt requirements-colcon.txt setup.py setup.cfg package.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt -r requirements-colcon.txt $(QUIET)
	$(PIP) --no-deps --no-build-isolation -e . $(QUIET)
	touch $@

# vision_msgs is not on PyPI: build our copy of its interface package once with colcon and cache it.
$(INTERFACES): $(STAMP) $(wildcard interfaces/*/msg/*.msg interfaces/*/package.xml interfaces/*/CMakeLists.txt) scripts/build_interfaces.sh
	bash scripts/build_interfaces.sh $(VENV) .ros_interfaces

interfaces: $(INTERFACES)

demo: setup
	bash scripts/with_ros_env.sh $(VENV)/bin/fusion-demo --out $(DEMO_OUT)

test: setup
	bash scripts/with_ros_env.sh $(PY) -m pytest -q test

clean:
	rm -rf $(VENV) .ros_interfaces build install log $(DEMO_OUT)
