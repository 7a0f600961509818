"""The client's one door to the record batch codec in :mod:`rilke.records`.

The producer builds batches with :func:`new_builder`; the consumer reads them with
:func:`read_records`. Keeping the codec behind these two functions keeps the rest of the client
independent of the codec's module layout (and lets unit tests swap in a reference codec).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Record = tuple[int, int, "bytes | None", "bytes | None", list[tuple[str, "bytes | None"]]]
"""(offset, timestamp, key, value, headers) of one decoded record."""


def new_builder(compression: int) -> Any:
    """A fresh batch builder: ``append(key, value, headers, timestamp_ms) -> size so far``,
    ``set_producer_state(pid, epoch, base_sequence, is_transactional)``, ``build() -> bytes``.
    """
    from rilke.records import BatchBuilder  # type: ignore[attr-defined,unused-ignore]

    return BatchBuilder(compression=compression)


def read_records(batch: bytes | memoryview, header: Any, check_crc: bool) -> Iterator[Record]:
    """The records of one whole batch (``header`` from :func:`rilke.records.header.read_header`).

    Raises :class:`rilke.errors.CorruptRecordError` when ``check_crc`` and the CRC fails.
    """
    from rilke.records import read_batch_records  # type: ignore[attr-defined,unused-ignore]

    return read_batch_records(batch, header, check_crc=check_crc)  # type: ignore[no-any-return]
