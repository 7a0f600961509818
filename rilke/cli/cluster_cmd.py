"""`rilke cluster info|health|add-voter|remove-voter`: the cluster as its nodes see it.

``info`` prints the cluster id, the controller leader and its voters and learners, and every
broker with its address, rack, state and how many partition replicas and leaderships it
holds (and its Kafka listener, if it has one). ``health`` exits 0 only when every broker is alive, a controller leader is known and
every partition has a leader with all its replicas in sync; otherwise it says what is wrong
(one line each) and exits 1. Both answer from the first reachable --bootstrap-servers node's
applied metadata, with --json for scripts. ``add-voter N`` promotes node N (a node that
joined with --join, caught up) to a voter of the metadata controller; ``remove-voter N``
makes a voter a learner again. One change at a time.

``rebalance`` spreads replicas, then preferred leaders, over the live brokers (after a
broker was added): it starts one reassignment per partition that moves (``--dry-run``
prints the plan only). ``decommission N`` moves every replica off broker N (it takes no new
ones); once ``info`` shows it holds none, stop it and remove it (``remove-voter`` first if it
votes in the metadata controller). Moves run in the partitions' Raft groups while writes go
on; ``info`` lists the running ones.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rilke.cli.common import EXIT_FAILURE, EXIT_OK, add_client_arguments, client_command


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="the cluster: info, health, metadata controller voters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    p = sub.add_parser("info", help="cluster id, controller, voters, brokers")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(p)
    p.set_defaults(func=_info)
    p = sub.add_parser("health", help="exit 0 only when every broker and partition is healthy")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(p)
    p.set_defaults(func=_health)
    for name, add in (("add-voter", True), ("remove-voter", False)):
        p = sub.add_parser(
            name,
            help="promote a node to a voter of the metadata controller"
            if add
            else "make a voter of the metadata controller a learner",
        )
        p.add_argument("node_id", type=int, metavar="N")
        add_client_arguments(p)
        p.set_defaults(func=_change_voters, add=add)
    p = sub.add_parser("rebalance", help="spread replicas and leaders over the live brokers")
    p.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(p)
    p.set_defaults(func=_rebalance)
    p = sub.add_parser("decommission", help="move every replica off broker N before removal")
    p.add_argument("node_id", type=int, metavar="N")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(p)
    p.set_defaults(func=_decommission)


def _servers(args: argparse.Namespace) -> list[str]:
    servers = [s.strip() for s in args.bootstrap_servers.split(",") if s.strip()]
    if not servers:
        raise ValueError("--bootstrap-servers is empty")
    return servers


def _call(
    address: str, method: str, request: Any, timeout_s: float, service: str = "Cluster"
) -> Any:
    import grpc

    from rilke.proto import rilke_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stub = getattr(pb_grpc, f"{service}Stub")(channel)
        return getattr(stub, method)(request, timeout=timeout_s)


def _first(args: argparse.Namespace, method: str, request: Any, service: str = "Cluster") -> Any:
    """The answer of the first bootstrap server that answers."""
    import grpc

    from rilke.errors import RilkeError

    last = ""
    for address in _servers(args):
        try:
            return _call(address, method, request, args.request_timeout, service)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise RilkeError(
                    f"{address} is a single node, not a node of a cluster (it was started "
                    "without --initial-voters or --join)"
                ) from None
            last = f"{address}: {e.code().name} {e.details()}"
    raise RilkeError(f"no node answered ({last})")


def _describe(args: argparse.Namespace) -> dict[str, Any]:
    from rilke.proto import rilke_pb2 as pb

    r = _first(args, "DescribeCluster", pb.DescribeClusterRequest())
    return {
        "cluster_id": r.cluster_id,
        "controller_id": r.controller_id,
        "voters": list(r.voters),
        "learners": list(r.learners),
        "metadata_offset": r.applied_offset,
        "answered_by": r.node_id,
        "moves": [move_dict(m) for m in r.moves],
        "brokers": [
            {
                "node_id": b.node_id,
                "address": f"{b.host}:{b.port}",
                "rack": b.rack or None,
                "state": b.state,
                "epoch": b.epoch,
                "replicas": b.replicas,
                "leaders": b.leaders,
                "kafka_address": f"{b.kafka_host}:{b.kafka_port}" if b.kafka_host else None,
            }
            for b in r.brokers
        ],
    }


@client_command
def _info(args: argparse.Namespace) -> int:
    info = _describe(args)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    controller = info["controller_id"]
    print(f"cluster {info['cluster_id']}")
    print(
        f"controller leader {controller if controller >= 0 else 'unknown'}  "
        f"voters {info['voters']}  learners {info['learners']}  "
        f"(answered by node {info['answered_by']} at metadata offset {info['metadata_offset']})"
    )
    print(
        f"  {'BROKER':>6} {'ADDRESS':<22} {'RACK':<10} {'STATE':<16} {'REPLICAS':>8} {'LEADERS':>8}"
        "  KAFKA"
    )
    for b in info["brokers"]:
        print(
            f"  {b['node_id']:>6} {b['address']:<22} {b['rack'] or '-':<10} {b['state']:<16} "
            f"{b['replicas']:>8} {b['leaders']:>8}  {b['kafka_address'] or '-'}"
        )
    for m in info["moves"]:
        print(f"  moving {_move_text(m)}")
    return EXIT_OK


def move_dict(m: Any) -> dict[str, Any]:
    return {
        "topic": m.topic,
        "partition": m.partition,
        "replicas": list(m.replicas),
        "target": list(m.target),
    }


def _move_text(m: dict[str, Any]) -> str:
    def ids(xs: list[int]) -> str:
        return ",".join(map(str, xs))

    return f"{m['topic']}-{m['partition']}: {ids(m['replicas'])} -> {ids(m['target'])}"


def health_problems(info: dict[str, Any], topics: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the cluster (empty: healthy)."""
    problems = []
    if info["controller_id"] < 0:
        problems.append("no controller leader is known")
    if not info["brokers"]:
        problems.append("no broker is registered")
    for b in info["brokers"]:
        if b["state"] != "alive":
            problems.append(f"broker {b['node_id']} ({b['address']}) is {b['state']}")
    for t in topics:
        if t["error"]:
            problems.append(f"topic {t['name']}: {t['error']}")
        for p in t["partitions"]:
            where = f"partition {t['name']}-{p['partition']}"
            if p["leader"] < 0:
                problems.append(f"{where} has no leader")
            missing = sorted(set(p["replicas"]) - set(p["isr"]))
            if missing:
                problems.append(f"{where}: replicas {missing} are not in sync")
    return problems


@client_command
def _health(args: argparse.Namespace) -> int:
    from rilke.proto import rilke_pb2 as pb

    info = _describe(args)
    metadata = _first(args, "Metadata", pb.MetadataRequest(), service="Broker")
    topics = [
        {
            "name": t.name,
            "error": t.error.message if t.error.code else "",
            "partitions": [
                {
                    "partition": p.partition,
                    "leader": p.leader_id,
                    "replicas": list(p.replicas),
                    "isr": list(p.isr),
                }
                for p in t.partitions
            ],
        }
        for t in metadata.topics
    ]
    problems = health_problems(info, topics)
    if args.json:
        report = {
            "healthy": not problems,
            "problems": problems,
            "brokers": info["brokers"],
            "partitions": sum(len(t["partitions"]) for t in topics),
        }
        print(json.dumps(report, indent=2))
    elif problems:
        for line in problems:
            print(line)
    else:
        partitions = sum(len(t["partitions"]) for t in topics)
        print(
            f"healthy: {len(info['brokers'])} brokers alive, controller {info['controller_id']}, "
            f"{partitions} partitions led and in sync"
        )
    return EXIT_OK if not problems else EXIT_FAILURE


RETRIED_TRANSPORT = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def controller_write(args: argparse.Namespace, request: Any) -> Any:
    """Send a ControllerWrite to the controller leader; its response, or the typed error it
    answered. It follows NOT_CONTROLLER answers, and a controller that does not answer at
    all (down, paused, cut off: UNAVAILABLE or DEADLINE_EXCEEDED) is left for the controller
    the cluster names next, or else the next broker, each attempt with a share of the time
    left, until --request-timeout."""
    import grpc

    from rilke.errors import NotControllerError, RilkeError, for_code

    deadline = time.monotonic() + args.request_timeout
    info = _describe(args)
    addresses = {b["node_id"]: b["address"] for b in info["brokers"]}
    target = addresses.get(info["controller_id"], _servers(args)[0])
    attempt_s = max(2.0, args.request_timeout / 4)
    while True:
        left = deadline - time.monotonic()
        try:
            r = _call(target, "ControllerWrite", request, max(0.1, min(attempt_s, left)))
        except grpc.RpcError as e:
            failure = f"{target}: {e.code().name} {e.details()}"
            if e.code().name not in RETRIED_TRANSPORT or time.monotonic() > deadline:
                raise RilkeError(failure) from None
            target = _next_controller(args, target, addresses)
            time.sleep(0.2)
            continue
        if not r.error.code:
            break
        error = for_code(r.error.code)(r.error.message)
        if not isinstance(error, NotControllerError) or time.monotonic() > deadline:
            raise error
        target = addresses.get(r.controller_id, target)
        time.sleep(0.2)
    return r


def _next_controller(args: argparse.Namespace, failed: str, addresses: dict[int, str]) -> str:
    """Where to send a controller write after ``failed`` did not answer: the controller the
    cluster names now when that is another node, else the broker after ``failed``."""
    from rilke.errors import RilkeError

    try:
        info = _describe(args)
        addresses.update({b["node_id"]: b["address"] for b in info["brokers"]})
        named = addresses.get(info["controller_id"])
        if named and named != failed:
            return named
    except RilkeError:  # no node answered: rotate over the brokers known
        pass
    ring = sorted(set(addresses.values())) or _servers(args)
    return ring[(ring.index(failed) + 1) % len(ring)] if failed in ring else ring[0]


@client_command
def _change_voters(args: argparse.Namespace) -> int:
    from rilke.proto import rilke_pb2 as pb

    request = pb.ControllerWriteRequest(
        change_voters=pb.VotersChange(node_id=args.node_id, add=args.add)
    )
    controller_write(args, request)
    what = "is now a voter" if args.add else "is now a learner (no longer a voter)"
    print(f"node {args.node_id} {what} of the metadata controller")
    return EXIT_OK


def print_moves(args: argparse.Namespace, moves: list[dict[str, Any]], verb: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"moves": moves}, indent=2))
        return
    for m in moves:
        print(f"{verb} {_move_text(m)}")


@client_command
def _rebalance(args: argparse.Namespace) -> int:
    from rilke.proto import rilke_pb2 as pb

    request = pb.ControllerWriteRequest(rebalance=pb.RebalanceRequest(dry_run=args.dry_run))
    moves = [move_dict(m) for m in controller_write(args, request).moves]
    print_moves(args, moves, "would move" if args.dry_run else "moving")
    if not moves and not args.json:
        print("balanced: nothing to move")
    return EXIT_OK


@client_command
def _decommission(args: argparse.Namespace) -> int:
    from rilke.proto import rilke_pb2 as pb

    request = pb.ControllerWriteRequest(decommission_broker=args.node_id)
    moves = [move_dict(m) for m in controller_write(args, request).moves]
    print_moves(args, moves, "moving")
    if not args.json:
        print(
            f"broker {args.node_id} is decommissioning: {len(moves)} move(s) started; it can be "
            "removed once `rilke cluster info` shows it holds no replica"
        )
    return EXIT_OK
