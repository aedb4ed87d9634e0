# CNN Case Studies: one file drives set-up, the book, the tests and the lab.
# `make book` and `make test` each do every set-up step they need; the steps
# are idempotent and quick once done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export CNNBOOK_DATA ?= $(CURDIR)/.data
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0
JOBS ?= 2

.PHONY: help venv data system-deps book test test-fast lab exercises execute clean

help:
	@echo "make book   build the HTML book into _build/html (set-up included)"
	@echo "make test   run the whole test suite (set-up included)"
	@echo "make lab    start JupyterLab on the exercises"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make execute    re-run notebooks/ and solutions/, storing outputs"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
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
	$(PY) -m cnnbook book

test: data
	$(PY) -m pytest -n $(JOBS) --dist loadfile -p no:cacheprovider \
	  --nbval solutions/ --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  --nbval-cell-timeout 600 tests/

lab: data
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --notebook-dir=. exercises/README.md

exercises: $(STAMP)
	$(PY) -m cnnbook generate

execute: data
	$(PY) -m cnnbook execute notebooks/*.ipynb solutions/*.ipynb

clean:
	rm -rf _build
