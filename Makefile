# CNN Case Studies: one file drives set-up, the book, the tests and the lab.
# `make book` and `make test` each do every set-up step they need; the steps
# are idempotent and quick once done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU=1: TensorFlow's and JAX's CUDA builds (requirements-gpu.txt) in place of
# tensorflow-cpu; every other pin is requirements.txt's. A venv made with
# GPU=1 stays a GPU venv (rm -rf .venv to go back).
GPU ?= $(if $(wildcard $(VENV)/.installed-gpu),1,0)
ifeq ($(GPU),1)
STAMP := $(VENV)/.installed-gpu
REQUIREMENTS := -r <(grep -viE '^tensorflow[-_]cpu==' requirements.txt) \
	-r requirements-gpu.txt
else
STAMP := $(VENV)/.installed
REQUIREMENTS := -r requirements.txt
endif
export CNNBOOK_DATA ?= $(CURDIR)/.data
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0
JOBS ?= 2

.PHONY: help venv data system-deps book book-exec test lab exercises execute \
	execute-solutions bundle clean

help:
	@echo "make book   build the HTML book into _build/html (set-up included)"
	@echo "make test   run the whole test suite (set-up included)"
	@echo "make lab    start JupyterLab on the exercises"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make execute    re-run the labs in place, storing outputs (NB=... picks;"
	@echo "                the profile comes from CNNBOOK_PROFILE)"
	@echo "make execute-solutions  re-run solutions/ under the smoke profile"
	@echo "make venv GPU=1  the environment with TensorFlow's and JAX's CUDA builds"
	@echo "make bundle  the offline archive for a JAX GPU node (dist/)"

$(STAMP): requirements.txt pyproject.toml $(if $(filter 1,$(GPU)),requirements-gpu.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(filter 1,$(GPU)),$(PY) -m pip uninstall --quiet --yes tensorflow-cpu)
	$(PY) -m pip install --quiet --disable-pip-version-check $(REQUIREMENTS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cnnbook)" >/dev/null
	touch $@

venv: $(STAMP)

# Offline sources for the datasets and the browser used by the page test.
system-deps:
	@bash .ci/system-deps.sh

data: $(STAMP) system-deps
	$(PY) -m cnnbook data

book: data
	@start=$$(date +%s); \
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going \
	  --builder html && \
	echo "Book built in $$(( $$(date +%s) - start )) s. Open file://$(CURDIR)/_build/html/index.html"

# Re-executes every notebook through jupyter-cache while building (slow).
book-exec: data
	mkdir -p _build
	sed 's/execute_notebooks: "off"/execute_notebooks: cache/' _config.yml > _build/_config.exec.yml
	$(VENV)/bin/jupyter-book build . --config _build/_config.exec.yml --builder html

# Solutions are compared cell by cell with their stored outputs (nbval, in
# one process: a notebook's cells share a kernel); everything else runs on
# $(JOBS) workers.
test: data
	CNNBOOK_PROFILE=smoke $(PY) -m pytest -p no:cacheprovider -p no:xdist \
	  --nbval solutions/ --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  --nbval-cell-timeout 600
	CNNBOOK_PROFILE=smoke $(PY) -m pytest -n $(JOBS) --dist loadgroup \
	  -p no:cacheprovider --durations=15 tests/

lab: data
	@# loopback only, rooted at exercises/, opening the landing page rendered
	@# (.lab-settings/overrides.json: Markdown opens as a preview); LAB_PORT=N
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 \
	  --ServerApp.port=$(or $(LAB_PORT),8888) \
	  --ServerApp.root_dir=$(CURDIR)/exercises \
	  --LabApp.app_settings_dir=$(CURDIR)/.lab-settings \
	  --LabApp.default_url=/lab/tree/README.md \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

exercises: $(STAMP)
	$(PY) -m cnnbook generate

# Lab notebooks store a cpu or full run; solutions store the smoke run that
# nbval compares against.
NB ?= notebooks/*.ipynb
execute: data
	$(PY) -m cnnbook execute $(NB)

execute-solutions: data
	CNNBOOK_PROFILE=smoke $(PY) -m cnnbook execute solutions/*.ipynb

# The archive for a GPU node without internet (JAX backend): wheels for
# BUNDLE_PYTHON on BUNDLE_PLATFORM, the package, the labs, the datasets.
# On the node: tar xf dist/cnnbook-bundle-*.tar.xz and
# cnnbook-bundle/run.sh --profile gpu --results DIR. LABS=a,b picks labs.
BUNDLE_PYTHON ?= 3.12
BUNDLE_PLATFORM ?= manylinux_2_28_x86_64
bundle: data
	$(PY) -m cnnbook bundle --out dist --python $(BUNDLE_PYTHON) \
	  --platform $(BUNDLE_PLATFORM) $(if $(LABS),--labs $(LABS))

clean:
	rm -rf _build
