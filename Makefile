# The few commands people type. Each bootstraps .venv from the lock file when it is
# missing or older than requirements.lock / pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export RANKING_HOME ?= $(CURDIR)/.ranking

.PHONY: demo test test-slow test-faults test-services test-shared test-scale test-loops lint format bench bench-quality bench-retrieval bench-drift lock clean venv

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet -p $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --quiet -p $(BIN)/python --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/ranking demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

# kill -9 at every stage boundary with a rerun, readers during writers, and the ingest
# fuzz at 10,000 generated files (the default suite runs 200).
test-faults: $(STAMP)
	$(BIN)/pytest -m faults tests/faults
	RANKING_FUZZ_EXAMPLES=10000 $(BIN)/pytest tests/code/ingest/test_fuzz.py

# The team way to schedule on real services (127.0.0.1, a throwaway PREFECT_HOME):
# prefect server start, a process work pool, prefect deploy --all, a worker, one run.
# And the three UIs (Feast, MLflow, Prefect) started on free ports as `ranking ui` says.
test-services: $(STAMP)
	$(BIN)/pytest -m services -s tests/services tests/e2e/test_uis.py

# The partitioned feature build through the features flow on a Dask LocalCluster, and
# the ranker fitted by xgboost.dask on one.
test-scale: $(STAMP)
	$(BIN)/pytest -m scale tests

# Whole loops: four generated logs of different shapes from ingest to a champion with
# default settings, and the simulated audience's rounds through the flows (about 6 min).
test-loops: $(STAMP)
	$(BIN)/pytest -m loops tests

# The shared profile on real services: infra/services.sh starts Redis, PostgreSQL and a
# Prefect server on free ports in a throwaway folder, the e2e loop runs on them, then
# they stop (skipped, saying why, without redis-server or PostgreSQL's binaries).
test-shared: $(STAMP)
	$(BIN)/pytest -m shared -s tests/shared

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py --events 1000000

bench-quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py --events ../shared/data/ml-latest-small --seeds 3

bench-retrieval: $(STAMP)
	$(BIN)/python benchmarks/retrieval_latency.py --events 300000

bench-drift: $(STAMP)
	$(BIN)/python benchmarks/drift_false_alarms.py --seeds 20

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock

clean:
	rm -rf $(RANKING_HOME)
