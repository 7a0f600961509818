"""Run the Raft simulation from the command line.

One seed, with its trace::

    python -m tests.sim.run --seed 1234 --trace
    python -m tests.sim.run --seed 1234 --scenario crash --keep 0,3 --trace   # a shrunk replay

A sweep, reporting seeds and simulated steps per second (a failure is shrunk and reported)::

    python -m tests.sim.run --sweep --seeds 1000 [--first 0] [--scenario random|all|...]

The replication path (runtime, transport, replicated partitions, partition logs on a disk that
loses unsynced writes; tests/sim/replication), one seed or a sweep::

    python -m tests.sim.run --replication --seed 1234
    python -m tests.sim.run --replication --seeds 10000 [--first 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tests.sim.simulator.runner import SCENARIOS, report, run_seed, shrink


def _summary(result_stats: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in result_stats.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="the seed to run")
    parser.add_argument(
        "--scenario",
        choices=[*sorted(SCENARIOS), "all", "replication", "controller"],
        default="random",
        help="a family of runs; 'all' sweeps every scenario in turn",
    )
    parser.add_argument(
        "--keep", default=None, help="fault schedule positions to keep (e.g. 0,3,7 or none)"
    )
    parser.add_argument("--trace", action="store_true", help="print the event trace")
    parser.add_argument("--sweep", action="store_true", help="run many seeds")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds in a sweep")
    parser.add_argument("--first", type=int, default=0, help="the first seed of a sweep")
    parser.add_argument("--no-shrink", action="store_true", help="report failures unshrunk")
    parser.add_argument(
        "--replication",
        action="store_true",
        help="the replication path: --seed S replays one seed, --seeds N sweeps N seeds",
    )
    args = parser.parse_args(argv)

    if args.replication:
        return _replication(args, argv)
    if args.sweep:
        scenarios = sorted(SCENARIOS) if args.scenario == "all" else [args.scenario]
        failed = 0
        for scenario in scenarios:
            failed |= _sweep(scenario, args.first, args.seeds, not args.no_shrink)
        return failed
    if args.scenario == "all":
        parser.error("--scenario all needs --sweep")

    keep = None
    if args.keep is not None:
        keep = [] if args.keep == "none" else [int(x) for x in args.keep.split(",") if x]
    result = run_seed(args.seed, args.scenario, keep, trace=args.trace)
    if args.trace and result.trace is not None:
        print(result.trace.format())
    cluster = result.cluster
    print(f"seed {args.seed} scenario {args.scenario}: {result.knobs.describe()}")
    if cluster is not None:
        print(f"core config overrides: {cluster.config_overrides}")
    if cluster is not None:
        print(
            f"steps={result.steps} simulated={result.sim_ms}ms "
            f"leaders={cluster.checker.stats.leaders} "
            f"committed_entries={cluster.checker.stats.committed_entries} "
            f"restarts={cluster.checker.stats.restarts} client: {cluster.client} "
            f"network: {cluster.network.stats} faults: {cluster.faults}"
        )
    if result.ok:
        print("OK: no violation")
        return 0
    print(report(result, trace_lines=0 if args.trace else 100))
    return 1


def _sweep(scenario: str, first: int, count: int, do_shrink: bool) -> int:
    started = time.perf_counter()
    steps = 0
    failures = []
    for seed in range(first, first + count):
        result = run_seed(seed, scenario)
        steps += result.steps
        if not result.ok:
            failures.append(result)
            print(f"seed {seed}: FAIL {result.prop}: {result.failure}", flush=True)
    elapsed = time.perf_counter() - started
    print(
        f"{count} seeds ({scenario}) in {elapsed:.1f}s: {count / elapsed:.2f} seeds/s, "
        f"{steps / elapsed:,.0f} simulated steps/s, {steps:,} steps, "
        f"{count - len(failures)} seeds with no violation"
    )
    for result in failures[:3]:
        shrunk = shrink(result) if do_shrink else result
        print(report(shrunk, trace_lines=150))
    return 1 if failures else 0


def _replication(args: argparse.Namespace, argv: list[str] | None) -> int:
    # The runtime iterates sets of group names: their order (and so a run) depends on the
    # string hash seed. A replay must see the same order as the sweep that found it.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "tests.sim.run", *(argv or sys.argv[1:])])
    from tests.sim.replication.runner import report, run_seed

    scenario = "replication" if args.scenario == "random" else args.scenario
    swept = "--seeds" in (argv or sys.argv[1:])
    if not swept:
        result = run_seed(args.seed, scenario)
        print(f"seed {args.seed} ({scenario}): {result.knobs.describe()}")
        print(f"steps={result.steps} simulated={result.sim_s:.1f}s {result.stats}")
        print("\n".join(result.events) if args.trace else "", end="")
        if result.ok:
            print("OK: no violation")
            return 0
        print(report(result))
        return 1
    started = time.perf_counter()
    steps = 0
    failures = []
    for i, seed in enumerate(range(args.first, args.first + args.seeds), 1):
        result = run_seed(seed, scenario)
        steps += result.steps
        if not result.ok:
            failures.append(seed)
            print(report(result), flush=True)
        if i % 100 == 0 or i == args.seeds:
            elapsed = time.perf_counter() - started
            print(
                f"{i} seeds ({scenario}, {args.first}..{seed}) in {elapsed:.0f}s: "
                f"{i / elapsed:.2f} seeds/s, {steps / elapsed:,.0f} steps/s, {steps:,} steps, "
                f"{len(failures)} with a violation {failures[:20]}",
                flush=True,
            )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
