"""A consumer-group member in its own process, for the end-to-end group tests.

    python group_consumer_proc.py BOOTSTRAP TOPIC GROUP NAME [SESSION_TIMEOUT_MS]

At-least-once: each poll's records are printed (one JSON line each: partition, offset) and
flushed, then committed synchronously, then the next poll. Rebalances are printed as
``{"event": "assign"|"revoke", "partitions": [...]}``. SIGTERM closes the consumer gracefully
(commit, leave) and exits 0. Every line carries the member's NAME.
"""

from __future__ import annotations

import json
import signal
import sys
import time


def main() -> int:
    bootstrap, topic, group, name = sys.argv[1:5]
    session_timeout_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 45_000
    from rilke.client.consumer import Consumer

    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)

    def say(obj: dict[str, object]) -> None:
        obj["name"] = name
        obj["t"] = time.time()
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    consumer = Consumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=session_timeout_ms,
        request_timeout_ms=10_000,
    )
    consumer.subscribe(
        [topic],
        on_assign=lambda tps: say({"event": "assign", "partitions": sorted(p for _, p in tps)}),
        on_revoke=lambda tps: say({"event": "revoke", "partitions": sorted(p for _, p in tps)}),
    )
    say({"event": "started"})
    while not stop:
        batch = consumer.poll(200)
        for tp, records in batch.items():
            for r in records:
                say({"p": tp.partition, "o": r.offset})
        if batch:
            consumer.commit()
            say({"event": "committed"})
    consumer.close()
    say({"event": "closed"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
