"""The Kafka wire protocol listener: a sans-I/O codec (``wire``, ``types``, ``schemas``,
``codec``) and an asyncio connection handler (``handler``) that serves Kafka clients on the same
partitions, topics and groups as the gRPC services (``apis``, ``admin_apis``, ``group_apis``).
"""
