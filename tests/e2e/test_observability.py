"""A running worker's /metrics, /livez, /readyz and its `ledger.rejects` log lines.

Workers here serve Faust's web server on a free 127.0.0.1 port; the figures
they report are checked against `process-csv`'s summary for the same file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.workload import generate
from kafkaio.admin import ensure_topic
from tests.helpers import REPO_ROOT, run
from tests.pipeline import Pipeline

pytestmark = pytest.mark.kafka


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(url: str, status: int, timeout: float = 90) -> bytes:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            code, body = get(url)
            if code == status:
                return body
            last = (code, body)
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer {status} in {timeout:.0f}s; last: {last!r}")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    code, body = get(url)
    assert code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def summary_counts(csv: Path) -> dict[str, int]:
    """`process-csv`'s summary line as a dict: rows, applied, malformed and each reason."""
    line = run(csv, "--on-error", "silent").stderr.decode().strip().splitlines()[-1]
    assert line.startswith("summary: "), line
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_metrics_count_what_process_csv_counts_and_lag_drains_to_zero(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # R19
    csv = tmp_path / "in.csv"
    csv.write_text("".join(generate(4_000, 150, seed=21, dirty=True)))
    expected = summary_counts(csv)
    worker = pipeline.start_worker(web=True)
    metrics = pipeline.web_url(worker, "/metrics")
    wait_for(pipeline.web_url(worker, "/readyz"), 200)

    assert pipeline.produce(csv).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(csv).stdout

    # The agent counts a batch right after committing it: give it a moment.
    deadline = time.monotonic() + 30
    while scrape(metrics).get(("ledger_events_applied_total", ())) != expected["applied"]:
        assert time.monotonic() < deadline, scrape(metrics)
        time.sleep(0.3)
    samples = scrape(metrics)
    rejected = {
        dict(labels)["reason"]: int(value)
        for (name, labels), value in samples.items()
        if name == "ledger_events_rejected_total"
    }
    # produce-csv never publishes a malformed row: the worker sees the rest.
    reasons = {k: v for k, v in expected.items() if k not in {"rows", "applied", "malformed"}}
    assert rejected == {k: v for k, v in reasons.items() if v}
    assert samples[("ledger_events_dead_lettered_total", ())] == 0
    assert samples[("ledger_changelog_records_written_total", (("table", "accounts"),))] > 0
    assert samples[("ledger_changelog_records_written_total", (("table", "deposits"),))] > 0
    batches = samples[("ledger_batches_committed_total", ())]
    assert batches >= 1
    assert samples[("ledger_batch_duration_seconds_count", ())] == batches

    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    deadline = time.monotonic() + 30
    while True:  # the highwater comes from the next fetch response
        lag = {
            dict(labels)["partition"]: value
            for (name, labels), value in scrape(metrics).items()
            if name == "ledger_consumer_lag" and dict(labels)["topic"] == topic
        }
        if sorted(lag) == [str(p) for p in range(pipeline.partitions)] and not any(lag.values()):
            break
        assert time.monotonic() < deadline, f"lag per partition: {lag}"
        time.sleep(0.3)
    assert json.loads(get(pipeline.web_url(worker, "/livez"))[1]) == {"live": True}


def test_readyz_is_200_for_the_owner_and_503_with_a_reason_for_a_surplus_replica(
    pipeline_factory: Any,
) -> None:
    pipeline = pipeline_factory.new(partitions=1)
    ensure_topic(pipeline.bootstrap, pipeline.env["LEDGER_TRANSACTIONS_TOPIC"], 1)
    first = pipeline.start_worker(web=True)
    body = json.loads(wait_for(pipeline.web_url(first, "/readyz"), 200))
    assert body == {
        "ready": True,
        "reason": "ready",
        "partitions": [0],
        "recovered": True,
        "rebalancing": False,
        "restoring": {},  # no restore running: nothing left to read
    }
    second = pipeline.start_worker(web=True)
    wait_for(pipeline.web_url(second, "/livez"), 200)
    # One partition, two replicas: once the rebalance is over, exactly one owns it.
    deadline = time.monotonic() + 90
    while True:
        answers = [get(pipeline.web_url(w, "/readyz")) for w in (first, second)]
        states = sorted((code, json.loads(body)["reason"]) for code, body in answers)
        if states == [(200, "ready"), (503, "no partitions assigned")]:
            break
        assert time.monotonic() < deadline, answers
        time.sleep(0.3)
    idle = next(json.loads(body) for code, body in answers if code == 503)
    assert idle["partitions"] == [] and idle["recovered"] and not idle["rebalancing"]

    # compose.yaml's healthcheck command, pointed at these workers' ports.
    outcomes = sorted(compose_healthcheck(pipeline.web_ports[w.pid]) for w in (first, second))
    assert outcomes == [0, 1]


def compose_healthcheck(port: int) -> int:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    _cmd, _python, flag, code = compose["services"]["worker"]["healthcheck"]["test"]
    code = code.replace("127.0.0.1:6066", f"127.0.0.1:{port}")
    return subprocess.run([sys.executable, flag, code], capture_output=True).returncode


def _send(pipeline: Pipeline, values: list[bytes]) -> list[tuple[int, int]]:
    """Publish under one key; (partition, offset) of each, in order."""
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ensure_topic(pipeline.bootstrap, topic, pipeline.partitions)
    producer = pipeline.producer()
    where: list[tuple[int, int]] = []
    for value in values:
        producer.produce(
            topic,
            key=b"5",
            value=value,
            on_delivery=lambda err, msg: where.append((msg.partition(), msg.offset())),
        )
        producer.flush(30)
    assert len(where) == len(values)
    return where


def _tx(kind: str, tx: int, amount: int | None = None) -> bytes:
    message: dict[str, Any] = {"type": kind, "client": 5, "tx": tx, "line": tx}
    if amount is not None:
        message["amount"] = amount
    return orjson.dumps(message)


def _line(log: str, event: str, topic: str, partition: int, offset: int) -> str | None:
    pattern = re.compile(
        rf"^ts=\S+ level=\w+ logger=ledger\.rejects event={event} topic={re.escape(topic)} "
        rf"partition={partition} offset={offset} reason=\w+.*$",
        re.M,
    )
    found = pattern.search(log)
    return found.group(0) if found else None


def test_each_rejected_row_and_dead_letter_gives_one_key_value_line_quiet_by_default(
    pipeline: Pipeline,
) -> None:  # R19
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    # Default levels: the dead letter is logged (WARNING), the rejected row is not (INFO).
    first = pipeline.start_worker()
    (deposit, refused, poison) = _send(
        pipeline, [_tx("deposit", 1, 10_000), _tx("withdrawal", 2, 10**9), b"not json"]
    )
    assert pipeline.export().returncode == 0
    assert pipeline.stop_worker(first) == 0
    log = pipeline.logs()
    dead = _line(log, "dead_lettered", topic, *poison)
    assert dead and "level=warning" in dead and "reason=malformed" in dead, log
    assert _line(log, "rejected", topic, *refused) is None, log
    assert "event=" not in log.replace(dead, ""), "one line per message, nothing per batch"

    # LEDGER_REJECTS_LOG_LEVEL=info turns the rejected-row lines on.
    pipeline.extra_env["LEDGER_REJECTS_LOG_LEVEL"] = "info"
    pipeline.start_worker()
    (refused_again, poison_again) = _send(pipeline, [_tx("dispute", 77), b"\xff"])
    assert pipeline.export().returncode == 0
    log = pipeline.logs()
    rejected = _line(log, "rejected", topic, *refused_again)
    assert rejected and "level=info" in rejected and "reason=unknown_tx" in rejected, log
    assert "client=5 tx=77" in rejected
    assert _line(log, "dead_lettered", topic, *poison_again), log
    assert deposit[1] < refused[1]


def _non_loopback_address() -> str | None:
    """An address of this host other than 127.0.0.0/8, if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent (UDP connect)
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_the_web_server_listens_on_loopback_only_and_serves_none_of_fausts_built_in_pages(
    pipeline: Pipeline,
) -> None:  # issue 14: web surface
    worker = pipeline.start_worker(web=True)
    wait_for(pipeline.web_url(worker, "/readyz"), 200)
    # Faust's /table (table contents), /router (forwarding), /graph, /stats:
    # not served. Unknown paths get aiohttp's short 404, no traceback.
    for path in ("/table/", "/table/accounts/", "/router/", "/graph/", "/stats/", "/nope"):
        code, body = get(pipeline.web_url(worker, path))
        assert code == 404, (path, code, body[:200])
        assert b"Traceback" not in body
    # LEDGER_WEB_BIND defaults to 127.0.0.1: not reachable on another address.
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback address to try the bind from")
    port = pipeline.web_ports[worker.pid]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{address}:{port}/livez", timeout=5)


def test_from_its_first_answer_to_ready_the_web_server_never_shows_a_traceback_or_a_500(
    pipeline: Pipeline,
) -> None:  # issue 14: "before start-up it answers 500 with a traceback"
    worker = pipeline.start_worker(web=True)
    # Faust's table and router views too (off now): they routed a key
    # through the assignment, which does not exist before start-up.
    paths = (
        "/livez",
        "/readyz",
        "/metrics",
        "/",
        "/table/",
        "/table/accounts/",
        "/table/accounts/1/",
        "/router/",
        "/router/accounts/",
        "/router/accounts/1/",
    )
    seen: dict[tuple[str, int], bytes] = {}
    deadline = time.monotonic() + 90
    ready = False
    while not ready and time.monotonic() < deadline:
        for path in paths:
            try:
                code, body = get(pipeline.web_url(worker, path))
            except OSError:  # not listening yet
                continue
            seen.setdefault((path, code), body)
            ready = ready or (path == "/readyz" and code == 200)
        time.sleep(0.02)
    assert ready, (seen.keys(), pipeline.logs())
    # Answers a probe may get while the worker starts: alive, not ready
    # yet (503 with a reason), metrics, and 404 for what is not served.
    for (path, code), body in seen.items():
        assert code in (200, 404, 503), (path, code, body[:300])
        assert b"Traceback" not in body and b'File "' not in body, (path, body[:300])
    assert ("/readyz", 503) in seen, "never saw the worker before it was ready"


def test_with_producer_debug_on_a_worker_logs_its_transactions_round_trips_for_txn_anatomy(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """LEDGER_PRODUCER_DEBUG reaches the transactional producers; bench.txn_anatomy reads it."""
    csv = tmp_path / "in.csv"
    csv.write_text("".join(generate(2_000, 50, 5, dirty=False)))
    pipeline.extra_env["LEDGER_PRODUCER_DEBUG"] = "eos,protocol"
    worker = pipeline.start_worker()
    assert pipeline.produce(csv).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == run(csv).stdout
    assert pipeline.stop_worker(worker) == 0, pipeline.logs()
    logs = sorted(str(p) for p in pipeline.workdir.glob("worker-*.log"))
    anatomy = subprocess.run(
        [sys.executable, "-m", "bench.txn_anatomy", *logs],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # A batch's transactions were committed, each with its requests counted.
    committed = re.search(r"^([\d,]+) transactions: ([\d.]+) AddPartitionsToTxn", anatomy, re.M)
    assert committed, anatomy
    assert int(committed.group(1).replace(",", "")) >= 1
    assert float(committed.group(2)) >= 1.0
    assert re.search(r"^\| Produce \| [\d,]+ \|", anatomy, re.M), anatomy
