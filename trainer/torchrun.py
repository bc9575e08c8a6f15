"""torchrun, quiet on a signal: ``python -m scaletune.trainer.torchrun`` takes torchrun's own
arguments (``python -m torch.distributed.run``) and runs it.

On Ctrl-C or a SIGTERM, torchrun passes the signal to its workers, which checkpoint-aware ranks
answer by saying where the run can resume (``scaletune train``), and then ends on a traceback of
its own SignalException. Here it ends as a process stopped by that signal would, with exit code
128 + the signal's number, and the workers' message is the last thing printed. Ranks that end
having said why (a refusal, exit 2; a signal sent to one of them) end it with their exit code,
not torchrun's ChildFailedError traceback. A Ctrl-C before torchrun's agent has taken the
signals over (its first seconds: torch's imports, the rendezvous), when no rank has started, ends
it the same way, where it printed a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import signal
import sys

from scaletune.trainer.interrupt import PEER_LOST, STOP_SIGNALS


def main() -> int:
    try:
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import main as torchrun
    except KeyboardInterrupt:
        return _interrupted()
    try:
        torchrun()
    except KeyboardInterrupt:  # before the agent's handlers: no rank was started
        return _interrupted()
    except SignalException as e:  # the agent has shut its workers down and said so
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        # Ranks that ended as scaletune train ends, having said why: refused (2: a changed
        # config or a damaged checkpoint on resume, a device this machine lacks), stopped by a
        # signal sent to them (128 + its number: the lock file names rank 0's pid), or finding
        # another node's processes gone. Their exit code, not torchrun's traceback of each.
        codes = {f.exitcode for f in e.failures.values()}
        if codes <= SAID:  # the one that stopped or refused, where others lost it
            return max(codes - {PEER_LOST}, default=PEER_LOST)
        raise
    return 0


def _interrupted() -> int:
    print("scaletune train: interrupted before the run's processes started; nothing was written",
          file=sys.stderr, flush=True)
    return 128 + signal.SIGINT


SAID = {2, PEER_LOST, *(128 + s for s in STOP_SIGNALS)}
"""Exit codes of ranks that said why they ended (trainer.rank, trainer.cli.train_main)."""


if __name__ == "__main__":
    sys.exit(main())
