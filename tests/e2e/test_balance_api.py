"""The balance API (processor.api) on real workers: right answers or "not now", never wrong.

Every answer carries `position`: the next input offset of the client's
partition that the state has not applied. An answer is *right* when it is
what the rules give for exactly the partition's events below `position`
(recomputed here from the topic itself, with the pure core), and *fresh*
when its position is at least what any answer finished before it was
asked showed (reads never go back in time), and at least what the group
had committed when it was asked.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from bench.workload import generate
from kafkaio.admin import committed_offsets, read_to_end
from kafkaio.settings import Settings
from ledger import Ledger, MalformedRow, format_amount
from ledger.keys import client_key, partition_for
from ledger.messages import row_from_message
from tests.helpers import run
from tests.pipeline import Pipeline, wait_until


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def owned(pipeline: Pipeline, worker: Any) -> set[int]:
    try:
        _code, body = get(pipeline.web_url(worker, "/readyz"))
    except OSError:
        return set()
    return set(body.get("partitions", ()))


def snapshot(csv_text: bytes) -> dict[int, dict[str, Any]]:
    rows = csv_text.decode().splitlines()[1:]
    found = {}
    for row in rows:
        client, available, held, total, locked = row.split(",")
        found[int(client)] = {
            "available": available,
            "held": held,
            "total": total,
            "locked": locked == "true",
        }
    return found


class Input:
    """The transactions topic as read back: each partition's events with their offsets."""

    def __init__(self, pipeline: Pipeline) -> None:
        settings = Settings.from_env(pipeline.env)
        self.partitions = pipeline.partitions
        self.events: dict[int, list[tuple[int, Any]]] = defaultdict(list)
        for message in read_to_end(
            pipeline.bootstrap,
            settings.transactions_topic,
            pipeline.partitions,
            settings.isolation_level,
        ):
            try:
                row = row_from_message(orjson.loads(message.value()))
            except (MalformedRow, orjson.JSONDecodeError):
                continue  # dead-lettered: changes nothing
            self.events[message.partition()].append((message.offset(), row))
        self._ledgers: dict[tuple[int, int], Ledger] = {}

    def rows(self) -> list[Any]:
        """Every event, each partition's in offset order (partitions share no client)."""
        return [row for p in sorted(self.events) for _offset, row in self.events[p]]

    def state_at(self, partition: int, position: int) -> Ledger:
        """What the rules give for the partition's events below `position`."""
        key = (partition, position)
        if key not in self._ledgers:
            ledger = Ledger()
            for offset, (kind, client, tx, amount) in self.events[partition]:
                if offset >= position:
                    break
                ledger.apply(kind, client, tx, amount)
            self._ledgers[key] = ledger
        return self._ledgers[key]

    def check(self, client: int, status: int, body: dict[str, Any]) -> None:
        """Assert an answer is right for the position it names (SPEC R11, R21)."""
        partition = partition_for(client_key(client), self.partitions)
        assert body["partition"] == partition, body
        account = self.state_at(partition, body["position"]).accounts.get(client)
        if status == 404:
            assert account is None, (body, account)
            return
        assert status == 200, body
        assert account is not None, body
        assert {k: body[k] for k in ("available", "held", "total", "locked")} == {
            "available": format_amount(account.available),
            "held": format_amount(account.held),
            "total": format_amount(account.total),
            "locked": account.locked,
        }, body


@dataclass
class Read:
    client: int
    started: float
    finished: float
    status: int
    body: dict[str, Any]


class Reader(threading.Thread):
    """Asks random workers for random clients' accounts, in a loop, until stopped."""

    def __init__(self, urls: list[str], clients: list[int]) -> None:
        super().__init__(daemon=True)
        self.urls = urls  # replaced by the test as workers come and go
        self.clients = clients
        self.reads: list[Read] = []
        self.unreachable = 0
        self.done = threading.Event()
        self.rng = random.Random(7)

    def run(self) -> None:
        while not self.done.is_set():
            client = self.rng.choice(self.clients)
            url = self.rng.choice(list(self.urls))
            started = time.monotonic()
            try:
                status, body = get(f"{url}/accounts/{client}")
            except OSError:  # a worker killed or not listening yet
                self.unreachable += 1
                time.sleep(0.05)
                continue
            self.reads.append(Read(client, started, time.monotonic(), status, body))


def assert_never_back_in_time(reads: list[Read]) -> None:
    """A read started after another finished shows at least that one's position."""
    by_partition: dict[int, list[Read]] = defaultdict(list)
    for read in reads:
        if read.status in (200, 404):
            by_partition[read.body["partition"]].append(read)
    for partition, answered in by_partition.items():
        finished = sorted(answered, key=lambda r: r.finished)
        for read in answered:
            before = [r.body["position"] for r in finished if r.finished < read.started]
            if before:
                assert read.body["position"] >= max(before), (partition, read)


@pytest.fixture
def workload(tmp_path: Path) -> tuple[Path, list[Path], list[int]]:
    """A dirty workload in three parts (published one after another), and its clients."""
    lines = list(generate(9_000, 300, seed=16, dirty=True))
    header, body = lines[0], lines[1:]
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.csv"
        part.write_text(header + "".join(body[i * 3_000 : (i + 1) * 3_000]))
        parts.append(part)
    whole = tmp_path / "whole.csv"
    whole.write_text(header + "".join(body))
    return whole, parts, list(range(1, 301))


def test_every_account_read_through_a_replica_that_does_not_own_it_equals_export_snapshot(
    pipeline: Pipeline, workload: tuple[Path, list[Path], list[int]]
) -> None:
    whole, _parts, clients = workload
    first, second = pipeline.start_worker(web=True), pipeline.start_worker(web=True)
    assert pipeline.produce(whole).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(whole).stdout  # the workers are right to begin with
    expected = snapshot(exported.stdout)

    def split() -> bool:
        a, b = owned(pipeline, first), owned(pipeline, second)
        return bool(a) and bool(b) and a | b == set(range(pipeline.partitions))

    wait_until(split, 120, "both workers to own partitions")
    mine = {first: owned(pipeline, first), second: owned(pipeline, second)}
    urls = {w: pipeline.web_url(w, "") for w in (first, second)}
    # The OpenAPI document the workers serve describes what they answer.
    schemas = get(f"{urls[first]}/openapi.json")[1]["components"]["schemas"]
    account_schema = Draft202012Validator(schemas["Account"])
    missing_schema = Draft202012Validator(schemas["Missing"])
    answered = 0
    for client in [*clients, 0, 65_535]:
        partition = partition_for(client_key(client), pipeline.partitions)
        owner = first if partition in mine[first] else second
        other = second if owner is first else first
        status, body = get(f"{urls[other]}/accounts/{client}")
        if client in expected:
            assert status == 200, (client, body)
            assert {k: body[k] for k in expected[client]} == expected[client], client  # R21
            assert body["served_by"] == urls[owner] and body["stale"] is False
            assert not list(account_schema.iter_errors(body)), body
            answered += 1
        else:  # never in the input: unknown to its owner
            assert status == 404, (client, body)
            assert not list(missing_schema.iter_errors(body)), body
    assert answered == len(expected)

    # A deposit, through the replica that does not own it (the pure core says what it is).
    ledger = Ledger()
    for kind, client, tx, amount in Input(pipeline).rows():
        ledger.apply(kind, client, tx, amount)
    for key, deposit in list(ledger.deposits.items())[:20]:
        client, tx = key >> 32, key & 0xFFFFFFFF
        partition = partition_for(client_key(client), pipeline.partitions)
        other = second if partition in mine[first] else first
        status, body = get(f"{urls[other]}/accounts/{client}/deposits/{tx}")
        if ledger.accounts[client].locked:
            continue  # a locked account's deposits are forgotten (state hygiene)
        assert status == 200, body
        assert body["amount"] == format_amount(deposit.amount)
        assert body["state"] == deposit.state.name.lower()

    # Not an id R4 allows: refused before anything is looked up.
    for bad in ("-1", "65536", "1e3", "%20"):
        assert get(f"{urls[first]}/accounts/{bad}")[0] == 400, bad

    # ledger-admin account: the same answer, from the command line, through either worker.
    client = next(iter(expected))
    shown = pipeline.run("ledger-admin", "account", str(client), "--url", urls[first])
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(shown.stdout)
    assert {k: answer[k] for k in expected[client]} == expected[client]
    key, deposit = next(
        (k, d) for k, d in ledger.deposits.items() if not ledger.accounts[k >> 32].locked
    )
    shown = pipeline.run(
        "ledger-admin", "account", str(key >> 32), "--tx", str(key & 0xFFFFFFFF),
        "--url", urls[second],
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["amount"] == format_amount(deposit.amount)
    unknown = pipeline.run("ledger-admin", "account", "65535", "--url", urls[first])
    assert unknown.returncode == 1 and b"unknown client" in unknown.stderr
    assert pipeline.run("ledger-admin", "account", "x1", "--url", urls[first]).returncode == 2


def test_during_rebalances_a_reader_gets_only_right_answers_or_503(
    pipeline: Pipeline, workload: tuple[Path, list[Path], list[int]]
) -> None:
    whole, parts, clients = workload
    first = pipeline.start_worker(web=True)
    pipeline.wait_ready(first)
    assert pipeline.produce(parts[0]).returncode == 0
    assert pipeline.export().returncode == 0
    reader = Reader([pipeline.web_url(first, "")], clients)
    reader.start()
    try:
        # A replica joins (one rebalance) while input flows...
        second = pipeline.start_worker(web=True)
        reader.urls = [pipeline.web_url(first, ""), pipeline.web_url(second, "")]
        assert pipeline.produce(parts[1]).returncode == 0
        wait_until(lambda: bool(owned(pipeline, second)), 120, "the new replica to own partitions")
        # ...and the first is killed (another, after the session timeout).
        pipeline.stop_worker(first, signal.SIGKILL)
        assert pipeline.produce(parts[2]).returncode == 0
        exported = pipeline.export()
        assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
        assert exported.stdout == run(whole).stdout
        time.sleep(1)
    finally:
        reader.done.set()
        reader.join(timeout=30)

    reads = reader.reads
    statuses = {r.status for r in reads}
    assert statuses <= {200, 404, 503}, statuses
    assert sum(r.status == 200 for r in reads) > 100, (len(reads), statuses)
    source = Input(pipeline)
    for read in reads:
        if read.status == 503:
            assert read.body["error"] == "not now" and read.body["reason"], read
        else:
            source.check(read.client, read.status, read.body)
    assert_never_back_in_time(reads)


def test_a_replica_frozen_past_its_session_does_not_answer_from_its_old_state(
    pipeline: Pipeline, workload: tuple[Path, list[Path], list[int]]
) -> None:
    _whole, parts, clients = workload
    pipeline.extra_env["LEDGER_STANDBY_REPLICAS"] = "0"
    first = pipeline.start_worker(web=True)
    pipeline.wait_ready(first)
    second = pipeline.start_worker(web=True)
    wait_until(
        lambda: bool(owned(pipeline, second)) and bool(owned(pipeline, first)),
        120,
        "both workers to own partitions",
    )
    assert pipeline.produce(parts[0]).returncode == 0
    assert pipeline.export().returncode == 0
    frozen = owned(pipeline, first)
    # A client of the frozen replica's partitions whose balance the next part changes.
    later = set()
    for line in parts[1].read_text().splitlines()[1:]:
        fields = line.split(",")
        if len(fields) > 1 and fields[1].strip().isdigit():
            later.add(int(fields[1]))
    client = next(
        c
        for c in clients
        if c in later and partition_for(client_key(c), pipeline.partitions) in frozen
    )
    partition = partition_for(client_key(client), pipeline.partitions)

    first.send_signal(signal.SIGSTOP)
    try:
        everything = set(range(pipeline.partitions))
        wait_until(lambda: owned(pipeline, second) == everything, 120, "the survivor to own all")
        assert pipeline.produce(parts[1]).returncode == 0
        assert pipeline.export().returncode == 0
        settings = Settings.from_env(pipeline.env)
        committed = committed_offsets(
            pipeline.bootstrap, settings.app_id, settings.transactions_topic, pipeline.partitions
        )[partition]
        # The question waits in the frozen replica's socket; it wakes up to it.
        answers: list[tuple[int, dict[str, Any]]] = []
        asking = threading.Thread(
            target=lambda: answers.append(get(pipeline.web_url(first, f"/accounts/{client}")))
        )
        asking.start()
        time.sleep(1)
    finally:
        first.send_signal(signal.SIGCONT)
    asking.join(timeout=30)
    assert answers, "no answer"
    status, body = answers[0]
    if status == 503:
        assert body["error"] == "not now"
    else:  # only if it is as fresh as what was committed before the question
        assert body["position"] >= committed, (committed, body)
        Input(pipeline).check(client, status, body)


@pytest.mark.kafka
def test_with_a_token_set_callers_need_it_and_a_standby_copy_answers_stale_reads_when_asked(
    pipeline: Pipeline, workload: tuple[Path, list[Path], list[int]], broker_engine: str
) -> None:
    if broker_engine != "kafka":
        pytest.skip("standbys follow the group's member list, which Tansu 0.6 does not give")
    whole, _parts, _clients = workload
    pipeline.extra_env["LEDGER_API_TOKEN"] = "t0ken-for-the-test"
    pipeline.extra_env["LEDGER_STANDBY_REPLICAS"] = "1"
    first, second = pipeline.start_worker(web=True), pipeline.start_worker(web=True)
    assert pipeline.produce(whole).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr
    expected = snapshot(exported.stdout)
    wait_until(
        lambda: bool(owned(pipeline, first)) and bool(owned(pipeline, second)),
        120,
        "both workers to own partitions",
    )
    client = next(iter(expected))
    partition = partition_for(client_key(client), pipeline.partitions)
    other = second if partition in owned(pipeline, first) else first
    url = pipeline.web_url(other, f"/accounts/{client}")
    auth = {"Authorization": "Bearer t0ken-for-the-test"}

    assert get(url)[0] == 401
    assert get(url, {"Authorization": "Bearer wrong"})[0] == 401
    status, body = get(url, auth)  # forwarded, the token with it
    assert status == 200 and body["stale"] is False, body
    assert body["served_by"] != pipeline.web_url(other, "")

    # ?stale=ok: the non-owner's standby copy answers, says so, and how far behind it is.
    seen: list[Any] = []

    def from_standby() -> bool:
        status, body = get(url + "?stale=ok", auth)
        seen[:] = [status, body]
        return status == 200 and body["stale"] is True and body["lag_records"] == 0

    try:
        wait_until(from_standby, 60, "the standby copy to catch up")
    except AssertionError as exc:
        raise AssertionError(f"last answer: {seen}") from exc
    status, body = get(url + "?stale=ok", auth)
    assert body["served_by"] == pipeline.web_url(other, "")
    assert {k: body[k] for k in expected[client]} == expected[client]
