"""The broker process.

- config.py: BrokerConfig and load_config (flags > RILKE_* environment > TOML file > defaults).
- topics.py: the topic registry (topics.json), Kafka's topic-name rule, topic config checks.
- producer_state.py: idempotent-producer state per partition; producer id allocation.
- partition.py: the Partition interface the gRPC layer uses; LocalPartition (single node,
  group commit) over a storage PartitionLog.
- broker.py: Broker, the topics and partitions over a storage LogManager.
- services.py: the gRPC Broker and Admin services, health and reflection.
- server.py: lifecycle (start, maintenance, graceful shutdown); memory.py: malloc tuning.
"""
