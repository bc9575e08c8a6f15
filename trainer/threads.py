"""How torch's CPU threads wait, set before torch loads OpenMP (which reads it once)."""

from __future__ import annotations

import os

OPENMP_WAIT = "PASSIVE"
"""OMP_WAIT_POLICY of scaletune's processes where the environment sets none (quiet_waits)."""


def quiet_waits() -> None:
    """Let torch's CPU threads sleep as soon as they wait (``OMP_WAIT_POLICY=PASSIVE``), unless
    the environment says how they wait. Called before torch is imported: by the ``scaletune``
    command (its torchrun ranks and the Ray it starts inherit it), by a torchrun rank, and on a
    Ray worker before a trial's first import of torch. Where torch was imported already, the
    call changes nothing.

    OpenMP's own default spins a waiting thread for a while before it sleeps. When other
    processes take the cores, each parallel region then waits for a thread pushed off its core:
    on 2 cores beside two busy processes a run on 2 threads trained 22x as fast with its threads
    asleep (the quickstart's model; 1.6x the throughput benchmark's reference), beside one
    1.5-1.8x; on the quiet machine it cost 0-23% (benchmarks/cpu_threads.py,
    benchmarks/results/cpu_threads/). A run on one thread (a trial, by default) never waits.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT)
