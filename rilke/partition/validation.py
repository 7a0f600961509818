"""The checks a produced batch passes before a leader writes it (no record is decoded)."""

from __future__ import annotations

from rilke.errors import InvalidRecordError, InvalidRequestError, UnsupportedCompressionError
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
