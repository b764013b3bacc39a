# One obvious command per job; `make help` lists them.
# Every target creates or reuses .venv and installs exactly what it needs (serving needs no TensorFlow).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.DEFAULT_GOAL := help
.PHONY: help serve test test-fast lint train export bench clean
.PHONY: loadtest overload soak docker-smoke backtest quality

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

# Rolling-origin backtest through the service (started on 127.0.0.1 for the run) against naive,
# seasonal naive and AutoETS; the defaults fit the CTA models (cta_rail, cta_rail_multi).
.PHONY: backtest
BACKTEST_DATA ?= data/cta/CTA_-_Ridership_-_Daily_Boarding_Totals.csv
BACKTEST_ARGS ?= --date-column service_date --target rail_boardings --start 2019-06-01 --end 2020-02-29 --stride 7
backtest: $(VENV)/.dev ## backtest models/NAME through the service vs baselines: make backtest NAME=cta_rail (docs/quality/NAME.md)
	@test -n "$(NAME)" || { echo "usage: make backtest NAME=<folder in models/> [BACKTEST_DATA=file.csv BACKTEST_ARGS='--date-column ... --start ... --end ...']"; exit 2; }
	$(PY) -m training backtest --model models/$(NAME) --data $(BACKTEST_DATA) $(BACKTEST_ARGS) --out docs/quality/$(NAME).md

quality: $(VENV)/.dev ## train the documented models on public series and backtest them through the service (about an hour): docs/quality/*.md
	DATA=$(or $(DATA),../shared/data/realworld) PY=$(PY) bash docs/quality/reproduce.sh

$(VENV)/.load: pyproject.toml $(VENV)/.serve
	$(PIP) install -e '.[cpu,load]'
	@touch $@

# wrk is the load generator of `make bench` (Debian/Ubuntu package; oha is not on PyPI or Debian).
WRK := $(shell command -v wrk)
bench: $(VENV)/.serve ## service (batching on/off) vs two anchors, every model, c=1/16/64 under wrk (about 9 min): bench-results/latest.md
	@test -n "$(WRK)" || { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends wrk; }
	$(PY) -m bench.run $(BENCH_ARGS)

loadtest: $(VENV)/.load ## locust mix against a running service: make loadtest HOST=http://127.0.0.1:8000
	$(VENV)/bin/locust -f loadtest/locustfile.py --headless -u 16 -r 8 -t 30s --only-summary \
		--host $(or $(HOST),http://127.0.0.1:8000)

overload: $(VENV)/.serve ## 4x capacity on its own service (max_in_flight 8, ~1 min): accepted p99 < 1 s, quick 503s, flat RSS
	$(PY) -m loadtest.overload $(OVERLOAD_ARGS)

SOAK_SECONDS ?= 600
soak: $(VENV)/.load ## mixed load on its own service for SOAK_SECONDS (600): RSS growth < 10%, 0 unexpected answers
	$(PY) -m loadtest.soak --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

docker-smoke: ## build the images, serve, forecast, train a tiny model into a copy of models/, down
	bash docker/smoke.sh

clean: ## remove caches (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
