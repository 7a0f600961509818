"""ClusterProducerIds: InitProducerId on a node of a cluster, unique cluster-wide.

A single node counts producer ids in a file of its own; in a cluster two nodes doing so
would hand out the same id to two producers, whose batches a partition would then take for
each other's retries. Here new ids come from blocks the controller gives this broker
(``ProducerIdsAllocated`` records: blocks in order, never the same id twice, surviving
restarts and failover). The next block is fetched in the background once half of the
current one is used, so a request waits for the controller only when a block runs out (or
for the first one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from rilke.errors import InvalidRequestError

log = logging.getLogger(__name__)

MAX_PRODUCER_EPOCH = 32767  # as the broker's (Kafka's Short.MAX_VALUE)
BLOCK_TIMEOUT_S = 15.0

FetchBlock = Callable[[], Awaitable[tuple[int, int]]]
"""Ask the controller for this broker's next block: (first id, count)."""


class ClusterProducerIds:
    def __init__(self, fetch_block: FetchBlock) -> None:
        self._fetch_block = fetch_block
        self._blocks: list[tuple[int, int]] = []  # (next id, end) of blocks in hand
        self._refill: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._size = 1  # the size of the last block

    async def init_producer_id(self, producer_id: int, producer_epoch: int) -> tuple[int, int]:
        """A new producer id (epoch 0), or the given id with its epoch bumped (a new id when
        the epoch is exhausted). Raises InvalidRequestError for an id without an epoch,
        TimeoutError when no block came in time, and what the controller answered."""
        if producer_id >= 0:
            if producer_epoch < 0:
                raise InvalidRequestError("producer_epoch must be given with producer_id")
            if producer_epoch < MAX_PRODUCER_EPOCH:
                return producer_id, producer_epoch + 1
        return await self.next_id(), 0

    async def next_id(self) -> int:
        async with asyncio.timeout(BLOCK_TIMEOUT_S):
            while not self._blocks:
                await self._fill()
        start, end = self._blocks[0]
        if start + 1 >= end:
            self._blocks.pop(0)
        else:
            self._blocks[0] = (start + 1, end)
            if len(self._blocks) == 1 and (end - start) * 2 < self._size:
                self._prefetch()
        return start

    def _prefetch(self) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.ensure_future(self._fill())

    async def _fill(self) -> None:
        async with self._lock:
            if len(self._blocks) > 1 or (
                self._blocks and (self._blocks[0][1] - self._blocks[0][0]) * 2 >= self._size
            ):
                return  # another caller fetched meanwhile
            try:
                first, count = await self._fetch_block()
            except Exception as e:
                if not self._blocks:
                    raise
                log.warning("fetching the next producer id block failed: %s", e)
                return
            self._size = count
            self._blocks.append((first, first + count))

    async def close(self) -> None:
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refill
