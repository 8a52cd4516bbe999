# The suite's commands. `make help` lists them. Set PROFILE (auto|full|cpu|smoke|path.yaml), RUN, DATA_DIR,
# VGG16_WEIGHTS on the command line or in the environment.
SHELL := /bin/bash
PYTHON_BASE ?= python3.11
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PROFILE ?= auto
# What a user gives reaches the commands as environment variables that the shell quotes ("$$IMAGES"), never pasted
# into a command line, so a value such as IMAGES='`touch x`' is a name, not a command. SET, RUNS and STAGES are
# lists, and SEEDS: split on spaces, with file-name patterns off (set -f).
export PROFILE RUN SEEDS SET FORCE FROM CELL_TIMEOUT BUDGET_MINUTES WORKERS IMAGES STAGE STAGES RUNS \
	BENCH_IMAGES BENCH_VALIDATION_IMAGES BENCH_REPEATS VERBOSE PORT ALL
RUNNER_ARGUMENTS = set -f; arguments=(--profile "$$PROFILE"); \
	[ -z "$$RUN" ] || arguments+=(--run "$$RUN"); \
	for item in $$SET; do arguments+=(--set "$$item"); done; \
	case "$$FORCE" in 1|yes|true) arguments+=(--force);; esac; \
	[ -z "$$FROM" ] || arguments+=(--from "$$FROM"); \
	[ -z "$$CELL_TIMEOUT" ] || arguments+=(--cell-timeout "$$CELL_TIMEOUT"); \
	[ -z "$$BUDGET_MINUTES" ] || arguments+=(--budget-minutes "$$BUDGET_MINUTES"); \
	[ -z "$$WORKERS" ] || arguments+=(--workers "$$WORKERS"); \
	case "$$VERBOSE" in 1|yes|true) arguments+=(--verbose);; esac;
RUNNER = $(RUNNER_ARGUMENTS) $(PYTHON) -m lib.runner "$${arguments[@]}"

.DEFAULT_GOAL := help
OLDEST_VENV ?= .venv-oldest
.PHONY: help setup data run-feature-extraction run-data-augmentation run-fine-tuning run-all seeds forecast report \
	predict compare bench test test-fast test-slow test-oldest lint clean clean-cache cache tensorboard notebooks docs

help: ## List the targets with one line each.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-24s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: PROFILE=$$PROFILE (auto|full|cpu|smoke|path/to.yaml), RUN=<name>, SET='key=value ...',"
	@echo "             FORCE=1 (redo up-to-date stages), FROM=outputs/<run>/manifest.json, DATA_DIR, VGG16_WEIGHTS,"
	@echo "             BUDGET_MINUTES=30 (PROFILE=auto sizes to it on a CPU; with any profile, later stages' epochs are"
	@echo "             cut to keep it when a stage runs long), CELL_TIMEOUT=<seconds> (stop a cell running longer),"
	@echo "             WORKERS=2 (each stage on a local cluster of that many processes: distribution=multi_worker),"
	@echo "             VERBOSE=1 (show every cell and everything the kernels print)"

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
	@$(RUNNER) feature_extraction

run-data-augmentation: setup ## Stage 2: frozen base trained end to end on augmented photos.
	@$(RUNNER) data_augmentation

run-fine-tuning: setup ## Stage 3: block5 unfrozen and fine-tuned at a low learning rate.
	@$(RUNNER) fine_tuning

run-all: setup ## All three stages in order into one run folder outputs/<RUN>/.
	@$(RUNNER) all

seeds: setup ## The whole study once per seed into outputs/<RUN>-seed<N>/, then one page outputs/<RUN>-seeds/ (SEEDS="42 7 123").
	@test -n "$$SEEDS" || { echo "Give the seeds: make seeds SEEDS=\"42 7 123\" (and PROFILE=, RUN=, SET= as for run-all)"; exit 2; }
	@$(RUNNER_ARGUMENTS) $(PYTHON) -m lib.run.seeds --seeds $$SEEDS "$${arguments[@]}"

forecast: setup ## Print how long each stage of PROFILE would take on this machine, and stop (STAGES=all).
	@$(RUNNER) --forecast-only $${STAGES:-all}

report: setup ## Rewrite outputs/<RUN>/index.html and summary.json from a run's results (RUN=... required).
	@test -n "$$RUN" || { echo "Give the run: make report RUN=<name> (see outputs/)"; exit 2; }
	$(PYTHON) -m lib.pages.summary "$$RUN"

predict: setup ## Classify new photos with a run's model -> outputs/<RUN>/predictions/ (RUN=, IMAGES=, STAGE= optional).
	@test -n "$$RUN" -a -n "$$IMAGES" || { echo "Give the run and the photos: make predict RUN=<name> IMAGES=<file or folder>"; exit 2; }
	$(PYTHON) -m lib.run.predict --run "$$RUN" --images "$$IMAGES" $${STAGE:+--stage "$$STAGE"}

compare: setup ## One page comparing runs -> outputs/compare.html (RUNS="run-a run-b ...").
	@test -n "$$RUNS" || { echo "Give the runs: make compare RUNS=\"run-a run-b\""; exit 2; }
	set -f; $(PYTHON) -m lib.pages.compare $$RUNS

bench: setup ## Side-by-side benchmark against the course-notes way -> outputs/bench/bench.json (BENCH_IMAGES=400).
	$(PYTHON) tools/bench.py --images "$${BENCH_IMAGES:-400}" --validation-images "$${BENCH_VALIDATION_IMAGES:-200}" \
		--repeats "$${BENCH_REPEATS:-3}"

test: setup ## Unit tests and smoke-profile notebook execution checks (`make test-fast`: the fast ones).
	$(PYTHON) -m pytest -q tests

# requirements.txt with the lines of requirements-oldest.txt (the oldest supported TensorFlow, Keras, and what
# they need) in place of its pins for the same packages.
$(OLDEST_VENV)/.installed: requirements.txt requirements-oldest.txt
	@command -v $(PYTHON_BASE) >/dev/null || { echo "Need $(PYTHON_BASE) (or set PYTHON_BASE=python3.x)."; exit 1; }
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON_BASE) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	grep -v -i -E "^($$(grep -o -E '^[A-Za-z0-9_.-]+' requirements-oldest.txt | paste -sd '|'))==" requirements.txt \
		> $(OLDEST_VENV)/requirements.txt
	grep -E '^[A-Za-z0-9]' requirements-oldest.txt >> $(OLDEST_VENV)/requirements.txt
	$(OLDEST_VENV)/bin/python -m pip install --quiet -r $(OLDEST_VENV)/requirements.txt
	touch $@

test-oldest: $(OLDEST_VENV)/.installed ## The smoke pipeline on the oldest supported TensorFlow and Keras (in .venv-oldest).
	$(OLDEST_VENV)/bin/python -c "import tensorflow, keras; print('TensorFlow', tensorflow.__version__, 'Keras', keras.__version__)"
	$(MAKE) run-all PROFILE=smoke RUN=smoke-oldest FORCE=1 VENV=$(OLDEST_VENV)

test-fast: setup ## Only the fast tests (`pytest -m "not slow"`, a few minutes): CI's fast-tests job.
	$(PYTHON) -m pytest -q -m "not slow" tests

test-slow: setup ## Only the slow tests (notebooks through papermill, killed processes): CI's slow-tests job.
	$(PYTHON) -m pytest -q -m slow tests

lint: setup ## ruff over everything, actionlint over .github/workflows/; notebook pairs match, commit no outputs; tables match their records.
	$(PYTHON) -m ruff check .
	$(VENV)/bin/actionlint -shellcheck=$(VENV)/bin/shellcheck .github/workflows/*.yml
	$(PYTHON) -m lib.run.pairing check
	$(PYTHON) tools/docs_tables.py --check

docs: setup ## Rewrite the results tables of README.md and docs/ from their records in docs/records/.
	$(PYTHON) tools/docs_tables.py

data: setup ## Find (or download) the dataset and check its layout; prints the image counts per split.
	$(PYTHON) -m lib.run.check_data

notebooks: setup ## Sync each notebook with its paired .py (the side you edited wins) and the Colab links.
	$(PYTHON) -m lib.run.pairing sync

tensorboard: setup ## Serve a run's TensorBoard logs on http://localhost:6006 (RUN=... required; PORT= moves it).
	@test -n "$$RUN" || { echo "Give the run: make tensorboard RUN=<name> (see outputs/)"; exit 2; }
	$(PYTHON) -m tensorboard.main --logdir "$${OUTPUTS_DIR:-outputs}/$$RUN" --host localhost --port "$${PORT:-6006}"

cache: setup ## List the cache: kind and size of each entry, and the runs that use it.
	$(PYTHON) -m lib.run.cache_commands

clean-cache: setup ## Remove the cache entries the suite made that no run uses (ALL=1: all it made); never a run.
	case "$$ALL" in 1|yes|true) $(PYTHON) -m lib.run.cache_commands --clean --all;; *) $(PYTHON) -m lib.run.cache_commands --clean;; esac

clean: ## Delete the runs and caches the suite made (marked) in OUTPUTS_DIR and CACHE_DIR; keep .venv.
	$(if $(wildcard $(PYTHON)),$(PYTHON),$(PYTHON_BASE)) -m lib.run.housekeeping clean
