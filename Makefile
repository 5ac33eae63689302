# One-command set-up: `make demo` runs the demo, `make test` runs the tests.
# Each creates or reuses .venv, installs what changed (stamp files), builds the ROS interfaces
# into the venv, then runs. Re-running with nothing changed installs nothing.

PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
SITE = $(shell $(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export TORCH_EXTENSIONS_DIR := $(abspath $(VENV))/torch_extensions
export OMP_WAIT_POLICY ?= PASSIVE
export ROS_LOG_DIR ?= $(abspath $(VENV))/ros_log
CMAKE_ENV = AMENT_PREFIX_PATH=$(abspath $(VENV)) CMAKE_PREFIX_PATH=$(abspath $(VENV))
CMAKE_ARGS = -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) -DPython3_EXECUTABLE=$(abspath $(VPY)) -DBUILD_TESTING=OFF

.PHONY: setup demo test test-fast lint clean-build
.DEFAULT_GOAL := setup

setup: $(STAMPS)/requirements $(STAMPS)/package $(STAMPS)/msgs $(STAMPS)/tf2_msgs $(STAMPS)/share $(STAMPS)/native

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

$(STAMPS)/requirements: requirements.txt | $(VPY)
	$(VPY) -m pip install --quiet -r requirements.txt
	@mkdir -p $(STAMPS) && touch $@

# Editable install of gausstr_core / gausstr_ros (console scripts); 'compat' puts the source tree on sys.path.
# Reinstalling it removes the generated interfaces from site-packages/gausstr_ros, so msgs follows it.
# Editable wheels carry no data_files (setup.py's share/gausstr_ros), so pip never writes through the links below.
$(STAMPS)/package: setup.py $(STAMPS)/requirements
	$(VPY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@touch $@

$(STAMPS)/msgs: $(wildcard msg/*.msg srv/*.srv) CMakeLists.txt package.xml cmake/fix_pypi_ros_include_dirs.cmake gausstr_ros/__init__.py $(STAMPS)/package
	@mkdir -p .build/gausstr_ros
	cd .build/gausstr_ros && $(CMAKE_ENV) cmake $(CURDIR) $(CMAKE_ARGS) -DGAUSSTR_INSTALL_PYTHON=OFF > cmake.log 2>&1 \
		&& $(MAKE) --no-print-directory -j2 install >> cmake.log 2>&1 || (tail -40 cmake.log; exit 1)
	cd /tmp && $(abspath $(VPY)) -c 'from gausstr_ros.msg import SemanticOccupancy, GaussianArray, QueryResults; from gausstr_ros.srv import Query'
	@touch $@

# tf2_msgs is not on PyPI: build its one-line TFMessage interface only when it is not importable.
$(STAMPS)/tf2_msgs: interfaces/tf2_msgs/msg/TFMessage.msg interfaces/tf2_msgs/CMakeLists.txt $(STAMPS)/requirements
	@if ! $(VPY) -c 'import tf2_msgs.msg' 2>/dev/null; then \
		mkdir -p .build/tf2_msgs && cd .build/tf2_msgs && $(CMAKE_ENV) cmake $(CURDIR)/interfaces/tf2_msgs $(CMAKE_ARGS) > cmake.log 2>&1 \
		&& $(MAKE) --no-print-directory -j2 install >> cmake.log 2>&1 || (tail -40 cmake.log; exit 1); \
	fi
	$(VPY) -c 'from tf2_msgs.msg import TFMessage'
	@touch $@

# The venv as a ROS package prefix for `ros2 launch` / launch_ros and gausstr_ros.share: share/gausstr_ros/{config,launch}
# and lib/gausstr_ros/occupancy_node, linked to the source tree and the console script (edits need no reinstall;
# a non-editable pip install or colcon copies them there instead).
$(STAMPS)/share: $(STAMPS)/msgs $(STAMPS)/package
	mkdir -p $(VENV)/share/gausstr_ros $(VENV)/lib/gausstr_ros
	ln -sfn $(CURDIR)/config $(VENV)/share/gausstr_ros/config
	ln -sfn $(CURDIR)/launch $(VENV)/share/gausstr_ros/launch
	ln -sf $(abspath $(VENV))/bin/occupancy_node $(VENV)/lib/gausstr_ros/occupancy_node
	@touch $@

# The C++ voxeliser kernel, compiled for this CPU by torch's extension builder into TORCH_EXTENSIONS_DIR
# (gausstr_core/voxelize_native.py); without a compiler it says so and the numba kernel runs instead.
$(STAMPS)/native: gausstr_core/csrc/splat_cpu.cpp gausstr_core/voxelize_native.py $(STAMPS)/package
	$(VPY) -m gausstr_core.voxelize_native
	@touch $@

demo: setup
	$(VPY) -m gausstr_ros.tools.demo

test: setup
	$(VPY) -m pytest test -q

# The tests not marked ros or slow: the quick loop while editing (make test stays what CI runs).
test-fast: setup
	$(VPY) -m pytest test -q -m "not ros and not slow"

lint: setup
	$(VENV)/bin/ruff check .

clean-build:
	rm -rf .build $(STAMPS)
