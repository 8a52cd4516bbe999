# The suite's commands. `make help` lists them. Set PROFILE (auto|full|cpu|smoke|path.yaml), RUN, DATA_DIR,
# VGG16_WEIGHTS on the command line or in the environment.
SHELL := /bin/bash
PYTHON_BASE ?= python3.11
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PROFILE ?= cpu
RUN ?=
SET ?=
RUNNER = $(PYTHON) -m lib.runner --profile $(PROFILE) $(if $(RUN),--run $(RUN)) $(foreach item,$(SET),--set $(item))

.DEFAULT_GOAL := help
.PHONY: help setup run-feature-extraction run-data-augmentation run-fine-tuning run-all test lint clean notebooks

help: ## List the targets with one line each.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-24s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: PROFILE=$(PROFILE) (full|cpu|smoke|path/to.yaml), RUN=<name>, DATA_DIR, VGG16_WEIGHTS, SET='key=value ...'"

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON_BASE) >/dev/null || { echo "Need $(PYTHON_BASE) (or set PYTHON_BASE=python3.x)."; exit 1; }
	test -x $(PYTHON) || $(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed ## Create .venv and install the pinned requirements (done automatically on first use).

run-feature-extraction: setup ## Stage 1: frozen-base features + classifier -> outputs/<RUN>/01_feature_extraction/.
	$(RUNNER) feature_extraction

run-data-augmentation: setup ## Stage 2: frozen base trained end to end on augmented photos.
	$(RUNNER) data_augmentation

run-fine-tuning: setup ## Stage 3: block5 unfrozen and fine-tuned at a low learning rate.
	$(RUNNER) fine_tuning

run-all: setup ## All three stages in order into one run folder outputs/<RUN>/.
	$(RUNNER) all

test: setup ## Unit tests and smoke-profile notebook execution checks.
	$(PYTHON) -m pytest -q tests

notebooks: setup ## Rewrite notebooks/*.ipynb from tools/build_notebooks.py (no outputs).
	$(PYTHON) tools/build_notebooks.py

clean: ## Delete outputs/ (runs and caches) but keep .venv.
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
