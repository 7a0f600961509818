"""The periodic work of one partition log, the one maintenance path of a node.

:class:`Maintenance` runs its steps in order, keeping the event loop free for requests: roll by
age; flush (rolled segments, or everything when ``flush.ms`` is due); retention; compaction
(for compacted topics, at most every ``delete.retention.ms / 2``, clamped to 1-60 s); the
recovery-point checkpoint; the producer state snapshot. The fsyncs, checkpoint and snapshot
writes, unlinks and compaction's reading and rewriting run on worker threads; retention and
each cleaned segment's swap on the loop between them. Both kinds of partition use it (a
follower's log needs the same care).

Threading: on the event loop thread; runs of one partition must not overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rilke.partition.group_flush import GroupFlush
from rilke.partition.producer_state import ProducerState
from rilke.storage.cleaner import finish_compaction, plan_compaction
from rilke.storage.files import unlink_if_exists
from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

# Pause between two compacted segments' swaps (maintenance), so requests are not starved.
COMPACTION_SWAP_PAUSE_S = 0.01


async def in_thread(function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run ``function`` on a worker thread. If the caller is cancelled, the thread's work is
    still awaited before the cancellation goes on (so shutdown never overlaps it)."""
    done = asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await done
        raise


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        unlink_if_exists(path)


class Maintenance:
    """The maintenance of one partition log (see the module docstring). ``is_closed`` says
    whether the partition closed meanwhile: the steps left are then skipped; ``compaction``
    False skips compaction. ``high_watermark`` (a replicated partition's) bounds retention
    and compaction to what is committed, and compaction then keeps emptied batches."""

    def __init__(
        self,
        name: str,
        log_: PartitionLog,
        flusher: GroupFlush[Any],
        producers: ProducerState,
        is_closed: Callable[[], bool],
        *,
        compaction: bool = True,
        high_watermark: Callable[[], int] | None = None,
    ) -> None:
        self._name = name  # "<topic>-<partition>", for log lines
        self._compaction = compaction
        # A replica's high watermark: retention and compaction stay below it (the log start
        # never passes it; nothing uncommitted is compacted), and compaction keeps emptied
        # batches as empty batches (the log's batches are its Raft entries: no offset gaps).
        self._high_watermark = high_watermark
        self._log = log_
        self._flusher = flusher
        self._producers = producers
        self._is_closed = is_closed
        self._last_compaction_ms: int | None = None

    def _stopped(self) -> bool:
        return self._is_closed() or self._log.closed

    async def run(self, now_ms: int) -> None:
        """One pass. Raises what storage raises (OSError: a full disk, ...); LogClosedError
        when the partition closes meanwhile."""
        plog = self._log
        if self._stopped():
            return
        plog.maybe_roll(now_ms)
        await self._flusher.flush_async(None if plog.flush_due(now_ms) else plog.rolled_offset)
        if self._is_closed():
            return
        plog.apply_retention(
            now_ms,
            defer_unlink=True,
            high_watermark=None if self._high_watermark is None else self._high_watermark(),
        )
        deleted = plog.take_deleted_files()
        if deleted:
            # Renamed on the loop; the unlinks (slow for large cached files) on a thread.
            await in_thread(_unlink_all, deleted)
        config = plog.config
        if (
            config.compact
            and self._compaction
            and (
                self._last_compaction_ms is None
                or now_ms - self._last_compaction_ms
                >= min(max(config.delete_retention_ms // 2, 1000), 60_000)
            )
        ):
            self._last_compaction_ms = now_ms
            await self._compact(now_ms)
        if self._stopped():
            return
        await self._checkpoint()
        if self._is_closed():
            return
        due = self._producers.snapshot_due()
        if due is not None:
            await in_thread(due.write)
            self._producers.written(due)

    async def _checkpoint(self) -> int:
        """Write the recovery-point checkpoint if one is due; the recovery point on disk."""
        plog = self._log
        taken = plog.begin_checkpoint()
        if taken is None:
            return plog.flushed_offset
        await in_thread(taken[0].write, plog.directory, unique_tmp=True)
        plog.end_checkpoint(taken)
        return taken[0].recovery_point

    async def _compact(self, now_ms: int) -> None:
        plog = self._log
        # Cleaned segments must lie below the recovery point on disk (recovery trusts them):
        # flush what was rolled, write the checkpoint, and compact only what it covers.
        await self._flusher.flush_async(plog.rolled_offset)
        recovery_point = await self._checkpoint()
        if self._stopped():
            return
        up_to = recovery_point
        if self._high_watermark is not None:
            up_to = min(up_to, self._high_watermark())
        plan = plan_compaction(
            plog,
            now_ms,
            up_to_offset=up_to,
            keep_empty_batches=self._high_watermark is not None,
        )
        if plan is None:
            return
        try:
            await in_thread(plan.run)
        except BaseException:
            plan.abort()
            raise
        freed = 0
        try:
            while plan.cleaned:
                if self._stopped():
                    break
                freed += finish_compaction(plog, plan, max_segments=1)
                # A swap reopens and checks the cleaned segment on the loop (~20 ms for 1 MiB
                # here); a short pause after each lets the requests that arrived meanwhile
                # through (one loop turn was not enough: a request needs several).
                await asyncio.sleep(COMPACTION_SWAP_PAUSE_S)
        finally:
            plan.abort()  # removes cleaned files not swapped in
        if freed:
            log.info("compacted %s: %d bytes freed", self._name, freed)
