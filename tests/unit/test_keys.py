"""SPEC M1: keys and partitions as Kafka's default partitioner computes them.

The expected values were printed by Kafka 4.1.1's own
`org.apache.kafka.common.utils.Utils.murmur2` (kafka-clients jar); the
end-to-end test checks the same against librdkafka's murmur2_random.
"""

from __future__ import annotations

import pytest

from ledger.keys import Placement, client_key, murmur2, partition_for

KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"1": -1993445489,
    b"7": -1961297549,
    b"65535": 624033952,
    b"0": 971027396,
    b"12345": -1188365604,
}
KAFKA_PARTITION_OF_8 = {b"21": 4, b"foobar": 6, b"1": 7, b"7": 3, b"65535": 0, b"0": 4, b"12345": 4}


@pytest.mark.parametrize("key", sorted(KAFKA_MURMUR2))
def test_murmur2_matches_kafkas_utils_murmur2(key: bytes) -> None:  # M1
    assert murmur2(key) == KAFKA_MURMUR2[key]


@pytest.mark.parametrize("key", sorted(KAFKA_PARTITION_OF_8))
def test_the_partition_is_the_positive_hash_modulo_the_count(key: bytes) -> None:  # M1
    assert partition_for(key, 8) == KAFKA_PARTITION_OF_8[key]


def test_a_clients_key_is_its_id_in_decimal_ascii() -> None:  # M1
    assert client_key(0) == b"0"
    assert client_key(65535) == b"65535"


def test_placement_caches_what_partition_for_computes() -> None:
    placement = Placement(6)
    for client in (0, 1, 7, 4242, 65535):
        assert placement.of(client) == (client_key(client), partition_for(client_key(client), 6))
        assert placement.of(client) == placement.of(client)
