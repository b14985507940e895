"""The one exception family of the Kafka adapters."""

from __future__ import annotations


class KafkaIOError(Exception):
    """Base of every error raised by kafkaio; commands turn it into one line and exit 2."""


class SettingsError(KafkaIOError):
    """An environment variable or flag has a value the settings cannot take."""


class BrokerUnavailable(KafkaIOError):
    """No broker answered at the bootstrap address in time."""


class AccessRefused(KafkaIOError):
    """The broker answered, and refused us: credentials or certificates are wrong.

    Not a BrokerUnavailable: waiting cannot help, the settings must change.
    """


class DeliveryFailed(KafkaIOError):
    """Some records were not acknowledged by the broker."""


class TopicMissing(KafkaIOError):
    """The topic does not exist (yet)."""
