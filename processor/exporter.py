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
import tempfile
import time
from pathlib import Path

import click

from kafkaio.admin import committed_offsets, end_offsets, partition_count, read_to_end
from kafkaio.errors import KafkaIOError, TopicMissing
from kafkaio.settings import Settings
from ledger import Account, render_csv
from ledger.snapshot import render_jsonl
from processor.state import Stored, decode_account, decode_position, is_position_key
from runner.console import run_console_script
from runner.kafka_options import kafka_security_options

EXIT_TIMEOUT = 3
#: Of a snapshot written with --output: balances are for its owner alone.
SNAPSHOT_MODE = 0o600


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
    partitions = changelog_partitions(settings)
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


def changelog_partitions(settings: Settings) -> int:
    """The accounts changelog's partition count; a missing changelog is an error.

    Every worker creates its app id's changelogs when it starts
    (processor.startup), so a missing one means an app id that names no
    deployment (a typo) or one no worker ever ran for. Read as "no accounts",
    it printed an empty snapshot and exit 0, which passes for a ledger with
    nothing in it.
    """
    topic = settings.changelog_topic("accounts")
    try:
        return partition_count(settings.bootstrap_servers, topic, timeout=2)
    except TopicMissing:
        raise TopicMissing(
            f"no topic {topic!r}: is LEDGER_APP_ID (or --app-id) right? "
            f"The workers of app id {settings.app_id!r} create it when they start"
        ) from None


def wait_for_lag_zero(settings: Settings, timeout: float) -> dict[int, int]:
    """Block until the group's committed offsets reach the end of every partition."""
    topic = settings.transactions_topic
    partitions = partition_count(settings.bootstrap_servers, topic)
    deadline = time.monotonic() + timeout
    while True:
        ends = end_offsets(
            settings.bootstrap_servers,
            topic,
            partitions,
            settings.isolation_level,
            by_reading=settings.ends_by_reading,
        )
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
@kafka_security_options
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
@click.option(
    "--mode",
    callback=lambda _ctx, _param, value: octal_mode(value),
    metavar="OCTAL",
    help=f"Permissions of the --output file (default {SNAPSHOT_MODE:04o}: its owner only), "
    "e.g. 0640.",
)
def cli(
    wait: bool,
    timeout: float,
    bootstrap_servers: str | None,
    app_id: str | None,
    fmt: str,
    output: Path | None,
    mode: int | None,
) -> None:
    """Print the accounts table, sorted by client (CSV by default)."""
    if mode is not None and output is None:
        raise click.UsageError("--mode is for the file of --output; stdout has no mode")
    try:
        settings = Settings.from_env(bootstrap_servers=bootstrap_servers, app_id=app_id)
        topic = settings.transactions_topic
        # Before any waiting: a wrong app id would otherwise wait out --timeout.
        changelog_partitions(settings)
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
        write_atomically(output, text, SNAPSHOT_MODE if mode is None else mode)


def octal_mode(value: str | None) -> int | None:
    """`0640` or `640` as permission bits; click.BadParameter (exit 2) for anything else."""
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"{value!r} is not an octal file mode such as 0600 or 0640")
    return mode


def write_atomically(path: Path, text: str, mode: int = SNAPSHOT_MODE) -> None:
    """Readers see the old file or the whole new one, never a part (same-directory rename).

    The temp file's name is random and it is created exclusively (mkstemp:
    O_CREAT|O_EXCL, no symlink followed): with a name anyone could predict,
    a symlink planted there redirected the snapshot into the file it
    pointed at, and the rename then put the symlink in place of the target.
    Its mode is set before the first balance is written.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with open(fd, "w", encoding="ascii", newline="") as out:
            os.fchmod(fd, mode)  # exactly `mode`: the umask applies only at creation
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the directory is on disk.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def main() -> None:
    run_console_script(cli, "export-snapshot")
