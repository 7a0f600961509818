"""A deterministic cluster simulator for the Raft core.

Everything runs on one thread, on a simulated clock, from one seed: an event loop over a heap
of ``(time_ms, seq, event)`` (:mod:`.loop`), a network with per-link delay, loss, duplication,
reordering and partitions (:mod:`.network`), named fault knobs and a seeded fault schedule
(:mod:`.faults`), a trace recorder (:mod:`.trace`), a safety checker that knows nothing of the
core's types (:mod:`.checker`), and the cluster that drives N Raft cores over durable memory
stores (:mod:`.cluster`). :mod:`.runner` runs one seed, checks liveness after healing, and
shrinks a failing fault schedule.
"""
