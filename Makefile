# One obvious command per job; `make help` lists them.
# Every target creates or reuses .venv and installs exactly what it needs (serving needs no TensorFlow).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.DEFAULT_GOAL := help
.PHONY: help serve test test-fast lint train export bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Stamps record what was installed into .venv, so repeated targets reuse it.
$(VENV)/.serve: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e '.[cpu]'
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.serve
	$(PIP) install -e '.[cpu,dev,train]'
	@touch $@

serve: $(VENV)/.serve ## run the API on the shipped models (FORECAST_HOST/PORT/WORKERS/... honoured)
	$(PY) -m service

lint: $(VENV)/.dev ## ruff check, ruff format --check, mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint ## lint, then the whole suite including the slow TensorFlow tests (what CI runs)
	$(PY) -m pytest

test-fast: $(VENV)/.dev ## the suite without the slow TensorFlow tests
	$(PY) -m pytest -m 'not slow'

train: $(VENV)/.dev ## train and export the shipped synthetic models into models/ (about 25 min on 2 cores)
	$(PY) -m training train --model lstm --data synthetic --horizon 10 --epochs 60
	$(PY) -m training train --model gru --data synthetic --horizon 10 --epochs 60
	$(PY) -m training train --model wavenet --data synthetic --horizon 10 --epochs 80

export: $(VENV)/.dev ## re-export a trained run (runs/NAME, written by train) into models/NAME: make export NAME=lstm
	@test -n "$(NAME)" || { echo "usage: make export NAME=<name of a folder in runs/>"; exit 2; }
	$(PY) -m training export --run runs/$(NAME) --out models/$(NAME)

clean: ## remove caches (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
