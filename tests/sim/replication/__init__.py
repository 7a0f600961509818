"""The replication path in the deterministic simulation: the production runtime, transport,
replicated partition and partition log, on a virtual-time asyncio loop, a simulated network and
a disk that loses what was not synced (see ``runner.py``)."""
