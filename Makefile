# Two commands a new user needs: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CSV    ?= examples/transactions.csv

.PHONY: install test test-fast lint demo bench bench-pipeline profile-worker chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## the whole suite: unit, integration (real broker), end to end, a short SIGKILL chaos run
test: $(STAMP)
	$(BIN)/python -m pytest

## unit tests only (no broker, seconds)
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## the main job on the embedded broker: broker, 2 workers, produce, export (CSV=path)
demo: $(STAMP)
	$(BIN)/ledger-demo $(CSV)

bench: $(STAMP)
	$(BIN)/python -m bench.bench_process_csv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## the long chaos run: 10 runs of 300k rows, replicas SIGKILLed at random (CHAOS_SEED=n replays one)
chaos: $(STAMP)
	CHAOS_ROWS=$${CHAOS_ROWS:-300000} CHAOS_RUNS=$${CHAOS_RUNS:-10} $(BIN)/python -m pytest -m chaos tests/chaos/test_sigkill.py -s -q

## the Kafka pipeline benchmark (embedded broker): producer, 1 and 2 workers, end to end, ceiling
bench-pipeline: $(STAMP)
	$(BIN)/python -m bench.bench_pipeline

## where one worker's time goes (py-spy, all threads) while it catches up on 1M events
profile-worker: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.profile_worker
