"""The client's one door to the record batch codec in :mod:`rilke.records`.

The producer builds batches with :func:`new_builder`; the consumer reads them with
:func:`read_records`. Keeping the codec behind these two functions keeps the rest of the client
independent of the codec's module layout (and lets unit tests swap in a reference codec).
"""

from __future__ import annotations

from typing import Any


def new_builder(compression: int) -> Any:
    """A fresh batch builder: ``append(key, value, headers, timestamp_ms) -> size so far``,
    ``set_producer_state(pid, epoch, base_sequence, is_transactional)``, ``build() -> bytes``.
    """
    from rilke.records import BatchBuilder  # type: ignore[attr-defined,unused-ignore]

    return BatchBuilder(compression=compression)


def read_records(batch: bytes | memoryview, header: Any, check_crc: bool) -> list[Any]:
    """The records of the one whole batch in ``batch``, each unpacking as
    ``(offset, timestamp, key, value, headers, batch_header)``.

    ``header`` is the batch's already-read header (unused by the codec, which checks it
    again). Raises a :class:`rilke.errors.RecordsError` subclass for a batch that does not
    hold (bad CRC when ``check_crc``, bad records, unsupported codec).
    """
    from rilke.records import read_batch  # type: ignore[attr-defined,unused-ignore]

    return read_batch(batch, 0, check_crc=check_crc).records()  # type: ignore[no-any-return,unused-ignore]
