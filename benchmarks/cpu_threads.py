"""CPU threads of a training run, on a quiet machine and beside a busy process.

    python -m benchmarks.cpu_threads [--rounds 6] [--busy 1] [--seconds 0.5]
        [--models tiny,mid,reference] [--extra NAME=VALUE ...] [--no-quiet]

A CPU run trains with every core it may use (``num_threads: null``, the default of a final
run). OpenMP, which runs torch's threads, makes a thread that waits for the others spin before it
sleeps; when another process takes one of the cores, each parallel region waits for the thread
that process pushed off its core. This times the trainer's bare step (benchmarks.trainer_throughput
bare_step: forward, backward, clip, AdamW) in three settings, each a process of its own, for the
environment is read once, when torch loads OpenMP:

- ``1 thread``;
- ``N threads``: every usable core, OpenMP's own wait (OMP_WAIT_POLICY unset: spin a while, then
  sleep);
- ``N threads, passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (a waiting thread sleeps at
  once).

The three processes stay up and take turns, each timing ``--seconds`` of steps per round, so the
machine's drift falls on all of them alike; then the same with ``--busy`` processes beside them
that spin a core each. Figures: tokens/s (median over rounds, with the range) and each setting's
speed against ``N threads`` (median of the per-round ratios). Models: the quickstart's (2 layers,
width 64, block 64, batch 8), one between (4 x 128, block 128, batch 16) and the throughput
benchmark's reference (6 x 256, block 128, batch 32). About 5 minutes on 2 cores. Not part of CI.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

from benchmarks import refuse_below_one

MODELS = {
    "tiny": ({"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64}, 8),
    "mid": ({"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128}, 16),
    "reference": ({"n_layer": 6, "n_head": 8, "n_embd": 256, "block_size": 128}, 32),
}
"""Name -> (model, batch size)."""


def settings(cores: int, extra: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """Name -> (threads, environment changes) of each process that takes turns; ``extra``
    (``NAME=VALUE`` each) adds a setting of ``cores`` threads with that variable."""
    chosen = {"1 thread": (1, {}), f"{cores} threads": (cores, {}),
              f"{cores} threads, passive": (cores, {"OMP_WAIT_POLICY": "PASSIVE"})}
    for assignment in extra:
        name, value = assignment.split("=", 1)
        chosen[f"{cores} threads, {assignment}"] = (cores, {name: value})
    return chosen


def child(model: str, threads: int) -> None:
    """Serve timings on stdin/stdout: a line with a step count in, the seconds they took out."""
    import torch

    from benchmarks.trainer_throughput import bare_step

    torch.set_num_threads(threads)
    shape, batch = MODELS[model]
    step = bare_step(True, model=shape, batch=batch)[0]
    step()  # allocator and kernels warm up
    print("ready", flush=True)
    for line in sys.stdin:
        steps = int(line)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        print(time.perf_counter() - start, flush=True)


class Runner:
    """One process of a setting, which times steps when asked."""

    def __init__(self, model: str, threads: int, env: dict[str, str]) -> None:
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", *env)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.cpu_threads", "--child", model, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**clean, **env})
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {model} process with {threads} threads did not start")

    def time(self, steps: int) -> float:
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()


SPIN = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent: pass"
"""A busy process (``python -c SPIN PID``): it spins while its parent PID lives, so that a kill of
the benchmark that lands while a spinner starts, before busy() holds it, leaves none behind. The
PID is given, not read at its start: the parent may be gone by then."""


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` processes that spin a core each while the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN, str(os.getpid())])
                for _ in range(n)]
    try:
        time.sleep(0.5)  # they run before the first timing
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def compare(runners: dict[str, Runner], steps: dict[str, int], rounds: int,
            tokens_per_step: int) -> dict[str, list[float]]:
    """Tokens/s of each setting per round, the settings taking turns within a round."""
    speeds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            speeds[name].append(steps[name] * tokens_per_step / runner.time(steps[name]))
    return speeds


def report(title: str, speeds: dict[str, list[float]], base: str) -> None:
    print(f"  {title}")
    width = max(map(len, speeds))
    for name, s in speeds.items():
        ratio = statistics.median(a / b for a, b in zip(s, speeds[base], strict=True))
        print(f"    {name:<{width}} {statistics.median(s):>9,.0f} tokens/s  "
              f"({min(s):,.0f}-{max(s):,.0f})  {ratio:5.2f}x of {base}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--busy", type=int, default=1, help="processes that spin beside the runs")
    parser.add_argument("--seconds", type=float, default=0.5,
                        help="time of one setting's turn on the quiet machine")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=VALUE",
                        help="one more setting: every core, with this environment variable "
                             "(e.g. GOMP_SPINCOUNT=10000); may be given again")
    parser.add_argument("--no-quiet", action="store_true",
                        help="time beside the busy processes only, not on the quiet machine")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]))
    refuse_below_one(parser, {"--rounds": args.rounds})
    if args.busy < 0:
        parser.error(f"--busy: must be 0 or more, got {args.busy}")
    if args.no_quiet and not args.busy:
        parser.error("--no-quiet with --busy 0 leaves nothing to time")
    # A kill of this process alone (not its group) ends it through the finally blocks below,
    # which stop the busy processes and the settings' processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bad = [e for e in args.extra if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        parser.error(f"--extra: {bad[0]!r} is not NAME=VALUE")
    models = [m.strip() for m in args.models.split(",")]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; known: {', '.join(MODELS)}")
    from scaletune.trainer.config import usable_cores

    cores = usable_cores()
    if cores < 2:
        parser.error("this process may use one core only: there are no threads to compare")
    chosen = settings(cores, args.extra)
    base = f"{cores} threads"
    print(f"{cores} usable cores, {args.rounds} rounds")
    for model in models:
        shape, batch = MODELS[model]
        tokens_per_step = batch * shape["block_size"]
        print(f"{model}: {shape['n_layer']} layers x {shape['n_embd']}, block "
              f"{shape['block_size']}, batch {batch}")
        runners: dict[str, Runner] = {}
        try:
            for name, (threads, env) in chosen.items():
                runners[name] = Runner(model, threads, env)
            # Steps for a turn of about --seconds on the quiet machine, from one timed step each.
            steps = {name: max(1, math.ceil(args.seconds / r.time(1)))
                     for name, r in runners.items()}
            if not args.no_quiet:
                report("quiet", compare(runners, steps, args.rounds, tokens_per_step), base)
            if args.busy:
                with busy(args.busy):
                    speeds = compare(runners, steps, args.rounds, tokens_per_step)
                report(f"beside {args.busy} busy process{'es' if args.busy > 1 else ''}", speeds,
                       base)
        finally:
            for r in runners.values():
                r.close()


if __name__ == "__main__":
    main()
