"""The driver at cluster scale: the real driver, storage and pruner with hundreds of trials.
The default run takes about 15 minutes on SQLite alone: 6 points of --seconds (60) each, after
their slots are filled (up to half a minute), then about 5 minutes for the study of --big
(10,000) finished trials; about twice that with --postgres.

``search.runner.run_study`` runs unchanged (its loop, the Coordinator actor, the storage writes,
the pruner, the sampler, the live view rendered to a terminal nobody reads) on a local Ray node
that declares many GPUs it does not have (``ray.init(num_gpus=...)``), so ``concurrency()``
gives the slot count. Only the trials are fake: instead of a Ray task that trains, each trial is
a coroutine on one of a few async actors that follows a synthetic learning curve, reports on the
study's token grid through the real Coordinator every ``interval`` seconds, waits for the answer
like a worker does, and returns a result shaped like ``train_trial``'s. The study starts with
``--history`` complete trials (a study under way), so the median pruner prunes from the start.

Curves: loss(t) = L_inf + A (t / t0)^-alpha, with L_inf growing with the distance of log lr
from a fixed optimum, per-trial A and alpha, and 1% noise at each evaluation. Trials start at a
random phase of the interval (trials of a study under way do not evaluate in step).

Measured, for each storage (SQLite file, PostgreSQL when ``--postgres URL``) and each point
(concurrent trials, seconds between a trial's reports), over a window after every slot is
filled: report-to-answer latency seen by the trial (median, p99), reports answered per second,
the driver process's CPU (user + system over the window's wall) and its resident memory. Each
point runs for ``--seconds`` and is then stopped as a scheduler stops a study (SIGTERM: a job run
in the background ignores SIGINT).

Then a study of ``--big`` finished trials (built with ``study.add_trials``) is timed: ``scaletune
report``, ``scaletune studies``, ``scaletune show`` and the dashboard's first response.

    python -m benchmarks.driver_scale [--postgres URL] [--costs] [--pruner hyperband]
                                      [--out benchmarks/results]

``--pruner`` runs the studies under another pruner than the suite's study file names (median):
the predicted pruner (the product's default), successive halving, Hyperband, ...

"The driver's part" of a report is the time spent in ``TrialRun.report`` (the storage write and
the pruner's decision); ``--costs`` also times one report through Optuna's own study beside the
driver's study, and one redraw of the live view of every row beside the rows it draws now.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from benchmarks import refuse_below_one, run_main
from benchmarks.search_efficiency import (
    DEFAULT_DATA,
    Bench,
    command_line,
    provenance,
    study_config,
)

LR_BEST = 3e-3
"""Where the synthetic curves put the best learning rate."""


def curve(params: dict[str, Any], seed: int) -> tuple[float, float, float]:
    """(L_inf, A, alpha) of one trial's synthetic curve."""
    rng = random.Random(seed)
    lr = float(params.get("lr", LR_BEST))
    l_inf = 1.4 + 0.08 * math.log(lr / LR_BEST) ** 2 + rng.gauss(0, 0.02)
    return l_inf, rng.uniform(1.5, 2.5), rng.uniform(0.3, 0.6)


def loss_at(shape: tuple[float, float, float], tokens: int, every: int, rng: random.Random) -> float:
    l_inf, a, alpha = shape
    return (l_inf + a * (tokens / every) ** -alpha) * (1 + rng.gauss(0, 0.01))


@ray.remote(num_cpus=0)
class FakeTrials:
    """Trials that follow synthetic curves and report through the real Coordinator."""

    def __init__(self) -> None:
        self.records: list[tuple[float, float]] = []  # (sent at, seconds to the answer)
        self.started: list[float] = []

    async def run(self, number: int, params: dict[str, Any], every: int, budget: int,
                  interval: float, phase: float, coordinator: Any) -> dict[str, Any]:
        t0 = time.time()
        self.started.append(t0)
        info = {"pid": os.getpid(), "host": "fake", "gpu_ids": [], "device": "fake",
                "started_at": t0}
        await coordinator.started.remote(number, info)
        rng = random.Random(number)
        shape = curve(params, number)
        await asyncio.sleep(phase)
        losses, status = [], "completed"
        for k in range(1, budget // every + 1):
            tokens = k * every + rng.randrange(0, 64)  # batches do not land on the grid exactly
            loss = loss_at(shape, tokens, every, rng)
            losses.append(loss)
            sent = time.time()
            try:
                answer = await coordinator.report.remote(number, tokens, loss,
                                                         {"train_loss": loss * 0.98,
                                                          "tokens_per_s": 1e5})
            except ray.exceptions.RayActorError:
                # The study stopped (the window's SIGTERM) and released its coordinator: the
                # trial ends here, as a worker's trial is stopped, without Ray's "Unhandled
                # error" traceback for a result nobody reads.
                status = "stopped"
                break
            self.records.append((sent, time.time() - sent))
            if answer == "prune":
                status = "stopped"
                break
            await asyncio.sleep(interval)
        wall = time.time() - t0
        return {"status": status, "steps": len(losses), "tokens_seen": len(losses) * every,
                "final_val_loss": losses[-1], "best_val_loss": min(losses), "wall_time_s": wall,
                "train_time_s": wall, "tokens_per_s": 1e5, "ended_at": time.time()}

    def take(self) -> tuple[list[tuple[float, float]], list[float]]:
        return self.records, self.started


# --------------------------------------------------------------------------- studies


@dataclass
class Point:
    storage: str
    trials: int
    interval_s: float
    pruner: str | None = None
    """The study's pruner by name (``pruner: {name: ...}``); None: the study's own."""


def make_config(bench: Bench, name: str, url: str, folder: Path, slots: int,
                pruner: str | None = None) -> Any:
    from pydantic import TypeAdapter

    from scaletune.search.config import PrunerConfig

    base = study_config(bench, "scaletune", seed=0)
    chosen = {} if pruner is None else {
        "pruner": TypeAdapter(PrunerConfig).validate_python({"name": pruner})}
    return base.model_copy(update={
        **chosen, "name": name, "study_dir": str(folder), "storage": url, "n_trials": 10**6,
        "workers": base.workers.model_copy(update={
            "cpus_per_trial": 1 / 128, "gpus_per_trial": 1.0, "max_concurrent": slots}),
    })


def finished_trials(plan: Any, n: int, seed: int, pruned_share: float = 0.0) -> list[Any]:
    """``n`` finished trials on the study's token grid, params drawn at random from its space:
    COMPLETE, or PRUNED after a few evaluations for a ``pruned_share`` of them; with the user
    attrs a trial run by the driver has."""
    import optuna
    from optuna.trial import TrialState, create_trial

    cfg = plan.cfg
    every, budget = cfg.eval_interval, cfg.tokens_per_trial
    dists = plan.distributions()
    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = random.Random(seed)
    out = []
    for i in range(n):
        params = draw.ask(dists).params
        shape = curve(params, seed * 1_000_003 + i)
        pruned = rng.random() < pruned_share
        evals = rng.randint(3, budget // every - 1) if pruned else budget // every
        values = {k * every: loss_at(shape, k * every, every, rng) for k in range(1, evals + 1)}
        attrs = {"steps": budget // 1024, "warmup_steps": 10, "tokens_per_step": 1024,
                 "tokens_seen": evals * every, "wall_time_s": 60.0 * evals,
                 "train_time_s": 55.0 * evals, "tokens_per_s": 3e4,
                 "best_val_loss": min(values.values()),
                 "final_val_loss": values[evals * every]}
        if pruned:
            attrs["prune_reason"] = f"median pruner at {evals * every:,} tokens"
        out.append(create_trial(
            state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
            value=None if pruned else values[evals * every], params=params,
            distributions=dists, intermediate_values=values, user_attrs=attrs))
    return out


def new_study(bench: Bench, name: str, url: str, folder: Path, slots: int, history: int,
              pruned_share: float = 0.0, pruner: str | None = None) -> tuple[Any, Any]:
    """A study opened by the product (its record, its lease released again) holding
    ``history`` finished trials; returns (config, study)."""
    from scaletune.search.plan import SearchPlan
    from scaletune.search.storage import make_storage

    cfg = make_config(bench, name, url, folder, slots, pruner)
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(url))
    trials = finished_trials(plan, history, seed=len(name), pruned_share=pruned_share)
    for t in trials:  # add_trials writes them one by one as well
        study.add_trial(t)
    plan.lease.release()
    return cfg, study


def driver_rss() -> tuple[float, float]:
    """(resident, peak) memory of this process, MiB."""
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def measure(bench: Bench, point: Point, url: str, folder: Path, seconds: float, history: int,
            actors: int, profile: Path | None = None) -> dict[str, Any]:
    """Run the driver with ``point.trials`` fake trials for ``seconds``; what it sustained."""
    import optuna
    from rich.console import Console

    from scaletune.search.plan import TrialRun
    from scaletune.search.runner import Interrupted, run_study
    from scaletune.search.storage import make_storage

    name = f"scale-{point.storage}-{point.trials}-{str(point.interval_s).replace('.', 'p')}"
    cfg, _ = new_study(bench, name, url, folder, point.trials, history, pruner=point.pruner)
    fakes = [FakeTrials.options(max_concurrency=4 * point.trials).remote()
             for _ in range(actors)]
    rng = random.Random(point.trials)

    # The window opens one interval after the last slot is filled, when every trial has
    # reported at least once, and closes ``seconds`` later with a SIGTERM.
    marks: dict[str, Any] = {}
    timers: list[threading.Timer] = []

    def mark() -> None:
        marks["rusage"] = resource.getrusage(resource.RUSAGE_SELF)
        marks["t"] = time.time()

    def launch(run: Any, coordinator: Any) -> Any:
        actor = fakes[run.number % actors]
        ref = actor.run.remote(run.number, run.params, cfg.eval_interval, cfg.tokens_per_trial,
                               point.interval_s, rng.uniform(0, point.interval_s), coordinator)
        marks["launched"] = marks.get("launched", 0) + 1
        if marks["launched"] == point.trials:
            marks["full"] = time.time()
            timers.extend([threading.Timer(point.interval_s, mark),
                           threading.Timer(point.interval_s + seconds,
                                           lambda: os.kill(os.getpid(), signal.SIGTERM))])
            for timer in timers:
                timer.start()
        return ref

    # The driver's own part of each report (the storage write and the pruner's decision), timed
    # apart from the round trip the trial sees.
    spent: list[tuple[float, float]] = []
    report = TrialRun.report

    def timed_report(self: TrialRun, tokens: int, value: float) -> str:
        began = time.perf_counter()
        answer = report(self, tokens, value)
        spent.append((time.time(), time.perf_counter() - began))
        return answer

    # A terminal nobody reads: the live view renders as it would for a person.
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    start = time.time()
    TrialRun.report = timed_report
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        run_study(cfg, console=console, launch=launch, summary=False)
    except Interrupted as e:
        if e.signum != signal.SIGTERM:  # a person's Ctrl-C, not the window's end: it stops all
            raise  # (taken as the window's end, the run wrote a cut point over the tables)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        for timer in timers:
            timer.cancel()
        TrialRun.report = report
    end = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss, peak = driver_rss()
    records = []
    for actor in fakes:
        got, _ = ray.get(actor.take.remote())
        records += got
        ray.kill(actor)
    t_from = marks["t"]
    window = [lat for sent, lat in records if t_from <= sent <= end - 1.0]
    span = max(1e-9, end - 1.0 - t_from)
    cpu = ((usage.ru_utime + usage.ru_stime) - (marks["rusage"].ru_utime + marks["rusage"].ru_stime)
           if "rusage" in marks else math.nan)
    study = optuna.load_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    lat = sorted(window)
    own = sorted(d for at, d in spent if t_from <= at <= end - 1.0)
    return {
        "storage": point.storage, "trials": point.trials, "interval_s": point.interval_s,
        "pruner": cfg.pruner.name, "offered_per_s": point.trials / point.interval_s,
        "window_s": round(span, 1), "reports": len(lat), "reports_per_s": len(lat) / span,
        "latency_median_ms": 1e3 * statistics.median(lat) if lat else math.nan,
        "latency_p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else math.nan,
        "latency_max_ms": 1e3 * lat[-1] if lat else math.nan,
        "driver_report_median_ms": 1e3 * statistics.median(own) if own else math.nan,
        "driver_report_p99_ms": 1e3 * own[min(len(own) - 1, int(0.99 * len(own)))] if own
        else math.nan,
        "driver_cpu": cpu / span, "driver_rss_mib": rss, "driver_peak_mib": peak,
        "pruned": states.count("PRUNED") - 0, "complete": states.count("COMPLETE"),
        "history": history, "fill_s": round(marks["full"] - start, 1),
    }


# --------------------------------------------------------------------------- one report


def report_cost(bench: Bench, label: str, url: str, folder: Path, running: int, history: int,
                reports: int = 60, asks: int = 10) -> dict[str, Any]:
    """Milliseconds the driver spends on one report (``TrialRun.report``: the write and the
    median pruner's decision) and on one ask (``SearchPlan.ask`` with the study's sampler, TPE
    with its constant liar) with ``running`` trials running and ``history`` complete, through
    a plain ``optuna.Study`` (Optuna's own path) and through ``DriverStudy`` (the driver's),
    side by side on one storage."""
    import optuna

    from scaletune.search.plan import DriverStudy, SearchPlan
    from scaletune.search.storage import make_storage

    name = f"cost-{label}-{running}"
    cfg, _ = new_study(bench, name, url, folder, running, history)
    plan = SearchPlan.build(cfg)
    out: dict[str, Any] = {"storage": label, "running": running, "complete": history}
    studies = {kind: cls(study_name=name, storage=make_storage(url), pruner=plan.pruner(),
                         sampler=optuna.samplers.RandomSampler(seed=0))
               for kind, cls in (("optuna_study_ms", optuna.Study),
                                 ("driver_study_ms", DriverStudy))}
    asked = {kind: [plan.ask(study, 1) for _ in range(running // 2)]  # half asked by each
             for kind, study in studies.items()}
    for kind, runs in asked.items():
        rng = random.Random(running)
        start = time.perf_counter()
        for i in range(reports):
            r = runs[i % len(runs)]
            tokens = (r.last_step // cfg.eval_interval + 1) * cfg.eval_interval + 7
            r.report(tokens, 2.0 + rng.random())
        out[kind] = 1e3 * (time.perf_counter() - start) / reports
    for kind, study in studies.items():
        study.sampler = plan.sampler()
        start = time.perf_counter()
        asked[kind] += [plan.ask(study, 1) for _ in range(asks)]
        out[kind.replace("_study_ms", "_ask_ms")] = 1e3 * (time.perf_counter() - start) / asks
    return out


def render_cost(cfg: Any, running: int = 256, draws: int = 20) -> dict[str, Any]:
    """Milliseconds to draw the live view of ``running`` trials in a terminal: every row (as
    before), and the rows it draws now (search.progress.SHOWN_ROWS)."""
    import optuna
    from rich.console import Console

    from scaletune.search import progress

    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    view = progress.StudyProgress(console, cfg, optuna.create_study())
    for number in range(running):
        view.started(number, {"lr": 1e-3, "batch_size": 16})
        view.reported(number, 1000 * number, 3.0, {"tokens_per_s": 1e5})
    out: dict[str, Any] = {"running": running}
    shown = progress.SHOWN_ROWS
    try:
        for kind, rows in (("every_row_ms", running), ("shown_rows_ms", shown)):
            progress.SHOWN_ROWS = rows
            start = time.perf_counter()
            for _ in range(draws):
                console.print(view.render())
            out[kind] = 1e3 * (time.perf_counter() - start) / draws
    finally:
        progress.SHOWN_ROWS = shown
    return out


# --------------------------------------------------------------------------- a big study


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    return time.perf_counter() - start, p.returncode, (p.stdout + p.stderr)[-600:]


def dashboard_first_response(url: str, name: str) -> tuple[float, float]:
    """Seconds from a fresh dashboard app (scaletune's, in-process) to the answer of its study
    list, and then of the study's page (every trial), as a browser asks for them."""
    from wsgiref.util import setup_testing_defaults

    from scaletune.search.dashboard import dashboard_app
    from scaletune.search.storage import make_storage

    study_id = make_storage(url).get_study_id_from_name(name)
    start = time.perf_counter()
    app = dashboard_app(url)
    times = []
    for path in ("/api/studies", f"/api/studies/{study_id}"):
        environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET",
                                   "QUERY_STRING": "after=0" if path != "/api/studies" else ""}
        setup_testing_defaults(environ)
        status = []
        body = b"".join(app(environ, lambda s, h, *a, out=status: out.append(s)))
        if not status[0].startswith("200"):
            raise RuntimeError(f"dashboard {path}: {status[0]} {body[:200]!r}")
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def copy_rows(source: str, target: str) -> None:
    """Every study of the SQLite storage ``source`` added to the storage ``target`` (Optuna's
    schema, made by ``make_storage``) in bulk, row ids shifted past the target's own: a study of
    10,000 trials written through Optuna takes half an hour on a loaded machine."""
    from sqlalchemy import MetaData, create_engine, func, select, text

    from scaletune.search.storage import make_storage, with_driver

    make_storage(target)  # its tables
    src, dst = create_engine(source), create_engine(with_driver(target))
    meta = MetaData()
    meta.reflect(src)
    shift: dict[str, int] = {}
    with src.connect() as read, dst.begin() as write:
        for table in meta.sorted_tables:
            if table.name in ("version_info", "alembic_version"):
                continue
            key = next(iter(table.primary_key.columns)).name
            # Past the ids a driver writing the target meanwhile takes from the sequence.
            shift[key] = 1_000_000 + write.execute(select(func.coalesce(func.max(text(key)), 0))
                                                   .select_from(text(table.name))).scalar_one()
            rows = [dict(r._mapping) for r in read.execute(select(table))]
            for row in rows:
                for col in row:
                    if col in shift and (col == key or col in ("study_id", "trial_id")):
                        row[col] += shift[col]
            for i in range(0, len(rows), 5000):
                write.execute(table.insert(), rows[i:i + 5000])
            if dst.dialect.name == "postgresql":  # the ids the server hands out next
                write.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                                   f"'{key}'), (SELECT max({key}) FROM {table.name}))"))


def big_study(bench: Bench, label: str, url: str, folder: Path, n: int) -> dict[str, Any]:
    """A study of ``n`` finished trials; the time of report, studies, show and the dashboard."""
    import optuna
    import yaml

    from scaletune.search.storage import make_storage, sqlite_path

    name = f"big-{label}-{n}"
    start = time.perf_counter()
    # Written to SQLite in memory (tmpfs), then moved or copied in bulk: 10,000 trials written
    # through Optuna take minutes on a disk and half an hour on PostgreSQL.
    scratch = Path("/dev/shm") / f"scaletune-{os.getpid()}-{name}.db"
    scratch.unlink(missing_ok=True)
    cfg, _ = new_study(bench, name, f"sqlite:///{scratch}", folder, 1, n, pruned_share=0.6)
    if sqlite_path(url) is not None:
        shutil.move(scratch, sqlite_path(url))
    else:
        copy_rows(f"sqlite:///{scratch}", url)
        scratch.unlink()
    cfg = cfg.model_copy(update={"storage": url})
    build = time.perf_counter() - start
    study_file = folder / f"{name}.yaml"
    # The fields the study gives, as its file would: every default written out gave tpe the
    # gp and cmaes sampler's pruned_trials, which `report` refused.
    study_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True,
                                                       exclude_unset=True)))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    exe = [sys.executable, "-m", "scaletune.search.cli"]  # what `scaletune` runs
    row: dict[str, Any] = {"storage": label, "trials": n, "build_s": build}
    for what, cmd in {
        "report": [*exe, "report", str(study_file), "-o", str(folder / f"report-{name}")],
        "studies": [*exe, "studies", "--storage", url],
        "show": [*exe, "show", str(study_file)],
    }.items():
        seconds, rc, tail = timed(cmd, env)
        if rc != 0:
            raise RuntimeError(f"{what} failed ({rc}): {tail}")
        row[f"{what}_s"] = seconds
    row["dashboard_first_s"], row["dashboard_study_s"] = dashboard_first_response(url, name)
    # What `scaletune studies` did before it counted in the database, and what report and
    # show still do first: load every trial through Optuna.
    start = time.perf_counter()
    optuna.load_study(study_name=name, storage=make_storage(url)).get_trials(deepcopy=False)
    row["load_every_trial_s"] = time.perf_counter() - start
    return row


# --------------------------------------------------------------------------- tables


def write_tables(out: Path, tag: str, csvs: list[Path]) -> Path:
    """``<tag>.md`` from ``csvs``, the CSVs a run wrote, never from others an earlier run left in
    ``out``: ``out/<tag>.csv``, the driver at each point; ``out/<tag>_costs.csv``, one report and
    one redraw side by side; any ``*_big.csv``, the big study. The report of a run made in steps
    (the load in one, the big study in another with its own ``--tag``, as in
    benchmarks/results/driver_scale.md) is written by passing the CSVs of each."""
    import pandas as pd

    from scaletune.search.progress import SHOWN_ROWS

    parts = []
    if out / f"{tag}.csv" in csvs:
        df = pd.read_csv(out / f"{tag}.csv")
        lines = ["| storage | trials | every (s) | reports/s | latency median (ms) | p99 (ms) | "
                 "driver's part median / p99 (ms) | driver CPU | driver RSS (MiB) | pruned | "
                 "slots filled in (s) |", "|" + "---|" * 11]
        for r in df.itertuples():
            lines.append(
                f"| {r.storage} | {r.trials} | {r.interval_s:g} | {r.reports_per_s:.1f} | "
                f"{r.latency_median_ms:.0f} | {r.latency_p99_ms:.0f} | "
                f"{r.driver_report_median_ms:.1f} / {r.driver_report_p99_ms:.1f} | "
                f"{r.driver_cpu:.0%} | {r.driver_rss_mib:.0f} | {r.pruned} | {r.fill_s:.0f} |")
        parts.append("## The driver under load\n\n" + "\n".join(lines))
    if out / f"{tag}_costs.csv" in csvs:
        df = pd.read_csv(out / f"{tag}_costs.csv")
        lines = ["| storage | running | one report, Optuna's study (ms) | the driver's study (ms) "
                 "| ratio | one ask, Optuna's study (ms) | the driver's study (ms) | ratio |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in df[df["storage"] != "terminal"].itertuples():
            o_ask, d_ask = getattr(r, "optuna_ask_ms", math.nan), getattr(r, "driver_ask_ms", math.nan)
            lines.append(f"| {r.storage} | {r.running} | {r.optuna_study_ms:.1f} | "
                         f"{r.driver_study_ms:.1f} | {r.optuna_study_ms / r.driver_study_ms:.1f}x | "
                         f"{o_ask:.1f} | {d_ask:.1f} | {o_ask / d_ask:.1f}x |")
        for r in df[df["storage"] == "terminal"].itertuples():
            lines.append(f"\nOne redraw of the live view of {r.running} running trials: every row "
                         f"{r.every_row_ms:.1f} ms, the {min(SHOWN_ROWS, r.running)} rows "
                         "shown now "
                         f"{r.shown_rows_ms:.1f} ms ({r.every_row_ms / r.shown_rows_ms:.1f}x).")
        parts.append("## One report, one ask and one redraw, before and after, side by side\n\n"
                     + "\n".join(lines))
    for big in (c for c in csvs if c.name.endswith("_big.csv")):
        df = pd.read_csv(big)
        lines = ["| storage | trials | `scaletune report` (s) | `scaletune studies` (s) | "
                 "`scaletune show` (s) | dashboard: study list (s) | its study page (s) | "
                 "loading every trial through Optuna (s) |", "|" + "---|" * 8]
        for r in df.itertuples():
            lines.append(f"| {r.storage} | {r.trials:,} | {r.report_s:.1f} | {r.studies_s:.1f} | "
                         f"{r.show_s:.1f} | {r.dashboard_first_s:.1f} | {r.dashboard_study_s:.1f}"
                         f" | {r.load_every_trial_s:.1f} |")
        parts.append("## A study of finished trials\n\n" + "\n".join(lines))
    path = out / f"{tag}.md"
    path.write_text("# The driver at scale (benchmarks/driver_scale.py)\n\n"
                    + "\n\n".join(parts) + "\n")
    return path


# --------------------------------------------------------------------------- command line


def listed(text: str, kind: type) -> list[Any] | None:
    """The comma-separated values of ``text`` (none for ''); None where one is not above 0."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return None
    return values if all(v > 0 for v in values) else None


def start_ray(gpus: int) -> None:
    # A Ray of its own (address="local"): without it, ray.init joins a cluster already running
    # on this machine (`ray start --head`), which refuses the GPUs it declares.
    ray.init(address="local", num_cpus=2, num_gpus=gpus, include_dashboard=False,
             log_to_driver=False, configure_logging=False, object_store_memory=256 * 1024**2)


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = argparse.ArgumentParser(prog="python -m benchmarks.driver_scale",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", default="32,128,256",
                   help="concurrent trials at --interval, comma-separated ('' for none: --big "
                        "alone; default %(default)s)")
    p.add_argument("--interval", type=float, default=10.0,
                   help="seconds between a trial's reports (default 10)")
    p.add_argument("--fast", default="2,0.5,0.2",
                   help="shorter intervals tried at the largest trial count, for the highest "
                        "rate the driver sustains ('' for none; default %(default)s)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="each point's run (default 60; 0: no run under load, for --costs or "
                        "--big alone)")
    p.add_argument("--history", type=int, default=100,
                   help="complete trials the study holds before each point (default 100)")
    p.add_argument("--actors", type=int, default=4,
                   help="actors the fake trials run on (default 4)")
    p.add_argument("--big", type=int, default=10_000,
                   help="finished trials of the study whose report is timed (default 10,000, "
                        "about 5 minutes per storage; 0: skip)")
    p.add_argument("--costs", action="store_true",
                   help="also time one report (Optuna's study beside the driver's) and one "
                        "redraw of the live view, side by side")
    p.add_argument("--storages", default=None,
                   help="which of the storages to measure: sqlite, postgresql or both "
                        "(default: both where --postgres is given, else sqlite)")
    p.add_argument("--postgres", metavar="URL", help="PostgreSQL storage, besides SQLite")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the driver at the largest point: driver_scale_<storage>.prof")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                   help="results folder: <tag>.md, its CSVs and the command (default "
                        "%(default)s)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the text file of the study's task; the fake trials never read it "
                        "(default %(default)s)")
    p.add_argument("--tag", default="driver_scale",
                   help="stem of the results' file names (default %(default)s)")
    p.add_argument("--pruner", default=None,
                   help="the studies' pruner by name (median, hyperband, successive_halving, "
                        "...); default the suite's scaletune study's")
    args = p.parse_args(argv)
    if args.storages is None:
        args.storages = "sqlite,postgresql" if args.postgres else "sqlite"
    asked = [s for s in args.storages.split(",") if s]
    if bad := [s for s in asked if s not in ("sqlite", "postgresql")]:
        p.error(f"--storages: unknown {bad}; choose from sqlite, postgresql")
    if "postgresql" in asked and not args.postgres:
        # it measured nothing and exited 0, having replaced the command file of record
        p.error("--storages postgresql needs --postgres URL (a server and database to write)")
    # Checked before anything runs or is written: a bad count fails minutes in otherwise, and
    # leaves the work folder behind.
    counts, fast = listed(args.trials, int), listed(args.fast, float)
    if counts is None:
        p.error(f"--trials: comma-separated counts of 1 or more ('' for none), got "
                f"{args.trials!r}")
    if fast is None:
        p.error(f"--fast: comma-separated seconds above 0 ('' for none), got {args.fast!r}")
    if args.interval <= 0:
        p.error(f"--interval: must be above 0, got {args.interval:g}")
    refuse_below_one(p, {"--actors": args.actors})
    for flag, value in (("--seconds", args.seconds), ("--history", args.history),
                        ("--big", args.big)):
        if value < 0:
            p.error(f"{flag}: must be 0 or more, got {value:g}")
    if not args.data.is_file():  # read for the study file's data checks, and left its folder
        p.error(f"--data: file not found: {args.data}")
    if args.pruner is not None:
        from pydantic import TypeAdapter, ValidationError

        from scaletune.search.config import PrunerConfig

        try:
            TypeAdapter(PrunerConfig).validate_python({"name": args.pruner})
        except ValidationError as e:  # "Input tag 'x' ... does not match any of ...: 'median', ..."
            p.error(f"--pruner: {e.errors()[0]['msg']}")
    if args.costs and not counts:
        p.error("--costs needs --trials (the running trials of each report)")
    if not (counts and args.seconds > 0) and not args.costs and not args.big:
        # it measured nothing and exited 0, having replaced the tables and command of record
        p.error("nothing to measure: give --trials with --seconds above 0, --costs, or --big")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench = Bench(data=args.data, out=args.out)
    work = args.out / "driver_scale_work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    storages = {"sqlite": lambda name: f"sqlite:///{(work / f'{name}.db').resolve()}"}
    if args.postgres:
        storages["postgresql"] = lambda name: args.postgres
    storages = {k: v for k, v in storages.items() if k in args.storages.split(",")}
    points = [(n, args.interval) for n in counts] + [(max(counts), s) for s in fast if counts]
    points = points if args.seconds > 0 else []
    if points:
        start_ray(max(counts))
    rows, big = [], []
    for label, url_of in storages.items():
        for n, interval in points:
            point = Point(label, n, interval, args.pruner)
            profile = (args.out / f"{args.tag}_{label}.prof"
                       if args.profile and (n, interval) == (max(counts), args.interval) else None)
            row = measure(bench, point, url_of(f"scale-{n}-{interval}"), work, args.seconds,
                          args.history, args.actors, profile)
            rows.append(row)
            print(f"{label:10} {n:4} trials every {interval:5g} s: {row['reports_per_s']:7.1f} "
                  f"reports/s, latency median {row['latency_median_ms']:7.1f} ms, p99 "
                  f"{row['latency_p99_ms']:7.1f} ms (the driver's part {row['driver_report_median_ms']:.1f}, "
                  f"{row['driver_report_p99_ms']:.1f} ms), driver CPU {row['driver_cpu']:.0%}, RSS "
                  f"{row['driver_rss_mib']:.0f} MiB, {row['pruned']} pruned", flush=True)
    if points:
        ray.shutdown()
    costs = []
    for label, url_of in storages.items():
        for n in counts if args.costs else []:
            costs.append(report_cost(bench, label, url_of(f"cost-{n}"), work, n, args.history))
            c = costs[-1]
            print(f"{label:10} with {n:4} running, one report: Optuna's study "
                  f"{c['optuna_study_ms']:.1f} ms, the driver's study {c['driver_study_ms']:.1f} "
                  f"ms; one ask: {c['optuna_ask_ms']:.1f} and {c['driver_ask_ms']:.1f} ms",
                  flush=True)
    if args.costs:
        drawn = render_cost(make_config(bench, "render", "sqlite://", work, max(counts)),
                            max(counts))
        print(f"live view of {drawn['running']} trials: every row {drawn['every_row_ms']:.1f} ms, "
              f"the rows shown {drawn['shown_rows_ms']:.1f} ms", flush=True)
        costs.append({"storage": "terminal", "running": drawn["running"],
                      "optuna_study_ms": math.nan, "driver_study_ms": math.nan,
                      "optuna_ask_ms": math.nan, "driver_ask_ms": math.nan, **drawn})
    if args.big:
        for label, url_of in storages.items():
            row = big_study(bench, label, url_of(f"big-{args.big}"), work, args.big)
            big.append(row)
            pd.DataFrame(big).to_csv(args.out / f"{args.tag}_big.csv", index=False)
            print(f"{label:10} {args.big} trials: report {row['report_s']:.1f} s, studies "
                  f"{row['studies_s']:.1f} s, show {row['show_s']:.1f} s, dashboard "
                  f"{row['dashboard_first_s']:.1f} s, its study page {row['dashboard_study_s']:.1f} s (built in {row['build_s']:.0f} s)",
                  flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / f"{args.tag}_big.csv"] if big else []
    for table, name in ((rows, f"{args.tag}.csv"), (costs, f"{args.tag}_costs.csv")):
        if table:
            pd.DataFrame(table).to_csv(args.out / name, index=False)
            written.append(args.out / name)
    from scaletune.search.storage import mask_url

    write_tables(args.out, args.tag, written)
    command = command_line(p, [mask_url(a) for a in (sys.argv[1:] if argv is None else argv)])
    (args.out / f"{args.tag}_command.txt").write_text(
        command + "\n" + json.dumps(provenance(bench), indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_main(main, "driver_scale", "its tables are written at the end of a run, so this one "
             "wrote none")
