"""One `scaletune train` at a time in a run folder.

Two runs writing one out_dir (a `--resume` typed while the first still trains, or torchrun's
ranks left training by a launcher killed with SIGKILL) would write over each other's checkpoint
and interleave their metrics. The run's lead process holds an exclusive lock on
``out_dir/.run.lock`` while it trains; the lock is the operating system's (``flock``), so it
ends with the process, however it ends, and a lock file left behind holds nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from scaletune.trainer.errors import SetupError

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the project runs on Linux and macOS)
    fcntl = None  # type: ignore[assignment]

LOCK = ".run.lock"


def _busy(out_dir: Path, holder: str) -> SetupError:
    holder = holder or "a process of this machine"
    return SetupError(
        f"out_dir {out_dir}: another scaletune train is training this run now ({holder}): let "
        "it end, or stop it (Ctrl-C, or kill its pid), then run again; or set another out_dir")


def file_in_the_way(folder: Path) -> Path | None:
    """The file that stands where ``folder``, or a folder above it, must be a folder (making
    it fails: "File exists", "Not a directory"); None where there is none. A run's out_dir, a
    study's folder and a report's folder are checked with it."""
    return next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)


def out_dir_problem(out_dir: Path) -> str | None:
    """Why a run cannot write into ``out_dir`` (a file there or above it, a folder it may not
    write to), in words that follow ``out_dir {out_dir}: ``; None where it can."""
    out_dir = Path(os.path.normpath(out_dir))
    if (blocked := file_in_the_way(out_dir)) is not None:
        return (f"{blocked} is a file, and a run writes its checkpoint and logs into a folder: "
                "give another out_dir")
    there = next(p for p in [out_dir, *out_dir.parents] if p.exists())
    if not os.access(there, os.W_OK | os.X_OK):
        return (f"cannot write to {there} (read-only, or another user's), where the run writes "
                "its checkpoint and logs: give another out_dir")
    return None


@contextlib.contextmanager
def run_lock(out_dir: Path | None) -> Iterator[None]:
    """Hold ``out_dir``'s run lock (making the folder) while the block runs; SetupError naming
    the process that holds it where another does, or why the folder cannot be written. None: no
    folder, no lock."""
    if out_dir is None or fcntl is None:
        yield
        return
    if problem := out_dir_problem(out_dir):  # from Python: FileExistsError, PermissionError
        raise SetupError(f"out_dir {out_dir}: {problem}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise _busy(out_dir, f.read().strip()) from None
        f.seek(0)
        f.truncate()
        try:  # unbuffered: a write the disk refused is not tried again when f closes
            os.write(f.fileno(), f"pid {os.getpid()} on {socket.gethostname()}".encode())
        except OSError as e:  # a full disk: a write into the open file names no file
            raise SetupError(f"out_dir {out_dir}: cannot write its run lock {LOCK} "
                             f"({e.strerror or e}): free space there, or give another "
                             "out_dir") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_free(out_dir: Path | None) -> None:
    """SetupError where a run holds ``out_dir``'s lock now: the check a launcher makes before it
    starts processes that would each be refused. Makes nothing."""
    if out_dir is None or fcntl is None or not (out_dir / LOCK).is_file():
        return
    with open(out_dir / LOCK, encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(out_dir, f.read().strip()) from None
        fcntl.flock(f, fcntl.LOCK_UN)
