"""A data directory's identity: the cluster it belongs to and this node's id in it.

``cluster.json`` in the data directory (``{"v": 1, "cluster_id": ..., "node_id": ...}``,
replaced atomically) is written the first time a node of a cluster starts over the
directory, and checked on every later start: a data directory started with another node id,
or for another cluster (other initial voters, a join to another cluster), or a cluster's
directory started as a single node, is refused with :class:`NodeIdentityError`, changing
nothing. Without the file a single node starts as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rilke.errors import RilkeError
from rilke.storage.files import atomic_write

IDENTITY_FILE = "cluster.json"
_VERSION = 1


class NodeIdentityError(RilkeError):
    """The data directory belongs to another cluster or another node id (or is damaged)."""


@dataclass(frozen=True)
class NodeIdentity:
    cluster_id: str
    node_id: int
    voters: tuple[tuple[int, str], ...] = ()
    """A node that joined: the metadata group's initial voters, so that it restarts without
    asking its join target again (empty for an initial voter: its flags say them)."""


def cluster_id_of_voters(voters: Sequence[tuple[int, str]]) -> str:
    """The id every initial voter derives alike from the voter list (ids and addresses), so
    that they agree on it before any of them can talk: two clusters formed with other
    voters get other ids, and their nodes refuse each other's streams."""
    text = ",".join(f"{node}@{addr}" for node, addr in sorted(voters))
    return "rilke-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def read_identity(data_dir: Path) -> NodeIdentity | None:
    """The identity recorded in ``data_dir``, or None when it has none. Raises
    NodeIdentityError for a file that does not hold."""
    path = Path(data_dir) / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        if doc["v"] != _VERSION:
            raise ValueError(f"version {doc['v']}, this broker reads {_VERSION}")
        cluster_id, node_id = doc["cluster_id"], doc["node_id"]
        if not isinstance(cluster_id, str) or not cluster_id or not isinstance(node_id, int):
            raise ValueError("cluster_id must be a non-empty string and node_id an integer")
        voters = tuple(sorted((int(n), str(a)) for n, a in doc.get("voters", {}).items()))
    except (ValueError, KeyError, TypeError) as e:
        raise NodeIdentityError(f"{path} is damaged: {e}; restore it or move it away") from None
    return NodeIdentity(cluster_id, node_id, voters)


def check_identity(data_dir: Path, wanted: NodeIdentity) -> None:
    """Record ``wanted`` in a data directory without an identity, or check it against the
    one recorded. Raises NodeIdentityError (nothing written) when they differ, OSError when
    the file cannot be written."""
    have = read_identity(data_dir)
    if have is None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        doc: dict[str, object] = {
            "v": _VERSION,
            "cluster_id": wanted.cluster_id,
            "node_id": wanted.node_id,
        }
        if wanted.voters:
            doc["voters"] = {str(n): a for n, a in wanted.voters}
        atomic_write(Path(data_dir) / IDENTITY_FILE, json.dumps(doc).encode() + b"\n")
        return
    if have.node_id != wanted.node_id:
        raise NodeIdentityError(
            f"data directory {data_dir} belongs to node {have.node_id}, not {wanted.node_id}: "
            f"start it with --node-id {have.node_id}, or give this node another --data-dir"
        )
    if have.cluster_id != wanted.cluster_id:
        raise NodeIdentityError(
            f"data directory {data_dir} belongs to cluster {have.cluster_id}, not "
            f"{wanted.cluster_id} (other --initial-voters, or a join to another cluster): "
            f"start it with the cluster's own settings, or give this node another --data-dir"
        )


def check_single_node(data_dir: Path) -> None:
    """A single node (no --initial-voters, no --join) must not take a cluster's data
    directory: raises NodeIdentityError naming the cluster."""
    have = read_identity(data_dir)
    if have is not None:
        raise NodeIdentityError(
            f"data directory {data_dir} belongs to node {have.node_id} of cluster "
            f"{have.cluster_id}: start it with --initial-voters or --join as before"
        )
