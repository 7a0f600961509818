"""Choosing a partition: Kafka's murmur2 key hash and a sticky choice for keyless records.

Keys land where the Java Kafka client (and kafka-python, confluent-kafka's murmur2 setting)
would put them: ``(murmur2(key) & 0x7fffffff) % num_partitions``.
"""

from __future__ import annotations

import random
import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` exactly as ``org.apache.kafka.common.utils.Utils.murmur2``.

    Returns the hash as a signed 32-bit int, the value Java returns.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    nwords = length >> 2
    if nwords:
        words = _WORDS.get(nwords)
        if words is None:
            words = _WORDS[nwords] = struct.Struct(f"<{nwords}I")
        # The little-endian 4-byte words in one C call, not four byte lookups each.
        for word in words.unpack_from(data):
            k = (word * _M) & _MASK
            h = ((h * _M) & _MASK) ^ (((k ^ (k >> 24)) * _M) & _MASK)
    end = nwords << 2
    extra = length & 3
    if extra == 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


KEY_CACHE_SIZE = 65_536
"""How many keys' hashes a :class:`KeyPartitioner` remembers (it forgets all when full)."""


class KeyPartitioner:
    """:func:`partition_for_key` with a bounded cache of key hashes: keys usually repeat
    (customer, device, order ids), and the hash is the costly part. Thread-safe enough: a
    race only computes a hash twice."""

    def __init__(self, cache_size: int = KEY_CACHE_SIZE) -> None:
        self._hashes: dict[bytes, int] = {}
        self._cache_size = cache_size

    def partition(self, key: bytes, num_partitions: int) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self._cache_size:
                self._hashes.clear()
            h = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return h % num_partitions


def partition_for_key(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``num_partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


class StickyPartitioner:
    """Keyless records stick to one partition until its batch is sent, then move on.

    Filling one batch at a time instead of spreading every record makes bigger batches and
    fewer requests (Kafka's KIP-480). Not thread-safe: the accumulator calls it under its lock.
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(self, topic: str, num_partitions: int) -> int:
        p = self._current.get(topic)
        if p is None or p >= num_partitions:
            p = self._rng.randrange(num_partitions)
            self._current[topic] = p
        return p

    def on_new_batch(self, topic: str, num_partitions: int, previous: int) -> int:
        """Called when the sticky partition's batch filled; picks another partition."""
        if num_partitions <= 1:
            p = 0
        else:
            p = self._rng.randrange(num_partitions - 1)
            if p >= previous:
                p += 1
        self._current[topic] = p
        return p
