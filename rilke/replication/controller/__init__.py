"""rilke.replication.controller: the metadata controller, as Kafka's KRaft (pure, no I/O).

- :mod:`records`: every metadata change as a record, encoded in record batches.
- :mod:`state`: :class:`MetadataState`, the state machine applying them.
- :mod:`snapshot`: the whole state as bytes (restart is snapshot + tail).
- :mod:`placement`: replicas of new partitions over live brokers and racks.
- :mod:`decider`: :class:`ControllerDecider`, the leader's requests-to-records logic.
- :mod:`view`: :class:`MetadataView`, what Metadata and DescribeTopics answer from.
- :mod:`applier`: :class:`MetadataApplier`, committed entries in, current view out.
"""

from rilke.replication.controller.applier import MetadataApplier
from rilke.replication.controller.decider import (
    ControllerDecider,
    DeciderSettings,
    LeadershipReport,
)
from rilke.replication.controller.records import (
    NO_LEADER,
    MetadataRecord,
    decode_batch,
    encode_batch,
)
from rilke.replication.controller.state import (
    BrokerInfo,
    BrokerState,
    MetadataState,
    PartitionInfo,
    TopicMeta,
)
from rilke.replication.controller.view import NO_CONTROLLER, MetadataView, view_of

__all__ = [
    "NO_CONTROLLER",
    "NO_LEADER",
    "BrokerInfo",
    "BrokerState",
    "ControllerDecider",
    "DeciderSettings",
    "LeadershipReport",
    "MetadataApplier",
    "MetadataRecord",
    "MetadataState",
    "MetadataView",
    "PartitionInfo",
    "TopicMeta",
    "decode_batch",
    "encode_batch",
    "view_of",
]
