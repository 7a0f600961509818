"""The broker process's lifecycle: start, serve, maintain, shut down gracefully.

Start: take the data directory (LogManager locks it; a second broker gets DataDirLockedError),
open the topics, bind the gRPC server (port 0 picks a free one), optionally write the port to a
file, and report the bound address. Serve until SIGTERM/SIGINT, running maintenance (retention,
compaction, time-based flush, producer state snapshots) every maintenance_interval_ms.
A scrubber checks the CRCs of sealed segments in the background at scrub_bytes_per_second
(rilke.server.scrubbing). Shutdown: health goes NOT_SERVING, new calls are refused, calls in flight get up to
shutdown_grace_ms to finish (long polls are woken at once), then every partition is flushed and
the clean-shutdown marker written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from rilke.errors import RilkeError
from rilke.server.broker import Broker, LogManagerLike
from rilke.server.cluster.identity import check_single_node
from rilke.server.config import BrokerConfig, describe, split_host_port
from rilke.server.group_service import GroupManager, GroupService, coordinator_config
from rilke.server.offsets_log import BrokerGroupView, ClusterGroupView
from rilke.server.scrubbing import run_scrubber
from rilke.server.services import DEFAULT_FETCH_MAX_BYTES, BrokerService, add_services
from rilke.storage.files import atomic_write
from rilke.storage.scrubber import Scrubber

if TYPE_CHECKING:
    from rilke.server.cluster.node import ClusterNode

log = logging.getLogger(__name__)


class ListenError(RilkeError):
    """The gRPC server could not bind its listen address."""


def open_log_manager(config: BrokerConfig) -> LogManagerLike:
    """The storage LogManager for the data dir (created if missing). Raises
    DataDirLockedError when another process holds it."""
    from rilke.storage.manager import LogManager

    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    manager: LogManagerLike = LogManager(
        data_dir,
        config.log,
        now_ms=int(time.time() * 1000),
        max_open_files=config.max_open_files,
    )
    return manager


def check_bindable(host: str, port: int) -> None:
    """Raise ListenError saying why, when ``host:port`` cannot be bound (in use, not an
    address of this machine, a privileged port); port 0 always can.

    gRPC's own bind failure says only "Failed to bind" (and logs a line of its own), so the
    address is tried first with a plain socket, as gRPC will bind it (SO_REUSEADDR).
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ListenError(f"cannot listen on {host}:{port}: {e} (check --listen)") from None
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as e:
                reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
                raise ListenError(
                    f"cannot listen on {host}:{port}: {reason}: choose another --listen "
                    f"(or stop what uses it)"
                ) from None


class BrokerServer:
    """One broker: a Broker over a LogManager, behind a grpc.aio server."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        manager_factory: Callable[[BrokerConfig], LogManagerLike] = open_log_manager,
    ) -> None:
        self.config = config
        self._manager_factory = manager_factory
        self.broker: Broker | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._service: BrokerService | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._scrubbing: asyncio.Task[None] | None = None
        self.scrubber: Scrubber | None = None  # its ``stats`` are the scrub counters
        self._groups: GroupManager | None = None
        self.address: tuple[str, int] | None = None
        self._kafka: Any = None  # the Kafka listener (rilke.server.kafka), when kafka_listen is set
        self._kafka_groups: Any = None
        self.kafka_address: tuple[str, int] | None = None
        self._metrics: Any = None  # the metrics listener, when metrics_listen is set
        self.metrics_collector: Any = None  # its rilke.server.metrics.BrokerCollector
        self.metrics_address: tuple[str, int] | None = None
        self.serving = False  # requests are served (/health answers 200)
        self.cluster: ClusterNode | None = None  # a node of a cluster (--initial-voters/--join)

    async def start(self) -> tuple[str, int]:
        """Open storage and start serving; returns the bound (host, port).

        Raises DataDirLockedError, InvalidConfigError (damaged registry) or ListenError; on
        failure everything opened is closed again.
        """
        config = self.config
        host, port = split_host_port(
            config.listen, "listen", config.sources.get("listen", "default")
        )
        check_bindable(host, port)
        if not (config.initial_voters or config.join):
            check_single_node(Path(config.data_dir))
        if (config.initial_voters or config.join) and config.auto_create_topics:
            log.warning("auto_create_topics is not supported in a cluster yet: off")
            config = self.config = dataclasses.replace(config, auto_create_topics=False)
        manager = self._manager_factory(config)
        try:
            max_request = config.max_request_bytes + (1 << 20)
            server = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", max_request),
                    ("grpc.max_send_message_length", DEFAULT_FETCH_MAX_BYTES + (1 << 20)),
                    ("grpc.so_reuseport", 0),
                ]
            )
            try:
                bound = server.add_insecure_port(config.listen)
            except RuntimeError as e:
                raise ListenError(
                    f"cannot listen on {config.listen}: {e} (choose another --listen)"
                ) from None
            if not bound:
                raise ListenError(
                    f"cannot listen on {config.listen} (address in use?): choose another --listen"
                )
            self.address = (host, bound)
            advertised = self.address
            if config.advertised_listen:
                advertised = split_host_port(
                    config.advertised_listen, "advertised_listen", "config"
                )
            wrap_factory = None
            if config.initial_voters or config.join:
                # A node of a cluster: the metadata group replayed before the broker opens
                # its partitions (rilke.server.cluster.node).
                from rilke.server.cluster.node import ClusterNode

                self.cluster = ClusterNode(config, server, advertised)
                await self.cluster.open()
                wrap_factory = self.cluster.partition_factory
            self.broker = broker = Broker(config, manager, wrap_partition_factory=wrap_factory)
            cluster_admin = None
            if self.cluster is not None:
                from rilke.proto import rilke_pb2_grpc

                cluster_service = self.cluster.attach(broker)
                rilke_pb2_grpc.add_ClusterServicer_to_server(  # type: ignore[no-untyped-call]
                    cluster_service, server
                )
                cluster_admin = self.cluster.admin
            group_view: BrokerGroupView = BrokerGroupView(broker)
            if self.cluster is not None and self.cluster.admin is not None:
                # __consumer_offsets replicated, created by the controller (offsets_log.py).
                group_view = ClusterGroupView(
                    broker, self.cluster.view, self.cluster.admin.create_topic
                )
            self._groups = GroupManager(
                group_view,
                config=coordinator_config(config),
                partitions=config.offsets_topic_partitions,
                node_id=config.node_id,
            )
            await self._groups.start()
            self._service, self._health = add_services(
                server,
                broker,
                advertised,
                group_service=GroupService(
                    self._groups,
                    advertised,
                    config.node_id,
                    metadata_view=self.cluster.view if self.cluster is not None else None,
                ),
                metadata_view=self.cluster.served_view if self.cluster is not None else None,
                cluster_admin=cluster_admin,
                init_producer_id=(
                    self.cluster.producer_ids.init_producer_id
                    if self.cluster is not None and self.cluster.producer_ids is not None
                    else None
                ),
            )
            if self.cluster is not None:
                self.cluster.on_topics_deleted(self._service.wake_waiters)
            await server.start()
            self._server = server
            from grpc_health.v1 import health_pb2

            if self.cluster is not None:
                if config.kafka_listen:
                    # Bound before the broker registers: it registers its Kafka listener.
                    await self._start_kafka(broker, self._groups)
                await self.cluster.start()
            await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
            if config.kafka_listen and self.cluster is None:
                await self._start_kafka(broker, self._groups)
            if config.metrics_listen:
                await self._start_metrics(broker)
        except BaseException:
            await self._stop_metrics()
            await self._stop_kafka()
            if self.cluster is not None:
                await self.cluster.close()
                self.cluster = None
            if self._groups is not None:
                await self._groups.stop()
                self._groups = None
            if self.broker is not None:
                self.broker.close()
                self.broker = None
            else:
                manager.close()
            raise
        if config.port_file is not None:
            atomic_write(Path(config.port_file), f"{bound}\n".encode())
        for name, value in describe(config).items():
            log.info("setting %s = %s", name, value)
        log.info(
            "rilke broker %d listening on %s:%d, data in %s",
            config.node_id,
            host,
            bound,
            Path(config.data_dir).resolve(),
        )
        self._maintenance = asyncio.ensure_future(self._run_maintenance())
        if config.scrub_bytes_per_second > 0:
            self.scrubber = Scrubber(broker.logs)
            self._scrubbing = asyncio.ensure_future(
                run_scrubber(self.scrubber, config.scrub_bytes_per_second)
            )
        self.serving = True
        return self.address

    async def _start_metrics(self, broker: Broker) -> None:
        """Serve /metrics and /health on metrics_listen (rilke.server.metrics_http). Raises
        ListenError."""
        from rilke.server.metrics import (
            BrokerCollector,
            MetricsSources,
            established_connections,
            make_registry,
        )
        from rilke.server.metrics_http import MetricsServer

        config = self.config
        source = config.sources.get("metrics_listen", "default")
        host, port = split_host_port(config.metrics_listen, "metrics_listen", source)
        self.metrics_collector = BrokerCollector(
            broker,
            MetricsSources(
                groups=lambda: self._groups,
                scrub_stats=lambda: self.scrubber.stats if self.scrubber is not None else None,
                kafka_connections=lambda: (
                    self._kafka.connection_count if self._kafka is not None else None
                ),
                grpc_connections=lambda: (
                    established_connections(self.address[1]) if self.address else None
                ),
            ),
        )
        self._metrics = MetricsServer(make_registry(self.metrics_collector), lambda: self.serving)
        try:
            self.metrics_address = await self._metrics.start(host, port)
        except OSError as e:
            self._metrics = None
            raise ListenError(
                f"cannot listen on {host}:{port} for metrics: {e.strerror or e} "
                "(choose another --metrics-listen)"
            ) from None
        log.info("metrics listener on %s:%d (/metrics, /health)", *self.metrics_address)

    async def _stop_metrics(self) -> None:
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None

    async def _start_kafka(self, broker: Broker, groups: GroupManager) -> None:
        """Serve the Kafka wire protocol on kafka_listen beside gRPC. Raises ListenError."""
        from rilke.server.kafka.admin_apis import AdminApis
        from rilke.server.kafka.apis import KafkaApis
        from rilke.server.kafka.group_apis import GroupApis
        from rilke.server.kafka.handler import KafkaListener

        config = self.config
        source = config.sources.get("kafka_listen", "default")
        host, port = split_host_port(config.kafka_listen, "kafka_listen", source)
        advertised: tuple[str, int] | None = None
        if config.kafka_advertised_listen:
            advertised = split_host_port(
                config.kafka_advertised_listen, "kafka_advertised_listen", "config"
            )

        def kafka_advertised() -> tuple[str, int]:
            assert self.kafka_address is not None
            return advertised or self.kafka_address

        kafka_apis: KafkaApis | None = None

        def topics_deleted() -> None:
            if self._service is not None:
                self._service.wake_waiters()
            if kafka_apis is not None:
                kafka_apis.wake_waiters()

        cluster = self._kafka_cluster()
        if self.cluster is not None:
            self.cluster.on_topics_deleted(topics_deleted)
        self._kafka_groups = GroupApis(
            groups,
            config.node_id,
            kafka_advertised,
            view=cluster.view if cluster is not None else None,
        )
        kafka_apis = KafkaApis(
            broker,
            self._kafka_groups,
            AdminApis(broker, topics_deleted, cluster.admin if cluster is not None else None),
            kafka_advertised,
            cluster,
        )
        self._kafka = KafkaListener(kafka_apis, config.kafka_max_frame_bytes, stats=broker.stats)
        try:
            self.kafka_address = await self._kafka.start(host, port)
        except OSError as e:
            self._kafka = None
            raise ListenError(
                f"cannot listen on {host}:{port} for Kafka clients: {e.strerror or e} "
                "(choose another --kafka-listen)"
            ) from None
        self._kafka_groups.start()
        if self.cluster is not None:
            self.cluster.set_kafka_listener(*kafka_advertised())
        log.info("kafka listener on %s:%d", *self.kafka_address)

    def _kafka_cluster(self) -> Any:
        """A node of a cluster's side of the Kafka listener (rilke.server.kafka.cluster), or
        None on a single node."""
        node = self.cluster
        if node is None:
            return None
        from rilke.server.kafka.cluster import KafkaCluster

        assert node.admin is not None and node.producer_ids is not None
        return KafkaCluster(node.node_id, node.view, node.admin, node.producer_ids.init_producer_id)

    async def _stop_kafka(self) -> None:
        if self._kafka is not None:
            await self._kafka.stop()
            self._kafka = None
        if self._kafka_groups is not None:
            await self._kafka_groups.stop()
            self._kafka_groups = None

    async def _run_maintenance(self) -> None:
        interval_s = self.config.maintenance_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            if self.broker is None:
                return
            try:
                # Fsyncs, checkpoint writes and compaction on worker threads; the loop keeps
                # serving requests meanwhile.
                await self.broker.maintain()
            except Exception:
                log.exception("maintenance failed")

    async def stop(self) -> None:
        """Graceful shutdown; safe to call twice."""
        self.serving = False
        if self._scrubbing is not None:
            self._scrubbing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scrubbing
            self._scrubbing = None
            if self.scrubber is not None:
                stats = self.scrubber.stats
                log.info(
                    "scrubber: %d bytes in %d batches checked, %d passes, %d corrupt batch(es)",
                    stats.bytes_scrubbed,
                    stats.batches_scrubbed,
                    stats.passes_completed,
                    stats.corrupt_batches_found,
                )
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        await self._stop_kafka()
        if self.cluster is not None:
            # Before the server stops: the Raft streams are calls of that server.
            await self.cluster.close()
            self.cluster = None
        if self._server is not None:
            log.info("shutting down: finishing requests in flight")
            if self._health is not None:
                await self._health.enter_graceful_shutdown()
            stopping = self._server.stop(self.config.shutdown_grace_ms / 1000)
            if self._service is not None:
                self._service.wake_all_waiters()
            await stopping
            self._server = None
        await self._stop_metrics()
        if self._groups is not None:
            await self._groups.stop()
            self._groups = None
        if self.broker is not None:
            self.broker.close()
            self.broker = None
            log.info("shut down cleanly")


async def serve(
    config: BrokerConfig,
    on_listening: Callable[[str, int], None],
    on_kafka_listening: Callable[[str, int], None] | None = None,
    on_metrics_listening: Callable[[str, int], None] | None = None,
) -> None:
    """Run a broker until SIGTERM or SIGINT, then shut it down gracefully."""
    server = BrokerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        host, port = await server.start()
        on_listening(host, port)
        if on_kafka_listening is not None and server.kafka_address is not None:
            on_kafka_listening(*server.kafka_address)
        if on_metrics_listening is not None and server.metrics_address is not None:
            on_metrics_listening(*server.metrics_address)
        await stop.wait()
        log.info("signal received")
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
