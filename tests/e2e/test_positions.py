"""The state carries its input position: group offsets only monitor (docs/exactness.md).

Each worker resumes a partition from the position record its state holds,
written in the same transaction as the batch it closes, not from the
group's committed offsets. So offsets that expire, are deleted or reset
while the workers are stopped change nothing; and where the input and the
state cannot both be right (the log starts past the position, or the
group committed past it) the worker refuses to go on (exit 65), never
skipping or re-applying an event silently.

History is written in many small batches (LEDGER_BATCH_SIZE=20): the
before-image replay rule alone undoes only the last batch per key, so a
replay from the log start changes most accounts (issue 12 measured 296 of
~300 wrong).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from bench.workload import generate
from kafkaio.admin import set_group_offsets, start_offsets
from processor.agent import EXIT_INPUT_MISMATCH
from processor.ledger_admin import wait_idle
from tests.helpers import run
from tests.pipeline import Pipeline, wait_until

pytestmark = pytest.mark.kafka


def _two_halves(tmp_path: Path, rows: int = 6_000, seed: int = 12) -> tuple[Path, Path, Path]:
    lines = list(generate(rows, 300, seed=seed, dirty=True))
    header, body = lines[0], lines[1:]
    middle = len(body) // 2
    paths = []
    for name, part in (("first", body[:middle]), ("second", body[middle:]), ("whole", body)):
        path = tmp_path / f"{name}.csv"
        path.write_text(header + "".join(part))
        paths.append(path)
    return paths[0], paths[1], paths[2]


def _first_half_applied_then_stopped(pipeline: Pipeline, first: Path) -> None:
    pipeline.extra_env["LEDGER_BATCH_SIZE"] = "20"
    worker = pipeline.start_worker()
    assert pipeline.produce(first).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(first).stdout
    assert pipeline.stop_worker(worker, signal.SIGTERM) == 0, pipeline.logs()


def _group_gone(pipeline: Pipeline, how: str) -> None:
    env, topic = pipeline.env, pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    group = env["LEDGER_APP_ID"]
    if how == "reset to the log start":
        starts = start_offsets(pipeline.bootstrap, topic, pipeline.partitions)
        _retried(set_group_offsets, pipeline.bootstrap, group, topic, starts)
        return
    admin = AdminClient({"bootstrap.servers": pipeline.bootstrap})

    def delete() -> bool:
        try:
            admin.delete_consumer_groups([group], request_timeout=10)[group].result()
            return True
        except Exception as exc:  # the group may still have its stopped member for a moment
            if "not supported" in str(exc).lower() or "UNSUPPORTED" in str(exc):
                pytest.skip(f"this broker cannot delete groups: {exc}")
            return False

    wait_until(delete, 30, "the group to be deleted")


def _retried(fn: Callable[..., object], *args: object) -> None:
    """`fn(*args)` once the group is idle, again while it fails, for 30 s.

    A member that just left may linger: Tansu keeps the group STABLE and
    refuses offset changes (UNKNOWN_MEMBER_ID) until asked as ledger-admin
    asks (`wait_idle`).
    """
    bootstrap, group, topic = args[0], args[1], args[2]
    wait_idle(bootstrap, group, topic, 30)  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while True:
        try:
            fn(*args)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{fn.__name__} kept failing: {exc}") from exc
            time.sleep(0.5)


@pytest.mark.parametrize("how", ["deleted", "reset to the log start"])
def test_group_offsets_lost_while_stopped_neither_reapply_nor_skip_an_event(
    pipeline: Pipeline, tmp_path: Path, how: str
) -> None:  # R18, R20 (issue 12: expired, deleted or reset group offsets)
    first, second, whole = _two_halves(tmp_path)
    _first_half_applied_then_stopped(pipeline, first)
    _group_gone(pipeline, how)

    pipeline.start_worker()
    assert pipeline.produce(second).returncode == 0
    exported = pipeline.export()
    assert exported.returncode == 0, exported.stderr + pipeline.logs().encode()
    assert exported.stdout == run(whole).stdout


def test_a_group_committed_past_the_state_stops_the_worker_with_exit_65_and_changes_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 12: a committed offset past the state's position is refused
    first, second, _whole = _two_halves(tmp_path, seed=13)
    _first_half_applied_then_stopped(pipeline, first)
    assert pipeline.produce(second).returncode == 0
    env, topic = pipeline.env, pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ends = pipeline.end_offsets(topic)
    group = env["LEDGER_APP_ID"]
    _retried(set_group_offsets, pipeline.bootstrap, group, topic, ends)

    worker = pipeline.start_worker()
    assert worker.wait(timeout=120) == EXIT_INPUT_MISMATCH, pipeline.logs()
    assert "the changelogs lost batches or the group's offsets were moved forward" in (
        pipeline.logs().replace("\n", " ")
    )
    unchanged = pipeline.run("export-snapshot")
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout == run(first).stdout


def test_a_log_start_past_the_state_position_stops_the_worker_with_exit_65_never_a_skip(
    pipeline: Pipeline, tmp_path: Path
) -> None:  # issue 12: retention deleted input that was never applied
    if pipeline.engine == "tansu":
        pytest.skip("Tansu 0.6 does not move a log start (no DeleteRecords, memory storage)")
    first, second, _whole = _two_halves(tmp_path, seed=14)
    _first_half_applied_then_stopped(pipeline, first)
    assert pipeline.produce(second).returncode == 0
    topic = pipeline.env["LEDGER_TRANSACTIONS_TOPIC"]
    ends = pipeline.end_offsets(topic)
    # As retention would: the oldest segments of one partition go, unapplied
    # events of the second half with them.
    admin = AdminClient({"bootstrap.servers": pipeline.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, ends[0] - 5)]).values():
        future.result()

    worker = pipeline.start_worker()
    assert worker.wait(timeout=120) == EXIT_INPUT_MISMATCH, pipeline.logs()
    assert "were deleted before any worker applied them" in pipeline.logs().replace("\n", " ")
    unchanged = pipeline.run("export-snapshot")
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout == run(first).stdout


def test_the_latest_value_of_a_key_is_read_from_the_end_past_other_keys_and_aborted_writes(
    pipeline: Pipeline,
) -> None:  # what a worker checks before calling a state stale (processor.agent `_stale`)
    from confluent_kafka import Producer

    from kafkaio.admin import ensure_topic, latest_value

    topic = f"latest-{pipeline.name}"
    ensure_topic(pipeline.bootstrap, topic, 1)
    assert latest_value(pipeline.bootstrap, topic, 0, b"k") is None  # empty
    producer = Producer({"bootstrap.servers": pipeline.bootstrap})
    producer.produce(topic, b"1", b"k")
    for n in range(300):  # more than the first window (64) of other keys after it
        producer.produce(topic, b"x", f"other-{n}".encode())
    producer.flush(30)
    assert latest_value(pipeline.bootstrap, topic, 0, b"k") == b"1"
    producer.produce(topic, b"2", b"k")
    producer.produce(topic, b"y", b"other")
    producer.flush(30)
    assert latest_value(pipeline.bootstrap, topic, 0, b"k") == b"2"
    assert latest_value(pipeline.bootstrap, topic, 0, b"absent") is None
