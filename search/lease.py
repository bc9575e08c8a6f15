"""One driver per study: a lease in the study's storage that a second driver respects.

The driver that opens a study writes its lease (host, pid, when it started, a heartbeat) as the
study user attr ``driver``, refreshes the heartbeat while it runs and clears the lease when it
stops. Another driver of the same study refuses to start while the lease is live, with a message
that names the running driver: two drivers would each take the other's running trials for the
leftovers of a dead driver, mark them FAIL and queue them again.

A killed driver cannot clear its lease, so a lease also ends by itself: at once on the same host,
where its process is seen to be gone, and after ``LEASE_S`` without a heartbeat from another host
(clocks of the two hosts are trusted to within a few seconds). A lease in an SQLite file records
the file; found on this host in another file (a study folder copied while its study ran), it is
the original's driver's, which runs the original: the copy is free.

Every write of the lease is a compare-and-set on what was read (``storage.swap_study_user_attr``):
of two drivers that start at the same moment (both read no lease), the first write holds it and
the other's finds the lease changed and refuses, however long the storage kept either waiting.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from scaletune.search.storage import (
    sqlite_path,
    storage_url,
    stored_study_user_attr,
    swap_study_user_attr,
)
from scaletune.trainer.errors import SetupError

ATTR = "driver"
"""The study user attr that holds the lease."""
HEARTBEAT_S = 10.0
"""How often a running driver refreshes its heartbeat."""
LEASE_S = 60.0
"""A lease without a heartbeat for this long has ended (the driver is gone)."""
JOB_ENV = "SCALETUNE_JOB"
"""The environment variable that names the Ray job a detached driver runs as (search.jobs sets
it); the lease records it, so that whoever is refused learns which job to stop."""
JOB_SERVER_ENV = "SCALETUNE_JOB_SERVER"
"""The job server a detached driver was submitted to (search.jobs sets it), recorded with the
job: the command that stops it is then named whole."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    # A zombie (killed, and its parent has not reaped it: a driver started from a program that
    # never waits for it) answers the signal, and held the study for as long as its parent ran.
    fields = _stat_fields(pid)
    return not fields or fields[0] not in ("Z", "X")  # no /proc (macOS): the signal's answer


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of Linux's /proc/PID/stat after the command's name (the state first, field 3);
    None elsewhere or where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (a Unix time, to the clock tick), from Linux's /proc; None
    elsewhere or where it cannot be read."""
    fields = _stat_fields(pid)
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: the start time
    except (OSError, ValueError, IndexError, TypeError, StopIteration):
        return None


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def database(url: str | None) -> dict[str, Any] | None:
    """The SQLite file of the storage ``url`` as a lease records it (its path and inode); None
    for another storage, or a file that cannot be read."""
    path = sqlite_path(url) if url else None
    try:
        return None if path is None else {"path": str(path.resolve()),
                                          "inode": path.stat().st_ino}
    except OSError:
        return None


def _another_file(recorded: Any, url: str | None) -> bool:
    """Was a lease found in the SQLite storage ``url`` written in another file, one this was
    copied from? Its path and its inode both differ: the same file renamed (its inode) or
    replaced in place (its path) is the same study's."""
    return (isinstance(recorded, dict) and (here := database(url)) is not None
            and recorded.get("path") != here["path"] and recorded.get("inode") != here["inode"])


def live(lease: dict[str, Any] | None, now: float | None = None, url: str | None = None) -> bool:
    """True while the driver that wrote ``lease`` may still be running; ``url``, the storage the
    lease was read from, tells a lease copied with an SQLite file from the original's."""
    if not lease or not lease.get("token"):
        return False
    now = time.time() if now is None else now
    stale = now - float(lease.get("heartbeat", 0)) > LEASE_S
    if lease.get("host") == socket.gethostname():
        if _another_file(lease.get("database"), url):
            return False
        pid = int(lease.get("pid", 0))
        # This very process: a run of it that ended without releasing (a notebook's interrupted
        # cell, a storage that failed); its study loop is over.
        if pid == os.getpid() or not _alive(pid):
            return False
        # The driver's own process, alive however long it was silent (paused with Ctrl-Z, or
        # SIGSTOP): a second driver took its trials for a stopped driver's. A process that
        # started after the lease is another that took its pid: the heartbeat decides.
        started = _started_at(pid)
        return not stale or (started is not None
                             and started <= float(lease.get("since", 0)) + 1.0)
    return not stale


def holder(lease: dict[str, Any] | None, url: str | None = None) -> str | None:
    """``describe(lease)`` while the driver that wrote it may still be running, else None."""
    return describe(lease) if live(lease, url=url) else None


def describe(lease: dict[str, Any]) -> str:
    """'pid 1234 on host-a, running since ..., last heard from 3 s ago'; a detached driver adds
    its Ray job: 'pid 1234 on head-1 as Ray job scaletune-tiny-0a1b2c3d, ...'."""
    ago = time.time() - float(lease.get("heartbeat", 0))
    job = f" as Ray job {lease['job']}" if lease.get("job") else ""
    # A heartbeat ahead of this clock (it said "0 s ago"): the driver's machine's clock and this
    # one's disagree, and the lease holds until this clock passes it by LEASE_S.
    heard = (f"last heard from {ago:.0f} s ago" if ago > -1 else
             f"its last heartbeat {-ago:.0f} s ahead of this machine's clock (the two clocks "
             "disagree: set them right)")
    return (f"pid {lease.get('pid')} on {lease.get('host')}{job}, running since "
            f"{_when(float(lease.get('since', 0)))}, {heard}")


@dataclass
class DriverLease:
    """This process's lease on one study; ``acquire`` it before touching the study's trials."""

    study: optuna.Study
    token: str = ""
    since: float = 0.0
    last_beat: float = 0.0
    before: dict[str, Any] | None = None
    """The lease ``acquire`` found (a stopped driver's, its last heartbeat in it), else None."""

    def _record(self, now: float) -> dict[str, Any]:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": self.since,
                  "heartbeat": now, "token": self.token}
        if where := database(self._url()):
            record["database"] = where
        if os.environ.get(JOB_ENV):
            record["job"] = os.environ[JOB_ENV]
            if os.environ.get(JOB_SERVER_ENV):
                record["job_server"] = os.environ[JOB_SERVER_ENV]
        return record

    def _url(self) -> str | None:
        return storage_url(self.study._storage)

    def _read(self) -> tuple[str | None, dict[str, Any] | None]:
        """The lease as stored (the text a swap compares with) and as read."""
        stored = stored_study_user_attr(self.study, ATTR)
        return stored, None if stored is None else json.loads(stored)

    def acquire(self) -> None:
        """Take the lease, or raise SetupError naming the driver that holds it."""
        token = uuid.uuid4().hex
        for _ in range(3):  # a lease released or ended between the read and the write: again
            stored, held = self._read()
            if live(held, url=self._url()):
                raise busy(self.study.study_name, held)
            self.since = self.last_beat = time.time()
            self.token = token
            if swap_study_user_attr(self.study, ATTR, stored, self._record(self.since)):
                self.before = held
                return
            self.token = ""
        held = self._read()[1]
        if live(held, url=self._url()):
            raise busy(self.study.study_name, held)
        raise SetupError(f"study {self.study.study_name!r}: its driver's lease changed at each of "
                         "this driver's tries to take it (other drivers starting and stopping "
                         "at once); run the command again")

    def refresh(self, force: bool = False) -> None:
        """Write a heartbeat if the last one is ``HEARTBEAT_S`` old (cheap to call often).

        A driver that was paused past ``LEASE_S`` (a suspended laptop) may find the study taken
        by another driver: it raises SetupError rather than write over that driver's lease.
        """
        now = time.time()
        if self.token and (force or now - self.last_beat >= HEARTBEAT_S):
            stored, held = self._read()
            ours = not held or held.get("token") in (None, self.token)
            if ours and swap_study_user_attr(self.study, ATTR, stored, self._record(now)):
                self.last_beat = now
                return
            if ours:  # taken between the read and the write: by whom
                held = self._read()[1] or {}
            self.token = ""
            raise SetupError(
                f"study {self.study.study_name!r} was taken over by another driver "
                f"({describe(held)}) while this one was silent for {now - self.last_beat:.0f}"
                " s; this driver stops and leaves the study to it")

    def release(self) -> None:
        """Clear the lease if it is still ours; never raises (the storage may be the problem)."""
        if not self.token:
            return
        try:
            stored, held = self._read()
            if held and held.get("token") == self.token:
                swap_study_user_attr(self.study, ATTR, stored, None)
        except Exception:  # noqa: BLE001 - a lost storage: the lease expires by itself
            pass
        self.token = ""


def busy(name: str, held: dict[str, Any]) -> SetupError:
    """The error of a driver that finds the study held by ``held``."""
    job, server = held.get("job"), held.get("job_server")
    stop = (f"`scaletune stop {job} --address {server}`" if job and server else
            "Ctrl-C; `scaletune stop STUDY.yaml` for a Ray job")
    return SetupError(
        f"study {name!r} is being run by another driver ({describe(held)}); one study has one "
        f"driver at a time. Wait for it to finish or stop it ({stop}), then run this command "
        "again. A driver that was killed releases the study by itself: at once on its own host, "
        f"within {LEASE_S:.0f} s from elsewhere."
    )
