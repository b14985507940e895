# Two commands a new user needs: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CSV    ?= examples/transactions.csv
# tansu (embedded, in memory) or kafka (Apache Kafka from Maven Central jars, cached outside the clone)
BROKER ?= tansu

.PHONY: install lock kafka-jars test test-fast fuzz test-security lint demo bench bench-pipeline bench-latency bench-state bench-ingest profile-worker chaos chaos-broker chaos-zombies chaos-netcut chaos-ingest clean

# Exact versions with hashes (requirements.lock), then the project itself.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## rebuild requirements.lock and deploy/requirements.lock from the versions in .venv (with uv)
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^uv==' > $(VENV)/constraints.txt
	$(BIN)/uv pip compile pyproject.toml --extra test --extra dev --generate-hashes --no-header \
	  --constraint $(VENV)/constraints.txt --python-version 3.11 -q -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --no-header \
	  --constraint $(VENV)/constraints.txt --python-version 3.11 -q -o deploy/requirements.lock

install: $(STAMP)

## the Apache Kafka jars from Maven Central, into ~/.cache/kafka-ledger (LEDGER_KAFKA_CACHE); once
kafka-jars: $(STAMP)
	$(BIN)/local-broker --engine kafka --prepare

## the whole suite: unit, then integration, end to end and short chaos runs on Tansu and on
## Apache Kafka (LEDGER_TEST_BROKER=tansu|kafka|both; Kafka is skipped, with the reason, where
## Java 17+ or Maven is missing, except under CI=true)
test: $(STAMP)
	-$(BIN)/local-broker --engine kafka --prepare
	$(BIN)/python -m pytest

## unit tests only (no broker, seconds)
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## the fuzz targets, long: message decoder, CSV row parser, line reader, fused loop (FUZZ_EXAMPLES)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100000} $(BIN)/python -m pytest -q tests/unit/test_message_fuzz.py tests/unit/test_parsing.py tests/unit/test_lines.py tests/unit/test_fused.py

## security on Apache Kafka alone: SASL_SSL (SCRAM), mTLS, ACLs per role, the web surface, hostile input
test-security: $(STAMP) kafka-jars
	LEDGER_TEST_BROKER=kafka $(BIN)/python -m pytest -q tests/e2e/test_secure_clients.py tests/e2e/test_observability.py tests/e2e/test_poison_messages.py tests/e2e/test_process_csv_hostile_input.py tests/unit/test_security.py tests/unit/test_message_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## the main job on the embedded broker: broker, 2 workers, produce, export (CSV=path)
demo: $(STAMP)
	$(BIN)/ledger-demo --broker $(BROKER) $(CSV)

bench: $(STAMP)
	$(BIN)/python -m bench.bench_process_csv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## the long chaos run: 10 runs of 300k rows, replicas SIGKILLed at random (CHAOS_SEED=n replays one)
chaos: $(STAMP)
	CHAOS_ROWS=$${CHAOS_ROWS:-300000} CHAOS_RUNS=$${CHAOS_RUNS:-10} $(BIN)/python -m pytest -m chaos tests/chaos/test_sigkill.py -s -q

## Apache Kafka kill -9 at random moments: 10 seeds (BROKER_CHAOS_SEED=n replays one)
chaos-broker: $(STAMP) kafka-jars
	BROKER_CHAOS_RUNS=$${BROKER_CHAOS_RUNS:-10} $(BIN)/python -m pytest -m chaos tests/chaos/test_broker_faults.py -k killed -s -q

## zombies on Apache Kafka: replicas SIGSTOPped past their session timeout, 10 seeds (ZOMBIE_SEED=n replays one)
chaos-zombies: $(STAMP) kafka-jars
	LEDGER_TEST_BROKER=kafka ZOMBIE_RUNS=$${ZOMBIE_RUNS:-10} $(BIN)/python -m pytest -m chaos tests/chaos/test_zombies.py -s -q

## 10 runs on Apache Kafka: a replica's network link cut (network namespaces; needs root)
chaos-netcut: $(STAMP) kafka-jars
	LEDGER_TEST_BROKER=kafka NETCUT_RUNS=$${NETCUT_RUNS:-10} $(BIN)/python -m pytest -m chaos tests/chaos/test_network_cut.py -s -q

## 10 runs on Apache Kafka: produce-csv killed -9 at random moments, re-run until it completes
chaos-ingest: $(STAMP) kafka-jars
	LEDGER_TEST_BROKER=kafka INGEST_KILL_RUNS=$${INGEST_KILL_RUNS:-10} $(BIN)/python -m pytest -m chaos tests/chaos/test_ingest_kill.py -s -q

## the Kafka pipeline benchmark: producer, 1 and 2 workers, end to end, ceiling (BROKER=tansu|kafka|"tansu kafka")
bench-pipeline: $(STAMP)
	$(BIN)/python -m bench.bench_pipeline --broker $(BROKER)

## end-to-end latency (produce -> visible to a read_committed reader), p50/p99 at 1k, 10k, 50k events/s
bench-latency: $(STAMP)
	$(BIN)/python -m bench.bench_latency --broker $(BROKER)

## the local state at N deposits: processing, RSS, restart, cold restore, failover (Apache Kafka)
bench-state: $(STAMP) kafka-jars
	$(BIN)/python -m bench.bench_state --broker kafka

## produce-csv with the ingestion journal against without it (BROKER=kafka|tansu)
bench-ingest: $(STAMP)
	$(BIN)/python -m bench.bench_ingest --broker $(if $(filter tansu,$(BROKER)),tansu,kafka)

## where one worker's time goes (py-spy, all threads) while it catches up on 1M events
profile-worker: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.profile_worker
