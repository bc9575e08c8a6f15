"""Ctrl-C and SIGTERM taken at a point of the caller's choosing.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal arrives:
in the middle of a storage write, or inside a finalizer that the garbage collector runs, where
the exception is printed as "Exception ignored" and lost, so that a run asked to stop goes on.
``DeferredInterrupt`` only notes the signal; ``check()`` raises it where stopping is safe.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

PEER_LOST = 3
"""Exit code of a rank whose run stopped because another process of it stopped or was lost
(``scaletune train`` on several nodes, one of them signalled alone)."""

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
"""Ctrl-C; what Slurm, Kubernetes and systemd send; a closed terminal (unless nohup). Windows
has no SIGHUP: named outright, it stopped every import of the trainer there."""


def stopped_by(signum: int) -> str:
    """How a stop by ``signum`` is said: 'interrupted' (Ctrl-C) or 'stopped by SIGTERM'."""
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal (``signum``: SIGINT for Ctrl-C, SIGTERM, SIGHUP). The shell's exit
    code for it is 128 + signum: 130 for Ctrl-C, 143 for SIGTERM. ``said``: what was stopped
    has been said where it was stopped; otherwise the command's caller says it was
    interrupted."""

    def __init__(self, signum: int, said: bool = False) -> None:
        super().__init__(signum)
        self.signum = signum
        self.said = said


class DeferredInterrupt:
    """Ctrl-C, SIGTERM or SIGHUP raises ``Interrupted`` only where ``check()`` is called. A
    second signal raises at once, so that a stuck program can still be stopped.

    Only the main thread receives signals; elsewhere this does nothing. A signal that is ignored
    when the block starts (nohup) stays ignored. A signal that an enclosing block noted before
    this one started (a rank's start-up, trainer.rank) is this block's too.
    """

    SIGNALS = STOP_SIGNALS
    at_once_now = False
    """Whether a signal raises at once (``at_once``, PromptInterrupt.prompt)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # nohup: the user asked for the program to outlive the terminal
                self._previous[signum] = signal.signal(signum, self._handle)
                outer = getattr(self._previous[signum], "__self__", None)
                if isinstance(outer, DeferredInterrupt) and outer.requested and not self.requested:
                    self.requested, self.signal = True, outer.signal
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def reinstall(self) -> None:
        """Take the signals again, inside the block: a library's native code may have set a
        handler of its own for one (Ray's core worker, started by ``ray.init``, for SIGTERM),
        which Python's ``signal.getsignal`` does not show."""
        for signum in self._previous:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested or self.at_once_now:
            raise Interrupted(signum)
        self.requested = True
        self.signal = signum

    def check(self) -> None:
        if self.requested:
            raise Interrupted(self.signal or signal.SIGINT)

    @contextlib.contextmanager
    def at_once(self) -> Iterator[None]:
        """A block in which a signal raises at once (one noted before it raises on entry): a
        long part of a run's set-up with no point to stop at that it should wait for (a corpus
        tokenized for minutes: a Ctrl-C would have waited for its end)."""
        self.check()
        before, self.at_once_now = self.at_once_now, True
        try:
            yield
        finally:
            self.at_once_now = before


class PromptInterrupt(DeferredInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP raises ``Interrupted`` at once, wherever the main thread is,
    once ``prompt()`` has been called (the training steps); before, as DeferredInterrupt.

    For torchrun's ranks: a step of one waits for the others in a collective, so a rank cannot
    wait for a safe point that its peers may never reach; torchrun signals them all. Without it,
    a SIGTERM ends a rank without a word (Python's default), where Ctrl-C says how to resume.
    Before the steps a signal waits for the next ``check()``: raised in the middle of an import
    (torch's DDP imports its compiler lazily), it left a module half made, and the rank ended
    on a RecursionError.
    """

    def prompt(self) -> None:
        """From now on a signal raises at once; one noted before raises here."""
        self.at_once_now = True
        self.check()
