# serobust: `make robustness` runs the study, `make test` runs the tests.
# Both bootstrap .venv when it is missing or pyproject.toml is newer than its stamp.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.serobust-installed
CONFIG ?= experiments/mnist.toml
JOBS ?=
PYTEST_ARGS ?=

.PHONY: robustness robustness-at test test-all lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# `make robustness CONFIG=` (empty) falls back to the default study; JOBS=N overrides execution.jobs
robustness: $(STAMP)
	$(VENV)/bin/serobust run $(or $(strip $(CONFIG)),experiments/mnist.toml) $(if $(strip $(JOBS)),--jobs $(JOBS))

# the adversarially trained twins on mnist5k (robust accuracy away from the floor, AutoAttack)
robustness-at: $(STAMP)
	$(VENV)/bin/serobust run experiments/mnist_at.toml $(if $(strip $(JOBS)),--jobs $(JOBS))

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check serobust tests benchmarks

# Removes generated reports and caches; never datasets or anything outside the project.
clean:
	rm -rf reports/*/ .pytest_cache .ruff_cache build dist *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -print | xargs rm -rf
