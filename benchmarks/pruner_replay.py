"""Pruners replayed on the suite's unpruned studies (issue 15). The default run takes about ten
minutes on 2 cores.

The suite's random-search studies trained every trial to the end (``pruner: none``), so their
curves show what each pruner would have stopped and what those trials went on to reach. Each
pruner is built from the study's own config (the product's ``pruner:`` section) and replayed
with ``search.pruners.replay``: a fresh in-memory Optuna study, the complete trials in their
order, each reporting its curve and asking ``should_prune()``. Diverged trials (which the trainer
stops by itself) are left out. Counted per study: compute saved against no pruning (tokens not
trained over the tokens of every trial run to the end) and false prunes (stopped trials that
ended within 1% of their study's best).

Each study is replayed in the order its trials ran and in ``--orders`` shuffled orders (20 by
default; seeded by task, seed and order, so the figures repeat). One order is one draw: which
trial comes third decides whether a near-best run is judged on two curves or on ten, and a rule
with no false prune in the order the trials ran (confidence 0.9) had 47 in 20 shuffles of each
study. A sampler such as TPE, which draws near the best early, makes the few-curve case the
common one.

The predicted pruner's grid (``n_startup_trials``, ``confidence``, ``leading``,
``min_spread``) is replayed too, with a rule that picks its point: the one that saves the most
compute over all orders with no more false prunes than scaletune's median pruner (the default
before it) on the same replays; its leave-one-task-out check is part of the output: for each
task, the point chosen on the five others (bounded by the median pruner's false prunes there)
is scored on the task left out. The product's default weighs live studies as well
(search/config.py, CONFIDENCE: a point this rule picked before, on a grid without
``min_spread``, found worse bests there).

    python -m benchmarks.pruner_replay [--suite benchmarks/results/suite] [--orders 20]

Two rows are not pruners but ceilings, for reading the others: a pruner that knew every trial's
final loss and stopped, at its first evaluation, each trial that would end worse than the best
complete trial before it by more than the noise floor (1%), as the predicted pruner compares; and
the same pruner allowed to decide only from 20% of the budget on. No pruner that compares with
the complete trials can save more than the first without false prunes.

The studies are copied to a temporary folder and opened there, so a suite that is still being
written is never touched. Where the study files are not there (they are not committed), the
studies are rebuilt from the committed trial tables (``<task>/search_efficiency_trials.csv``,
which hold every trial's params and curve): the same replay, to the same figures. Writes
benchmarks/results/pruners/pruner_replay.md, .csv (the order the trials ran), _orders.csv
(every order) and _loto.csv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks import run_main
from benchmarks.search_efficiency import command_line, names_given, strategy_seed
from benchmarks.suite import TASK_NAMES

PRUNERS = {
    "predicted (scaletune)": {"name": "predicted"},
    "median (scaletune: 25% warmup, 4 start-up)": {"name": "median"},
    "wilcoxon": {"name": "wilcoxon"},
    "successive halving": {"name": "successive_halving"},
    "hyperband": {"name": "hyperband"},
    "none": {"name": "none"},
}
"""Each pruner as a study file's ``pruner:`` section spells it, with scaletune's defaults."""
CONFIDENCES = (0.8, 0.85, 0.9, 0.95, 0.97)
STARTUPS = (2, 3)
LEADINGS = (0.0, 0.25, 0.5)
MIN_SPREADS = (0.0, 1.0, 2.0, 3.0, 4.0)
"""The predicted pruner's grid: its four constants chosen on these studies (n_startup_trials,
confidence, leading, min_spread), each point replayed on every study in every order.
Explored beyond it, not kept: n_startup_trials 4 and confidence 0.99 (the grid before
min_spread: (4, 0.99, 0.5) was its one point without a false prune over the orders, 30.6%
saved, kept as a row below), and, replayed with these functions on a wider grid (2026-12-03),
confidence 0.75 with min_spread 5 and 6, along the ridge where a lower confidence and a larger
least spread stop the same trials (0.75 and 6: 51.8% saved, 17 false prunes; chosen on five
tasks at a time, that wider grid's points stopped 19 near-best runs on the tasks left out,
against this grid's 15 and the median pruner's 19)."""
MARGINS = (1.0, 1.5)
"""The first rule's interval (``interval: range``), for comparison: its default margin was 1.5."""
ORDERS = 20
"""Shuffled orders each study is replayed in, besides the order its trials ran."""
BOUND = "median (scaletune: 25% warmup, 4 start-up)"
"""The pruner whose false prunes bound the grid point chosen."""
SUITE = Path(__file__).parent / "results" / "suite"
OUT = Path(__file__).parent / "results" / "pruners"
LOTO_SKIPPED = ("The predicted pruner's constants left one task out: skipped, the replay read "
                "one task (it needs two or more).")
"""What the results say in place of the leave-one-task-out table where one task was read."""


CEILINGS = {
    "ceiling: final losses known, stopped at the first evaluation": 0.0,
    "ceiling: final losses known, stopped from 20% of the budget": 0.2,
}
"""Rows of a pruner that knows each trial's final loss (Hindsight), by the earliest fraction of
the budget it may stop a trial at."""


def hindsight(trials: list[Any], budget: int, after: float) -> Any:
    """An Optuna pruner for a replay of ``trials``: it knows each one's final loss, and stops a
    trial at its first evaluation from ``after`` x ``budget`` tokens on when that loss is worse
    than the best of the complete trials before it by more than the noise floor (two of them
    first, as the predicted pruner's default ``n_startup_trials``)."""
    from optuna.pruners import BasePruner
    from optuna.trial import TrialState

    from scaletune.search.config import NOISE_FLOOR, PREDICTED_STARTUP

    finals = [t.value for t in trials]  # the replay's trial i is trials[i]

    class Hindsight(BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if len(complete) < PREDICTED_STARTUP or trial.last_step < after * budget:
                return False
            best = min(t.value for t in complete)
            return finals[trial.number] > best * (1 + NOISE_FLOOR)

    return Hindsight()


def load(suite: Path, workdir: Path,
         tasks: Iterable[str] = TASK_NAMES) -> dict[tuple[str, int], tuple[Any, list[Any]]]:
    """(task, seed) -> (study config, complete trials in order), from copies in ``workdir``:
    every seed of each of ``tasks`` (by name, in name order) that the suite's folder holds."""
    import optuna

    from scaletune.search.config import validate_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {}
    for task in sorted(tasks):
        found = [(named[1], f) for f in (suite / task / "studies").glob("random-s*.db")
                 if (named := strategy_seed(f)) is not None and named[0] == "random"]
        for seed, source in sorted(found):
            copy = workdir / f"{task}-random-s{seed}.db"
            shutil.copyfile(source, copy)
            study = optuna.load_study(study_name=f"random-s{seed}", storage=f"sqlite:///{copy}")
            raw = dict(study.user_attrs["config"], storage=None, study_dir=None)
            cfg = validate_study(raw, recorded=True)
            trials = sorted(study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE,)),
                            key=lambda t: t.number)
            studies[(task, seed)] = (cfg, trials)
    return studies


def load_tables(suite: Path,
                tasks: Iterable[str] = TASK_NAMES) -> dict[tuple[str, int], tuple[Any, list[Any]]]:
    """(task, seed) -> (study config, complete trials in order), from the committed trial
    tables (``<task>/search_efficiency_trials.csv``: every trial's params and curve), for a
    checkout without the suite's study files (they are not committed).

    Each trial is rebuilt as Optuna's FrozenTrial with the params, distributions, curve and
    final loss it had, and the user attrs a study records beside them that pruners read (steps,
    warmup steps and tokens per step, computed from the study's config as the plan does).
    """
    import json

    import optuna
    import pandas as pd

    from benchmarks import search_efficiency as se
    from benchmarks.suite import TASKS as SUITE_TASKS
    from benchmarks.suite import batch_choices
    from scaletune.search.space import build_space, fixed_values, planning_priors, trial_config

    studies = {}
    wanted = set(tasks)
    for task in sorted((t for t in SUITE_TASKS if t.name in wanted), key=lambda t: t.name):
        table = suite / task.name / "search_efficiency_trials.csv"
        if not table.exists():
            continue
        rows = pd.read_csv(table)
        # The config the study ran with; its data never opens, so the corpus need not exist.
        bench = se.Bench(
            data=se.DEFAULT_DATA, corpus="", tokenizer="byte", tokenizer_label="", out=suite,
            n_layer=task.n_layer, n_head=task.n_head, n_embd=task.n_embd,
            block_size=task.block_size, tokens_per_trial=task.tokens_per_trial,
            batch_sizes=batch_choices(task.tokens_per_trial, task.block_size), val_windows=64)
        for seed in sorted(int(s) for s in rows.loc[rows["strategy"] == "random", "seed"].unique()):
            done = rows[(rows["strategy"] == "random") & (rows["seed"] == seed)
                        & (rows["state"] == "COMPLETE")].sort_values("number")
            if done.empty:
                continue
            cfg = se.study_config(bench, "random", seed)
            # The study's own search space (its plain ranges take nothing from the priors).
            dims, _ = build_space(cfg, planning_priors(cfg))
            dists = {d.name: d.distribution for d in dims}
            trials = []
            for r in done.itertuples():
                params = {k: getattr(r, f"param_{k}") for k in dists}
                params["batch_size"] = int(params["batch_size"])
                _, derived = trial_config(cfg, params, fixed_values(cfg), None)
                curve = {int(k): float(v) for k, v in json.loads(r.curve).items()}
                trial = optuna.trial.create_trial(
                    params=params, distributions=dists, value=float(r.value),
                    intermediate_values=curve,
                    user_attrs={k: derived[k] for k in ("steps", "warmup_steps",
                                                        "tokens_per_step")})
                trial.number = int(r.number)
                trials.append(trial)
            studies[(task.name, seed)] = (cfg, trials)
    return studies


def orders(task: str, seed: int, trials: list[Any], n: int) -> list[list[Any]]:
    """The order ``trials`` ran in, then ``n`` shuffles of it, each seeded by task, seed and its
    number (a string seed: the same shuffle in every process and Python)."""
    from scaletune.search.pruners import shuffled

    return [list(trials), *shuffled(trials, f"{task}/{seed}", n)]


def runs() -> list[tuple[str, dict[str, Any]]]:
    """(label, pruner: section) of every pruner replayed, the grid included."""
    out = list(PRUNERS.items())
    out.append(("predicted, progress: tokens (not the lr schedule's)",
                {"name": "predicted", "progress": "tokens"}))
    out.append(("predicted, condition_on: none (drops not regressed on lr)",
                {"name": "predicted", "condition_on": "none"}))
    out += [(f"predicted, interval: range, margin {m:g} (the first rule)",
             {"name": "predicted", "interval": "range", "margin": m}) for m in MARGINS]
    out.append(("predicted, the old grid's one point without a false prune: n_startup_trials 4, "
                "confidence 0.99, leading 0.5",
                {"name": "predicted", "n_startup_trials": 4, "confidence": 0.99, "leading": 0.5,
                 "min_spread": 0.0}))
    out += [(grid_label(n, c, g, m), {"name": "predicted", "n_startup_trials": n,
                                       "confidence": c, "leading": g, "min_spread": m})
            for n in STARTUPS for c in CONFIDENCES for g in LEADINGS for m in MIN_SPREADS]
    return out


def _replay_study(job: tuple[str, int, Any, list[Any], int]) -> list[dict[str, Any]]:
    """Every pruner of ``runs()`` and the ceilings, replayed on one study in each of its
    orders (a process of its own: the studies are replayed side by side)."""
    from pydantic import TypeAdapter

    from scaletune.search.config import PrunerConfig, validate_study
    from scaletune.search.pruners import audit, replay

    task, seed, raw, trials, n_orders = job
    cfg = validate_study(raw, recorded=True)  # sent as its record: the config does not pickle
    pruner_config = TypeAdapter(PrunerConfig)
    specs = runs()
    rows = []
    for order, sequence in enumerate(orders(task, seed, trials, n_orders)):
        for label, spec in specs:
            pruner = pruner_config.validate_python(spec).build(cfg)
            result = audit(replay(pruner, sequence), cfg.tokens_per_trial)
            rows.append({"task": task, "seed": seed, "order": order, "pruner": label, **result})
        for label, after in CEILINGS.items():
            pruner = hindsight(sequence, cfg.tokens_per_trial, after)
            result = audit(replay(pruner, sequence), cfg.tokens_per_trial)
            rows.append({"task": task, "seed": seed, "order": order, "pruner": label, **result})
    return rows


def replay_all(studies: dict[tuple[str, int], tuple[Any, list[Any]]], n_orders: int = ORDERS,
               jobs: int = 1) -> Any:
    """One row per study, order and pruner (order 0: as the trials ran)."""
    import pandas as pd

    work = [(task, seed, cfg.model_dump(mode="json", by_alias=True), trials, n_orders)
            for (task, seed), (cfg, trials) in studies.items()]
    if jobs > 1 and len(work) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(work))) as pool:
            parts = list(pool.map(_replay_study, work))
    else:
        parts = [_replay_study(job) for job in work]
    return pd.DataFrame([row for part in parts for row in part])


GRID = "predicted, n_startup_trials"


def grid_label(n_startup: int, confidence: float, leading: float, min_spread: float) -> str:
    return (f"{GRID} {n_startup}, confidence {confidence:g}, leading {leading:g}, "
            f"min_spread {min_spread:g}")


def choose(rows: Any) -> str:
    """The grid point that saves the most compute (mean over ``rows``' studies and orders) with
    no more false prunes than the ``BOUND`` pruner on the same replays; where none has so few,
    the one with the fewest, then the most saved."""
    bound = int(rows.loc[rows["pruner"] == BOUND, "false_prunes"].sum())
    grid = rows[rows["pruner"].str.startswith(GRID)]
    score = grid.groupby("pruner").agg(fp=("false_prunes", "sum"), saved=("compute_saved", "mean"))
    within = score[score["fp"] <= bound]
    if within.empty:
        return min(score.index, key=lambda p: (score.loc[p, "fp"], -score.loc[p, "saved"]))
    return str(within["saved"].idxmax())


def loto(rows: Any) -> Any:
    """For each task: the grid point chosen on the other tasks by ``choose``, scored on that task
    (all its studies and orders), beside the ``BOUND`` pruner there."""
    import pandas as pd

    out = []
    for task in sorted(rows["task"].unique()):
        others = rows[rows["task"] != task]
        if others.empty:  # one task: nothing to choose on
            continue
        chosen = choose(others)
        held = rows[(rows["task"] == task) & (rows["pruner"] == chosen)]
        bound = rows[(rows["task"] == task) & (rows["pruner"] == BOUND)]
        out.append({"task": task, "chosen_on_others": chosen.removeprefix("predicted, "),
                    "compute_saved": held["compute_saved"].mean(),
                    "false_prunes": int(held["false_prunes"].sum()),
                    "bound_compute_saved": bound["compute_saved"].mean(),
                    "bound_false_prunes": int(bound["false_prunes"].sum()),
                    "replays": len(held)})
    return pd.DataFrame(out)


def table(rows: Any) -> Any:
    """Per pruner: in the order the trials ran (order 0), and over every order."""
    as_run = rows[rows["order"] == 0].groupby("pruner", sort=False).agg(
        studies=("trials", "size"), trials=("trials", "sum"), stopped=("stopped", "sum"),
        compute_saved=("compute_saved", "mean"), compute_saved_min=("compute_saved", "min"),
        false_prunes=("false_prunes", "sum"))
    every = rows.groupby("pruner", sort=False).agg(
        replays=("trials", "size"), orders_compute_saved=("compute_saved", "mean"),
        orders_false_prunes=("false_prunes", "sum"),
        orders_with_false_prune=("false_prunes", lambda s: int((s > 0).sum())))
    return as_run.join(every).reset_index()


def write_rows(rows: Any, out: Path) -> None:
    """pruner_replay.csv: a row per study and pruner in the order the trials ran;
    pruner_replay_orders.csv: a row per study and pruner over all its orders (replays, mean
    compute saved, false prunes summed, replays with one). Every replay's row would be 1.7 MB."""
    rows[rows["order"] == 0].drop(columns="order").to_csv(out / "pruner_replay.csv", index=False)
    (rows.groupby(["task", "seed", "pruner"], sort=False)
     .agg(replays=("trials", "size"), trials=("trials", "first"),
          compute_saved=("compute_saved", "mean"), false_prunes=("false_prunes", "sum"),
          replays_with_false_prune=("false_prunes", lambda s: int((s > 0).sum())))
     .reset_index().to_csv(out / "pruner_replay_orders.csv", index=False))


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def markdown(summary: Any, held_out: Any, command: str, chosen: str,
             studies: list[tuple[str, int]]) -> str:
    """The tables of ``summary`` and ``held_out``; ``studies``: the (task, seed) replayed."""
    n_orders = int(summary["replays"].iloc[0] // summary["studies"].iloc[0]) - 1
    per_task = {task: sum(1 for t, _ in studies if t == task) for task, _ in studies}
    read = (f"{counted(len(per_task), 'task')} x {counted(len(studies) // len(per_task), 'seed')}"
            if len(set(per_task.values())) == 1
            else f"{len(studies)} studies of {len(per_task)} tasks")
    shuffled = f" and in {counted(n_orders, 'shuffled order')} of each study" if n_orders else ""
    lines = [
        "# Pruners replayed on the suite's unpruned studies (issue 15)", "",
        f"Command: `{command}`", "",
        f"Studies: the suite's random-search studies ({read}), which trained every "
        "trial to the end. Each pruner is built from the study's config with scaletune's "
        "defaults and replayed with real Optuna pruner objects (search.pruners.replay: a fresh "
        "in-memory study, trials one at a time, should_prune() after every evaluation), in the "
        f"order the trials ran{shuffled}. Compute saved: "
        "tokens not trained over those of every complete trial run to the end, mean over studies "
        "(and the worst study, as run). False prunes: stopped trials that ended within 1% of their "
        "study's best. Diverged trials are left out. The two ceilings are not pruners: they know "
        "each trial's final loss and stop, at the first evaluation allowed, every trial that ends "
        "worse than the best complete trial before it by more than 1%.", "",
        "| pruner | studies | trials | stopped | saved, as run | worst study | false prunes, "
        f"as run | saved, {counted(n_orders + 1, 'order')} | false prunes, "
        f"{counted(n_orders + 1, 'order')} | replays "
        "with one |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary.itertuples():
        lines.append(f"| {r.pruner} | {r.studies} | {r.trials} | {r.stopped} | "
                     f"{r.compute_saved:.1%} | {r.compute_saved_min:.1%} | {r.false_prunes} | "
                     f"{r.orders_compute_saved:.1%} | {r.orders_false_prunes} | "
                     f"{r.orders_with_false_prune} of {r.replays} |")
    lines += [
        "", f"The replay's rule, on all studies and orders: {chosen.removeprefix('predicted, ')} "
        f"(the grid point that saves the most with no more false prunes than `{BOUND}`). The "
        "default, the row `predicted (scaletune)`, weighs live studies too: search/config.py, "
        "CONFIDENCE.", "",
    ]
    if held_out.empty:
        return "\n".join([*lines, LOTO_SKIPPED]) + "\n"
    lines += [
        "## The predicted pruner's constants, left one task out", "",
        "For each task, the grid point (n_startup_trials, confidence, leading, min_spread) "
        "chosen on the other tasks (the most compute saved with no more false prunes there than "
        "the median pruner's) and what it does on the task left out, over all its studies and "
        "orders, beside the median pruner there.", "",
        "| task left out | chosen on the others | compute saved | false prunes | median pruner: "
        "saved | median pruner: false prunes |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in held_out.itertuples():
        lines.append(f"| {r.task} | {r.chosen_on_others} | {r.compute_saved:.1%} | "
                     f"{r.false_prunes} | {r.bound_compute_saved:.1%} | "
                     f"{r.bound_false_prunes} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pruner_replay",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=SUITE,
                        help="the suite's results folder (its <task>/studies/random-s*.db, else "
                             "its <task>/search_efficiency_trials.csv; default %(default)s)")
    parser.add_argument("--tasks", default=",".join(TASK_NAMES),
                        help=f"comma-separated subset of the suite's tasks, {','.join(TASK_NAMES)} "
                             "(default: all)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="results folder: pruner_replay.md and its CSVs (default %(default)s)")
    parser.add_argument("--orders", type=int, default=ORDERS,
                        help="shuffled orders each study is replayed in, besides its own "
                             f"(default {ORDERS})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes replaying studies side by side (default: the CPUs)")
    args = parser.parse_args(argv)
    if args.orders < 0 or args.jobs < 1:
        parser.error("--orders must be >= 0 and --jobs >= 1")
    tasks = names_given(parser, "--tasks", args.tasks, TASK_NAMES)  # '' ran on no task
    with tempfile.TemporaryDirectory() as workdir:
        studies = load(args.suite, Path(workdir), tasks) or load_tables(args.suite, tasks)
        if not studies:
            tables = [t for t in tasks
                      if (args.suite / t / "search_efficiency_trials.csv").is_file()]
            # A suite run without random search has its trial tables: they lack its trials.
            held = (f"random-search trials in the trial tables of {', '.join(tables)} "
                    f"({args.suite}/<task>/search_efficiency_trials.csv): the replay reads "
                    "random search's trials (the suite with --strategies random)" if tables else
                    f"{args.suite}/<task>/search_efficiency_trials.csv of {', '.join(tasks)}")
            sys.exit(f"no random-search studies under {args.suite}/<task>/studies/ and no {held}")
        if absent := sorted(set(tasks) - {task for task, _ in studies}):
            print(f"no random-search studies of {', '.join(absent)} under {args.suite}: "
                  "replayed without them", file=sys.stderr, flush=True)
        rows = replay_all(studies, args.orders, args.jobs)
    summary, held_out, chosen = table(rows), loto(rows), choose(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_rows(rows, args.out)
    if held_out.empty:  # and no table of an earlier run beside this run's
        (args.out / "pruner_replay_loto.csv").unlink(missing_ok=True)
    else:
        held_out.to_csv(args.out / "pruner_replay_loto.csv", index=False)
    (args.out / "pruner_replay.md").write_text(
        markdown(summary, held_out, command_line(parser, argv), chosen, list(studies)))
    print(summary.to_string(index=False))
    print(LOTO_SKIPPED if held_out.empty else held_out.to_string(index=False))
    print("chosen on all:", chosen)


if __name__ == "__main__":
    run_main(main, "pruner_replay")
