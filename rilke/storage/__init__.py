"""rilke.storage: the partition log on disk (segments, indexes, recovery, retention).

Synchronous and not thread-safe: the caller serialises access per partition. See
:mod:`rilke.storage.log` for which calls block on disk.
"""

from rilke.storage.config import LogConfig
from rilke.storage.log import AppendInfo, PartitionLog, ReadResult
from rilke.storage.manager import LogManager
from rilke.storage.recovery import RecoveryReport

__all__ = ["AppendInfo", "LogConfig", "LogManager", "PartitionLog", "ReadResult", "RecoveryReport"]
