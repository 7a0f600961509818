"""`rilke topic create|list|describe|delete|alter-config|reassign|add-partitions`.

``add-partitions TOPIC --count N`` grows a topic to N partitions in all (Kafka's
CreatePartitions; partitions are never removed); in a cluster the new partitions' replicas are
spread over the live brokers.

``reassign TOPIC PARTITION --replicas 1,2,4`` moves one partition of a cluster to those
brokers (preferred leader first) through one-at-a-time membership changes of its Raft group,
while writes go on; ``describe`` and ``rilke cluster info`` show the target while it runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rilke.cli.common import (
    EXIT_OK,
    add_client_arguments,
    admin_for,
    client_command,
    parse_key_values,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topic",
        help="create, list, describe, delete topics and change their configs",
        description="Manage topics.",
    )
    sub = parser.add_subparsers(dest="topic_command", metavar="ACTION", required=True)

    p = sub.add_parser("create", help="create a topic", description="Create a topic.")
    p.add_argument("name")
    p.add_argument(
        "--partitions", "-p", type=int, default=1, help="number of partitions (default 1)"
    )
    p.add_argument(
        "--replication-factor", "-r", type=int, default=1, help="replicas per partition (default 1)"
    )
    p.add_argument(
        "--config",
        "-c",
        action="append",
        metavar="KEY=VALUE",
        help="topic config by Kafka's name, e.g. retention.ms=86400000 (repeatable)",
    )
    p.add_argument(
        "--if-not-exists", action="store_true", help="succeed if the topic already exists"
    )
    add_client_arguments(p)
    p.set_defaults(func=_create)

    p = sub.add_parser("list", help="list topics", description="List topics, one per line.")
    p.add_argument("--internal", action="store_true", help="include internal topics")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(p)
    p.set_defaults(func=_list)

    p = sub.add_parser("describe", help="show partitions, leaders, offsets and configs")
    p.add_argument("names", nargs="*", metavar="NAME", help="topics (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--linearizable",
        action="store_true",
        help="in a cluster: answer only once the node's metadata holds every committed change",
    )
    add_client_arguments(p)
    p.set_defaults(func=_describe)

    p = sub.add_parser(
        "add-partitions",
        help="grow a topic to more partitions",
        description="Grow a topic to --count partitions in all (partitions are never removed).",
    )
    p.add_argument("name", metavar="TOPIC")
    p.add_argument("--count", type=int, required=True, help="the new total number of partitions")
    p.add_argument("--validate-only", action="store_true", help="check the request; change nothing")
    add_client_arguments(p)
    p.set_defaults(func=_add_partitions)

    p = sub.add_parser(
        "reassign", help="move a partition to other brokers (a cluster's partitions only)"
    )
    p.add_argument("name", metavar="TOPIC")
    p.add_argument("partition", type=int, metavar="PARTITION")
    p.add_argument(
        "--replicas",
        metavar="IDS",
        help="the new replicas, preferred leader first, e.g. 1,2,4 (required unless --cancel)",
    )
    p.add_argument(
        "--force", action="store_true", help="allow a replica count other than the partition's"
    )
    p.add_argument(
        "--cancel",
        action="store_true",
        help="cancel the partition's running move: the new replicas are removed, the old stay",
    )
    add_client_arguments(p)
    p.set_defaults(func=_reassign)

    p = sub.add_parser("delete", help="delete topics and their data")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--if-exists", action="store_true", help="succeed if a topic does not exist")
    add_client_arguments(p)
    p.set_defaults(func=_delete)

    p = sub.add_parser(
        "alter-config",
        help="set or reset topic configs",
        description="Set (--set KEY=VALUE) or return to the default (--delete KEY) topic configs.",
    )
    p.add_argument("name")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="set a config (repeatable)")
    p.add_argument(
        "--delete",
        action="append",
        metavar="KEY",
        help="reset a config to its default (repeatable)",
    )
    add_client_arguments(p)
    p.set_defaults(func=_alter)


@client_command
def _create(args: argparse.Namespace) -> int:
    from rilke.client.structs import NewTopic
    from rilke.errors import TopicAlreadyExistsError

    if args.partitions < 1:
        raise ValueError(f"--partitions must be >= 1, not {args.partitions}")
    configs = parse_key_values(args.config, "--config")
    with admin_for(args) as admin:
        try:
            admin.create_topics(
                [NewTopic(args.name, args.partitions, args.replication_factor, configs)]
            )
        except TopicAlreadyExistsError as exc:
            if not args.if_not_exists:
                raise TopicAlreadyExistsError(
                    f"{exc} (add --if-not-exists to accept an existing topic)"
                ) from None
            print(f"topic {args.name} already exists")
            return EXIT_OK
    print(f"created topic {args.name}")
    return EXIT_OK


@client_command
def _list(args: argparse.Namespace) -> int:
    with admin_for(args) as admin:
        topics = admin.list_topics(args.internal)
    if args.json:
        print(json.dumps([t._asdict() for t in topics]))
    else:
        for t in topics:
            print(t.name)
    return EXIT_OK


@client_command
def _describe(args: argparse.Namespace) -> int:
    with admin_for(args) as admin:
        topics = admin.describe_topics(args.names or None, linearizable=args.linearizable)
    if args.json:
        print(
            json.dumps(
                [{**t._asdict(), "partitions": [p._asdict() for p in t.partitions]} for t in topics]
            )
        )
        return EXIT_OK
    for t in topics:
        configs = " ".join(f"{k}={v}" for k, v in sorted(t.configs.items()))
        print(
            f"topic {t.name}  partitions {len(t.partitions)}  replication {t.replication_factor}"
            + (f"  configs {configs}" if configs else "")
        )
        print(
            f"  {'PARTITION':>9} {'LEADER':>6} {'REPLICAS':>8} {'IN-SYNC':>8} {'START':>12} "
            f"{'HIGH-WATER':>12} {'BYTES':>12}"
        )
        for p in t.partitions:
            replicas = ",".join(map(str, p.replicas))
            in_sync = ",".join(map(str, p.isr))
            moving = ""
            if p.target_replicas:
                moving = "  moving to " + ",".join(map(str, p.target_replicas))
            if not set(p.replicas) <= set(p.isr):
                moving += "  under-replicated"
            if p.leader < 0:
                moving += "  no leader"
            print(
                f"  {p.partition:>9} {p.leader:>6} {replicas:>8} {in_sync:>8} "
                f"{p.log_start_offset:>12} {p.high_watermark:>12} {p.size_bytes:>12}{moving}"
            )
    return EXIT_OK


@client_command
def _add_partitions(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, not {args.count}")
    with admin_for(args) as admin:
        admin.create_partitions({args.name: args.count}, validate_only=args.validate_only)
    verb = "would grow" if args.validate_only else "grew"
    print(f"{verb} topic {args.name} to {args.count} partitions")
    return EXIT_OK


def parse_ids(text: str, flag: str) -> list[int]:
    """``1,2,4`` as [1, 2, 4]; ValueError naming ``flag`` for anything else."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes broker ids separated by commas, got {text!r}") from None
    if not ids:
        raise ValueError(f"{flag} is empty")
    return ids


@client_command
def _reassign(args: argparse.Namespace) -> int:
    from rilke.cli.cluster_cmd import controller_write, move_dict, print_moves
    from rilke.proto import rilke_pb2 as pb

    if args.partition < 0:
        raise ValueError(f"the partition must be >= 0, got {args.partition}")
    if args.cancel:
        if args.replicas is not None or args.force:
            raise ValueError("--cancel takes no --replicas or --force")
        change = pb.ReassignPartition(topic=args.name, partition=args.partition, cancel=True)
        r = controller_write(args, pb.ControllerWriteRequest(reassign_partition=change))
        if not r.moves:
            print(f"{args.name}-{args.partition}: the move was cancelled already")
            return EXIT_OK
        print_moves(args, [move_dict(m) for m in r.moves], "cancelling: moving back")
        return EXIT_OK
    if args.replicas is None:
        raise ValueError("--replicas is required (or --cancel)")
    replicas = parse_ids(args.replicas, "--replicas")
    change = pb.ReassignPartition(
        topic=args.name, partition=args.partition, replicas=replicas, force=args.force
    )
    r = controller_write(args, pb.ControllerWriteRequest(reassign_partition=change))
    if not r.moves:
        print(f"{args.name}-{args.partition} has the replicas {args.replicas} already")
        return EXIT_OK
    moves = [move_dict(m) for m in r.moves]
    print_moves(args, moves, "moving")
    return EXIT_OK


@client_command
def _delete(args: argparse.Namespace) -> int:
    from rilke.errors import UnknownTopicOrPartitionError

    with admin_for(args) as admin:
        results = admin._run(admin._aio.delete_topics_results(args.names))
    for name in args.names:
        err = results.get(name)
        if err is None:
            print(f"deleted topic {name}")
        elif isinstance(err, UnknownTopicOrPartitionError) and args.if_exists:
            continue
        else:
            raise err
    return EXIT_OK


@client_command
def _alter(args: argparse.Namespace) -> int:
    changes: dict[str, str | None] = dict(parse_key_values(args.set, "--set"))
    for key in args.delete or []:
        changes[key] = None
    if not changes:
        raise ValueError("nothing to change: give --set KEY=VALUE or --delete KEY")
    with admin_for(args) as admin:
        admin.alter_configs({args.name: changes})
    print(f"altered configs of topic {args.name}")
    return EXIT_OK
