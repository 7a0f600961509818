"""Cluster wiring of `rilke server`: identity, the metadata controller, brokers, admin."""
