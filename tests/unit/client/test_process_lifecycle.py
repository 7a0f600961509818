"""Blocking clients over a process's life, in a child interpreter against the fake broker:
many clients one after another share one loop thread and print nothing; a producer the
program forgot to close flushes at exit, or warns how many records it dropped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD_TIMEOUT_S = 120


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


def test_eight_clients_one_after_another_print_nothing(fake):
    fake.broker.create("t", 1)
    child = run_child(
        f"""
        import threading
        from rilke import Admin, Consumer, Producer
        addr = {fake.address!r}
        for i in range(8):
            kind = i % 3
            if kind == 0:
                with Producer(addr) as p:
                    p.send("t", b"v%d" % i).get(10)
            elif kind == 1:
                with Consumer("t", bootstrap_servers=addr, auto_offset_reset="earliest") as c:
                    c.poll(200)
            else:
                with Admin(addr) as a:
                    a.list_topics()
        loops = [t.name for t in threading.enumerate() if t.name.startswith("rilke")]
        print(loops)
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stderr == ""
    assert child.stdout.strip() == "['rilke-client-loop']"


def test_a_forgotten_producer_flushes_at_exit(fake):
    fake.broker.create("t", 1)
    child = run_child(
        f"""
        from rilke import Producer
        p = Producer({fake.address!r}, linger_ms=60_000, batch_size=1 << 20)
        for i in range(100):
            p.send("t", b"r%d" % i)
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stderr == ""
    from test_producer import stored_values

    assert stored_values(fake, "t", 0) == [b"r%d" % i for i in range(100)]


def test_a_forgotten_producer_that_cannot_deliver_warns_with_the_count(fake):
    fake.broker.create("t", 1)

    async def hang(method, request):
        if method == "Produce":
            await fake.broker.hang.wait()
        return 0

    fake.broker.faults.append(hang)
    child = run_child(
        f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        import rilke.client.producer as producer
        producer.EXIT_FLUSH_TIMEOUT_S = 0.5
        p = producer.Producer({fake.address!r}, linger_ms=0)
        for i in range(7):
            p.send("t", b"r%d" % i)
        """
    )
    assert child.returncode == 0, child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert "never closed dropped 7 of 7 records at exit" in lines[0]
