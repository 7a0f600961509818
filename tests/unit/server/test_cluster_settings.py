"""--initial-voters / --join settings and the data directory's identity file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rilke.errors import InvalidConfigError
from rilke.server.cluster.identity import (
    NodeIdentity,
    NodeIdentityError,
    check_identity,
    check_single_node,
    cluster_id_of_voters,
    read_identity,
)
from rilke.server.config import load_config

VOTERS = "1@127.0.0.1:9292,2@127.0.0.1:9293,3@127.0.0.1:9294"


def test_initial_voters_from_flag_env_and_toml(tmp_path: Path) -> None:
    config = load_config({"initial_voters": VOTERS, "node_id": "2", "listen": "127.0.0.1:9293"})
    assert config.initial_voters == (
        (1, "127.0.0.1:9292"),
        (2, "127.0.0.1:9293"),
        (3, "127.0.0.1:9294"),
    )
    env = {"RILKE_INITIAL_VOTERS": VOTERS, "RILKE_NODE_ID": "1"}
    assert load_config(env=env).initial_voters == config.initial_voters
    toml = tmp_path / "r.toml"
    toml.write_text(
        'node_id = 3\nlisten = "127.0.0.1:9294"\n'
        'initial_voters = ["1@127.0.0.1:9292", "2@127.0.0.1:9293", "3@127.0.0.1:9294"]\n'
    )
    assert load_config(env={}, config_file=toml).initial_voters == config.initial_voters
    assert load_config(env={}).initial_voters == ()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1@127.0.0.1:9292,x@127.0.0.1:9293", "'x@127.0.0.1:9293' is not ID@HOST:PORT"),
        ("1@127.0.0.1", "is not HOST:PORT"),
        ("1@127.0.0.1:9292,1@127.0.0.1:9293", "node id 1 given twice"),
        ("1@127.0.0.1:9292,2@127.0.0.1:9292", "address '127.0.0.1:9292' given twice"),
        ("1@127.0.0.1:0", "a voter needs a port"),
    ],
)
def test_bad_voters_name_the_item(value: str, says: str) -> None:
    with pytest.raises(InvalidConfigError, match="initial_voters \\(from --initial-voters\\)") as e:
        load_config({"initial_voters": value, "node_id": "1"}, env={})
    assert says in str(e.value)


def test_own_id_and_address_must_match_the_voters() -> None:
    with pytest.raises(InvalidConfigError, match=r"node.s id 4 .* not among the voters"):
        load_config({"initial_voters": VOTERS, "node_id": "4"}, env={})
    with pytest.raises(InvalidConfigError, match=r"voter 2 is at 127\.0\.0\.1:9293, but this node"):
        load_config({"initial_voters": VOTERS, "node_id": "2"}, env={})
    config = load_config(
        {"initial_voters": VOTERS, "node_id": "2", "advertised_listen": "127.0.0.1:9293"},
        env={},
    )
    assert config.node_id == 2
    with pytest.raises(InvalidConfigError, match="give one"):
        load_config({"initial_voters": VOTERS, "node_id": "1", "join": "127.0.0.1:9000"}, env={})
    assert load_config({"join": "127.0.0.1:9000"}, env={}).join == "127.0.0.1:9000"
    # A node of a cluster serves Kafka clients too (rilke.server.kafka.cluster).
    joined = load_config({"join": "127.0.0.1:9000", "kafka_listen": "127.0.0.1:9092"}, env={})
    assert joined.kafka_listen == "127.0.0.1:9092"
    # ... at an address Kafka clients can be sent to.
    with pytest.raises(InvalidConfigError, match="give --kafka-advertised-listen"):
        load_config({"join": "127.0.0.1:9000", "kafka_listen": "0.0.0.0:9092"}, env={})
    for bad in ("0.0.0.0:9092", "rilke-1:0"):
        with pytest.raises(InvalidConfigError, match="not an address Kafka clients can reach"):
            load_config(
                {
                    "join": "127.0.0.1:9000",
                    "kafka_listen": "0.0.0.0:9092",
                    "kafka_advertised_listen": bad,
                },
                env={},
            )
    behind = {"kafka_listen": "0.0.0.0:9092", "kafka_advertised_listen": "rilke-1:9092"}
    assert load_config({"join": "127.0.0.1:9000", **behind}, env={}).kafka_listen
    assert load_config({"kafka_listen": "0.0.0.0:9092"}, env={}).kafka_listen  # a single node
    with pytest.raises(InvalidConfigError, match="join"):
        load_config({"join": "nohost"}, env={})


def test_cluster_id_of_voters_is_the_same_for_the_same_voters_only() -> None:
    a = cluster_id_of_voters([(2, "h:2"), (1, "h:1")])
    assert a == cluster_id_of_voters([(1, "h:1"), (2, "h:2")])
    assert a != cluster_id_of_voters([(1, "h:1"), (2, "h:3")])
    assert a.startswith("rilke-")


def test_identity_is_recorded_then_checked(tmp_path: Path) -> None:
    check_single_node(tmp_path)  # no file: a single node starts as before
    me = NodeIdentity("rilke-abc", 2)
    check_identity(tmp_path, me)
    assert read_identity(tmp_path) == me
    check_identity(tmp_path, me)
    with pytest.raises(NodeIdentityError, match="belongs to node 2, not 3"):
        check_identity(tmp_path, NodeIdentity("rilke-abc", 3))
    with pytest.raises(NodeIdentityError, match="belongs to cluster rilke-abc, not rilke-x"):
        check_identity(tmp_path, NodeIdentity("rilke-x", 2))
    with pytest.raises(NodeIdentityError, match="node 2 of cluster rilke-abc"):
        check_single_node(tmp_path)
    assert read_identity(tmp_path) == me


def test_a_joined_node_remembers_the_voters(tmp_path: Path) -> None:
    joined = NodeIdentity("rilke-abc", 4, ((1, "h:1"), (2, "h:2")))
    check_identity(tmp_path, joined)
    assert read_identity(tmp_path) == joined
    check_identity(tmp_path, NodeIdentity("rilke-abc", 4))  # the voters are not compared


def test_damaged_identity_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text('{"v": 1, "cluster_id": ""}')
    with pytest.raises(NodeIdentityError, match="damaged"):
        read_identity(tmp_path)
