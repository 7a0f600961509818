"""The asyncio clients: ``rilke.aio.Producer``, ``rilke.aio.Consumer``, ``rilke.aio.Admin``.

Each is started with ``await x.start()`` or ``async with`` and used from one event loop.
"""

from rilke.client.admin import AIOAdmin as Admin
from rilke.client.consumer import AIOConsumer as Consumer
from rilke.client.producer import AIOProducer as Producer
from rilke.client.structs import (
    ConsumerRecord,
    NewTopic,
    OffsetAndMetadata,
    RecordMetadata,
    TopicPartition,
)

__all__ = [
    "Admin",
    "Consumer",
    "ConsumerRecord",
    "NewTopic",
    "OffsetAndMetadata",
    "Producer",
    "RecordMetadata",
    "TopicPartition",
]
