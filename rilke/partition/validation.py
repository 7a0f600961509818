"""The checks a produced batch passes before a leader writes it (no record is decoded)."""

from __future__ import annotations

from rilke.errors import (
    FencedLeaderEpochError,
    InvalidRecordError,
    InvalidRequestError,
    UnknownLeaderEpochError,
    UnsupportedCompressionError,
)
from rilke.records.header import MAX_COMPRESSION_ID, CheckedBatches, check_batches


def validate_batches(records: bytes, max_message_bytes: int) -> CheckedBatches:
    """Check every batch's header and CRC without decoding records, and the rules a produced
    batch keeps; return them checked (for the log, which then skips only the CRC pass).

    Raises CorruptRecordError (CRC, magic, length), RecordTooLargeError, InvalidRecordError,
    UnsupportedCompressionError or InvalidRequestError (no batches at all).
    """
    if not records:
        raise InvalidRequestError("the produce request carries no record batches")
    checked = check_batches(records, max_size=max_message_bytes)
    for header in checked.headers:
        if header.compression > MAX_COMPRESSION_ID:
            raise UnsupportedCompressionError(f"unknown compression codec {header.compression}")
        if header.is_transactional or header.is_control:
            raise InvalidRecordError("transactional and control batches are not accepted")
        if header.records_count != header.last_offset_delta + 1:
            # Compacted batches read back from a log may hold fewer records than offsets; a
            # produced one has exactly one offset per record (an empty batch fails here too).
            raise InvalidRecordError(
                f"batch header says {header.records_count} records in "
                f"{header.last_offset_delta + 1} offsets: a produced batch has one offset per "
                "record"
            )
    return checked


def check_leader_epoch(name: str, leader_epoch: int, requested: int | None) -> None:
    """KIP-320: a request naming a partition's leader epoch (``requested``; None or negative:
    not named) is refused when that epoch is older than the partition's ``leader_epoch``
    (FencedLeaderEpochError: the sender's metadata is stale) or newer
    (UnknownLeaderEpochError: this replica has not learnt it yet). ``name``: for the message."""
    if requested is None or requested < 0:
        return
    if requested < leader_epoch:
        raise FencedLeaderEpochError(
            f"{name}: leader epoch {requested} is fenced (the current one is {leader_epoch})"
        )
    if requested > leader_epoch:
        raise UnknownLeaderEpochError(
            f"{name}: leader epoch {requested} is newer than this replica's {leader_epoch}"
        )
