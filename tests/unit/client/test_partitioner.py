"""Keys land where Kafka's Java client puts them."""

from __future__ import annotations

import random
import warnings

from hypothesis import given
from hypothesis import strategies as st

from rilke.client.partitioner import KeyPartitioner, StickyPartitioner, murmur2, partition_for_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.partitioner.default import murmur2 as kafka_murmur2

# Values from Apache Kafka's UtilsTest.testMurmur2 (Java's signed int results).
KAFKA_VALUES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_matches_kafka_java_values():
    for key, expected in KAFKA_VALUES.items():
        assert murmur2(key) == expected, key


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=1000))
def test_partition_matches_kafka_python(key, n):
    assert partition_for_key(key, n) == (kafka_murmur2(key) & 0x7FFFFFFF) % n


def test_sticky_partitioner_moves_to_another_partition():
    s = StickyPartitioner(random.Random(1))
    p = s.partition("t", 4)
    assert s.partition("t", 4) == p
    q = s.on_new_batch("t", 4, p)
    assert q != p and 0 <= q < 4
    assert s.partition("t", 4) == q
    assert s.on_new_batch("t", 1, 0) == 0


@given(st.lists(st.binary(max_size=40), max_size=50), st.integers(min_value=1, max_value=64))
def test_key_partitioner_cache_agrees(keys, n):
    kp = KeyPartitioner(cache_size=8)
    for key in keys + keys:
        assert kp.partition(key, n) == partition_for_key(key, n)
