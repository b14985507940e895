"""processor.startup: which crashes mean "the broker went away" (exit 75), not a bug."""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError, NodeNotReadyError

from kafkaio.errors import BrokerUnavailable
from processor.startup import lost_the_broker


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
