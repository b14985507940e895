"""Where a client's messages live (SPEC M1): the key and the partition every producer agrees on.

The key is the client id in decimal ASCII; the partition is Kafka's default
partitioner for that key: murmur2 of the key bytes, made positive, modulo
the partition count. That is what the Java client computes
(`Utils.toPositive(Utils.murmur2(key)) % n`) and what produce-csv asks
librdkafka for (`partitioner=murmur2_random`, the same for non-empty keys).
Pure: the worker checks each message against it (M2), tests check it
against Kafka's own `Utils.murmur2`.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def client_key(client: int) -> bytes:
    """The message key of `client` (M1): its id in decimal ASCII."""
    return str(client).encode()


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition of `key` among `partitions` (toPositive, then modulo)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Placement:
    """Each client's expected key and partition, computed once per client (M1).

    The worker checks every message against it; murmur2 in Python costs a
    few microseconds, a dict hit a few tens of nanoseconds, and clients are
    at most 65,536.
    """

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._known: dict[int, tuple[bytes, int]] = {}

    def of(self, client: int) -> tuple[bytes, int]:
        found = self._known.get(client)
        if found is None:
            key = client_key(client)
            found = self._known[client] = (key, partition_for(key, self.partitions))
        return found
