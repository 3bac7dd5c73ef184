# Two set-up commands (see README):
#   make run [SCREENSHOT=out.png] [PANEL=tasks]   create .venv, install, start the suite on the bundled sample
#   make test                       create .venv, install with test extras, run every check
#                                   (then the GUI tests again under PyQt6, in .venv-qt6)
#
# torch: where no NVIDIA GPU is present the CPU build is installed first
# (TORCH_SPEC, default torch==2.13.0; set TORCH_INDEX to a CPU wheel index such
# as https://download.pytorch.org/whl/cpu if your pip would otherwise fetch a
# CUDA build). With a GPU, pip picks the torch that suits it.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
SCREENSHOT ?=
SAMPLE ?= gala-fib
# Panels docked besides the Connectome panel: Micro-tasks by default (PANEL="tasks effort" adds
# the Effort panel; PANEL= none).
PANEL ?= tasks

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# pytest-xdist workers: one per core, at most 4 (each GUI worker holds napari, Qt and its own Xvfb,
# ~1 GiB). On CI's 2 cores this halves the engine tests' wall time; PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --maxprocesses 4)

.PHONY: run test test-qt6 venv lint clean bench screenshot-readme

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

$(VENV)/.torch: | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: torch will come with the package's [models] extra"; \
	else \
	  echo "no GPU: installing the CPU build of torch first ($(TORCH_SPEC))"; \
	  $(PIP) install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	@touch $@

$(VENV)/.installed-all: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[all]"
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[test]"
	@touch $@ $(VENV)/.installed-all

venv: $(VENV)/.installed-all

# Without a display, a screenshot is rendered on a virtual one (Xvfb).
XVFB := $(if $(DISPLAY),,$(shell command -v xvfb-run >/dev/null 2>&1 && echo "xvfb-run -a -s '-screen 0 1600x1000x24'"))

run: $(VENV)/.installed-all
	$(if $(SCREENSHOT),$(XVFB)) $(BIN)/napari-connectome demo --sample $(SAMPLE) $(foreach p,$(PANEL),--panel $(p)) $(if $(SCREENSHOT),--screenshot $(SCREENSHOT))

test: $(VENV)/.installed-test
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)
	$(MAKE) test-qt6

# The PyQt6 leg: the GUI tests (tests/plugins) again under PyQt6, in a venv of its own
# (PyQt5 stays the binding users install; the engine tests do not touch Qt, so they run once).
QT6_VENV ?= .venv-qt6
QT6_BIN := $(QT6_VENV)/bin

$(QT6_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(QT6_VENV)
	$(QT6_BIN)/python -m pip install -q --upgrade pip setuptools wheel
	@# the Segment and Train panels need torch here too; the CPU build where no GPU is present
	@if ! (command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1); then \
	  $(QT6_BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(QT6_BIN)/python -m pip install -q -e ".[qt6-test]"
	@touch $@

test-qt6: $(QT6_VENV)/.installed
	QT_API=pyqt6 PYTEST_QT_API=pyqt6 $(QT6_BIN)/python -m pytest $(PYTEST_PARALLEL) tests/plugins

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_convert.py

clean:
	rm -rf $(VENV) $(QT6_VENV) build dist *.egg-info .pytest_cache .ruff_cache
