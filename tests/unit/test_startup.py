"""processor.startup: which crashes mean "the broker went away" (exit 75), not a bug."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from kafkaio.errors import BrokerUnavailable
from processor.startup import exit_code, lost_the_broker


def _raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise error from inner
    except BaseException as outer:
        return outer


def test_connection_errors_from_faust_and_ours_mean_the_broker_went_away() -> None:
    assert lost_the_broker(NodeNotReadyError("node 1 not ready"))
    assert lost_the_broker(KafkaConnectionError("closed"))
    assert lost_the_broker(BrokerUnavailable("end offsets: all brokers down"))


def test_an_error_raised_from_a_connection_error_counts_too() -> None:
    assert lost_the_broker(_raised_from(RuntimeError("declare failed"), NodeNotReadyError("x")))


def test_anything_else_is_a_bug_and_keeps_exit_1() -> None:
    assert not lost_the_broker(None)
    assert not lost_the_broker(KeyError("b'7'"))
    assert not lost_the_broker(_raised_from(ValueError("bad"), KeyError("k")))


def test_aiokafkas_fetcher_race_is_a_restart_not_a_crash() -> None:
    # KeyError(TopicPartition) from aiokafka's fetched_records, seen once in CI.
    from aiokafka.structs import TopicPartition

    from processor.startup import fetcher_race

    assert fetcher_race(KeyError(TopicPartition("transactions", 3)))
    assert not fetcher_race(KeyError("some other key"))
    assert not fetcher_race(None)


def _exit_of(error: BaseException) -> SystemExit:
    """The SystemExit mode's worker leaves with when `error` is raised inside it."""
    from mode.worker import exiting

    try:
        with exiting():
            raise error
    except SystemExit as exc:
        return exc
    raise AssertionError("mode's exiting() did not exit")


def test_a_broker_error_while_the_worker_stops_is_a_restart_not_a_silent_exit_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # mode swallows an error raised during shutdown into a bare exit 1; the
    # worker finds it as the SystemExit's context.
    exc = _exit_of(KafkaConnectionError("connection closed"))
    assert exc.code == 1
    with caplog.at_level(logging.CRITICAL, logger="ledger.worker"):
        assert exit_code(exc, None) == 75
    assert "the broker went away" in caplog.text


def test_any_other_error_while_stopping_keeps_exit_1_and_is_named_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = _exit_of(ValueError("a bug"))
    with caplog.at_level(logging.CRITICAL, logger="ledger.worker"):
        assert exit_code(exc, None) == 1
    assert "ValueError('a bug')" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_clean_exit_stays_clean_and_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL, logger="ledger.worker"):
        assert exit_code(SystemExit(0), None) == 0
        assert exit_code(SystemExit(None), KafkaConnectionError("x")) is None
    assert caplog.text == ""
