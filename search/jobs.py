"""A study that outlives the machine that started it: its driver runs on a Ray cluster as a Ray
job, handed over through the cluster's job server (Ray's dashboard, ``http://HEAD:8265``).

``submit`` is ``scaletune run --detach``: it submits ``scaletune run STUDY.yaml --address auto``
as a job, waits until the driver has opened the study on the cluster (or says why it could not),
prints the job id and the commands that follow it, and returns. ``list_jobs``, ``print_logs`` and
``stop`` are ``scaletune jobs``, ``logs`` and ``stop``, from any machine that reaches the job
server. The driver of a job is the same ``scaletune run`` as a local one: it takes the same lease
(search.lease, which records the job's id), so a second driver is refused as ever. ``stop`` is
Ray's: SIGTERM to the driver, which stops its running trials and queues them again, as for
Ctrl-C; submitting the study again resumes it.

The study file is not uploaded: the job runs it at the same absolute path, so the file, its data
and its storage must be there on the cluster's head node (a file system the cluster shares, or
a copy at the same path). A copy uploaded with the job would keep an SQLite storage in the job's
temporary folder, and a resubmitted job would start the study afresh.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from scaletune.search import lease
from scaletune.search.config import StudyConfig, load_study
from scaletune.search.manage import _printer
from scaletune.search.plan import study_attrs
from scaletune.search.storage import mask_url
from scaletune.trainer.console import whole_cells
from scaletune.trainer.errors import ScaletuneError, SetupError, first_line

PREFIX = "scaletune-"
"""Every job id this module submits starts so; ``scaletune logs`` and ``stop`` tell a job id
from a study file by it."""
METADATA = "scaletune_study"
"""The job metadata key that names the study a job drives."""
STORAGE = "scaletune_storage"
"""The job metadata key for the storage of that study (its URL, masked)."""
STOP_WAIT_S = 60
"""How long Ray waits after its SIGTERM for the driver to stop its trials before SIGKILL (Ray's
RAY_JOB_STOP_WAIT_TIME_S; its default, 3 s, is less than a driver takes to cancel its trials)."""
START_WAIT_S = 180.0
"""How long ``submit`` waits for the driver to open the study (the cluster imports torch and
Ray, prepares the data and checks the storage first)."""
ACTIVE = ("PENDING", "RUNNING")
STARTED = re.compile(r"^study \S+ on .*: (\d+)/(\d+) trials finished(?: \([^)]*\))?"
                     r"(?:, up to \d+ at once)?[ \t]*$", re.M)
"""The line a driver prints once it holds the study's lease (search.runner._drive), or once it
found the study with nothing left to run (then without ``up to``); where the study holds
repeats of its best, the count says so in brackets (search.noise.finished_of)."""
NOTHING = re.compile(r"^nothing to run: .*$", re.M)
"""The line of a driver that found the trials asked for finished (search.runner)."""
TALLY = re.compile(
    r"^\S+  done \d+  pruned \d+  failed \d+  (?:diverged \d+  )?running \d+  of \d+ .*$", re.M)
"""The tally a driver prints after each finished trial (search.progress.StudyProgress)."""
STOPPED = re.compile(r"^(?:interrupted|stopped) .*queued again.*$", re.M)


def job_server(cfg: StudyConfig | None, address: str | None) -> str:
    """The job server's URL: ``--address``, else the study's ``workers.address`` where it is a
    job server, else ``RAY_API_SERVER_ADDRESS`` or ``RAY_ADDRESS``."""
    url, given = address, "--address"
    if not url and cfg is not None and cfg.workers.job_server:
        url, given = cfg.workers.job_server, "workers.address"
    # As Ray's own `ray job` reads them: RAY_API_SERVER_ADDRESS first, then RAY_ADDRESS.
    for variable in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        if not url and os.environ.get(variable):
            url, given = os.environ[variable], variable
    if not url:
        joined = cfg.workers.address if cfg is not None else None
        raise SetupError("no Ray job server: give --address http://HEAD:8265 (the cluster's "
                         "dashboard), or set workers.address or RAY_API_SERVER_ADDRESS to it"
                         + (f" (workers.address {joined} is the cluster the study joins, not "
                            "its job server)" if joined not in (None, "local") else ""))
    if not url.startswith(("http://", "https://")):
        raise SetupError(f"{given}: {mask_url(url)} is not a Ray job server: give the cluster's "
                         "dashboard address, http://HEAD:8265"
                         + (" (with --address, or in RAY_API_SERVER_ADDRESS, which is read "
                            "first)" if given == "RAY_ADDRESS" else ""))
    return url


JOB_SERVER_TIMEOUT_S = 15.0
"""How long a job server may take to answer before a command says it did not."""


def client(url: str) -> Any:
    """Ray's JobSubmissionClient for ``url``, or SetupError naming the address."""
    shown = mask_url(url)  # the address as said: a password in it masked
    import http.client
    import urllib.error
    import urllib.request

    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    # Ray's client asks for the server's version with no time limit: a server that accepts the
    # connection and never answers (a stuck dashboard, a half-open tunnel) held every job
    # command without a word. Other failures are left to the client, which names them.
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/api/version",
                               timeout=JOB_SERVER_TIMEOUT_S).close()
    except (TimeoutError, urllib.error.URLError) as e:
        if isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError):
            raise SetupError(f"the Ray job server at {shown} did not answer within "
                             f"{JOB_SERVER_TIMEOUT_S:g} s: is its dashboard stuck, or the "
                             "tunnel to it down?") from None
    except http.client.HTTPException as e:  # BadStatusLine: a port of Ray's own, not HTTP/1's
        # Closed unanswered (RemoteDisconnected: a tunnel to a dashboard that is down) is left
        # to the client, which says it cannot reach the server.
        if not isinstance(e, ConnectionError):
            raise SetupError(f"{shown} does not answer as a Ray job server (no HTTP there): the "
                             "head's own port (6379) or Ray's client server (10001)? The job "
                             "server is the dashboard's address, http://HEAD:8265") from None
    except (OSError, ValueError):
        pass
    try:
        return JobSubmissionClient(url)
    except AuthenticationError:
        from scaletune.search.cluster import presents_token

        stored = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
        if stored.is_file() and presents_token() is False:
            # A head's own machine: the token is there, and Ray sends it only when told to.
            raise SetupError(f"the Ray job server at {shown} asks for the cluster's token: a token "
                             f"is stored here ({stored}), which Ray presents only under "
                             "RAY_AUTH_MODE=token: export RAY_AUTH_MODE=token (if it is this "
                             "cluster's token) and run the command again") from None
        if urlsplit(url).username is not None:
            # The HTTP client sends a user:password of the URL in the Authorization header, in
            # place of the token: the token was never seen.
            raise SetupError(f"the Ray job server at {shown} asks for the cluster's token, which "
                             "the user and password in the address replace (both go in the "
                             "request's Authorization header): give the address without "
                             "them") from None
        if presents_token():  # a token went, and was not the cluster's
            where = ("RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else
                     f"the file {stored}" if stored.is_file() else "this machine's settings")
            raise SetupError(f"the Ray job server at {shown} refused the token in {where}: it is "
                             "not this cluster's; give the one its head holds (`ray "
                             "get-auth-token` on the head prints it)") from None
        raise SetupError(f"the Ray job server at {shown} asks for the cluster's token: set "
                         "RAY_AUTH_MODE=token and the token in RAY_AUTH_TOKEN (or in the file "
                         "RAY_AUTH_TOKEN_PATH names, by default ~/.ray/auth_token)") from None
    except (ConnectionError, RuntimeError, ValueError) as e:
        said = first_line(e).rstrip(".").replace(url, shown)
        raise SetupError(f"cannot reach the Ray job server at {shown}: {said}; is the cluster up, "
                         "with its dashboard on that address and port?") from None


def entrypoint(path: Path, options: dict[str, Any]) -> str:
    """The command the job runs: this study's ``scaletune run``, joined to the cluster it runs
    on (Ray sets RAY_ADDRESS in a job), with the launch's other options."""
    words = ["scaletune", "run", str(path), "--address", "auto"]
    for flag, value in options.items():
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def check_storage_option(storage: str | None) -> None:
    """SetupError where a job's ``--storage`` holds a password (``run --detach``, and its dry
    run): it would be part of the job's command line."""
    if storage and mask_url(storage) != storage:
        raise SetupError(
            f"--storage {mask_url(storage)}: a password would be part of the job's command line, "
            "which `ray job list` shows to anyone who reaches the cluster; keep it in ~/.pgpass "
            "on the head node and give the URL without it")


def submit(cfg: StudyConfig, study_file: str, url: str, options: dict[str, Any],
           console: Console, follow_address: str | None = None) -> int:
    """Submit the study's driver as a Ray job; see the module's docstring. The commands it
    prints to follow the job carry ``--address follow_address`` when given (a job server that
    the study file does not name: ``--address``, or RAY_API_SERVER_ADDRESS)."""
    shown = mask_url(url)  # the address as said: a password in it masked
    storage = options.get("--storage")
    check_storage_option(storage)
    # A driver that runs the study now, not as a job (on this machine, or on any with a
    # PostgreSQL storage): the job was submitted, and failed on the lease. A job's driver is the
    # job server's to name, below.
    held = study_attrs(storage or cfg.storage_url, cfg.name, (lease.ATTR,)).get(lease.ATTR)
    if lease.live(held, url=storage or cfg.storage_url) and not held.get("job"):
        raise lease.busy(cfg.name, held)
    jobs = client(url)
    path = Path(study_file).resolve()
    where = mask_url(storage or cfg.storage_url)
    # The flags of the commands that follow the job: its server, and the storage it was given.
    flags = _address_flag(follow_address) + (f" --storage {shlex.quote(storage)}" if storage
                                             else "")
    running = [j for j in _study_jobs(jobs, cfg.name, where) if str(j.status) in ACTIVE]
    if running:
        j = running[0]
        raise SetupError(
            f"study {cfg.name!r} is being run by Ray job {j.submission_id} ({j.status}, since "
            f"{_when(j.start_time)}); one study has one driver at a time. Wait for it to "
            f"finish or stop it (`scaletune stop {shlex.quote(study_file)}{flags}`), then run "
            "this command again.")
    if lease.live(held, url=storage or cfg.storage_url):
        # A job's driver holds the study, though no job of this server names the study in its
        # storage so written: the same database written otherwise (localhost for 127.0.0.1), or
        # a job of another cluster. It was submitted, and failed on the lease.
        raise lease.busy(cfg.name, held)
    job_id = f"{PREFIX}{re.sub(r'[^A-Za-z0-9_.-]', '-', cfg.name)}-{uuid.uuid4().hex[:8]}"
    _submit(jobs, url,
            entrypoint=entrypoint(path, options), submission_id=job_id,
            metadata={METADATA: cfg.name, STORAGE: where, "study_file": str(path),
                      "submitted_from": socket.gethostname()},
            runtime_env={"env_vars": {lease.JOB_ENV: job_id, lease.JOB_SERVER_ENV: shown,
                                      "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S)}})
    out = _printer(console)
    out(f"submitted study {cfg.name} as Ray job {job_id} to {shown}")
    status, logs = _wait_for_driver(jobs, job_id)
    if status not in ACTIVE and status != "SUCCEEDED":
        out(f"the job {status}; its log ends:")
        for line in logs.strip().splitlines()[-20:]:
            out(f"  {line}")
        return 2
    nothing = NOTHING.search(logs)
    if status == "SUCCEEDED" and nothing:
        out(f"the driver on the cluster: {nothing.group(0)}")
        return 0
    started = STARTED.search(logs)
    if started:
        out(f"the driver runs on the cluster: {started.group(0)}")
    elif status in ACTIVE:
        out(f"the job is {status}; the driver has not opened the study yet")
    quoted = shlex.quote(study_file)
    out("this machine may go now. Follow the study from any machine that reaches the cluster:")
    follow = [(f"scaletune jobs {quoted}{flags}", "its progress"),
              (f"scaletune logs {quoted}{flags} --follow", "the driver's output"),
              (f"scaletune stop {quoted}{flags}", "stop it; run --detach again resumes it")]
    width = max(len(command) for command, _ in follow)
    for command, what in follow:
        out(f"  {command:<{width}}   {what}")
    return 0


AGENT_WAIT_S = 30.0
"""How long ``submit`` keeps offering a job to a cluster whose job agent is not up yet: a head
node just started (``ray start --head``) answers "No available agent to submit job, please try
again later" for a few seconds, longer on a busy machine."""
NO_AGENT = "No available agent to submit job"


def _submit(jobs: Any, url: str, **job: Any) -> None:
    """``jobs.submit_job(**job)``, tried again every second for up to AGENT_WAIT_S while the
    cluster's job agent is still starting; SetupError naming the server when it fails."""
    shown = mask_url(url)  # the address as said: a password in it masked
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            jobs.submit_job(**job)
            return
        except RuntimeError as e:
            said = first_line(e).rstrip(".")
            if NO_AGENT in said and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            waited = f" (for {AGENT_WAIT_S:.0f} s)" if NO_AGENT in said else ""
            raise SetupError(f"the Ray job server at {shown} refused the study's job{waited}: "
                             f"{said}") from None


def _wait_for_driver(jobs: Any, job_id: str) -> tuple[str, str]:
    """Wait until the job's driver opened the study, or the job ended, or START_WAIT_S passed,
    or Ctrl-C (which leaves the job running); the job's status and log then. A driver that
    found nothing to run is waited for to the end, which follows at once, so that its line is
    in the log returned."""
    deadline = time.monotonic() + START_WAIT_S
    status, logs = "PENDING", ""
    try:  # Ctrl-C while a request is answered, or between two, leaves the job as it stands
        while True:
            status = str(jobs.get_job_status(job_id))
            logs = jobs.get_job_logs(job_id)
            started = STARTED.search(logs)
            if (status not in ACTIVE or time.monotonic() > deadline
                    or (started and int(started.group(1)) < int(started.group(2)))):
                return status, logs
            time.sleep(1.0)
    except KeyboardInterrupt:
        return status, logs


def list_jobs(url: str, study: str | None, console: Console, storage: str | None = None) -> int:
    """A table of the studies' jobs on the cluster (of study ``study`` in ``storage``, where
    given): id, study, status, when, and progress, the last tally its driver printed."""
    shown = mask_url(url)  # the address as said: a password in it masked
    jobs = client(url)
    found = _study_jobs(jobs, study, storage)
    if not found:
        # A study run with `--detach --storage` is found with that --storage, as stop says.
        elsewhere = _elsewhere(jobs, study, storage) if study else ""
        _printer(console)(f"no scaletune jobs{f' of study {study}' if study else ''} on "
                          f"{shown}{elsewhere}")
        return 0
    table = Table(title=f"Studies run as Ray jobs on {shown}")
    for column in ("job", "study", "status", "started", "progress"):
        table.add_column(column)
    for j in found:
        logs = jobs.get_job_logs(j.submission_id)
        table.add_row(j.submission_id, j.metadata.get(METADATA, ""), str(j.status),
                      _when(j.start_time), _progress(logs, str(j.status)))
    console.print(whole_cells(table))
    return 0


def _progress(logs: str, status: str) -> str:
    """The last tally in a driver's log; before its first trial ended, where the study stood
    (``4/10 trials finished``, or that nothing was left to run), not whatever line came last (a
    trial's evaluation, the summary's export command); then how the job went."""
    tallies = TALLY.findall(logs)
    last = tallies[-1] if tallies else ""
    if not last:
        nothing, started = NOTHING.findall(logs), STARTED.findall(logs)
        last = (nothing[-1] if nothing else
                f"{started[-1][0]}/{started[-1][1]} trials finished" if started else "")
    if status not in ACTIVE:  # the time left of a driver that has ended is none
        last = re.sub(r"\s*\|\s*ETA [^|]*$", "", last)
    said = _stop_said(logs)
    if said and status not in ACTIVE:
        last = f"{last}; {said}" if last else said
    if not last:
        lines = [ln for ln in logs.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
    return last


def _stop_said(logs: str) -> str:
    """What a stopped driver said last (``stopped (SIGTERM): 1 running trial(s) stopped and
    queued again``), less its advice to run the same command: a job resumes with run --detach."""
    found = STOPPED.findall(logs)
    return found[-1].split("; run the same command")[0] if found else ""


def is_study_file(target: str) -> bool:
    """A command's STUDY|JOB argument names a study file (not a job's id, nor a study's name)."""
    return Path(target).is_file() or target.endswith((".yaml", ".yml"))


def is_job_id(target: str) -> bool:
    """A command's STUDY|JOB argument names a job (``scaletune-tiny-0a1b2c3d``, or an id Ray gave
    a job submitted by other means, ``raysubmit_...``), not a file."""
    return (target.startswith((PREFIX, "raysubmit_"))
            and not target.endswith((".yaml", ".yml")) and not Path(target).is_file())


def find_job(url: str, target: str, storage: str | None = None) -> tuple[Any, str]:
    """The job a command names: a job id, or the latest job (a running one first) of a study
    file's study or of a study's name, as `scaletune jobs` lists it; in ``storage`` where given
    (`run --detach --storage`), else the study file's."""
    shown = mask_url(url)  # the address as said: a password in it masked
    jobs = client(url)
    if is_job_id(target):
        try:
            jobs.get_job_info(target)
            return jobs, target
        except RuntimeError as e:  # Ray's "Request failed with status code 404: ..."
            if "404" not in str(e):
                raise
    # No such job: a study may be named as a job is (scaletune-x), so its jobs are looked for.
    cfg = load_study(target) if is_study_file(target) else None
    name = cfg.name if cfg else target  # a study's name
    where = mask_url(storage or cfg.storage_url) if cfg or storage else None
    found = _study_jobs(jobs, name, where)
    if not found and is_job_id(target):
        raise SetupError(f"no Ray job {target} on {shown}: `scaletune jobs --address {shown}` "
                         "lists the studies' jobs there")
    if not found:
        named = f" ({target})" if name != target else ""
        run = target if name != target else "STUDY.yaml"
        raise SetupError(f"no Ray job of study {name!r}{named} on {shown}"
                         f"{_elsewhere(jobs, name, where)}; `scaletune run {shlex.quote(run)} "
                         "--detach` submits one")
    running = [j for j in found if str(j.status) in ACTIVE]
    return jobs, (running or found)[0].submission_id


def print_logs(url: str, target: str, follow: bool, console: Console,
               storage: str | None = None) -> int:
    """The driver's output of a job (``find_job``'s); with ``follow``, until the job ends
    (Ctrl-C leaves the job running)."""
    shown = mask_url(url)  # the address as said: a password in it masked
    jobs, job_id = find_job(url, target, storage)
    if not follow:
        console.file.write(jobs.get_job_logs(job_id))
        return 0

    async def tail() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            console.file.write(chunk)
            console.file.flush()

    # Ray's client logs "WebSocket closed for job ..." at INFO once the job ends: the last line
    # the user saw, after the driver's own.
    sdk = logging.getLogger("ray.dashboard.modules.job.sdk")
    level = sdk.level
    sdk.setLevel(max(level, logging.WARNING))
    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:  # the job server went away while the job ran
        raise SetupError(f"the log stream of Ray job {job_id} from {shown} broke off before the "
                         f"job ended ({first_line(e)}): `scaletune jobs --address {shown}` says "
                         "whether it still runs") from None
    finally:
        sdk.setLevel(level)
    return _ended(jobs, job_id, target, url, console)


def _ended(jobs: Any, job_id: str, target: str, url: str, console: Console) -> int:
    """After a followed job's last line: nothing more where it succeeded (its summary was the
    last line); else a line with how it ended (a driver killed, a study stopped, no trial
    complete) and how to resume it, and exit code 1."""
    info = jobs.get_job_info(job_id)
    status = str(info.status)
    if status == "SUCCEEDED":
        return 0
    why = first_line(info.message).rstrip(".:") if info.message else ""
    _printer(console)(f"Ray job {job_id} ended {status}" + (f": {why}" if why else "")
                      + f"; resume it with  {_resume_command(info, target, url)}")
    return 1


def _resume_command(info: Any, target: str, url: str) -> str:
    """The ``scaletune run FILE --detach`` that resumes a job (``info``, Ray's JobDetails) of
    the command given ``target``: on the study file given, else the one the job was submitted
    with (its metadata), with the job server where the file does not name it and the launch's
    options (RESUMED_WITH)."""
    study = target if is_study_file(target) else (info.metadata or {}).get("study_file", "")
    try:
        named = load_study(study).workers.job_server if study else None
    except ScaletuneError:  # moved or changed since: the address is said
        named = None
    return (f"scaletune run {shlex.quote(study or 'STUDY.yaml')} --detach"
            f"{_address_flag(None if url == named else url)}{_launch_flags(info.entrypoint)}")


def stop(url: str, target: str, console: Console, storage: str | None = None) -> int:
    """Stop a study's running job (``find_job``'s) and wait for its driver to queue its running
    trials again."""
    jobs, job_id = find_job(url, target, storage)
    out = _printer(console)
    status = str(jobs.get_job_status(job_id))
    if status not in ACTIVE:
        out(f"Ray job {job_id} is not running ({status}); nothing to stop"
            f"{_running_elsewhere(jobs, job_id, url)}")
        return 0
    jobs.stop_job(job_id)
    deadline = time.monotonic() + STOP_WAIT_S + 30
    while status in ACTIVE and time.monotonic() < deadline:
        time.sleep(0.5)
        status = str(jobs.get_job_status(job_id))
    if status in ACTIVE:
        out(f"asked Ray job {job_id} to stop; it is still {status}")
        return 1
    said = _stop_said(jobs.get_job_logs(job_id))
    out(f"Ray job {job_id}: {status}" + (f"; the driver: {said}" if said else ""))
    out(f"resume it with  {_resume_command(jobs.get_job_info(job_id), target, url)}")
    return 0


RESUMED_WITH = ("--n-trials", "--max-concurrent", "--storage")
"""The launch options of a job (entrypoint's) that its resume command repeats: without them it
resumes another study (--storage) or asks for other trials than the launch did."""


def _launch_flags(command: str | None) -> str:
    """`` --n-trials 10``: the options in RESUMED_WITH of a job's ``command`` (entrypoint's)."""
    words = shlex.split(command or "")
    pairs = zip(words, words[1:], strict=False)
    return "".join(f" {flag} {shlex.quote(value)}" for flag, value in pairs if flag in RESUMED_WITH)


def _address_flag(url: str | None) -> str:
    """`` --address URL`` for a command to print, where the study file does not name ``url``; a
    password in it masked (the person who gave it knows it)."""
    return f" --address {shlex.quote(mask_url(url))}" if url else ""


def _elsewhere(jobs: Any, name: str, storage: str | None) -> str:
    """Where study ``name`` has jobs in storages other than ``storage``, the words that say so
    and how to name one: a job run with `--detach --storage` is found with that --storage."""
    others = sorted({j.metadata.get(STORAGE) for j in _study_jobs(jobs, name)} - {storage, None})
    if storage is None or not others:
        return ""
    return (f" in {storage}; its jobs there are in {', '.join(others)}: give --storage as "
            "`run --detach` was given it")


def _running_elsewhere(jobs: Any, job_id: str, url: str) -> str:
    """Where job ``job_id``'s study runs now as another job in another storage (run --detach
    --storage), the words that say so and how to stop that one: `stop` of the study file
    finds the jobs in the file's storage."""
    ours = jobs.get_job_info(job_id).metadata or {}
    if METADATA not in ours:
        return ""
    name, storage = ours[METADATA], ours.get(STORAGE)
    running = [j for j in _study_jobs(jobs, name)
               if str(j.status) in ACTIVE and j.metadata.get(STORAGE) != storage]
    if not running:
        return ""
    j = running[0]
    return (f"; study {name!r} runs as Ray job {j.submission_id} in {j.metadata.get(STORAGE)} "
            f"(`scaletune stop {j.submission_id}{_address_flag(url)}` stops it)")


def _study_jobs(jobs: Any, name: str | None, storage: str | None = None) -> list[Any]:
    """The jobs this module submitted (of study ``name``, and in ``storage``, its URL masked,
    where given: a study is its name in its storage, and two files may name one study each in
    storages of their own), the latest first. A job submitted before its storage was recorded
    matches by name."""
    found = [j for j in jobs.list_jobs()
             if j.metadata and METADATA in j.metadata
             and (name is None or j.metadata[METADATA] == name)
             and (storage is None or j.metadata.get(STORAGE, storage) == storage)]
    return sorted(found, key=lambda j: j.start_time or 0, reverse=True)


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
