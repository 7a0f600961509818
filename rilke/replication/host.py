"""ReplicationHost: a node's Raft transport and runtime, tied together.

The broker (or a test, or a benchmark) makes one per process::

    host = ReplicationHost(TransportConfig(cluster_id, node_id, addr), peers, server=server)
    await host.start()            # after server.start(): the Raft service is on that server
    host.runtime.add_group(name, PartitionRaftStorage.open(log), Config(...), apply)
    index = await host.runtime.propose(name, [batch], [record_count])
    await host.close()            # before the server stops

``peers`` maps every other node's id to its address; ``add_peer`` learns a new one (a node
that joins). The Raft service is registered on ``server`` at construction, so build the host
before ``server.start()``.

A group whose log the host should own (the metadata log, say) is opened in a directory the
caller names with :meth:`ReplicationHost.open_group` and released with
:meth:`ReplicationHost.remove_group` (the runtime lets go of it, then its log is closed). A
partition whose PartitionLog the caller owns goes through ``host.runtime.add_group``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import grpc

from rilke.replication.raft.types import Config
from rilke.replication.raft_storage import PartitionRaftStorage
from rilke.replication.runtime import DEFAULT_TICK_S, Apply, OnLeader, OnSnapshot, RaftRuntime
from rilke.replication.transport import Transport, TransportConfig
from rilke.replication.wire import WireItem
from rilke.storage.config import LogConfig
from rilke.storage.handles import FileCache
from rilke.storage.log import PartitionLog


class ReplicationHost:
    """One node's replication: ``transport`` (the streams) and ``runtime`` (the groups)."""

    def __init__(
        self,
        config: TransportConfig,
        peers: Mapping[int, str],
        *,
        server: grpc.aio.Server,
        tick_s: float = DEFAULT_TICK_S,
    ) -> None:
        self.config = config
        self.transport = Transport(config, peers, self._deliver)
        self.transport.add_to_server(server)
        self.runtime = RaftRuntime(config.node_id, self.transport, tick_s=tick_s)
        self._owned_logs: dict[str, PartitionLog] = {}

    def _deliver(self, peer: int, items: list[WireItem]) -> None:
        self.runtime.receive(peer, items)

    def add_peer(self, node: int, addr: str) -> None:
        self.transport.add_peer(node, addr)

    def remove_peer(self, node: int) -> None:
        """Forget ``node`` (a member removed from every group this node holds)."""
        self.transport.remove_peer(node)

    def open_group(
        self,
        name: str,
        directory: Path,
        config: Config,
        apply: Apply,
        *,
        log_config: LogConfig | None = None,
        cache: FileCache | None = None,
        on_leader: OnLeader | None = None,
        on_snapshot: OnSnapshot | None = None,
    ) -> PartitionRaftStorage:
        """Host group ``name`` with its log (and ``raft.state``) in ``directory``, created if
        missing and recovered (checked batch by batch) if present; the host owns that log.
        Returns the group's storage (read the log through ``storage.log``). Raises ValueError
        for a name in use (nothing opened stays open), and what opening the log raises."""
        if self.runtime.has_group(name) or name in self._owned_logs:
            raise ValueError(f"raft group {name!r} is already running on this node")
        log = PartitionLog.open(
            directory,
            log_config or LogConfig(),
            now_ms=int(time.time() * 1000),
            recover=True,
            cache=cache,
        )
        try:
            storage = PartitionRaftStorage.open(log)
            self.runtime.add_group(
                name, storage, config, apply, on_leader=on_leader, on_snapshot=on_snapshot
            )
        except BaseException:
            log.close()
            raise
        self._owned_logs[name] = log
        return storage

    def remove_group(self, name: str) -> None:
        """Stop group ``name`` (see ``RaftRuntime.remove_group``) and close its log if the
        host opened it. Unknown names are ignored."""
        self.runtime.remove_group(name)
        log = self._owned_logs.pop(name, None)
        if log is not None:
            log.close()

    async def start(self) -> None:
        await self.runtime.start()
        await self.transport.start()

    async def close(self) -> None:
        """Stop the runtime (state files written), then the streams."""
        await self.runtime.close()
        await self.transport.close()
        for name in list(self._owned_logs):
            self._owned_logs.pop(name).close()
