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

.PHONY: help venv data system-deps book book-exec exec-config lint test lab \
	exercises execute execute-solutions bundle clean

help:
	@echo "make book   build the HTML book into _build/html (set-up included)"
	@echo "make test   lint, then the whole test suite (set-up included)"
	@echo "make lint   ruff (lint and format check) and codespell"
	@echo "make lab    start JupyterLab on the exercises"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make execute    re-run the labs in place as the book's canonical runs (NB=... picks;"
	@echo "                the profile comes from CNNBOOK_PROFILE)"
	@echo "make execute-solutions  re-run solutions/ under the smoke profile"
	@echo "make book-exec  build the book re-running the notebooks (jupyter-cache)"
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

# Re-executes every notebook through jupyter-cache while building (slow),
# with the checks of `make book`. Its configuration is _config.yml with
# execute_notebooks "cache" instead of "off", written by exec-config, which
# fails (rather than copying the file unchanged) when _config.yml does not
# say "off".
EXEC_CONFIG ?= _build/_config.exec.yml
define EXEC_CONFIG_PY
import sys, yaml
source, target = sys.argv[1:]
config = yaml.safe_load(open(source))
mode = config.get("execute", {}).get("execute_notebooks")
if mode not in ("off", False):  # YAML reads a bare off as False
    sys.exit(f"{source}: execute.execute_notebooks is {mode!r}, not 'off'")
config["execute"]["execute_notebooks"] = "cache"
with open(target, "w") as out:
    yaml.safe_dump(config, out, sort_keys=False)
print(f"{target}: {source} with execute_notebooks: cache")
endef
export EXEC_CONFIG_PY

exec-config: $(STAMP)
	@mkdir -p $(dir $(EXEC_CONFIG))
	$(PY) -c "$$EXEC_CONFIG_PY" _config.yml $(EXEC_CONFIG)

book-exec: data exec-config
	$(VENV)/bin/jupyter-book build . --config $(EXEC_CONFIG) \
	  --warningiserror --nitpick --keep-going --builder html

# Ruff lints and checks the format of the package, the tests and the
# notebooks (pyproject.toml: rules, line length, what is excluded);
# codespell reads the pages. Every check runs, then the target fails if any
# found something. The pre-commit revisions must be the pinned versions.
SPELLCHECKED := book/ README.md CONTRIBUTING.md exercises/README.md
lint: $(STAMP)
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/codespell $(SPELLCHECKED) || status=1; \
	for tool in ruff codespell; do \
	  pin=$$(sed -n "s/^$$tool==//p" requirements.txt); \
	  grep -A1 "/$$tool" .pre-commit-config.yaml | grep -q "rev: v$$pin$$" \
	    || { echo ".pre-commit-config.yaml: $$tool is not at v$$pin"; status=1; }; \
	done; \
	exit $$status

# Lint first; then the solutions are compared cell by cell with their stored
# outputs (nbval, in one process: a notebook's cells share a kernel);
# everything else runs on $(JOBS) workers.
test: lint data
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
# nbval compares against. `cnnbook execute` is a canonical run
# (CNNBOOK_CANONICAL=1): its records and figures replace the book's in
# results/ and book/figures/; a run from JupyterLab writes to my-results/.
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
