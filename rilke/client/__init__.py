"""The Rilke client library: producer, consumer and admin, an asyncio core with blocking facades.

Import the public names from :mod:`rilke` (blocking) and :mod:`rilke.aio` (asyncio).
"""
