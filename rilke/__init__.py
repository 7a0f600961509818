"""Rilke: an event-streaming log in the family of Apache Kafka and Redpanda.

The blocking clients and their value types are importable from here; they load on first use,
so ``import rilke`` stays cheap (the CLI and the server do not pay for the client)::

    from rilke import Producer, Consumer, Admin, NewTopic, TopicPartition

The asyncio clients live in :mod:`rilke.aio`; errors in :mod:`rilke.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Producer": ("rilke.client.producer", "Producer"),
    "Consumer": ("rilke.client.consumer", "Consumer"),
    "Admin": ("rilke.client.admin", "Admin"),
    "NewTopic": ("rilke.client.structs", "NewTopic"),
    "TopicPartition": ("rilke.client.structs", "TopicPartition"),
    "RecordMetadata": ("rilke.client.structs", "RecordMetadata"),
    "ConsumerRecord": ("rilke.client.structs", "ConsumerRecord"),
    "OffsetAndMetadata": ("rilke.client.structs", "OffsetAndMetadata"),
    "errors": ("rilke.errors", None),
}

__all__ = [
    "Admin",
    "Consumer",
    "ConsumerRecord",
    "NewTopic",
    "OffsetAndMetadata",
    "Producer",
    "RecordMetadata",
    "TopicPartition",
    "__version__",
    "errors",
]

if TYPE_CHECKING:
    from rilke import errors
    from rilke.client.admin import Admin
    from rilke.client.consumer import Consumer
    from rilke.client.producer import Producer
    from rilke.client.structs import (
        ConsumerRecord,
        NewTopic,
        OffsetAndMetadata,
        RecordMetadata,
        TopicPartition,
    )


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rilke' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value
