# Two set-up commands (see README):
#   make run [SCREENSHOT=out.png] [PANEL=tasks]   create .venv, install, start the suite on the bundled sample
#   make test                       create .venv, install with test extras, run every check
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

.PHONY: run test venv lint clean bench screenshot-readme

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
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_convert.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
