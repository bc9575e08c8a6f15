"""Run a study: one driver process owns the Optuna storage, Ray workers train the trials.

The driver asks the study for trials, starts each as a Ray task with the resources the study
asks for, answers the workers' reports with the pruner's decision, and tells the study how each
trial ended. Workers never open the storage, so SQLite works with any number of them and
workers may run on machines that cannot reach the database.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import ray
import sqlalchemy.exc
from optuna.trial import TrialState
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rich.console import Console

from scaletune.search import lease
from scaletune.search.cluster import init_ray
from scaletune.search.config import (
    MAX_TRIALS,
    StudyConfig,
    WorkersConfig,
    check_study_files,
    holds_study,
    how_many,
    job_server_problem,
    load_study,
    revalidated,
    stored_study_attrs,
)
from scaletune.search.fit import laws_fit_note
from scaletune.search.noise import (
    best_of,
    finished_of,
    n_repeats,
    queue_repeats,
    root,
    trials_asked,
    waiting_repeats,
)
from scaletune.search.plan import (
    DRIVER_STOPPED,
    RECORD,
    DriverStudy,
    SearchPlan,
    TrialRun,
    failed_for_good,
    mps_problem,
    n_done,
    n_finished,
    optim_note,
    optimizer_note,
    priors_note,
    pruner_note,
    sampler_note,
    stored_change,
    stored_data_change,
    stored_trial_states,
    widening_note,
)
from scaletune.search.progress import QUEUED, StudyProgress, print_run_summary
from scaletune.search.space import (
    centers_outside,
    nothing_searched,
    one_batch_size,
    outside_ranges,
)
from scaletune.search.storage import (
    DAMAGED_ADVICE,
    SQLITE_BUSY_TIMEOUT_S,
    batch,
    make_storage,
    mask_url,
    opened_to_read,
    scrub,
    sqlite_path,
    storage_problems,
    study_folder_problem,
    unreachable,
)
from scaletune.search.studies import elsewhere_note
from scaletune.search.tracking import Tracker
from scaletune.trainer.console import given_console, make_console
from scaletune.trainer.data import folder_note, prepare_data, unread_note, validation_note
from scaletune.trainer.errors import (
    DISK_ERRNOS,
    ConfigError,
    DataError,
    ScaletuneError,
    StorageError,
    StudyStateError,
)
from scaletune.trainer.interrupt import DeferredInterrupt, Interrupted

#: Failures of the machinery rather than of the trial: the trial is re-run with the same params.
RETRYABLE = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ActorDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
)

#: A study does not start on a disk with less free space than this: the SQLite storage needs room
#: for its journal, and every trial adds rows.
MIN_FREE_BYTES = 50 * 1024**2

STALL_FLOOR_S = 120.0
"""A running trial silent this long, and STALL_FACTOR times the longest wait between two of its
reports, is named as perhaps hung (``_Heard``)."""
STALL_FACTOR = 5.0


class _Heard:
    """When the driver last heard from a running trial, and how long its reports have taken to
    come: a worker that hangs (a stopped process, a deadlocked collective, a stuck file system)
    sends nothing and never ends, and the study waited for it without a word."""

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.longest = 0.0
        self.reports = 0
        self.where = ""
        self.warned = False

    def heard(self, kind: str, info: Any) -> None:
        now = time.monotonic()
        if kind == "started" and isinstance(info, dict):
            self.where = f" (pid {info.get('pid')} on {info.get('host')})"
        elif kind == "report":
            if self.reports:
                self.longest = max(self.longest, now - self.at)
            self.reports += 1
        self.at, self.warned = now, False

    def stalled(self, number: int) -> str | None:
        """A warning, once, when the trial has been silent far longer than its reports took."""
        silent = time.monotonic() - self.at
        if self.warned or not self.reports or silent < max(STALL_FLOOR_S,
                                                            STALL_FACTOR * self.longest):
            return None
        self.warned = True
        apart = f"{self.longest:.0f}" if self.longest >= 10 else f"{self.longest:.1f}"
        return (f"trial {number} has sent nothing for {silent:.0f} s, where its evaluations "
                f"came at most {apart} s apart: its worker{self.where} may be hung, "
                "and the study waits for it. Ctrl-C stops the study and queues its running "
                "trials again; kill -9 of that process fails the trial (queued again "
                "while the study's max_retries allow)")

#: What a failed write to the storage raises: SQLite's "database or disk is full" or "readonly
#: database" (SQLAlchemy errors, wrapped by Optuna on commit), a lost database server.
STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def preflight(cfg: StudyConfig) -> Any:
    """Checks that need the outside world, done before anything is written anywhere."""
    errors = [problem] if (problem := job_server_problem(cfg)) else []
    if cfg.storage is None:
        errors += _folder_errors(cfg.folder)
        database = sqlite_path(cfg.storage_url)
        if not errors and database is not None and database.parent.resolve() != \
                cfg.folder.resolve():
            # runs/studies.db beside the study folder: SQLite writes its journal in that folder
            # too. Refused there, the study "stopped" at its first write, advising disk space.
            errors += [e.replace("study_dir: ", "study_dir: the default storage's folder: ", 1)
                       for e in _folder_errors(database.parent)]
    missing = check_study_files(cfg)  # what `scaletune validate` finds too, named once
    errors += missing
    if change := stored_change(cfg):  # before the data is prepared and Ray starts
        errors.append(change)
    data = None
    try:
        if not any(e.startswith("data.") for e in missing):
            data = prepare_data(cfg.data, cfg.model.block_size)
    except DataError as e:  # it names its key
        errors.append(str(e))
    except FileNotFoundError as e:
        errors.append(f"data.path: {e}")
    except (ValueError, RuntimeError, OSError) as e:
        errors.append(str(e) if str(e).startswith("data") else f"data: {e}")
    if data is not None and not change and (
            moved := stored_data_change(cfg, data.fingerprint)):
        # Before Ray starts and the lease is written: refused there, the storage file changed.
        errors.append(moved)
    if data is not None:
        needed = cfg.model.block_size + 1
        if data.n_val_tokens < needed or data.n_train_tokens < needed:
            errors.append(
                f"data: too little text for model.block_size={cfg.model.block_size}: "
                f"{data.n_train_tokens} train / {data.n_val_tokens} validation tokens"
            )
    problems = storage_problems(cfg.storage, cfg.storage_url)
    errors += problems
    if not problems and cfg.storage is not None and (problem := unreachable(cfg.storage)):
        errors.append(problem)
    if problem := mps_problem(cfg):
        errors.append(problem)
    if cfg.trainer.compile and cfg.workers.address in (None, "local"):  # trials run here
        from scaletune.trainer.loop import compiler_missing  # imports torch: only when asked

        if why := compiler_missing():
            errors.append(f"trainer.{why}")
    if errors:
        raise cfg.refusal(errors)
    _refuse_a_second_driver(cfg)
    return data


def _refuse_a_second_driver(cfg: StudyConfig) -> None:
    """Refuse before Ray starts when another driver runs the study (open_study takes the lease
    and checks again; this only spares a second driver Ray's start-up)."""
    path = sqlite_path(cfg.storage_url)
    if path is not None and not path.is_file():
        return
    # An SQLite file cut short: "database disk image is malformed".
    with opened_to_read(cfg.storage_url, cfg.source):
        try:
            study = optuna.load_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
        except KeyError:  # no such study yet
            return
    held = study.user_attrs.get(lease.ATTR)
    if lease.live(held, url=cfg.storage_url):
        raise lease.busy(cfg.name, held)


def _folder_errors(folder: Path) -> list[str]:
    if problem := study_folder_problem(folder):
        return [problem]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < MIN_FREE_BYTES:
            return [f"study_dir: only {free:,} bytes free in {folder}, a study needs at least "
                    f"{MIN_FREE_BYTES:,}: free some space or set study_dir to another disk"]
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return [f"study_dir: cannot write to {folder}: {e.strerror or e}"]
    return []


def concurrency(cfg: StudyConfig) -> int:
    """How many trials the cluster can hold at once, capped by workers.max_concurrent.

    Counted node by node, as Ray places them: a trial's CPUs on one node, a fraction of a GPU
    on one GPU (0.4 of a GPU fits 2 trials on each GPU, not 5 on two). A trial that fits the
    cluster's totals but no single node is refused: it would wait in Ray's queue for ever."""
    res = ray.cluster_resources()
    w = cfg.workers
    errors = []
    cpus = res.get("CPU", 0.0)
    gpus = res.get("GPU", 0.0)
    if w.cpus_per_trial > cpus:
        errors.append(f"workers.cpus_per_trial: {w.cpus_per_trial:g} but the cluster has {cpus:g} "
                      "CPUs: give at most that, or a fraction to share one")
    if w.gpus_per_trial > gpus:
        errors.append(f"workers.gpus_per_trial: {w.gpus_per_trial:g} but the cluster has {gpus:g} "
                      "GPUs" + (": give 0 to train on CPUs" if gpus == 0 else
                                ": give at most that, or a fraction to share one"))
    if errors:
        raise ConfigError(cfg.source, errors)
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    n = sum(_trials_on(node.get("CPU", 0.0), node.get("GPU", 0.0), w) for node in nodes)
    if n == 0:
        most = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)))
        raise ConfigError(cfg.source, [
            f"workers: a trial asks for {w.cpus_per_trial:g} CPUs and {w.gpus_per_trial:g} GPUs "
            f"on one machine, and no node of the cluster has them (the cluster's {len(nodes)} "
            f"nodes hold {cpus:g} CPUs and {gpus:g} GPUs in all; the largest, "
            f"{most.get('CPU', 0.0):g} CPUs and {most.get('GPU', 0.0):g} GPUs): ask for at most "
            "what one node has"])
    if w.max_concurrent:
        n = min(n, w.max_concurrent)
    return n


def _trials_on(cpus: float, gpus: float, w: WorkersConfig) -> int:
    """Trials of ``w`` (workers:) that one node of ``cpus`` and ``gpus`` holds at once."""
    n = how_many(cpus, w.cpus_per_trial)
    if w.gpus_per_trial >= 1:
        n = min(n, how_many(gpus, w.gpus_per_trial))
    elif w.gpus_per_trial > 0:  # each on one GPU: a GPU holds a whole number of them
        n = min(n, how_many(1, w.gpus_per_trial) * how_many(gpus, 1))
    return n


def run_study(
    cfg: StudyConfig | str | os.PathLike, console: Console | None = None,
    max_consecutive_failures: int = 10, launch: Launch | None = None, repeat_best: int = 0,
    summary: bool = True,
) -> optuna.Study:
    """Run (or resume) a study until it has ``cfg.n_trials`` finished trials; ``cfg``: a
    config (search.config.load_study, validate_study) or a study file's path.

    ``summary``: end with what ``scaletune run`` prints at the end (search.progress
    .print_run_summary: the best trial, trials by state, compute, the next commands, a note
    where no trial completed); `scaletune run` and a ladder's stages print their own.

    ``repeat_best`` queues that many repeats of the best trial with training seeds its config
    has not used (search.noise), never pruned, on top of ``cfg.n_trials``: first, or after the
    search where no trial has completed yet.

    Ctrl-C, SIGTERM or SIGHUP stops the running trials, marks them FAIL and queues them again,
    then raises Interrupted (a KeyboardInterrupt). Any other error of the driver does the same to
    the running trials and is raised. A write that fails (disk full, database lost) stops the
    running trials and raises StorageError; running the study again resumes it. The study's
    driver lease (search.lease) is held from opening the study to the end.

    Ray: where none runs in this process, the study starts a local cluster (or joins
    ``workers.address``) and leaves it up for the next study the process runs, as a ladder's
    rungs share one; ``ray.shutdown()`` ends it (``scaletune run`` does, as it ends). ``console``:
    by default stdout, each line whole where it is not a terminal (trainer.console).

    A study that has the trials asked for says so and is returned; from an SQLite storage, read
    without starting Ray or writing anything (``_nothing_to_run``).

    ``launch(run, coordinator)`` starts a trial and returns the Ray reference of its result;
    by default a Ray task of search.worker.run_trial. benchmarks/driver_scale.py gives trials
    that follow synthetic curves instead, to load this driver with hundreds of them.
    """
    start = time.monotonic()
    console = given_console(console, "run_study") or make_console()
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_study(cfg)
    elif not isinstance(cfg, StudyConfig):
        raise TypeError(f"run_study takes a StudyConfig or a study file's path, not a "
                        f"{type(cfg).__name__} (a dict: validate_study(d) first)")
    # A config changed in place (cfg.n_trials = ...) or by model_copy(update=...) is not
    # validated: what the run reads first is checked here, as the file's would be.
    for name, value, least in (("n_trials", cfg.n_trials, 1), ("repeat_best", repeat_best, 0)):
        if (not isinstance(value, int) or isinstance(value, bool)
                or not least <= value <= MAX_TRIALS):
            raise ConfigError(cfg.source, [f"{name}: must be a whole number from {least} to "
                                           f"{MAX_TRIALS:,}, got {value!r}"])
    cfg = revalidated(cfg)  # the rest, as its file's would be
    with quiet_libraries(cfg):
        study = _run_study(cfg, console, max_consecutive_failures, launch, repeat_best)
    if summary:
        print_run_summary(console, study, cfg, cfg.source, time.monotonic() - start)
    return study


RAY_TOKEN_NOTICE = "ray._private.authentication.authentication_token_setup"
"""The logger of Ray's "Token authentication is enabled for this Ray cluster" notice, which
ray.init prints at every start of a local Ray (Ray 2.60); silencing it leaves authentication
on."""


@contextlib.contextmanager
def quiet_libraries(cfg: StudyConfig) -> Iterator[None]:
    """Optuna's INFO lines ("A new study created in RDB ...", which the study's own lines say)
    and, for a local cluster, Ray's notice that token authentication is on (a cluster's is
    kept: it is shared), held off for the block."""
    import logging

    verbosity = optuna.logging.get_verbosity()
    notice = logging.getLogger(RAY_TOKEN_NOTICE)
    level = notice.level
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    if cfg.workers.address in (None, "local"):
        notice.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
        notice.setLevel(level)


def _run_study(cfg: StudyConfig, console: Console, max_consecutive_failures: int,
               launch: Launch | None, repeat_best: int) -> optuna.Study:
    """run_study's run, its arguments checked."""
    # The study's folder and the parents its checks create (runs/, where a default storage
    # goes): a study refused before it began leaves nothing behind, not even an empty folder.
    new_folders = _missing_folders(cfg.folder)
    try:
        data = preflight(cfg)
        plan = SearchPlan.build(cfg, data)  # a space the priors leave empty fails here
        problems = plan.problems()
        if problems:
            raise ConfigError(cfg.source, problems)
        notes = (centers_outside(plan.dims, draws=cfg.sampler.name != "random")
                 if cfg.seeding == "prior" else [])
        notes += nothing_searched(plan.dims, cfg.n_trials)
        notes += one_batch_size(plan.dims, cfg)
        small = validation_note(cfg.data, cfg.model.block_size, data.n_val_tokens)
        said = (unread_note(cfg.data), folder_note(cfg.data), optim_note(cfg),
                optimizer_note(cfg), *notes, small, elsewhere_note(cfg),
                laws_fit_note(cfg, data.fingerprint))
        for note in [n for n in said if n]:
            console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
        finished = _nothing_to_run(cfg, data)
        if repeat_best and finished is not None:  # the search is done: the repeats run
            if not any(t.state == TrialState.COMPLETE for t in finished):
                # No trial to repeat, and no search left to find one: it started Ray, ran
                # nothing, said the repeats would follow the search, and exited 0.
                searched = n_done(finished) - n_repeats(finished)
                raise StudyStateError(cfg.source, [
                    f"--repeat-best: study {cfg.name!r} has no complete trial to repeat, and its "
                    f"search has run the {cfg.n_trials} trials it asks for: run more with "
                    f"`--n-trials {searched + cfg.n_trials}`, then repeat its best"])
            finished = None
        if finished is not None:
            # Said without starting Ray (2-3.5 s of 2 cores' 4.5-5.6 s), nor taking the lease:
            # nothing is written (not even this launch's n_trials, sampler and pruner, which
            # ran nothing).
            console.print(f"study [bold]{cfg.name}[/] on {mask_url(cfg.storage_url)}: "
                          f"{finished_of(finished, n_done(finished), cfg.n_trials)}")
            _say_nothing_to_run(console, finished, cfg)
            _remove_empty(new_folders)  # the checks made them; this launch wrote nothing there
            return optuna.load_study(study_name=cfg.name,
                                     storage=make_storage(cfg.storage_url))
        tracker = Tracker(cfg, console)
    except BaseException:
        _remove_empty(new_folders)
        raise
    # What opening the storage imports (Optuna's tables, SQLAlchemy, Alembic: ~0.6 s of a laptop's
    # ~0.8 s) is imported during Ray's start-up (~2.5 s, spent waiting for its own processes).
    # The storage itself is opened after the cluster's checks: a study refused writes nothing.
    loading = ThreadPoolExecutor(1, thread_name_prefix="import-storage")
    loaded = loading.submit(_import_storage_modules)
    loading.shutdown(wait=False)
    # A signal while Ray starts is taken once it has: raised inside Ray's start-up, it was lost
    # in a finalizer ("Exception ignored") and the study went on, or left the driver hung.
    starting = DeferredInterrupt()
    coordinator, warmed = None, []
    try:
        with starting, _stopped_as_ray_starts(starting, cfg, console), _ray_keeps_our_sigterm():
            token_note = init_ray(cfg)  # a cluster that cannot be joined is refused here
            if token_note:
                console.print(f"note: {token_note}", style="yellow", highlight=False,
                              markup=False)
            starting.reinstall()
            slots = concurrency(cfg)
            # Trials that the caller launches (benchmarks/driver_scale.py) train nothing: no
            # warm-up.
            # Warm no more processes than the launch can run trials in: a 2-trial study of
            # 0.1 CPU each warmed 20 on 2 cores, and its trials waited behind them.
            coordinator, warmed = _start_workers(cfg, min(slots, cfg.n_trials + repeat_best),
                                                 warm=launch is None)
    except BaseException:
        if coordinator is not None:
            _release(coordinator)
        tracker.close()
        _remove_empty(new_folders)
        raise
    running: dict[int, TrialRun] = {}
    # Ctrl-C, SIGTERM (what Slurm, Kubernetes and systemd send) and SIGHUP stop the study the
    # same way, between storage writes; Ray's own SIGTERM handler, set by ray.init, is replaced.
    interrupt = DeferredInterrupt()
    try:
        with interrupt:
            loaded.result()
            study, recovered = plan.open_study(make_storage(cfg.storage_url))
            tracker.opened(study)
            for changed in (sampler_note(study.user_attrs, cfg),
                            pruner_note(study.user_attrs, cfg),
                            priors_note(study.user_attrs, plan.priors),
                            None if plan.widened is None else widening_note(plan.widened)):
                if changed:
                    console.print(f"note: {changed}", style="yellow", highlight=False,
                                  markup=False)
            if recovered:
                _say_recovered(console, study, recovered)
                for number in recovered:  # the trackers had no end of them
                    _track_end(tracker, study, number)
            if moved := _queued_outside(study, plan):
                console.print(f"note: {moved}", style="yellow", highlight=False, markup=False)
            # Repeats of the best so far run first (the predicted pruner's floor then uses
            # them); a study with no complete trial yet repeats its best after the search.
            after = repeat_best and not _repeat(study, repeat_best, cfg, console)
            if after:
                console.print(f"no complete trial yet: the best trial runs {repeat_best} more "
                              "time(s) with other training seeds after the search")
            with _frozen_heap():
                _drive(plan, study, cfg, console, slots, running, interrupt,
                       max_consecutive_failures, tracker, coordinator, launch, warmed)
                if after and _repeat(study, repeat_best, cfg, console):
                    _drive(plan, study, cfg, console, slots, running, interrupt,
                           max_consecutive_failures, tracker, coordinator, launch, warmed)
                elif after:
                    console.print(f"no trial completed: the {repeat_best} repeat(s) of the best "
                                  "trial (--repeat-best) did not run, with no trial to repeat",
                                  style="yellow")
    except KeyboardInterrupt:
        raise _stopped_by(interrupt, plan, running, cfg, tracker, console) from None
    except SystemExit as e:
        # How rich ends the program when the output it writes to is closed (`scaletune run ... |
        # head` once head has its lines, a log reader that died): stop the running trials and
        # queue them again as for a signal, and say so where it can still be read.
        closed = isinstance(e.__context__, BrokenPipeError)
        _stop_running(plan, running, "the driver's output was closed" if closed
                      else "the driver exited", cfg, tracker)
        if closed:
            with contextlib.suppress(OSError, ValueError):
                print(f"scaletune run: the output was closed (a broken pipe); {len(running)} "
                      "running trial(s) stopped and queued again; run the same command to "
                      "resume", file=sys.stderr, flush=True)
        raise
    except STORAGE_ERRORS as e:
        raise _write_failed(cfg, running, f"using the storage {mask_url(cfg.storage_url)}",
                            e) from e
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            _stop_running(plan, running, f"the driver stopped on an error: {e}", cfg, tracker)
            raise
        raise _write_failed(cfg, running, "a write", e) from e
    except Exception as e:
        if interrupt.requested:
            # SIGTERM to the driver's process group (Slurm, systemd, `kill -- -PGID`) reaches
            # Ray's own processes too, and a call to the coordinator failed as they went: "the
            # driver stopped on an error" (ActorDiedError), exit 1, where the signal was meant.
            raise _stopped_by(interrupt, plan, running, cfg, tracker, console) from None
        if isinstance(e, KeyError) and _study_deleted(cfg):  # Optuna's "Record does not exist"
            raise _deleted_as_it_ran(cfg, running) from None
        if isinstance(e, ray.exceptions.ActorDiedError):  # the driver's one actor is gone
            _stop_running(plan, running, "the study's coordinator died", cfg, tracker)
            raise CoordinatorLost(len(running)) from None
        # A bug or a failure of ours must not leave trials RUNNING: stop and queue them again,
        # as for Ctrl-C, then let the error be seen.
        why = stopped_on(e)
        _stop_running(plan, running, f"{why}: {type(e).__name__}: {_last_line(e)}", cfg, tracker)
        if running:
            console.print(f"[red]{why}; {len(running)} running trial(s) stopped and queued "
                          "again[/]")
        raise
    finally:
        # A signal here (Ctrl-C as the last trial ended) waits for the study to be released:
        # taken at once, it skipped the rest (the driver's lease stayed in the study), and a
        # study that had run to its end said "interrupted" without its summary.
        with DeferredInterrupt():
            tracker.close()
            if plan.lease is not None:
                plan.lease.release()
            _release(coordinator)
            # The study's folder, made for its storage and trackers: where nothing was written
            # there (the default storage is runs/studies.db, beside it), it is not left empty.
            _remove_empty(new_folders)
    return study


def stopped_on(e: BaseException) -> str:
    """What a study stopped by ``e``, raised in its driver, says of its running trials: an error
    of the user's (data that went missing, a config: a ScaletuneError, which says what to do)
    stopped the study; any other is an error of the driver's, which README says to report. Data
    deleted under a running study was told as "the driver stopped on an error"."""
    return ("the study stopped on an error of its input" if isinstance(e, ScaletuneError)
            else "the driver stopped on an error")


class CoordinatorLost(ScaletuneError):
    """The coordinator actor died (killed, or Ray's out-of-memory killer's pick): the running
    trials were stopped and queued again. Before, a traceback of ActorDiedError."""

    def __init__(self, stopped: int):
        super().__init__(
            "the study stopped: its coordinator (the Ray actor that carries the trials' reports "
            "to this driver, `ray::Coordinator`) died, killed or taken by Ray's out-of-memory "
            f"killer; {stopped} running trial(s) were stopped and queued again. Run the same "
            "command to resume")


def _signalled(interrupt: DeferredInterrupt) -> tuple[int, str]:
    """The signal ``interrupt`` took, and how a line says it: interrupted (Ctrl-C), stopped
    (SIGTERM)."""
    signum = interrupt.signal or signal.SIGINT
    return signum, ("interrupted (Ctrl-C)" if signum == signal.SIGINT
                    else f"stopped ({signal.Signals(signum).name})")


def _stopped_by(interrupt: DeferredInterrupt, plan: SearchPlan, running: dict[int, TrialRun],
                cfg: StudyConfig, tracker: Tracker, console: Console) -> Interrupted:
    """Stop and queue again the running trials of a driver that took a signal, say so, and
    return the Interrupted to raise."""
    signum, what = _signalled(interrupt)
    _stop_running(plan, running, what, cfg, tracker)
    # A driver run as a Ray job was launched by `run --detach`, which resumes it (the same
    # command, the job's own, would drive the study from the cluster's head).
    resume = ("resume it with `scaletune run --detach`, as `scaletune stop` says"
              if os.environ.get(lease.JOB_SERVER_ENV) else "run the same command to resume")
    console.print(f"[yellow]{what}: {len(running)} running trial(s) stopped and queued "
                  f"again; {resume}[/]")
    return Interrupted(signum, said=True)


@contextlib.contextmanager
def _stopped_as_ray_starts(starting: DeferredInterrupt, cfg: StudyConfig,
                           console: Console) -> Iterator[None]:
    """A signal taken while Ray started (``starting``) ends the launch once Ray is up, or once
    its start failed: SIGTERM to the driver's process group reaches Ray's own processes too,
    and the start then failed ("Ray could not start a cluster"), where the signal was meant."""
    try:
        yield
    except Exception:
        if not starting.requested:
            raise
    if starting.requested:
        signum, what = _signalled(starting)
        database = sqlite_path(cfg.storage_url)
        again = ("start or resume" if database is None else  # a server: not read here
                 "resume" if holds_study(database, cfg.name) else "start")
        console.print(f"[yellow]{what} as Ray started: no trial ran; run the same command "
                      f"to {again} the study[/]")
        raise Interrupted(signum, said=True) from None


def _repeat(study: optuna.Study, n: int, cfg: StudyConfig, console: Console) -> bool:
    """Queue ``n`` repeats of the study's best complete trial with other training seeds
    (search.noise) and say so; False where it has no complete trial."""
    trials = study.get_trials(deepcopy=False)
    if (best := best_of(trials)) is None:
        return False
    earlier = len(waiting_repeats(trials, root(best)))
    number, seeds = queue_repeats(study, n, cfg.seed)
    queued = (f", {earlier} of them queued by an earlier launch"
              + (f", more than the {n} asked" if earlier > n else "") if earlier else "")
    console.print(f"repeating trial {number} with training seed(s) {', '.join(map(str, seeds))} "
                  f"(never pruned{queued}): the noise between seeds is in `scaletune report`")
    return True


def _nothing_to_run(cfg: StudyConfig, data: Any) -> list[Any] | None:
    """The trials of a study whose search has nothing left to run, read from its SQLite storage
    without opening the study (trials queued again may wait: the line says how to run them);
    None where a launch may run or write anything: a new study, one whose record is to be
    completed or whose data changed (the driver says what), trials left running by a stopped
    driver, or a storage that is not an SQLite file (the driver looks itself, on a cluster whose
    start costs little). Repeats asked for (--repeat-best) run on top: the caller's to see."""
    database = sqlite_path(cfg.storage_url)
    if database is None:
        return None
    attrs = stored_study_attrs(database, cfg.name, ("fingerprint", *RECORD))
    recorded = all(key in attrs for key in ("fingerprint", *RECORD))
    if not recorded or attrs["data_fingerprint"] != data.fingerprint:
        return None
    trials = stored_trial_states(cfg)
    if trials is None or any(t.state == TrialState.RUNNING for t in trials):
        return None  # a stopped driver's running trials: the driver recovers them
    return trials if n_done(trials) >= trials_asked(trials, cfg.n_trials) else None


def _say_nothing_to_run(console: Console, trials: list[Any], cfg: StudyConfig) -> None:
    """The line of a launch that finds the trials it asks for finished: how many, what failed,
    what waits, and how to run more."""
    done = n_done(trials)
    failed = sum(map(failed_for_good, trials))
    # n_trials (and --n-trials) counts the searched trials; repeats come on top (search.noise).
    searched = done - n_repeats(trials)
    asked = (f"{cfg.n_trials}" if searched <= cfg.n_trials else
             f"{cfg.n_trials} (n_trials), fewer than have finished already")
    repeats = (f" ({searched} searched, and {done - searched} repeat(s) of a trial with other "
               "seeds, which count on top of n_trials)" if done > searched else "")
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    queued = (f"; {waiting} trial(s) stopped earlier wait to run again, and `--n-trials "
              f"{searched + waiting}` runs them" if waiting else "")
    console.print(f"nothing to run: {done} trials have finished{repeats} and the study asks for "
                  f"{asked}{queued}" + (f"; {failed} of them failed (`scaletune show` says "
                                        "why); once the cause is fixed," if failed else ";")
                  + f" `--n-trials {searched + cfg.n_trials}` (or a larger n_trials in the study "
                  "file) runs more", highlight=False, markup=False)


def _queued_outside(study: optuna.Study, plan: SearchPlan) -> str | None:
    """The trials queued to run again (or to repeat) with values the search space of now does
    not hold: they run with them, and the user should know why."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    outside = [f"trial {t.number}: {', '.join(o)}" for t in waiting
               if (o := outside_ranges(t.system_attrs.get("fixed_params") or {}, plan.dims))]
    if not outside:
        return None
    return (f"trials queued to run again hold values outside the search space of now ("
            f"{'; '.join(outside)}): they run with them; the space moved since they were drawn "
            "(the study file's ranges, or the priors of this version of scaletune)")


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _say_recovered(console: Console, study: optuna.Study, recovered: list[int]) -> None:
    """What plan.recover did: trials a stopped driver left running, and failed trials whose
    re-run a driver stopped before it queued (a second Ctrl-C between the two writes)."""
    trials = study.get_trials(deepcopy=False)
    left = [n for n in recovered if trials[n].user_attrs.get("fail_reason") == DRIVER_STOPPED]
    if left:
        console.print(f"[yellow]resumed: trials {left} were left running by a stopped driver; "
                      "marked FAIL and queued again[/]")
    if unqueued := [n for n in recovered if n not in left]:
        console.print(f"[yellow]resumed: trials {unqueued} were stopped by a driver that "
                      "ended before it queued them again; queued again now[/]")


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that exists and is empty."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@contextlib.contextmanager
def _ray_keeps_our_sigterm() -> Iterator[None]:
    """``ray.init`` without the SIGTERM handler it sets first (``sys.exit``, raised wherever the
    main thread is), so that the handler of the block around it (a DeferredInterrupt) stays."""
    from ray._private import utils

    ray_sets = utils.set_sigterm_handler
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = ray_sets


def _release(coordinator: Any) -> None:
    """End the study's coordinator actor with the study. Ray ends it with the driver's process,
    but a process that runs several studies (a ladder's rungs, a benchmark) kept one idle
    worker process per study it had run."""
    try:
        ray.kill(coordinator, no_restart=True)
    except Exception:  # noqa: BLE001 - Ray may be going down (SIGTERM to the process group)
        pass


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Python's full garbage collections skip what the driver holds when its loop begins.

    A full collection walks every object the process tracks and stops every thread while it
    does. At 256 trials the driver tracks ~230,000 objects, most of them its modules': 4-8
    full collections in a 45-s window, 168-189 ms each (median), which the reports that arrive
    then wait for. ``gc.freeze()`` moves what exists now (imports, config, the study as opened,
    all kept to the end anyway) out of the collector's sight: 13-29 collections of 9-11 ms, and
    the p99 of a report's answer fell from 234-669 ms to 89-264 ms
    (benchmarks/results/driver_scale_v6). Objects made later are collected as before, and
    refcounting frees every object as usual; a cycle among the frozen objects that becomes
    garbage is freed only once unfrozen, at the end (for a caller that runs several studies in
    one process).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


Launch = Callable[[TrialRun, Any], Any]
"""Starts a trial: (the run, the coordinator actor) -> the Ray reference of its result dict."""


def _drive(
    plan: SearchPlan, study: optuna.Study, cfg: StudyConfig, console: Console, slots: int,
    running: dict[int, TrialRun], interrupt: DeferredInterrupt, max_consecutive_failures: int,
    tracker: Tracker, coordinator: Any, launch: Launch | None = None,
    warmed: list[Any] | None = None,
) -> None:
    """The driver's loop: start trials while there is room, answer reports, tell endings.
    ``warmed``: the warm-ups' references (_start_workers), one for each of the first trials."""
    from scaletune.search.worker import run_trial

    threads = max(1, int(cfg.workers.cpus_per_trial))
    if launch is None:
        # A GPU trial gets a process of its own (max_calls=1), as Ray gives a task declared
        # with num_gpus in ray.remote itself (.options() does not): CUDA reads the GPUs it may
        # use once per process, so a process reused for a trial Ray gave another GPU trained on
        # the first one's, two trials on one GPU while another sat idle.
        remote = ray.remote(max_calls=1 if cfg.workers.gpus_per_trial else 0)(run_trial).options(
            num_cpus=cfg.workers.cpus_per_trial, num_gpus=cfg.workers.gpus_per_trial,
            max_retries=0,
        )

        def launch(run: TrialRun, coordinator: Any) -> Any:
            return remote.remote(run.config.model_dump(mode="json"), run.number, coordinator,
                                 plan.data.fingerprint)
    # The first trials are launched as the warm-ups end, one each: launched while they ran,
    # the trials queued behind them, the raylet started more processes for that queue, and in
    # half of the runs one of those took a trial and imported torch again (1.5-2.5 s later
    # than a warm one; benchmarks/results/orchestration_v12). A warm-up that failed, or whose
    # process died, ends too: its trial then starts in a process of its own.
    warmed = list(warmed or [])
    # Repeats of a config with other seeds (search.noise) run on top of the study's n_trials.
    total = trials_asked(study.get_trials(deepcopy=False), cfg.n_trials)
    progress = StudyProgress(console, cfg, study, total=total)
    failures_in_a_row = 0
    done = n_finished(study)
    console.print(
        f"study [bold]{cfg.name}[/] on {mask_url(cfg.storage_url)}: "
        f"{finished_of(study.get_trials(deepcopy=False), done, cfg.n_trials)}, up to {slots} "
        "at once"
    )
    if done >= total:
        _say_nothing_to_run(console, study.get_trials(deepcopy=False), cfg)
    mail = None  # the pending Coordinator.next call
    # The main thread answers reports: a report's storage write and the pruner's decision, a
    # few ms. Everything else that writes the storage runs on one thread beside it, in the order
    # given: asking for a trial (0.3-0.75 s with hundreds running, before DriverStudy served
    # them), a trial's start (its worker's attrs) and end (its results and state, then the
    # live view's tally). A report waits for none of them (benchmarks/driver_scale.py). An ask
    # is given only when every trial that ended has been told, so it sees them all, as in a loop
    # of one thread.
    pool = ThreadPoolExecutor(1, thread_name_prefix="storage")
    asking: Future | None = None
    # Trial number -> its tell and the trial, in the order they ended. A trial whose tell
    # fails is running again for the stop: stopped, queued again or named (_write_failed).
    ending: dict[int, tuple[Future, TrialRun]] = {}
    writes: list[Future] = []  # the workers' attrs of trials that started

    def storage(job: Callable[..., Any], *args: Any) -> Future:
        """Run ``job`` on the storage thread; when it is done, the driver wakes (no polling)."""
        future = pool.submit(job, *args)
        future.add_done_callback(lambda _: _wake(coordinator))
        return future

    def serve(messages: list[tuple]) -> None:
        _answer_reports(coordinator, running, progress, messages)
        for msg in messages:  # once answered: logging never keeps a trial waiting
            if msg[0] in ("report", "started") and msg[1] in running:
                running[msg[1]].extra["heard"].heard(msg[0], msg[2])
            if msg[0] == "report" and msg[1] in running:
                tracker.reported(*msg[1:])
            elif msg[0] == "started" and msg[1] in running:
                writes.append(storage(_record_start, running[msg[1]].trial, msg[2]))

    try:
        with progress:
            finished = n_finished(study)
            while finished < total or running or ending or asking is not None:
                interrupt.check()
                plan.lease.refresh()
                told = False
                while ending and next(iter(ending.values()))[0].done():
                    number, (future, ended) = next(iter(ending.items()))
                    del ending[number]
                    try:
                        state, value, reason = future.result()
                    except BaseException:
                        running[number] = ended
                        raise
                    progress.finished(number, state, value, reason)
                    tracker.finished(study, number)
                    if state == "FAIL" and reason.startswith(DATA_FAILED):
                        raise DataError(
                            f"{reason.removeprefix(DATA_FAILED).removesuffix(QUEUED)}"
                            f" (trial {number} could not read the study's data, so no trial "
                            "can: the study stopped, with its trials queued again; put the data "
                            "back and run the same command to resume)")
                    failures_in_a_row = 0 if state != "FAIL" else failures_in_a_row + 1
                    told = True
                if told:  # a retried failure does not count: ask the storage
                    finished = n_finished(study)
                for future in [f for f in writes if f.done()]:
                    writes.remove(future)
                    future.result()  # a failed write is raised here
                if (asking is not None and asking.done()
                        and (not warmed or ray.wait(warmed[:1], timeout=0)[0])):
                    del warmed[:1]  # its warm-up has ended
                    run, asking = asking.result(), None
                    run.extra["ref"] = launch(run, coordinator)
                    run.extra["heard"] = _Heard()
                    running[run.number] = run
                    progress.started(run.number, run.params)
                    tracker.started(run.trial)
                if (
                    asking is None
                    and not ending
                    and len(running) < slots
                    and finished + len(running) < total
                    and failures_in_a_row < max_consecutive_failures
                ):
                    asking = storage(plan.ask, study, threads)
                if not running and not ending and asking is None:
                    break
                # Wake on whichever comes first: mail from a trial (a report waits for its
                # answer) or from the storage thread (a job done), or a trial's end; the
                # timeout keeps Ctrl-C and the display lively.
                if mail is None:
                    mail = coordinator.next.remote(1.0)
                # A trial asked for and waiting for its warm-up wakes the loop as it ends (and
                # only then: an ended warm-up in the list would keep the loop from waiting).
                warming = warmed[:1] if asking is not None and asking.done() else []
                ready, _ = ray.wait([mail, *(r.extra["ref"] for r in running.values()),
                                     *warming], num_returns=1, timeout=0.2)
                done = [ref for ref in ready if ref != mail and ref not in warming]
                messages = []
                if ray.wait([mail], timeout=0)[0]:
                    messages, mail = ray.get(mail), None
                if done:  # a trial's last messages come before its end: also take the inbox
                    messages += ray.get(coordinator.drain.remote())
                serve(messages)
                for ref in done:
                    number = next(n for n, r in running.items() if r.extra["ref"] == ref)
                    ended = running.pop(number)
                    ending[number] = (storage(_finish, study, ended, cfg), ended)
                for number, r in running.items():
                    if warning := r.extra["heard"].stalled(number):
                        console.print(warning, style="yellow", markup=False, highlight=False)
                progress.refresh()
            if failures_in_a_row >= max_consecutive_failures:
                console.print(f"[red]stopped: {failures_in_a_row} trials failed in a row; "
                              "see the fail_reason of the last trials[/]")
    finally:
        # Stopped (Ctrl-C, an error) while the storage thread worked: its writes finish; a
        # trial asked for but not launched is stopped and queued again with the running ones.
        for future in writes:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - raised in the loop, or the study stops anyway
                pass
        for number, (future, ended) in ending.items():
            try:
                future.result()
            except Exception:  # noqa: BLE001 - the study stops anyway; the trial with the others
                running[number] = ended
        if asking is not None:
            try:
                run = asking.result()
                running[run.number] = run
            except Exception:  # noqa: BLE001 - the ask's own error, raised in the loop
                pass
        pool.shutdown(wait=False)


def _wake(coordinator: Any) -> None:
    try:
        coordinator.wake.remote()
    except Exception:  # noqa: BLE001 - Ray is going down with the study: nobody waits to wake
        pass


def _record_start(trial: optuna.Trial, info: dict[str, Any]) -> None:
    """What the worker said as the trial began (pid, host, GPUs, warm): user attrs worker_*,
    in one write."""
    with batch(trial.storage):
        for k, v in info.items():
            trial.set_user_attr(f"worker_{k}", v)


def _import_storage_modules() -> None:
    """Import what Optuna's RDBStorage imports when it opens a storage (lazily, on first use)."""
    import alembic.command  # noqa: F401
    import alembic.migration  # noqa: F401
    import alembic.script  # noqa: F401
    import optuna.storages._rdb.models  # noqa: F401
    import sqlalchemy.orm  # noqa: F401


def _start_workers(cfg: StudyConfig, slots: int, warm: bool = True) -> tuple[Any, list[Any]]:
    """The coordinator actor, and on this machine's own cluster, trial workers warming up (the
    warm-ups' references: the driver launches a first trial as each one ends, _drive).

    Started as soon as Ray is up, so that both run while the driver opens the study and draws
    the first trials. A local cluster's first trials then find their worker processes with torch
    and the trainer imported (search.worker.warm_up: ~2 s per process on a laptop, once); a
    shared cluster's workers are left alone.
    """
    from scaletune.search.worker import Coordinator, warm_up

    # The coordinator lives on the driver's node (a hard affinity: a soft one lets Ray place it
    # elsewhere): on a worker node, losing that node would cut every trial off. Created first,
    # it takes an idle worker process before the warm-ups do.
    here = ray.get_runtime_context().get_node_id()
    # Never restarted: Ray's out-of-memory killer picks retriable workers first, and a
    # restartable coordinator (it frees next to nothing) was the one it took, the study ending
    # at its last restart. Its death stops the launch cleanly (CoordinatorLost).
    coordinator = Coordinator.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    ).remote()
    # A GPU trial's process serves it alone (_drive): nothing to warm for it.
    if warm and cfg.workers.address in (None, "local") and not cfg.workers.gpus_per_trial:
        # With a trial's resources, so that each warms a process a trial will get; nobody waits
        # for them: a trial queues behind a warm-up as it would behind its own imports.
        warming = ray.remote(warm_up).options(num_cpus=cfg.workers.cpus_per_trial,
                                              num_gpus=cfg.workers.gpus_per_trial, max_retries=0)
        return coordinator, [warming.remote() for _ in range(slots)]
    return coordinator, []


def _stop_running(plan: SearchPlan, running: dict[int, TrialRun], reason: str,
                  cfg: StudyConfig, tracker: Tracker) -> None:
    """Cancel the running trials' tasks and mark them FAIL, queued again with their params. A
    trial whose task had returned when the driver stopped, and the loop had not yet told, is told
    as it ended (and taken out of ``running``): its whole run was done; so is one whose last
    evaluation, at the end of its budget, was reported, with that evaluation's loss
    (TrialRun.tell_from_final_report: a Ctrl-C to the terminal's process group stops its
    worker too, as it writes its result). Either way the trackers log how it ended, as for a
    trial whose worker died (they had no run of it at all)."""
    for number, r in list(running.items()):
        told = _told_as_ended(r)
        if not told:
            try:
                if "ref" in r.extra:  # a trial asked for but not launched has none
                    ray.cancel(r.extra["ref"], force=True)
            except Exception:  # noqa: BLE001 - Ray may be going down (SIGTERM to the group)
                pass
            told = _told_from_final_report(r, reason)
        if told:
            del running[number]
            _track_end(tracker, r.trial.study, number)
            continue
        try:
            r.fail(r.trial.study, reason, cfg.max_retries, count_attempt=False)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another driver that took the study over has ended it already
        _track_end(tracker, r.trial.study, number)


def _track_end(tracker: Tracker, study: optuna.Study, number: int) -> None:
    """Log trial ``number``'s end to the trackers where the loop did not (a trial the driver
    stops, or a stopped driver left running): a tracker that fails here (TensorBoard's writer, a
    trial the study does not list as ended) leaves the driver to go on; the callbacks' own
    failures are said by the tracker."""
    try:
        tracker.finished(study, number)
    except Exception:  # noqa: BLE001 - the trials must still be stopped and queued again
        pass


def _told_as_ended(r: TrialRun) -> bool:
    """Tell ``r`` from its task's result where the task has returned one that ends it (complete,
    stopped by the pruner, diverged); False where it has not, or Ray cannot say (it may be going
    down with the driver): the trial is stopped then. A result of a trainer itself stopped (a
    signal to the whole process group) is not an end."""
    ref = r.extra.get("ref")
    try:
        if ref is None or not ray.wait([ref], timeout=0)[0]:
            return False
        result = ray.get(ref, timeout=0)
    except Exception:  # noqa: BLE001 - the task failed, or Ray is going down: stop the trial
        return False
    if not isinstance(result, dict) or result.get("status") not in ENDS:
        return False
    try:
        r.tell(r.trial.study, result)
    except Exception:  # noqa: BLE001 - ended elsewhere, or the storage failed: stop it as the rest
        return False
    return True


def _told_from_final_report(r: TrialRun, reason: str) -> bool:
    """r.tell_from_final_report, False where the storage refuses it (the trial is stopped as
    the rest)."""
    try:
        return r.tell_from_final_report(r.trial.study, reason)
    except Exception:  # noqa: BLE001 - ended elsewhere, or the storage failed
        return False


ENDS = ("completed", "stopped", "diverged")
"""The statuses of a trainer's result that end a trial (search.plan.TrialRun.tell)."""


def _study_deleted(cfg: StudyConfig) -> bool:
    """True where the study is no longer in its storage, which still answers."""
    try:
        return cfg.name not in optuna.get_all_study_names(
            make_storage(cfg.storage_url, create=False))
    except Exception:  # noqa: BLE001 - the storage itself failed: another case
        return False


def _deleted_as_it_ran(cfg: StudyConfig, running: dict[int, TrialRun]) -> StorageError:
    """Stop the running trials of a study deleted from its storage as the driver ran it (by
    ``optuna.delete_study`` or another program; ``scaletune delete`` and the dashboard refuse
    while a driver runs it), whose trials cannot be written any more."""
    _cancel(running)
    stopped = f"; trials {sorted(running)} were stopped" if running else ""
    return StorageError(mask_url(cfg.storage_url), [
        f"the study stopped: study {cfg.name!r} was deleted from its storage as it ran, with "
        f"its trials{stopped}. Run the same command to start it again."])


def _cancel(running: dict[int, TrialRun]) -> None:
    """Cancel the running trials' tasks (their workers stop); nothing is written."""
    for r in running.values():
        if "ref" in r.extra:
            ray.cancel(r.extra["ref"], force=True)


def _write_failed(
    cfg: StudyConfig, running: dict[int, TrialRun], what: str, error: BaseException
) -> StorageError:
    """Stop the running trials and explain what failed and how to go on.

    Nothing more is written: SQLite and PostgreSQL commit each write as one transaction, so the
    storage holds every write before the failed one, and the trials it shows RUNNING become FAIL
    and run again when the study resumes.
    """
    _cancel(running)
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip()
    detail = scrub(text.splitlines()[0], cfg.storage_url) if text else type(cause).__name__
    again = f"; trials {sorted(running)} were stopped and will run again" if running else ""
    database = sqlite_path(cfg.storage_url)
    if database is not None and not database.exists():  # deleted, or its folder, as it ran
        # The cause first: SQLite's own words ("attempt to write a readonly database") said
        # the file was read-only.
        return StorageError(mask_url(cfg.storage_url), [
            f"the study stopped: the storage file {database} is no longer there (deleted while "
            f"the study ran?), and the trials it held went with it ({what} failed; SQLite said "
            f"\"{detail}\"). Restore it to resume the study, or run the same command to start it "
            "again" + ("." if database.parent.is_dir() or cfg.storage is None else
                       f" once its folder {database.parent} is made again (run makes the "
                       "default runs/ folder only).")
        ])
    if database is not None and "locked" in text:  # not the disk: another process's lock
        fix = (f"Another process held {database} locked for more than "
               f"{SQLITE_BUSY_TIMEOUT_S:g} s (an open transaction: a database browser, a script); "
               "close it")
    elif database is not None and "readonly" in text:  # not the disk either: permissions
        fix = (f"{database} (or its folder) cannot be written: its permissions, an immutable "
               "file or a read-only file system; make both writable")
    elif database is not None and "malformed" in text:  # not the disk: the file's pages
        return StorageError(mask_url(cfg.storage_url), [
            f"the study stopped: {what} failed: {detail}{again}. The storage file {database} "
            f"is damaged: {DAMAGED_ADVICE.format(path=database)}."])
    elif database is not None and "disk I/O error" in text:
        fix = (f"Free some disk space, or make {database} and its folder writable (a file made "
               "read-only as the study ran fails so)")
    elif database is None and "permission denied" in text:  # the server is up: a grant
        fix = ("The server refused this login a right the study needs (`scaletune validate` "
               "of the study checks those of its tables and their sequences): grant it")
    else:
        fix = ("Free some disk space" if database is not None or what == "a write" else
               "Bring the database server back (is it up, and reachable from here?)")
    return StorageError(mask_url(cfg.storage_url), [
        f"the study stopped: {what} failed: {detail}. The storage keeps every trial finished "
        f"before the failure{again}. {fix}, then run the same command to resume."
    ])


def _answer_reports(
    coordinator: Any, running: dict[int, TrialRun], progress: StudyProgress, messages: list[tuple],
) -> None:
    """Write each report to the study at its token checkpoint and answer with the pruner's call."""
    decisions = []
    for msg in messages:
        kind, number = msg[0], msg[1]
        r = running.get(number)
        if r is None:
            if kind == "report":
                decisions.append((number, msg[2], "prune"))
            continue
        if kind == "started":  # recorded on the storage thread (_drive)
            continue
        _, _, tokens, value, metrics = msg
        decisions.append((number, tokens, r.report(tokens, value)))
        progress.reported(number, tokens, value, metrics)
    if decisions:
        # Not waited for: the call only hands each waiting report its answer, whenever the actor
        # runs it, and a coordinator that is gone fails the driver's next call to it. The main
        # thread goes back to its inbox a round trip sooner.
        coordinator.answer.remote(decisions)


DATA_FAILED = f"{DataError.__name__}: "
"""How the reason of a trial that could not read the study's data begins (``_finish``)."""


def _finish(study: optuna.Study, r: TrialRun, cfg: StudyConfig) -> tuple[str, float | None, str]:
    """Tell the study how a trial ended: (state, final loss or None, reason). A trial ended
    outside the driver (the dashboard's Complete or Fail, with --allow-writes) keeps the end
    stored there; the driver stopped with a traceback, and said its trials were queued again."""
    try:
        return _finish_run(study, r, cfg)
    except optuna.exceptions.UpdateFinishedTrialError:
        frozen = study._storage.get_trial(r.trial._trial_id)
        if isinstance(study, DriverStudy):
            study.ended_elsewhere(r.number)
        return (frozen.state.name, frozen.value,
                f"ended outside the driver as {frozen.state.name} (the dashboard with "
                "--allow-writes, or another program); kept as it was ended there")


def _finish_run(study: optuna.Study, r: TrialRun, cfg: StudyConfig
                ) -> tuple[str, float | None, str]:
    try:
        result = ray.get(r.extra["ref"])
    except RETRYABLE as e:
        if isinstance(e, ray.exceptions.RayTaskError) and isinstance(
                e, ray.exceptions.ActorDiedError):
            # Raised in the trial's own code: the one actor it calls, the coordinator, died.
            # The study stops on it (run_study: CoordinatorLost), as when the driver's own
            # call to it fails first, and the trial is queued again with the others.
            raise
        reason = f"worker died: {type(e).__name__}: {_last_line(e)}"
        retried = r.fail(study, reason, cfg.max_retries)
        return "FAIL", None, reason + (QUEUED if retried else "")
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        reason = f"{type(cause).__name__}: {_last_line(cause)}"
        if isinstance(cause, DataError):  # no trial can run: the study stops (_drive), and
            r.fail(study, reason, cfg.max_retries, count_attempt=False)  # this one waits
            return "FAIL", None, reason + QUEUED
    except ray.exceptions.OutOfMemoryError as e:  # Ray's memory monitor killed its worker
        # Not a RayTaskError: it stopped the whole study, leaving the trial RUNNING. It would
        # run out again: FAIL, not retried, as torch's own out of memory (search.trial).
        reason = (f"out of the machine's memory: Ray stopped the trial's worker ({_last_line(e)})"
                  "; set trainer.micro_batch_size lower, or run fewer trials at once "
                  "(workers.max_concurrent)")
    else:
        return r.tell(study, result)
    r.trial.set_user_attr("fail_reason", reason)  # failed for good: the trial's own error
    study.tell(r.trial, state=TrialState.FAIL)
    return "FAIL", None, reason


def _last_line(e: BaseException) -> str:
    """The last non-empty line of an error (a traceback's last line names the error): whole
    for scaletune's own errors, whose one line says what to do at its end; else cut at 300."""
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    last = lines[-1]
    if isinstance(e, ScaletuneError) or len(last) <= 300:
        return last
    return last[:300].rsplit(" ", 1)[0] + " ..."  # at a word: "use `ray (queued again)"
