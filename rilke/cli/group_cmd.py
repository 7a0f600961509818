"""`rilke group list|describe|delete|reset-offsets`: consumer groups and their lag.

``reset-offsets`` prints the plan (dry run) unless ``--execute`` is given, and is refused while
the group has live members (stop its consumers first), as Kafka's tool does.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rilke.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_client_arguments,
    admin_for,
    client_command,
    fail,
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "group",
        help="list, describe (with lag), delete consumer groups, and reset their offsets",
        description="Consumer groups: members, committed offsets and lag; delete a stopped "
        "group; move a stopped group's offsets.",
    )
    sub = p.add_subparsers(dest="group_command", metavar="ACTION")

    ls = sub.add_parser("list", help="every group with its state and member count")
    ls.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(ls)
    ls.set_defaults(func=_list)

    desc = sub.add_parser(
        "describe",
        help="state, members, and per partition: committed offset, log end, lag",
        description="Per partition: CURRENT-OFFSET (committed), LOG-END-OFFSET, LAG (records) "
        "and LAG-SECONDS (age of the oldest unconsumed record), and who consumes it.",
    )
    desc.add_argument("group")
    desc.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(desc)
    desc.set_defaults(func=_describe)

    rm = sub.add_parser("delete", help="delete stopped groups and their committed offsets")
    rm.add_argument("groups", nargs="+", metavar="GROUP")
    add_client_arguments(rm)
    rm.set_defaults(func=_delete)

    reset = sub.add_parser(
        "reset-offsets",
        help="move a stopped group's committed offsets (dry run unless --execute)",
        description="Compute new committed offsets for a stopped group and print them; with "
        "--execute, commit them. Offsets are clamped to each partition's [earliest, latest].",
    )
    reset.add_argument("group")
    target = reset.add_mutually_exclusive_group()
    target.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[:P,P...]",
        help="a topic (all its partitions) or some of its partitions; repeatable",
    )
    target.add_argument(
        "--all-topics",
        action="store_true",
        help="every partition the group has committed (the default)",
    )
    how = reset.add_mutually_exclusive_group(required=True)
    how.add_argument("--to-earliest", action="store_true")
    how.add_argument("--to-latest", action="store_true")
    how.add_argument("--to-offset", type=int, metavar="OFFSET")
    how.add_argument(
        "--to-datetime", metavar="WHEN", help="the first offset at or after a time (ISO-8601)"
    )
    how.add_argument("--to-timestamp", type=int, metavar="MILLIS")
    how.add_argument("--shift-by", type=int, metavar="N", help="move by N (negative: back)")
    reset.add_argument("--execute", action="store_true", help="apply the plan")
    reset.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(reset)
    reset.set_defaults(func=_reset)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


@client_command
def _list(args: argparse.Namespace) -> int:
    with admin_for(args) as admin:
        groups = admin.list_groups()
    if args.json:
        print(json.dumps([g._asdict() for g in groups]))
        return EXIT_OK
    if not groups:
        print("no groups")
        return EXIT_OK
    width = max(5, *(len(g.group_id) for g in groups))
    print(f"{'GROUP':<{width}}  {'STATE':<12} {'MEMBERS':>7}")
    for g in groups:
        print(f"{g.group_id:<{width}}  {g.state:<12} {g.members:>7}")
    return EXIT_OK


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


@client_command
def _describe(args: argparse.Namespace) -> int:
    with admin_for(args) as admin:
        info = admin.describe_group(args.group)
    if args.json:
        print(
            json.dumps(
                {
                    "group": info.group_id,
                    "state": info.state,
                    "group_epoch": info.group_epoch,
                    "assignor": info.assignor,
                    "members": [
                        {
                            "member_id": m.member_id,
                            "instance_id": m.instance_id,
                            "client_id": m.client_id,
                            "host": m.client_host,
                            "epoch": m.member_epoch,
                            "state": m.state,
                            "assignment": sorted([tp.topic, tp.partition] for tp in m.assignment),
                        }
                        for m in info.members
                    ],
                    "partitions": [
                        {
                            "topic": p.topic,
                            "partition": p.partition,
                            "committed": p.committed,
                            "log_end_offset": p.log_end_offset,
                            "lag": p.lag,
                            "lag_seconds": p.lag_seconds,
                            "member_id": p.member_id,
                        }
                        for p in info.partitions
                    ],
                }
            )
        )
        return EXIT_OK
    print(
        f"group {info.group_id}: {info.state}, epoch {info.group_epoch}, "
        f"assignor {info.assignor}, {len(info.members)} member(s), total lag {info.total_lag}"
    )
    hosts = {m.member_id: m.client_host for m in info.members}
    if info.partitions:
        tw = max(5, *(len(p.topic) for p in info.partitions))
        print(
            f"{'TOPIC':<{tw}} {'PARTITION':>9} {'CURRENT-OFFSET':>14} {'LOG-END-OFFSET':>14} "
            f"{'LAG':>8} {'LAG-SECONDS':>11}  CONSUMER"
        )
        for p in info.partitions:
            who = f"{p.member_id} {hosts.get(p.member_id, '')}".strip() if p.member_id else "-"
            print(
                f"{p.topic:<{tw}} {p.partition:>9} {_fmt(p.committed):>14} "
                f"{p.log_end_offset:>14} {_fmt(p.lag):>8} {_fmt(p.lag_seconds):>11}  {who}"
            )
    if info.members:
        print()
        print("MEMBER  INSTANCE  CLIENT  HOST  EPOCH  STATE  PARTITIONS")
        for m in info.members:
            parts = ",".join(f"{tp.topic}-{tp.partition}" for tp in sorted(m.assignment)) or "-"
            print(
                f"{m.member_id}  {m.instance_id or '-'}  {m.client_id or '-'}  "
                f"{m.client_host or '-'}  {m.member_epoch}  "
                f"{'left (static)' if m.left_static else m.state}  {parts}"
            )
    return EXIT_OK


@client_command
def _delete(args: argparse.Namespace) -> int:
    with admin_for(args) as admin:
        results = admin.delete_groups_results(args.groups)
    code = EXIT_OK
    for gid, err in results.items():
        if err is None:
            print(f"deleted group {gid}")
        else:
            fail(f"error: {err} [{type(err).__name__}]")
            code = EXIT_FAILURE
    return code


def _parse_topics(items: list[str]) -> list[tuple[str, list[int] | None]]:
    out: list[tuple[str, list[int] | None]] = []
    for item in items:
        topic, sep, rest = item.partition(":")
        if not topic:
            raise ValueError(f"--topic {item!r}: empty topic name")
        if not sep:
            out.append((topic, None))
            continue
        try:
            parts = sorted({int(x) for x in rest.split(",") if x.strip()})
        except ValueError:
            raise ValueError(f"--topic {item!r}: partitions must be numbers") from None
        if not parts or parts[0] < 0:
            raise ValueError(f"--topic {item!r}: give partitions as TOPIC:0,1,2")
        out.append((topic, parts))
    return out


def _spec(args: argparse.Namespace) -> Any:
    from rilke.client.group_admin import ResetSpec

    if args.to_earliest:
        return ResetSpec("earliest")
    if args.to_latest:
        return ResetSpec("latest")
    if args.to_offset is not None:
        return ResetSpec("offset", args.to_offset)
    if args.to_timestamp is not None:
        return ResetSpec("timestamp", args.to_timestamp)
    if args.to_datetime is not None:
        from datetime import UTC, datetime

        try:
            when = datetime.fromisoformat(args.to_datetime)
        except ValueError:
            raise ValueError(
                f"--to-datetime {args.to_datetime!r} is not an ISO-8601 time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return ResetSpec("timestamp", int(when.timestamp() * 1000))
    return ResetSpec("shift", args.shift_by)


@client_command
def _reset(args: argparse.Namespace) -> int:
    from rilke.client.structs import TopicPartition

    spec = _spec(args)
    with admin_for(args) as admin:
        partitions: list[TopicPartition] | None = None
        if args.topic:
            partitions = []
            for topic, parts in _parse_topics(args.topic):
                if parts is None:
                    partitions.extend(admin.topic_partitions(topic))
                else:
                    partitions.extend(TopicPartition(topic, p) for p in parts)
        plan = admin.plan_group_offsets_reset(args.group, spec, partitions)
        if args.execute:
            admin.alter_group_offsets(args.group, {tp: new for tp, (_, new) in plan.items()})
    if args.json:
        print(
            json.dumps(
                {
                    "group": args.group,
                    "executed": bool(args.execute),
                    "partitions": [
                        {"topic": tp.topic, "partition": tp.partition, "current": c, "new": n}
                        for tp, (c, n) in sorted(plan.items())
                    ],
                }
            )
        )
        return EXIT_OK
    tw = max(5, *(len(tp.topic) for tp in plan))
    print(f"{'TOPIC':<{tw}} {'PARTITION':>9} {'CURRENT-OFFSET':>14} {'NEW-OFFSET':>12}")
    for tp, (cur, new) in sorted(plan.items()):
        print(f"{tp.topic:<{tw}} {tp.partition:>9} {_fmt(cur):>14} {new:>12}")
    if args.execute:
        print(f"committed new offsets for {len(plan)} partition(s) of group {args.group}")
    else:
        print("dry run: nothing changed (add --execute to apply)")
    return EXIT_OK
