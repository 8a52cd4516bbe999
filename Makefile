# The suite's commands. `make help` lists them. Set PROFILE (auto|full|cpu|smoke|path.yaml), RUN, DATA_DIR,
# VGG16_WEIGHTS on the command line or in the environment.
SHELL := /bin/bash
PYTHON_BASE ?= python3.11
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PROFILE ?= auto
RUN ?=
SET ?=
FORCE ?=
FROM ?=
CELL_TIMEOUT ?=
BUDGET_MINUTES ?=
WORKERS ?=
RUNNER = $(PYTHON) -m lib.runner --profile $(PROFILE) $(if $(RUN),--run $(RUN)) $(foreach item,$(SET),--set $(item)) \
	$(if $(filter 1 yes true,$(FORCE)),--force) $(if $(FROM),--from $(FROM)) \
	$(if $(CELL_TIMEOUT),--cell-timeout $(CELL_TIMEOUT)) $(if $(BUDGET_MINUTES),--budget-minutes $(BUDGET_MINUTES)) \
	$(if $(WORKERS),--workers $(WORKERS))

.DEFAULT_GOAL := help
.PHONY: help setup data run-feature-extraction run-data-augmentation run-fine-tuning run-all forecast report predict \
	compare bench test test-fast lint clean notebooks

help: ## List the targets with one line each.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-24s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: PROFILE=$(PROFILE) (auto|full|cpu|smoke|path/to.yaml), RUN=<name>, SET='key=value ...',"
	@echo "             FORCE=1 (redo up-to-date stages), FROM=outputs/<run>/manifest.json, DATA_DIR, VGG16_WEIGHTS,"
	@echo "             BUDGET_MINUTES=30 (PROFILE=auto on a CPU), CELL_TIMEOUT=<seconds> (stop a cell running longer),"
	@echo "             WORKERS=2 (each stage on a local cluster of that many processes: distribution=multi_worker)"

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON_BASE) >/dev/null || { echo "Need $(PYTHON_BASE) (or set PYTHON_BASE=python3.x)."; exit 1; }
	test -x $(PYTHON) || $(PYTHON_BASE) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	@# Strip notebook outputs from what git commits (working copies keep theirs): a filter in .git/config.
	@# --keep-id: cell ids stay as `make notebooks` keeps them, so commits show only real changes.
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(PYTHON) -m nbstripout --install && \
		git config filter.nbstripout.clean '"$(abspath $(PYTHON))" -m nbstripout --keep-id'; fi
	@# The hooks of .pre-commit-config.yaml before every commit (docs/development.md); a checkout of a commit
	@# without that file (an older branch) still commits.
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(PYTHON) -m pre_commit install --allow-missing-config || \
		echo "WARNING: the pre-commit hooks are not installed (see above); make lint runs the same checks."; fi
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

forecast: setup ## Print how long each stage of PROFILE would take on this machine, and stop (STAGES=all).
	$(RUNNER) --forecast-only $(or $(STAGES),all)

report: setup ## Rewrite outputs/<RUN>/index.html and summary.json from a run's results (RUN=... required).
	@test -n "$(RUN)" || { echo "Give the run: make report RUN=<name> (see outputs/)"; exit 2; }
	$(PYTHON) -m lib.pages.summary $(RUN)

predict: setup ## Classify new photos with a run's model -> outputs/<RUN>/predictions/ (RUN=, IMAGES=, STAGE= optional).
	@test -n "$(RUN)" -a -n "$(IMAGES)" || { echo "Give the run and the photos: make predict RUN=<name> IMAGES=<file or folder>"; exit 2; }
	$(PYTHON) -m lib.run.predict --run $(RUN) --images "$(IMAGES)" $(if $(STAGE),--stage $(STAGE))

compare: setup ## One page comparing runs -> outputs/compare.html (RUNS="run-a run-b ...").
	@test -n "$(RUNS)" || { echo "Give the runs: make compare RUNS=\"run-a run-b\""; exit 2; }
	$(PYTHON) -m lib.pages.compare $(RUNS)

bench: setup ## Side-by-side benchmark against the course-notes way -> outputs/bench/bench.json (BENCH_IMAGES=400).
	$(PYTHON) tools/bench.py --images $(or $(BENCH_IMAGES),400) --validation-images $(or $(BENCH_VALIDATION_IMAGES),200) --repeats $(or $(BENCH_REPEATS),3)

test: setup ## Unit tests and smoke-profile notebook execution checks (`make test-fast`: the fast ones).
	$(PYTHON) -m pytest -q tests

test-fast: setup ## Only the fast tests (`pytest -m "not slow"`, about a minute): CI runs them on every push.
	$(PYTHON) -m pytest -q -m "not slow" tests

lint: setup ## ruff over everything, actionlint over .github/workflows/; notebook pairs match, commit no outputs.
	$(PYTHON) -m ruff check .
	$(VENV)/bin/actionlint -shellcheck=$(VENV)/bin/shellcheck .github/workflows/*.yml
	$(PYTHON) -m lib.run.pairing check

data: setup ## Find (or download) the dataset and check its layout; prints the image counts per split.
	$(PYTHON) -m lib.study.photos

notebooks: setup ## Sync each notebook with its paired .py (the side you edited wins) and the Colab links.
	$(PYTHON) -m lib.run.pairing sync

clean: ## Delete outputs/ (runs and caches) but keep .venv.
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
