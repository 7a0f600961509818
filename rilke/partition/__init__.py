"""The partition seam: what every kind of partition is and shares.

- interface.py: the :class:`Partition` protocol, its results and :class:`Leadership`, and the
  factory type the broker builds partitions with.
- validation.py: the checks a produced batch must pass (leader side), as CheckedBatches.
- group_flush.py: group commit of a partition log's fsyncs, and the node's FlushSlots.
- producer_state.py: idempotent producers' state, fed from applied batches, with its snapshot.
- maintenance.py: the periodic work of a partition log (the node's one maintenance path).
- subscribers.py: the callbacks a partition calls when its high watermark or leadership moves.

Layers: rilke.server and rilke.replication use this package; it uses rilke.storage and
rilke.records. It holds no kind of partition itself (LocalPartition is in rilke.server).
"""
