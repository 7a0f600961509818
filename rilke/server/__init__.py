"""The broker process.

- config.py: BrokerConfig and load_config (flags > RILKE_* environment > TOML file > defaults).
- topics.py: the topic registry (topics.json), Kafka's topic-name rule, topic config checks.
- producer_state.py: producer id allocation (per-partition producer state: rilke.partition).
- partition.py: LocalPartition (single node), a rilke.partition Partition over a storage
  PartitionLog, and its factory; re-exports the Partition interface the gRPC layer uses.
- broker.py: Broker, the topics and partitions over a storage LogManager, built by a
  partition factory.
- services.py: the gRPC Broker and Admin services, health and reflection.
- server.py: lifecycle (start, maintenance, graceful shutdown); memory.py: malloc tuning.
"""
