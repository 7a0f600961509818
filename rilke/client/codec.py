"""The client's one door to the record batch codec in :mod:`rilke.records`.

The producer builds batches with :func:`new_builder`; the consumer finds the whole batches of a
fetched buffer with :func:`whole_batches` (each header read once) and decodes them with
:func:`read_columns` (or :func:`read_records`). Keeping the codec behind these functions keeps
the rest of the client independent of the codec's module layout (and lets unit tests swap in a
reference codec).
"""

from __future__ import annotations

from typing import Any

from rilke.errors import RilkeError
from rilke.records import header as hdr
from rilke.records.builder import encode_headers as _encode_headers
from rilke.records.reader import RecordColumns, read_batch


def new_builder(compression: int) -> Any:
    """A fresh batch builder: ``append(key, value, headers, timestamp_ms) -> size so far``,
    ``set_producer_state(pid, epoch, base_sequence, is_transactional)``, ``build() -> bytes``.
    """
    from rilke.records import BatchBuilder  # type: ignore[attr-defined,unused-ignore]

    return BatchBuilder(compression=compression)


def whole_batches(data: bytes) -> tuple[list[tuple[int, hdr.BatchHeader]], RilkeError | None]:
    """The position and header of each whole batch from the start of ``data``, in order.

    Each header is read once, here (its CRC is not checked yet: :func:`read_columns` does it
    with the same header). Stops at a partial trailing batch (a fetch cut at its byte limit:
    fetched again from its offset) and at a header that cannot be read, which is returned as
    the error (None when every whole batch was read).
    """
    batches: list[tuple[int, hdr.BatchHeader]] = []
    pos = 0
    end = len(data)
    peek = hdr.peek_size
    read = hdr.read_header
    while pos < end:
        size = peek(data, pos)
        if size is None or end - pos < size:
            break
        try:
            header = read(data, pos)
        except RilkeError as exc:
            return batches, exc
        batches.append((pos, header))
        pos += size
    return batches, None


def read_columns(data: bytes, pos: int, header: hdr.BatchHeader, check_crc: bool) -> RecordColumns:
    """The records of the batch at ``pos`` of ``data`` as columns (offsets, timestamps, keys,
    values, headers), ``header`` being its header as :func:`whole_batches` read it.

    The batch is checked against the header first (CRC when ``check_crc``, size, counts, codec)
    and decoded whole. Raises a :class:`rilke.errors.RecordsError` subclass for a batch that
    does not hold.
    """
    return read_batch(data, pos, check_crc=check_crc, header=header).columns()


def read_records(batch: bytes | memoryview, header: Any, check_crc: bool) -> list[Any]:
    """The records of the one whole batch in ``batch``, each unpacking as
    ``(offset, timestamp, key, value, headers, batch_header)``.

    ``header`` is the batch's already-read header (unused by the codec, which checks it
    again). Raises a :class:`rilke.errors.RecordsError` subclass for a batch that does not
    hold (bad CRC when ``check_crc``, bad records, unsupported codec).
    """
    return read_batch(batch, 0, check_crc=check_crc).records()


def encode_headers(headers: Any) -> bytes:
    """A record's headers (a sequence of (str, bytes or None)) encoded for
    :meth:`BatchBuilder.append_columns`. Raises TypeError for a key that is not str or a value
    that is not bytes-like or None."""
    return _encode_headers(headers)
