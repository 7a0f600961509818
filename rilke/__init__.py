"""Rilke: an event-streaming log in the family of Apache Kafka and Redpanda."""

__version__ = "0.1.0"
