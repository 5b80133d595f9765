# Two commands for a new user: `make run` and `make test`. Both build .venv
# (pinned by constraints.txt) when it is missing or out of date.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# DVC and the tools it calls run from the venv; keep DVC's site cache in the repo.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache

# The pipeline `make run` regenerates; `make run-all` does every pipeline.
PIPELINE ?= ellipses

.PHONY: install run run-all test test-slow bench clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)          ## the main job: regenerate one pipeline (data to registry) at the scale in params.yaml
	dvc repro register@$(PIPELINE)
	dvc repro --single-item report

run-all: $(STAMP)      ## every pipeline of pipelines.yaml
	dvc repro

# One pytest worker per core, each test module on one worker (its module
# fixtures built once), longest modules first (tests/conftest.py).
PARALLEL := -n auto --dist loadfile --no-loadscope-reorder

test: $(STAMP)         ## the fast test suite (what CI runs)
	$(BIN)/python -m pytest $(PARALLEL)

test-slow: $(STAMP)    ## the slow tests too
	$(BIN)/python -m pytest $(PARALLEL) -m "slow or not slow"

bench: $(STAMP)        ## speed benchmarks, one JSON line each
	$(BIN)/python -m benchmarks.operators
	$(BIN)/python -m benchmarks.training

clean-venv:
	rm -rf $(VENV)
