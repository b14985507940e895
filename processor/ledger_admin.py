"""`ledger-admin`: look at a deployment (`status`, `account`) and rebuild its state (`rebuild`).

The ledger's state is a function of the `transactions` topic alone: the
tables are the changelogs, and the changelogs are what the workers wrote
while applying `transactions` from its start. So a rebuild is: stop the
workers, empty the two changelogs, move the group's committed offsets back
to the start of `transactions`, start the workers. They recover empty
tables and apply everything again, with the same result (the rules are
deterministic and per-client order is the topic's order).

`faust -A processor reset` is no substitute: it deletes a worker's *local*
table files, which for the `memory://` store we use do not exist; it touches
neither the changelog topics nor the committed offsets, so a worker started
after it recovers exactly the state it had.

Everything here speaks the Kafka admin protocol through confluent-kafka and
works on Kafka and on Tansu (kafkaio.admin says where they differ).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, NoReturn

import click
from confluent_kafka import KafkaException, Producer

from kafkaio.acls import ROLES, kafka_acls_commands
from kafkaio.acls import create as create_acls
from kafkaio.admin import (
    GroupState,
    admin_client,
    committed_offsets,
    copy_topic,
    end_offsets,
    group_state,
    join_refused,
    latest_value,
    partition_count,
    recreate_topic,
    set_group_offsets,
    start_offsets,
)
from kafkaio.errors import KafkaIOError, TopicMissing
from kafkaio.settings import CHANGELOG_CONFIG, Settings
from processor.state import decode_position, encode_position, position_key
from producers.csv_producer import producer_config
from producers.journal import read_journal
from runner.console import run_console_script
from runner.kafka_options import kafka_security_options

#: Exit code of `rebuild` while the worker group still has members: stop the workers first.
EXIT_WORKERS_RUNNING = 4
#: Exit codes of `account`: no such client or deposit (as of the answer's
#: position); still "not now" (503) when --wait ran out (sysexits'
#: EX_TEMPFAIL: ask again later); no worker answered (EX_UNAVAILABLE);
#: the token was refused (EX_NOPERM).
EXIT_NOT_FOUND = 1
EXIT_NOT_NOW = 75
EXIT_NO_WORKER = 69
EXIT_REFUSED = 77
TABLES = ("accounts", "deposits")
INGEST_COLUMNS = (
    "source", "name", "run", "lines", "rows", "malformed", "state", "started", "updated",
    "offsets",
)  # fmt: skip


def _settings(bootstrap_servers: str | None, app_id: str | None) -> Settings:
    return Settings.from_env(bootstrap_servers=bootstrap_servers, app_id=app_id)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = kafka_security_options(fn)
    fn = click.option("--app-id", help="Overrides LEDGER_APP_ID (the worker group).")(fn)
    return click.option("--bootstrap-servers", help="Overrides KAFKA_BOOTSTRAP_SERVERS.")(fn)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"ledger-admin: {message}", err=True)
    sys.exit(code)


def wait_idle(bootstrap: str, group: str, topic: str, timeout: float) -> GroupState:
    """The group's state once idle, or as it is at `timeout`.

    A worker stopped a moment ago may still count: the broker drops a member
    that did not leave cleanly only after the session timeout
    (LEDGER_SESSION_TIMEOUT). Where the broker lists no members (Tansu),
    its state is refreshed by a join attempt (kafkaio.admin.join_refused).
    """
    deadline = time.monotonic() + timeout
    while True:
        state = group_state(bootstrap, group)
        if state.idle:
            return state
        if state.members == 0 and not join_refused(bootstrap, group, topic):
            return GroupState("EMPTY", 0)
        if time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _describe(group: str, state: GroupState) -> str:
    # Tansu lists no members even for an active group: then only the state says.
    return f"group {group!r}: state={state.state} members={state.members}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operate the ledger: `status`, `rebuild` of all state, `ingest` journal, role `acls`."""


@cli.command()
@click.option("--bootstrap-servers", help="Overrides KAFKA_BOOTSTRAP_SERVERS.")
@click.option("--topic", help="Overrides LEDGER_TRANSACTIONS_TOPIC.")
@kafka_security_options
def ingest(bootstrap_servers: str | None, topic: str | None) -> None:
    """What produce-csv published, one line per input (the ingestion journal).

    An input is a file's content (sha256) or a stdin source id; `run` counts
    its publications (more than 1 only with --force); `offsets` are, per
    partition, the range of the input topic holding the run's rows.
    """
    try:
        settings = Settings.from_env(bootstrap_servers=bootstrap_servers, transactions_topic=topic)
        try:
            partition_count(settings.bootstrap_servers, settings.journal_topic, timeout=2)
        except TopicMissing:
            click.echo(f"no journal yet: topic {settings.journal_topic!r} does not exist")
            return
        entries = read_journal(
            settings.bootstrap_servers, settings.journal_topic, settings.isolation_level
        )
    except KafkaIOError as exc:
        _fail(str(exc))
    click.echo("\t".join(INGEST_COLUMNS))
    for e in sorted(entries.values(), key=lambda e: (e.started, e.source)):
        offsets = " ".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(e.offsets.items()))
        state = "complete" if e.complete else "unfinished"
        fields = [e.source, e.name, str(e.run), str(e.lines), str(e.rows), str(e.malformed)]
        fields += [state, e.started, e.updated, offsets or "-"]
        click.echo("\t".join(fields))


@cli.command()
@click.argument("role", type=click.Choice(ROLES))
@click.option("--principal", required=True, help="Who gets the rights, e.g. User:ingest.")
@click.option(
    "--apply",
    is_flag=True,
    help="Create the ACLs on the broker (KAFKA_BOOTSTRAP_SERVERS, as a principal allowed "
    "to alter ACLs); without it, print them as kafka-acls.sh commands.",
)
@click.option("--app-id", help="Overrides LEDGER_APP_ID (the worker group).")
@kafka_security_options
def acls(role: str, principal: str, apply: bool, app_id: str | None) -> None:
    """The least-privilege ACLs of ROLE (producer, worker, exporter) for PRINCIPAL.

    Names come from the settings (topics, app id), as the role's processes
    will use them: run it with their environment.
    """
    try:
        settings = Settings.from_env(app_id=app_id)
        if apply:
            create_acls(admin_client(settings.bootstrap_servers), role, settings, principal)
            click.echo(f"created the {role} ACLs for {principal}")
            return
    except KafkaIOError as exc:
        _fail(str(exc))
    except KafkaException as exc:
        _fail(f"cannot create the ACLs: {exc.args[0].str()}")
    for line in kafka_acls_commands(role, settings, principal):
        click.echo(line)


@cli.command()
@_common
@click.option(
    "--state",
    "show_state",
    is_flag=True,
    help="Also each partition's state: its position (the next input offset it has not "
    "applied) and its changelogs' ends, the most records a cold restore reads. Reads the "
    "accounts changelog's last records (needs Read on it).",
)
def status(bootstrap_servers: str | None, app_id: str | None, show_state: bool) -> None:
    """Group state, committed offsets against partition ends (lag), changelogs."""
    try:
        settings = _settings(bootstrap_servers, app_id)
        bootstrap, topic = settings.bootstrap_servers, settings.transactions_topic
        state = group_state(bootstrap, settings.app_id)
        partitions = partition_count(bootstrap, topic, timeout=2)
        ends = end_offsets(bootstrap, topic, partitions, by_reading=settings.ends_by_reading)
        done = committed_offsets(bootstrap, settings.app_id, topic, partitions)
        changelogs = {}
        for table in TABLES:
            name = settings.changelog_topic(table)
            try:
                changelogs[name] = str(partition_count(bootstrap, name, timeout=2))
            except TopicMissing:
                changelogs[name] = "missing"
    except KafkaIOError as exc:
        _fail(str(exc))
    click.echo(_describe(settings.app_id, state))
    click.echo(f"topic {topic!r}: {partitions} partitions")
    click.echo("partition  committed        end        lag")
    total = 0
    for p in range(partitions):
        committed = done.get(p, -1)
        lag = ends[p] - max(committed, 0)
        total += lag
        shown = str(committed) if committed >= 0 else "-"
        click.echo(f"{p:>9} {shown:>10} {ends[p]:>10} {lag:>10}")
    click.echo(f"total lag: {total}")
    for name, count in changelogs.items():
        click.echo(f"changelog {name!r}: {count} partitions")
    if show_state:
        try:
            _state_status(settings, partitions)
        except KafkaIOError as exc:
            _fail(str(exc))


def _state_status(settings: Settings, partitions: int) -> None:
    """Per partition: the state's position, and the changelogs' ends (restore work, cold)."""
    bootstrap = settings.bootstrap_servers
    accounts, deposits = (settings.changelog_topic(t) for t in TABLES)
    ends = {
        topic: end_offsets(bootstrap, topic, partitions, by_reading=settings.ends_by_reading)
        for topic in (accounts, deposits)
    }
    click.echo("partition   position  accounts-changelog-end  deposits-changelog-end")
    for p in range(partitions):
        raw = latest_value(bootstrap, accounts, p, position_key(p), settings.isolation_level)
        position = str(decode_position(raw)) if raw is not None else "-"
        click.echo(f"{p:>9} {position:>10} {ends[accounts][p]:>23} {ends[deposits][p]:>23}")


@cli.command()
@_common
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the group to have no members before refusing (exit 4).",
)
@click.option(
    "--to-topic",
    help="First copy the input into this new topic (with --partitions), and rebuild from it.",
)
@click.option(
    "--partitions",
    type=int,
    help="With --to-topic: the new topic's partition count (default LEDGER_PARTITIONS).",
)
def rebuild(
    bootstrap_servers: str | None,
    app_id: str | None,
    yes: bool,
    timeout: float,
    to_topic: str | None,
    partitions: int | None,
) -> None:
    """Rebuild all state from the input topic. The workers must be stopped.

    Empties the changelogs `<app id>-accounts-changelog` and
    `<app id>-deposits-changelog` (delete and create again) and sets the
    group's committed offsets to the start of the input topic; the next
    workers apply every transaction again. With --to-topic, the input is
    first copied, record by record, into a new topic with --partitions
    partitions (clients are hashed anew), and the state is rebuilt for it.
    Exit 4: the group still has members (workers are running).
    """
    try:
        settings = _settings(bootstrap_servers, app_id)
        bootstrap, group = settings.bootstrap_servers, settings.app_id
        state = wait_idle(bootstrap, group, settings.transactions_topic, timeout)
        if not state.idle:
            _fail(
                f"{_describe(group, state)} after {timeout:.0f}s: workers are running; "
                "stop every worker of this app id first (a running worker would write "
                "its old state back)",
                EXIT_WORKERS_RUNNING,
            )
        source = settings.transactions_topic
        topic = to_topic or source
        if to_topic is None and partitions is not None:
            _fail("--partitions changes the layout: give --to-topic NEW_TOPIC as well")
        if to_topic is not None:
            partitions = partitions or settings.partitions
            try:
                partition_count(bootstrap, to_topic, timeout=1)
                _fail(f"topic {to_topic!r} exists already: --to-topic needs a new topic")
            except TopicMissing:
                pass
        else:
            partitions = partition_count(bootstrap, source, timeout=2)
        changelogs = [settings.changelog_topic(table) for table in TABLES]
        if not yes:
            plan = ""
            if to_topic is not None:
                plan = f"copy {source!r} to a new topic {topic!r} ({partitions} partitions), "
            click.confirm(
                f"This will {plan}delete and recreate {', '.join(changelogs)} and reset "
                f"group {group!r} to the start of {topic!r}. Continue?",
                abort=True,
                err=True,
            )
        if to_topic is not None:
            recreate_topic(bootstrap, to_topic, partitions, settings.replication_factor, {})
            copied = copy_topic(bootstrap, source, to_topic, Producer(producer_config(settings)))
            click.echo(f"copied {copied} records from {source!r} to {to_topic!r}", err=True)
        starts = start_offsets(bootstrap, topic, partitions)
        # Again, right before the reset: a worker may have been started meanwhile.
        state = wait_idle(bootstrap, group, settings.transactions_topic, 0)
        if not state.idle:
            _fail(
                f"{_describe(group, state)}: a worker joined; nothing was reset",
                EXIT_WORKERS_RUNNING,
            )
        set_group_offsets(bootstrap, group, topic, starts)
        for name in changelogs:
            recreate_topic(
                bootstrap, name, partitions, settings.replication_factor, CHANGELOG_CONFIG
            )
        write_positions(settings, changelogs[0], starts)
    except KafkaIOError as exc:
        _fail(str(exc))
    offsets = " ".join(f"{p}:{o}" for p, o in sorted(starts.items()))
    click.echo(f"group {group!r} reset to the start of {topic!r} (partition:offset) {offsets}")
    click.echo(f"changelogs recreated empty, positions at the log start: {', '.join(changelogs)}")
    if to_topic is not None:
        click.echo(
            f"now run every worker, producer and exporter with "
            f"LEDGER_TRANSACTIONS_TOPIC={to_topic} LEDGER_PARTITIONS={partitions}"
        )
    click.echo(
        "start the workers: they apply every transaction again. The rejected and "
        "dead-letter topics receive the replay's entries once more (same source offsets)."
    )


def write_positions(settings: Settings, changelog: str, starts: dict[int, int]) -> None:
    """The rebuilt state's positions: the log start of each input partition.

    Said explicitly, in the state itself: a worker that finds no position
    starts at offset 0 and refuses (exit 65) if the log starts later,
    because then input was deleted before it was applied. A rebuild is the
    operator accepting that: it starts from whatever the log still holds.
    """
    producer = Producer(producer_config(settings))
    for partition, offset in starts.items():
        producer.produce(
            changelog, encode_position(offset), position_key(partition), partition=partition
        )
    if producer.flush(30) != 0:
        raise KafkaIOError(f"could not write the positions to {changelog!r}")


@cli.command()
@click.argument("client")
@click.option("--tx", help="One of the client's deposits (amount and dispute state) instead.")
@click.option(
    "--url",
    help="Any worker's web server; it forwards to the client's owner. Default: "
    "LEDGER_ADVERTISED_URL, else http://LEDGER_WEB_BIND:LEDGER_WEB_PORT.",
)
@click.option(
    "--stale-ok",
    is_flag=True,
    help="Accept an answer from a standby copy (marked stale, with its lag) while the owner "
    "restores.",
)
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to keep asking while the answer is 503 (a rebalance or restore).",
)
def account(client: str, tx: str | None, url: str | None, stale_ok: bool, wait: float) -> None:
    """A client's balances (or one deposit) as the workers hold them, as JSON.

    The same answer as the workers' `GET /accounts/CLIENT[/deposits/TX]`
    (docs/operations.md, "Querying balances"), from any worker. Sends
    LEDGER_API_TOKEN as a bearer token when it is set.
    """
    settings = Settings.from_env()
    base = (url or settings.web_url).rstrip("/")
    path = f"/accounts/{urllib.parse.quote(client, safe='')}"
    if tx is not None:
        path += f"/deposits/{urllib.parse.quote(tx, safe='')}"
    if stale_ok:
        path += "?stale=ok"
    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.reveal()}"
    deadline = time.monotonic() + wait
    while True:
        try:
            status, body = _get_json(base + path, headers)
        except OSError as exc:
            _fail(f"no answer from {base} ({exc})", EXIT_NO_WORKER)
        if status != 503 or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if status == 200:
        click.echo(json.dumps(body, indent=2))
        return
    if status == 404:
        click.echo(json.dumps(body, indent=2))
        _fail(f"{body.get('error', 'not found')}", EXIT_NOT_FOUND)
    if status == 503:
        _fail(f"not now: {body.get('reason', 'unavailable')}; ask again later", EXIT_NOT_NOW)
    if status == 401:
        _fail("the worker refused the token (LEDGER_API_TOKEN)", EXIT_REFUSED)
    _fail(f"{body.get('error', f'HTTP {status}')}")


def _get_json(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}


def main() -> None:
    run_console_script(cli, "ledger-admin")
