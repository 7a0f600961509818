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
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from rilke.replication.runtime import DEFAULT_TICK_S, RaftRuntime
from rilke.replication.transport import Transport, TransportConfig
from rilke.replication.wire import WireItem


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

    def _deliver(self, peer: int, items: list[WireItem]) -> None:
        self.runtime.receive(peer, items)

    def add_peer(self, node: int, addr: str) -> None:
        self.transport.add_peer(node, addr)

    async def start(self) -> None:
        await self.runtime.start()
        await self.transport.start()

    async def close(self) -> None:
        """Stop the runtime (state files written), then the streams."""
        await self.runtime.close()
        await self.transport.close()
