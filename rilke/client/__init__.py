"""The Rilke client library: producer, consumer and admin, an asyncio core with blocking facades.

Import the public names from :mod:`rilke` (blocking) and :mod:`rilke.aio` (asyncio)::

    from rilke import Admin, Consumer, NewTopic, Producer, TopicPartition

    with Admin("127.0.0.1:9292") as admin:
        admin.create_topics([NewTopic("orders", num_partitions=3)])

    with Producer("127.0.0.1:9292", acks="all") as producer:
        future = producer.send("orders", b'{"id": 1}', key=b"customer-7")
        print(future.get(timeout=10))       # RecordMetadata(topic, partition, offset, timestamp)

    with Consumer("orders", bootstrap_servers="127.0.0.1:9292",
                  auto_offset_reset="earliest", consumer_timeout_ms=2000) as consumer:
        for record in consumer:              # ends after 2 s without a record; or poll()
            print(record.partition, record.offset, record.key, record.value)

Layout: ``structs`` (value types), ``config`` (settings checks), ``transport`` (one gRPC
channel per broker, deadlines, circuit breakers, gRPC status -> typed errors), ``cluster``
(bootstrap and the metadata cache, retries with backoff), ``partitioner`` (Kafka's murmur2 and
the sticky partitioner), ``accumulator`` + ``batch`` + ``sender`` (+ ``produce_stream``) +
``producer``, ``fetcher`` + ``consumer``, ``offsets`` (ListOffsets), ``admin``, ``codec`` (the
one door to rilke.records) and ``loop_thread`` (the blocking facades' event loop thread).
"""
