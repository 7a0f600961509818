"""rilke.records: Kafka's RecordBatch v2, byte for byte (sans-I/O).

- :class:`BatchBuilder` appends records and builds a batch (bytes, CRC set);
  :func:`build_control_batch` builds a one-record control batch (:class:`ControlType`).
- :func:`read_records`, :func:`iter_batches`, :func:`read_batch` and :class:`Batch` decode
  batches into :class:`Record` values, or (:meth:`Batch.columns`) into :class:`RecordColumns`.
- :func:`check_batch`, :func:`read_header` and :class:`BatchHeader` validate and read the
  61-byte header without decoding records; :func:`set_base_offset` and
  :func:`set_partition_leader_epoch` rewrite the fields outside the CRC in place.
- :func:`compress` / :func:`decompress` (bounded) for the codecs of :class:`Compression`.

Errors are :class:`~rilke.errors.RecordsError` subclasses.
"""

from rilke.errors import (
    CorruptRecordError,
    DecompressedTooLargeError,
    InvalidRecordError,
    RecordsError,
    RecordTooLargeError,
    UnsupportedCompressionError,
)
from rilke.records.builder import (
    MAX_RECORD_OVERHEAD,
    BatchBuilder,
    BytesLike,
    ControlType,
    Header,
    build_control_batch,
    build_empty_batch,
    control_key,
    end_txn_marker_value,
    record_size_upper_bound,
)
from rilke.records.compression import (
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    Compression,
    compress,
    decompress,
    is_supported,
    supported_codecs,
)
from rilke.records.header import (
    CREATE_TIME,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    MAGIC,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    BatchHeader,
    check_batch,
    compute_crc,
    iter_headers,
    peek_size,
    read_header,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
)
from rilke.records.reader import (
    Batch,
    Record,
    RecordColumns,
    iter_batches,
    read_batch,
    read_records,
)

__all__ = [
    "CREATE_TIME",
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "HEADER_SIZE",
    "LOG_APPEND_TIME",
    "LOG_OVERHEAD",
    "MAGIC",
    "MAX_RECORD_OVERHEAD",
    "NO_PARTITION_LEADER_EPOCH",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "NO_TIMESTAMP",
    "Batch",
    "BatchBuilder",
    "BatchHeader",
    "BytesLike",
    "Compression",
    "ControlType",
    "CorruptRecordError",
    "DecompressedTooLargeError",
    "Header",
    "InvalidRecordError",
    "Record",
    "RecordColumns",
    "RecordTooLargeError",
    "RecordsError",
    "UnsupportedCompressionError",
    "build_control_batch",
    "build_empty_batch",
    "check_batch",
    "compress",
    "compute_crc",
    "control_key",
    "decompress",
    "end_txn_marker_value",
    "is_supported",
    "iter_batches",
    "iter_headers",
    "peek_size",
    "read_batch",
    "read_header",
    "read_records",
    "record_size_upper_bound",
    "set_base_offset",
    "set_log_append_time",
    "set_partition_leader_epoch",
    "supported_codecs",
]
