"""torchrun, quiet on a signal: ``python -m scaletune.trainer.torchrun`` takes torchrun's own
arguments (``python -m torch.distributed.run``) and runs it.

On Ctrl-C or a SIGTERM, torchrun passes the signal to its workers, which checkpoint-aware ranks
answer by saying where the run can resume (``scaletune train``), and then ends on a traceback of
its own SignalException. Here it ends as a process stopped by that signal would, with exit code
128 + the signal's number, and the workers' message is the last thing printed.
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun

from scaletune.trainer.interrupt import PEER_LOST


def main() -> int:
    try:
        torchrun()
    except SignalException as e:  # the agent has shut its workers down and said so
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        # Ranks that found another node's processes gone, and said so: their exit code, not
        # torchrun's traceback of every failure.
        if {f.exitcode for f in e.failures.values()} == {PEER_LOST}:
            return PEER_LOST
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
