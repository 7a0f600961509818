"""Producer id allocation (the per-partition producer state is in rilke.partition)."""

from __future__ import annotations

import json
from pathlib import Path

from rilke.storage.files import atomic_write


class ProducerIdManager:
    """Hands out producer ids, never the same twice, across restarts.

    Persists only the end of the current block of ids (``producer_ids.json``), so most calls
    write nothing. Not thread-safe.
    """

    BLOCK_SIZE = 1000

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / "producer_ids.json"
        self._next = 0
        self._block_end = 0
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
            self._next = self._block_end = int(document["next_block_start"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            raise RuntimeError(f"producer id file {self._path} is damaged") from None

    def next_id(self) -> int:
        """A producer id not handed out before."""
        if self._next >= self._block_end:
            self._block_end = self._next + self.BLOCK_SIZE
            atomic_write(self._path, json.dumps({"next_block_start": self._block_end}).encode())
        pid = self._next
        self._next += 1
        return pid
