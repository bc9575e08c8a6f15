"""torchrun, quiet on a signal: ``python -m scaletune.trainer.torchrun`` takes torchrun's own
arguments (``python -m torch.distributed.run``) and runs it.

On Ctrl-C or a SIGTERM, torchrun passes the signal to its workers, which checkpoint-aware ranks
answer by saying where the run can resume (``scaletune train``), and then ends on a traceback of
its own SignalException. Here it ends as a process stopped by that signal would, with exit code
128 + the signal's number, and the workers' message is the last thing printed. Ranks that end
having said why (a refusal, exit 2; a signal sent to one of them) end it with their exit code,
not torchrun's ChildFailedError traceback; a rank that ends without a word (killed by the
kernel's out-of-memory killer, or crashed on an error it printed) is one line that names it.
A Ctrl-C before torchrun's agent has taken the signals over (its first seconds: torch's imports,
the rendezvous), when no rank has started, ends it the same way, where it printed a
KeyboardInterrupt traceback.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING

from scaletune.trainer.interrupt import PEER_LOST, STOP_SIGNALS

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError


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
            code = max(codes - {PEER_LOST}, default=PEER_LOST)
            if code == DIVERGED and 0 not in e.failures:  # rank 0, on another node, said it
                print("scaletune train: the run diverged (node 0's output says where)",
                      file=sys.stderr, flush=True)
            return 1 if code == DIVERGED else code  # as `scaletune train` in one process
        return _unsaid(e)
    return 0


def _unsaid(e: ChildFailedError) -> int:
    """One line, in place of torchrun's traceback of its ChildFailedError, for a rank that ended
    without saying why: killed by a signal that no one passed on (SIGKILL, from the kernel's
    out-of-memory killer among others), or a crash, whose error the rank printed itself. The
    first such rank's exit code, as a shell gives it (128 + the signal's number)."""
    rank, failure = min(((r, f) for r, f in e.failures.items() if f.exitcode not in SAID),
                        key=lambda rf: (rf[1].timestamp, rf[0]))
    who = f"scaletune train: process {rank} of the run (pid {failure.pid})"
    if failure.exitcode < 0:
        why = (" (the kernel's out-of-memory killer sends it, among others: `dmesg` names the "
               "processes it killed)" if failure.exitcode == -signal.SIGKILL else "")
        said = f"{who} was killed by {failure.signal_name()}{why}; the others stopped"
    else:
        said = (f"{who} ended with exit code {failure.exitcode} (its error is above); the "
                "others stopped")
    print(said, file=sys.stderr, flush=True)
    lead = e.failures.get(0)
    if lead is not None and lead.exitcode not in SAID and (hint := _resume_hint(sys.argv)):
        print(f"scaletune train: {hint}", file=sys.stderr, flush=True)  # rank 0 said nothing
    return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode


def _resume_hint(argv: list[str]) -> str | None:
    """Where the run of ``argv`` (``... -m scaletune.trainer.rank CONFIG ...``, as
    ``trainer.cli.torchrun_command`` gives it) can resume from, or None where that is not
    known (other ranks' programs; a config that no longer reads)."""
    from scaletune.trainer.cli import resume_hint
    from scaletune.trainer.config import load_train_config
    from scaletune.trainer.errors import ConfigError

    try:
        config = load_train_config(argv[argv.index("scaletune.trainer.rank") + 1])
    except (ValueError, IndexError, ConfigError):  # not our ranks, or not a config now
        return None
    return resume_hint(config.out_dir)


def _interrupted() -> int:
    print("scaletune train: interrupted before the run's processes started; nothing was written",
          file=sys.stderr, flush=True)
    return 128 + signal.SIGINT


DIVERGED = 4
"""The exit code of a rank whose run diverged (trainer.rank): `scaletune train` exits 1 then, as
a crash's traceback does, and the launch took the ranks' 1 for a crash ("its error is above")."""
SAID = {2, PEER_LOST, DIVERGED, *(128 + s for s in STOP_SIGNALS)}
"""Exit codes of ranks that said why they ended (trainer.rank, trainer.cli.train_main)."""


if __name__ == "__main__":
    sys.exit(main())
