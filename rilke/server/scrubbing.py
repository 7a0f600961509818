"""Driving the storage scrubber from the broker's event loop, at a bounded rate.

Each step is planned and finished on the loop (the logs are single-threaded) and read and
checked on a worker thread (:class:`rilke.storage.scrubber.ScrubJob`), like flushes and
compaction. After a step of B bytes the loop waits B / rate seconds, so the scrubber reads
at most ``scrub_bytes_per_second`` on average; after a whole pass (or when nothing is
sealed yet) it waits ``SCRUB_IDLE_S`` before starting over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rilke.storage.scrubber import Scrubber

log = logging.getLogger(__name__)

# Bytes read and checked per step at most: a step holds the worker thread (and, for its
# Python part, the interpreter lock) for 0.1-0.9 ms per 256 KiB here (16 KiB and 1 KiB
# batches), short enough not to be felt by requests on the loop.
SCRUB_STEP_MAX_BYTES = 256 << 10
SCRUB_IDLE_S = 30.0  # the pause after a pass, before the next one starts over


async def run_scrubber(
    scrubber: Scrubber, bytes_per_second: int, *, idle_s: float = SCRUB_IDLE_S
) -> None:
    """Scrub forever (until cancelled) at ``bytes_per_second`` (> 0). A step that fails (a
    read error) is logged and the rest of its segment skipped for this pass; any other
    failure is logged and the scrubber goes on. On
    cancellation, a step in flight on its thread is awaited first (its descriptor stays open
    until it is done)."""
    assert bytes_per_second > 0
    loop = asyncio.get_running_loop()
    step_bytes = max(1, min(bytes_per_second, SCRUB_STEP_MAX_BYTES))
    while True:
        try:
            job = scrubber.plan(step_bytes)
        except Exception:
            log.exception("the scrubber failed; trying again in %.0f s", idle_s)
            job = None
        if job is None:
            await asyncio.sleep(idle_s)
            continue
        done = loop.run_in_executor(None, job.run)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await done
            scrubber.finish(job)
            raise
        except Exception:
            log.exception("scrubbing %s-%d failed; skipping the rest of the segment", *job.key)
            job.failed = True
        try:
            scrubber.finish(job)
        except Exception:
            log.exception("the scrubber failed recording what it found in %s-%d", *job.key)
        await asyncio.sleep(max(job.bytes_checked, 1) / bytes_per_second)
