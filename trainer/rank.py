"""A process of `scaletune train --nproc-per-node N`, as torchrun starts it: ``python -m
scaletune.trainer.rank CONFIG [--resume | --overwrite]`` trains on this rank
(``trainer.cli.train_main``).

torchrun passes a Ctrl-C on to its ranks wherever they are, also in their first seconds, as they
import the trainer (pydantic, torch). This module imports nothing of it before it can catch the
interrupt, so that each rank then ends with exit code 130 and rank 0 says so in one line (each
printed a KeyboardInterrupt traceback). From the run's set-up on, train_main says where the
run can resume.
"""

from __future__ import annotations

import os
import signal
import sys


def main(prog: str = "python -m scaletune.trainer.rank") -> int:
    # The ranks start one after another: a Ctrl-C can find one still building its parser
    # (argparse compiles regular expressions) while another imports torch.
    config = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), prog)
    try:
        import argparse

        parser = argparse.ArgumentParser(prog=prog,
                                         description="Train on the TrainConfig CONFIG.")
        parser.add_argument("config", help="a TrainConfig YAML file")
        again = parser.add_mutually_exclusive_group()
        again.add_argument("--resume", action="store_true",
                           help="continue from out_dir's checkpoint")
        again.add_argument("--overwrite", action="store_true",
                           help="train from scratch even if out_dir holds a checkpoint")
        args = parser.parse_args()
        from scaletune.trainer.interrupt import DeferredInterrupt  # light: no torch
        from scaletune.trainer.threads import quiet_waits

        quiet_waits()  # a rank started by a torchrun of one's own

        # A signal in the imports is noted, not raised inside one (that left torch half
        # imported); the run's own handling takes it over (trainer.loop.train).
        with DeferredInterrupt() as starting:
            from scaletune.trainer.cli import train_main

            if starting.requested:
                return _stopped_as_it_started(args.config, starting.signal or signal.SIGINT)
            code = train_main(args.config, resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:  # before the handlers were set, or a second signal at once
        return _stopped_as_it_started(config, signal.SIGINT)  # torch may be half imported
    from scaletune.trainer.distributed import leave
    from scaletune.trainer.torchrun import DIVERGED

    # 1: diverged (a crash raised), said apart for torchrun (trainer.torchrun); a process of
    # its own (python -m scaletune.trainer.cli) ends with 1, as `scaletune train` does.
    ranked = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return leave(DIVERGED if code == 1 and ranked else code)


def _stopped_as_it_started(config: str, signum: int) -> int:
    """Rank 0 says the run stopped before it wrote anything; the exit code of ``signum``."""
    from scaletune.trainer.interrupt import stopped_by  # light: no torch

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{config}: {stopped_by(signum)} as the run started; nothing was written",
              file=sys.stderr, flush=True)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
