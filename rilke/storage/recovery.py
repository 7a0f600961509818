"""Opening a partition's segments after a clean shutdown or a crash.

After a crash (kill -9, power loss, a torn write) the bytes past the last fsync may be partial
or garbage. The recovery-point checkpoint names an offset below which everything was fsynced;
opening with ``recover=True`` trusts the segments before it and checks every batch (header,
CRC, offsets) from it on, cutting the log at the first batch that does not hold and deleting
any segment after the cut. A segment past the recovery point that ends before the next one's
base (its tail lost whole, at a batch boundary, after a roll) is a cut too, in a log that
was never compacted. Indexes that are missing or do not hold are rebuilt from the log.
After a clean shutdown (``recover=False``) nothing is scanned: the indexes are loaded and
checked, and the tail of each segment after its last index entry is walked header by header.

Cutting is only for what was never known durable: the offsets at or past the recovery point
after an unclean stop. Damage below it (or anywhere after a clean stop) is never cut, since
intact, acknowledged batches may follow: it is recorded as a corrupt range
(:mod:`rilke.storage.integrity`) and the segments after it stay.

Every function here blocks on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from rilke.storage import files
from rilke.storage.handles import FileCache
from rilke.storage.integrity import CorruptRange
from rilke.storage.segment import LogSegment, SegmentCorruptError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "log-checkpoint"
_ALL_OFFSETS = 1 << 63  # "every offset is durable" (after a clean stop)
_CHECKPOINT_MAGIC = "rilke-log-checkpoint 1"


@dataclass(frozen=True)
class Checkpoint:
    """What a partition log keeps outside its segments, written atomically.

    ``recovery_point``: every offset below it is fsynced (a batch boundary).
    ``log_start_offset``: the first offset readers may see (raised by delete_records_before).
    """

    recovery_point: int
    log_start_offset: int

    def encode(self) -> bytes:
        return (
            f"{_CHECKPOINT_MAGIC}\nrecovery_point {self.recovery_point}\n"
            f"log_start_offset {self.log_start_offset}\n"
        ).encode()

    @classmethod
    def read(cls, directory: Path) -> Checkpoint | None:
        """The checkpoint in ``directory``, or None if missing or unreadable (logged)."""
        path = directory / CHECKPOINT_FILE
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("%s: unreadable checkpoint: %s", path, exc)
            return None
        try:
            if lines[0] != _CHECKPOINT_MAGIC:
                raise ValueError("bad magic")
            values = dict(line.split(" ", 1) for line in lines[1:])
            result = cls(int(values["recovery_point"]), int(values["log_start_offset"]))
            if result.recovery_point < 0 or result.log_start_offset < 0:
                raise ValueError("negative offset")
        except (IndexError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable checkpoint: %s", path, exc)
            return None
        return result

    def write(self, directory: Path, *, unique_tmp: bool = False) -> None:
        """Replace the checkpoint atomically (two fsyncs and a rename). ``unique_tmp`` for a
        writer on another thread: its temporary file cannot collide with another writer's."""
        files.atomic_write(directory / CHECKPOINT_FILE, self.encode(), unique_tmp=unique_tmp)


@dataclass
class RecoveryReport:
    """What opening a partition log did: which segments it scanned, cut, rebuilt or deleted."""

    clean: bool
    recovery_point: int | None = None
    segments_opened: int = 0
    segments_scanned: list[int] = field(default_factory=list)  # base offsets
    bytes_scanned: int = 0
    bytes_truncated: int = 0
    indexes_rebuilt: list[int] = field(default_factory=list)
    segments_deleted: list[int] = field(default_factory=list)
    corrupt_ranges: list[CorruptRange] = field(default_factory=list)  # found or still there


def list_segment_bases(directory: Path) -> list[int]:
    """Base offsets of the ``.log`` files in ``directory``, ascending; removes leftovers.

    Leftovers: temporary files of atomic writes, compacted segments never swapped in, segment
    files retention renamed away but did not unlink, and index files whose log is gone.
    """
    bases: list[int] = []
    index_bases: dict[int, list[Path]] = {}
    for path in directory.iterdir():
        name = path.name
        if name.endswith((files.TMP_SUFFIX, files.CLEANED_SUFFIX, files.DELETED_SUFFIX)):
            log.info("removing leftover %s", path)
            files.unlink_if_exists(path)
            continue
        base = files.parse_base_offset(name, files.LOG_SUFFIX)
        if base is not None:
            bases.append(base)
            continue
        for suffix in (files.INDEX_SUFFIX, files.TIME_INDEX_SUFFIX):
            base = files.parse_base_offset(name, suffix)
            if base is not None:
                index_bases.setdefault(base, []).append(path)
    known = set(bases)
    for base, paths in index_bases.items():
        if base not in known:
            for path in paths:
                log.info("removing index without a log: %s", path)
                files.unlink_if_exists(path)
    bases.sort()
    return bases


def open_segments(
    directory: Path,
    bases: list[int],
    index_interval_bytes: int,
    now_ms: int,
    *,
    recovery_point: int | None,
    report: RecoveryReport,
    contiguous: bool = False,
    log_end_hint: int | None = None,
    known_ranges: list[CorruptRange] | None = None,
    cache: FileCache | None = None,
) -> list[LogSegment]:
    """Open the segments ``bases``; recover those past ``recovery_point`` (None: trust all).

    A recovery point of -1 means "scan everything". Segments whose indexes do not hold are
    recovered whatever the recovery point. Returns the segments that remain, in order; any
    segment after a cut, or overlapping the one before it, is deleted. Only damage at or past
    the recovery point is cut (None: nothing is); damage below it becomes a corrupt range
    (``report.corrupt_ranges``), and so do the ``known_ranges`` recorded before whose bytes
    still do not hold. ``log_end_hint``: the log end offset known from the checkpoint, the
    end of a range that reaches the end of the last segment. ``contiguous``: the log was
    never compacted, so offsets within a segment must have no gaps. ``cache``: where the
    segments' descriptors live (see rilke.storage.handles).
    """
    durable_before = _ALL_OFFSETS if recovery_point is None else recovery_point
    known: dict[int, list[CorruptRange]] = {}
    for bad in known_ranges or []:
        known.setdefault(bad.segment_base, []).append(bad)
    segments: list[LogSegment] = []
    first_to_scan = len(bases)
    if recovery_point is not None:
        first_to_scan = 0
        for i, base in enumerate(bases):
            if base <= recovery_point:
                first_to_scan = i
    cut = False
    for i, base in enumerate(bases):
        if cut:
            files.unlink_if_exists(files.log_path(directory, base))
            files.unlink_if_exists(files.index_path(directory, base))
            files.unlink_if_exists(files.time_index_path(directory, base))
            report.segments_deleted.append(base)
            continue
        segment, indexes_ok = LogSegment.open(
            directory, base, index_interval_bytes, now_ms, cache=cache
        )
        report.segments_opened += 1
        for gone in segment.attach_ranges(known.pop(base, [])):
            log.info("%s: a corrupt range recorded before holds now: %s", segment.log_path, gone)
        if segments and base < segments[-1].next_offset and base < durable_before:
            # Durable segments do not overlap unless a header's base offset (outside the CRC)
            # went bad in the one before: check that one whole, with the offsets it must hold.
            before = segments[-1]
            log.error(
                "%s: ends at offset %d, past the next segment's base %d: checking it",
                before.log_path,
                before.next_offset,
                base,
            )
            before.recover(
                0, contiguous=contiguous, durable_before=durable_before, next_offset_hint=base
            )
            if before.base_offset not in report.segments_scanned:
                report.segments_scanned.append(before.base_offset)
        if segments and base < segments[-1].next_offset:
            log.warning("%s: segment overlaps the one before it; deleting it", segment.log_path)
            segment.delete()
            report.segments_deleted.append(base)
            cut = True
            continue
        scan_from: int | None = None
        scan_base: int | None = None
        if not indexes_ok:
            scan_from = 0
            report.indexes_rebuilt.append(base)
        elif recovery_point is not None and i >= first_to_scan:
            scan_from = 0
            if i == first_to_scan and recovery_point > base:
                position = segment.position_of(recovery_point)
                if position is not None:
                    scan_from, scan_base = position, recovery_point
        if scan_from is None:
            try:
                segment.load_tail()
            except SegmentCorruptError as exc:
                log.warning("%s: %s; recovering the segment", segment.log_path, exc)
                scan_from = 0
                report.indexes_rebuilt.append(base)
        if scan_from is not None:
            # Gaps are refused only past the recovery point: a segment rebuilt because its
            # indexes failed lies below it and may have been compacted.
            past_recovery_point = recovery_point is not None and i >= first_to_scan
            scanned, removed = segment.recover(
                scan_from,
                scan_base if scan_from else None,
                contiguous=contiguous and past_recovery_point,
                durable_before=durable_before,
                next_offset_hint=bases[i + 1] if i + 1 < len(bases) else log_end_hint,
            )
            report.segments_scanned.append(base)
            report.bytes_scanned += scanned
            if removed:
                log.warning(
                    "%s: cut %d bytes of batches that do not hold at position %d",
                    segment.log_path,
                    removed,
                    segment.size,
                )
                report.bytes_truncated += removed
                cut = True
            elif (
                contiguous
                and past_recovery_point
                and i + 1 < len(bases)
                and segment.next_offset < bases[i + 1]
            ):
                # Its unsynced tail was lost whole, at a batch boundary (nothing to cut), while
                # the next segment's file, created by a roll, survived: the offsets between are
                # gone, so is everything after them (simulation seed 19365).
                log.warning(
                    "%s: ends at offset %d, before the next segment's base %d: its tail was "
                    "lost; deleting the segments after it",
                    segment.log_path,
                    segment.next_offset,
                    bases[i + 1],
                )
                cut = True
        segments.append(segment)
    report.corrupt_ranges = [bad for segment in segments for bad in segment.corrupt]
    return segments
