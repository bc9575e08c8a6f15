"""Pruners replayed on the suite's unpruned studies (issue 15).

The suite's random-search studies trained every trial to the end (``pruner: none``), so their
curves show what each pruner would have stopped and what those trials went on to reach. Each
pruner is built from the study's own config (the product's ``pruner:`` section) and replayed
with ``search.pruners.replay``: a fresh in-memory Optuna study, the complete trials in their
order, each reporting its curve and asking ``should_prune()``. Diverged trials (which the trainer
stops by itself) are left out. Counted per study: compute saved against no pruning (tokens not
trained over the tokens of every trial run to the end) and false prunes (stopped trials that
ended within 1% of their study's best).

The predicted pruner's ``n_startup_trials`` and ``confidence`` are the constants chosen on these
studies (the grid point with the fewest false prunes, then the most compute saved); their
leave-one-task-out check is part of the output: for each task, the point chosen on the five
others is scored on the task left out.

    python -m benchmarks.pruner_replay [--suite benchmarks/results/suite]

Two rows are not pruners but ceilings, for reading the others: a pruner that knew every trial's
final loss and stopped, at its first evaluation, each trial that would end worse than the best
complete trial before it by more than the noise floor (1%), as the predicted pruner compares; and
the same pruner allowed to decide only from 20% of the budget on. No pruner that compares with
the complete trials can save more than the first without false prunes.

The studies are copied to a temporary folder and opened there, so a suite that is still being
written is never touched. Where the study files are not there (they are not committed), the
studies are rebuilt from the committed trial tables (``<task>/search_efficiency_trials.csv``,
which hold every trial's params and curve): the same replay, to the same figures. Writes
benchmarks/results/pruners/pruner_replay.csv and .md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

TASKS = ("code-bpe", "docstrings-byte", "pydoc-byte", "pydoc-long", "shakespeare-bpe",
         "shakespeare-byte")
SEEDS = (0, 1, 2)
PRUNERS = {
    "predicted (scaletune)": {"name": "predicted"},
    "median (scaletune: 25% warmup, 4 start-up)": {"name": "median"},
    "wilcoxon": {"name": "wilcoxon"},
    "successive halving": {"name": "successive_halving"},
    "hyperband": {"name": "hyperband"},
    "none": {"name": "none"},
}
"""Each pruner as a study file's ``pruner:`` section spells it, with scaletune's defaults."""
CONFIDENCES = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
STARTUPS = (2, 4)
"""The predicted pruner's grid: its two constants chosen on these studies (n_startup_trials,
confidence), each pair replayed on every study."""
MARGINS = (0.5, 1.0, 1.5)
"""The first rule's interval (``interval: range``), for comparison: its default margin was 1.5."""
OUT = Path(__file__).parent / "results" / "pruners"


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


def load(suite: Path, workdir: Path) -> dict[tuple[str, int], tuple[Any, list[Any]]]:
    """(task, seed) -> (study config, complete trials in order), from copies in ``workdir``."""
    import optuna

    from scaletune.search.config import validate_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {}
    for task in TASKS:
        for seed in SEEDS:
            source = suite / task / "studies" / f"random-s{seed}.db"
            if not source.exists():
                continue
            copy = workdir / f"{task}-random-s{seed}.db"
            shutil.copyfile(source, copy)
            study = optuna.load_study(study_name=f"random-s{seed}", storage=f"sqlite:///{copy}")
            raw = dict(study.user_attrs["config"], storage=None, study_dir=None)
            cfg = validate_study(raw, recorded=True)
            trials = sorted(study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE,)),
                            key=lambda t: t.number)
            studies[(task, seed)] = (cfg, trials)
    return studies


def load_tables(suite: Path) -> dict[tuple[str, int], tuple[Any, list[Any]]]:
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
    for task in sorted((t for t in SUITE_TASKS if t.name in TASKS), key=lambda t: t.name):
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
        for seed in SEEDS:
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


def replay_all(studies: dict[tuple[str, int], tuple[Any, list[Any]]]) -> Any:
    import pandas as pd
    from pydantic import TypeAdapter

    from scaletune.search.config import PrunerConfig
    from scaletune.search.pruners import audit, replay

    pruner_config = TypeAdapter(PrunerConfig)
    runs = [(label, spec) for label, spec in PRUNERS.items()]
    runs.append(("predicted, progress: tokens (not the lr schedule's)",
                 {"name": "predicted", "progress": "tokens"}))
    runs.append(("predicted, condition_on: none (drops not regressed on lr)",
                 {"name": "predicted", "condition_on": "none"}))
    runs += [(f"predicted, interval: range, margin {m:g} (the first rule)",
              {"name": "predicted", "interval": "range", "margin": m}) for m in MARGINS]
    runs += [(grid_label(n, c), {"name": "predicted", "n_startup_trials": n, "confidence": c})
             for n in STARTUPS for c in CONFIDENCES]
    rows = []
    for (task, seed), (cfg, trials) in studies.items():
        for label, spec in runs:
            pruner = pruner_config.validate_python(spec).build(cfg)
            result = audit(replay(pruner, trials), cfg.tokens_per_trial)
            rows.append({"task": task, "seed": seed, "pruner": label, **result})
        for label, after in CEILINGS.items():
            pruner = hindsight(trials, cfg.tokens_per_trial, after)
            result = audit(replay(pruner, trials), cfg.tokens_per_trial)
            rows.append({"task": task, "seed": seed, "pruner": label, **result})
    return pd.DataFrame(rows)


def grid_label(n_startup: int, confidence: float) -> str:
    return f"predicted, n_startup_trials {n_startup}, confidence {confidence:g}"


def choose(grid: Any) -> str:
    """The grid point with the fewest false prunes on ``grid``'s studies, and of those the most
    compute saved (mean over studies)."""
    score = grid.groupby("pruner").agg(fp=("false_prunes", "sum"), saved=("compute_saved", "mean"))
    return min(score.index, key=lambda p: (score.loc[p, "fp"], -score.loc[p, "saved"]))


def loto(rows: Any) -> Any:
    """For each task: the grid point (n_startup_trials, confidence) chosen on the other tasks by
    ``choose``, scored on that task."""
    import pandas as pd

    grid = rows[rows["pruner"].str.startswith("predicted, n_startup_trials")]
    out = []
    for task in sorted(grid["task"].unique()):
        others = grid[grid["task"] != task]
        if others.empty:  # one task: nothing to choose on
            continue
        chosen = choose(others)
        held = grid[(grid["task"] == task) & (grid["pruner"] == chosen)]
        out.append({"task": task, "chosen_on_others": chosen.removeprefix("predicted, "),
                    "compute_saved": held["compute_saved"].mean(),
                    "false_prunes": int(held["false_prunes"].sum()),
                    "trials": int(held["trials"].sum())})
    return pd.DataFrame(out)


def table(rows: Any) -> Any:
    return (rows.groupby("pruner", sort=False)
            .agg(studies=("trials", "size"), trials=("trials", "sum"), stopped=("stopped", "sum"),
                 compute_saved=("compute_saved", "mean"),
                 compute_saved_min=("compute_saved", "min"),
                 false_prunes=("false_prunes", "sum"))
            .reset_index())


def markdown(summary: Any, held_out: Any, command: str) -> str:
    lines = [
        "# Pruners replayed on the suite's unpruned studies (issue 15)", "",
        f"Command: `{command}`", "",
        "Studies: the suite's random-search studies (6 tasks x 3 seeds), which trained every "
        "trial to the end. Each pruner is built from the study's config with scaletune's "
        "defaults and replayed with real Optuna pruner objects (search.pruners.replay: a fresh "
        "in-memory study, trials in their order, one at a time, should_prune() after every "
        "evaluation). Compute saved: tokens not trained over those of every complete trial run "
        "to the end, mean over studies (and the worst study). False prunes: stopped trials that "
        "ended within 1% of their study's best. Diverged trials are left out. The two ceilings "
        "are not pruners: they know each trial's final loss and stop, at the first evaluation "
        "allowed, every trial that ends worse than the best complete trial before it by more "
        "than 1%.", "",
        "| pruner | studies | trials | stopped | compute saved (mean) | worst study | false prunes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary.itertuples():
        lines.append(f"| {r.pruner} | {r.studies} | {r.trials} | {r.stopped} | "
                     f"{r.compute_saved:.1%} | {r.compute_saved_min:.1%} | {r.false_prunes} |")
    lines += [
        "", "## The predicted pruner's constants, left one task out", "",
        "For each task, the grid point (n_startup_trials, confidence) chosen on the other five "
        "(the fewest false prunes there, then the most compute saved) and what it does on the task "
        "left out.", "",
        "| task left out | chosen on the others | compute saved | false prunes |",
        "| --- | ---: | ---: | ---: |",
    ]
    if held_out.empty:
        lines.append("| (needs two tasks or more) | | | |")
    for r in held_out.itertuples():
        lines.append(f"| {r.task} | {r.chosen_on_others} | {r.compute_saved:.1%} | "
                     f"{r.false_prunes} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=Path("benchmarks/results/suite"),
                        help="the suite's results folder (its <task>/studies/random-s*.db, else "
                             "its <task>/search_efficiency_trials.csv)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        studies = load(args.suite, Path(workdir)) or load_tables(args.suite)
        if not studies:
            sys.exit(f"no random-search studies under {args.suite}/<task>/studies/ and no "
                     f"{args.suite}/<task>/search_efficiency_trials.csv")
        rows = replay_all(studies)
    summary, held_out = table(rows), loto(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / "pruner_replay.csv", index=False)
    held_out.to_csv(args.out / "pruner_replay_loto.csv", index=False)
    command = "python -m benchmarks.pruner_replay" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    (args.out / "pruner_replay.md").write_text(markdown(summary, held_out, command))
    print(summary.to_string(index=False))
    print(held_out.to_string(index=False))


if __name__ == "__main__":
    main()
