"""`export-snapshot`: the accounts table as CSV (R20, R21), straight from its changelog.

No worker needs to run: the accounts changelog holds every account's latest
value, so reading it to its end rebuilds the table. With `--wait` the exporter
first waits until the worker group has committed everything in `transactions`;
workers commit the group's offsets only after the batch's transaction, so at
that point the changelog reflects every input row.

Without `--wait`, while workers go on, the snapshot is the state as of the
positions printed on the `as-of:` line, exactly: each changelog partition
carries the position record of its state (the next input offset it has not
applied, processor.state), written in the same transaction as the batch's
entries, and the snapshot holds every row of partition p below its position
and none at or past it. The changelog is read read_committed; entries a
broker serves from an aborted or torn batch anyway (Tansu does) are past the
position and left out (`load_accounts`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from kafkaio.admin import committed_offsets, end_offsets, partition_count, read_to_end
from kafkaio.errors import KafkaIOError, TopicMissing
from kafkaio.settings import Settings
from ledger import Account, render_csv
from ledger.snapshot import render_jsonl
from processor.state import Stored, decode_account, decode_position, is_position_key

EXIT_TIMEOUT = 3


class WaitTimeout(KafkaIOError):
    pass


def load_accounts(settings: Settings) -> tuple[dict[int, Account], dict[int, int]]:
    """Every account as of its partition's position record, and those positions.

    The changelog is read with read_committed: records of aborted
    transactions (a crashed or fenced batch) are not handed out. Where a
    broker serves them anyway (Tansu) or a batch was cut short, its entries
    carry an offset at or past the partition's position; they are left out,
    the key keeping its entry from before (or, where compaction removed
    that, the later entry's `before`: the state at the start of its batch).
    """
    topic = settings.changelog_topic("accounts")
    accounts: dict[int, Account] = {}
    try:
        partitions = partition_count(settings.bootstrap_servers, topic, timeout=2)
    except TopicMissing:
        return accounts, {}  # no worker ever wrote: no accounts yet
    positions: dict[int, int] = {}
    entries: list[tuple[int, int, Stored | None]] = []  # (partition, client, entry)
    isolation = settings.isolation_level
    for message in read_to_end(settings.bootstrap_servers, topic, partitions, isolation):
        key, value = message.key(), message.value()
        partition = int(message.partition() or 0)
        if is_position_key(key):
            if value is not None:
                positions[partition] = decode_position(value)
            continue
        # None: a tombstone, the account was removed by a rebuild.
        entries.append((partition, int(key), None if value is None else decode_account(value)))
    #: Accounts seen only in entries past the position: their value before that.
    earlier: dict[int, Account | None] = {}
    for partition, client, stored in entries:
        if stored is None:
            accounts.pop(client, None)
            earlier.pop(client, None)
        elif stored.offset >= positions.get(partition, 0):
            if client not in accounts:
                earlier.setdefault(client, stored.before)  # type: ignore[arg-type]
        else:
            assert isinstance(stored.value, Account)
            accounts[client] = stored.value
    for client, before in earlier.items():
        if client not in accounts and before is not None:
            accounts[client] = before
    return accounts, positions


def wait_for_lag_zero(settings: Settings, timeout: float) -> dict[int, int]:
    """Block until the group's committed offsets reach the end of every partition."""
    topic = settings.transactions_topic
    partitions = partition_count(settings.bootstrap_servers, topic)
    deadline = time.monotonic() + timeout
    while True:
        ends = end_offsets(settings.bootstrap_servers, topic, partitions, settings.isolation_level)
        done = committed_offsets(settings.bootstrap_servers, settings.app_id, topic, partitions)
        lag = {p: ends[p] - max(done.get(p, 0), 0) for p in ends}
        if all(v <= 0 for v in lag.values()):
            return ends
        if time.monotonic() > deadline:
            behind = " ".join(f"{p}:{v}" for p, v in sorted(lag.items()) if v > 0)
            raise WaitTimeout(
                f"workers of group {settings.app_id!r} still have lag after {timeout:.0f}s "
                f"(partition:records behind) {behind}; are workers running?"
            )
        time.sleep(0.5)


def wait_for_state(settings: Settings, timeout: float) -> tuple[dict[int, Account], dict[int, int]]:
    """The snapshot once the state's positions reach the end of every input partition.

    The group's offsets (committed after each batch's transaction) say when
    to start looking; the state itself says when it is complete. The two
    differ for a moment: a transaction's commit returns once the broker's
    coordinator has logged it, and the markers that make its records
    readable to read_committed readers are written after that, so the last
    batch may not be visible yet when the group's offsets already count it.
    Seen once in the suite on Tansu: an export taken right after the
    second half of a file was applied in one batch showed none of it.
    """
    deadline = time.monotonic() + timeout
    ends = wait_for_lag_zero(settings, timeout)
    while True:
        accounts, positions = load_accounts(settings)
        behind = {p: e for p, e in ends.items() if positions.get(p, 0) < e}
        if not behind:
            return accounts, positions
        if time.monotonic() > deadline:
            shown = " ".join(f"{p}:{positions.get(p, 0)}/{e}" for p, e in sorted(behind.items()))
            raise WaitTimeout(
                f"the state's positions (partition:position/end) {shown} did not reach the "
                f"end of {settings.transactions_topic!r} within {timeout:.0f}s"
            )
        time.sleep(0.2)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--wait", is_flag=True, help="First wait until workers have consumed everything.")
@click.option(
    "--timeout", type=float, default=300.0, show_default=True, help="Seconds, for --wait."
)
@click.option("--bootstrap-servers", help="Overrides KAFKA_BOOTSTRAP_SERVERS.")
@click.option("--app-id", help="Overrides LEDGER_APP_ID (the worker group).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="csv is the SPEC output (R20, R21); jsonl has one object per account.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (atomically: a temp file renamed into place) instead of stdout.",
)
def cli(
    wait: bool,
    timeout: float,
    bootstrap_servers: str | None,
    app_id: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Print the accounts table, sorted by client (CSV by default)."""
    try:
        settings = Settings.from_env(bootstrap_servers=bootstrap_servers, app_id=app_id)
        topic = settings.transactions_topic
        if wait:
            accounts, as_of = wait_for_state(settings, timeout)
        else:
            accounts, as_of = load_accounts(settings)
    except WaitTimeout as exc:
        click.echo(f"export-snapshot: {exc}", err=True)
        sys.exit(EXIT_TIMEOUT)
    except KafkaIOError as exc:
        click.echo(f"export-snapshot: {exc}", err=True)
        sys.exit(2)
    offsets = " ".join(f"{p}:{o}" for p, o in sorted(as_of.items()))
    click.echo(f"as-of: {topic} state positions (partition:next offset) {offsets}", err=True)
    text = render_csv(accounts) if fmt == "csv" else render_jsonl(accounts)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(output, text)


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never a part (same-directory rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="ascii", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def main() -> None:
    cli(prog_name="export-snapshot")
