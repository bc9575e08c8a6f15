"""The noise between training seeds on the suite's tasks: each task's best config, re-run.

For every task of benchmarks/suite.py, a copy of its scaletune study (sampler seed 0) is given
``--repeats`` repeats of its best trial with training seeds that config has not used, through the
product: search.noise.queue_repeats queues them, the study's plan asks them (SearchPlan.ask reads
the repeat's seed; a repeat is never pruned), search.plan.train_trial trains each, and
TrialRun.tell ends it, as `scaletune run --repeat-best N` does. The suite's own studies are left
untouched. It prints, per task, the final loss under each seed, the spread (worst - best) / best
and twice the relative standard deviation, the noise floor search.noise measures, and then the
floor pooled over the tasks and left one task out, beside the pruner's default floor (1%).

Needs the suite's studies and corpora (python -m benchmarks.suite). Run:

    python -m benchmarks.seed_noise [--repeats 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import refuse_below_one, run_main, suite
from benchmarks import search_efficiency as se
from scaletune.trainer.config import usable_cores

STRATEGY = "scaletune"
"""The suite's study whose best trial is repeated: the one the product runs by default."""


def suite_study(task: suite.Task, suite_root: Path) -> Path:
    """The storage of ``task``'s scaletune study (sampler seed 0) in the suite's folder."""
    return suite_root / task.name / "studies" / f"{STRATEGY}-s0.db"


def study_copy(task: suite.Task, suite_root: Path, out: Path) -> Any:
    """The StudyConfig of ``task``'s scaletune study (sampler seed 0), on a copy of its storage
    under ``out``."""
    from scaletune.search.config import validate_study

    bench = suite.bench_of(task, suite_root)
    cfg = se.study_config(bench, STRATEGY, 0)
    source = suite_study(task, suite_root)
    folder = out / "studies" / task.name
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / source.name
    if not copy.exists():  # an earlier run's copy is resumed: repeats are not queued twice
        shutil.copy2(source, copy)
    raw = cfg.model_dump(mode="json", by_alias=True)
    raw.update(study_dir=str(folder), storage=f"sqlite:///{copy.resolve()}")
    return validate_study(raw, recorded=True)


def repeat_best(args: tuple[suite.Task, Path, Path, int]) -> dict[str, Any]:
    """Run ``repeats`` repeats of the best trial of ``task``'s study copy; its seed group."""
    import optuna
    import torch
    from optuna.trial import TrialState

    from scaletune.search.noise import REPEAT_OF, TRAIN_SEED, n_repeats, queue_repeats, seed_groups
    from scaletune.search.plan import SearchPlan, train_trial
    from scaletune.search.storage import make_storage

    task, suite_root, out, repeats = args
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = study_copy(task, suite_root, out)
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    try:
        have = n_repeats(study.get_trials(deepcopy=False))  # a resumed run queues no more
        if have < repeats:
            queue_repeats(study, repeats - have, cfg.seed)
        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            plan.lease.refresh()
            run = plan.ask(study, num_threads=1)
            result = train_trial(run.config,
                                 lambda tokens, value, _, run=run: run.report(tokens, value))
            state, value, _ = run.tell(study, result)
            print(f"[{task.name}] trial {run.number} (seed {run.config.seed}): {state} "
                  f"{value if value is None else round(value, 4)} "
                  f"({result.get('wall_time_s', 0):.1f} s)", flush=True)
    finally:
        plan.lease.release()
    best = study.best_trial
    root = int(best.user_attrs.get(REPEAT_OF, best.number))
    [group] = [g for g in seed_groups(study.get_trials(deepcopy=False), cfg.seed)
               if g.trial == root]
    lost = [f"seed {t.user_attrs[TRAIN_SEED]} {t.user_attrs.get('prune_reason', t.state.name)}"
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(REPEAT_OF) == root and t.state != TrialState.COMPLETE]
    return {"task": task.name, "trial": group.trial, "seeds": group.seeds,
            "values": group.values, "lost": lost}


def lucky(g: Any) -> float:
    """How much worse the repeats end, on average, than the run the study picked as best (its
    training seed 0): what picking the best of many runs owes to a lucky seed."""
    first = g.values[g.seeds.index(0)]
    return statistics.fmean(v for s, v in zip(g.seeds, g.values, strict=True) if s != 0) / first - 1


def table(groups: list[dict[str, Any]], command: str) -> str:
    from scaletune.search.config import NOISE_FLOOR
    from scaletune.search.noise import SeedGroup, measured_floor

    seed_groups = {g["task"]: SeedGroup(g["trial"], tuple(g["seeds"]), tuple(g["values"]))
                   for g in groups}
    lost = {g["task"]: g.get("lost", []) for g in groups}
    lines = [
        "# The noise between training seeds on the suite's tasks (issue 15)", "",
        f"Command: `{command}`", "",
        f"Each task's best trial of its `{STRATEGY}` study (sampler seed 0, trained with seed 0) "
        "re-run with other training seeds through the product (search.noise.queue_repeats, "
        "SearchPlan.ask, train_trial, TrialRun.tell; repeats are never pruned). Spread: (worst "
        "- best) / best final loss. 2 sd: twice the relative standard deviation, what "
        "`noise_floor: auto` uses (never below the default "
        f"{NOISE_FLOOR:.0%}).", "",
        "| task | trial | seeds | final loss by seed | spread | 2 sd | the default floor covers it | other seeds' mean vs seed 0 | repeats that did not complete |",
        "| --- | ---: | --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for name, g in seed_groups.items():
        sd2 = measured_floor([g])
        lines.append(
            f"| {name} | {g.trial} | {', '.join(map(str, g.seeds))} | "
            f"{', '.join(f'{v:.4f}' for v in g.values)} | {g.spread:.2%} | {sd2:.2%} | "
            f"{'yes' if sd2 <= NOISE_FLOOR else 'no'} | {lucky(g):+.2%} | "
            f"{'; '.join(lost[name]) or 'none'} |")
    pooled = measured_floor(seed_groups.values())
    n_tasks = len(seed_groups)
    lines += ["", "Seed 0 is the study's own run, picked as the best of its study; the other seeds' "
              "mean above it is what that pick owes to a lucky seed.",
              "", f"Pooled over the {n_tasks} task{'s' if n_tasks != 1 else ''} (each task's "
                  f"deviations from its own mean): 2 sd = {pooled:.2%}; the default floor is "
                  f"{NOISE_FLOOR:.0%}.",
              ""]
    if n_tasks < 2:  # nothing to pool on once the one task is left out: no table, not an empty one
        return "\n".join(lines + ["Left one task out: skipped, the run measured one task (it "
                                   "needs two or more)."]) + "\n"
    lines += ["Left one task out: the floor pooled on the other tasks, and the task's own 2 sd.",
              "", "| task left out | 2 sd pooled on the others | the task's 2 sd | covered |",
              "| --- | ---: | ---: | --- |"]
    for name, g in seed_groups.items():
        others = measured_floor(h for n, h in seed_groups.items() if n != name)
        if others is None:  # no task beside it with repeats that completed
            continue
        own = measured_floor([g])
        lines.append(f"| {name} | {others:.2%} | {own:.2%} | "
                     f"{'yes' if own <= others else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_noise",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4,
                   help="repeats of each task's best trial (default 4: five seeds in all)")
    p.add_argument("--tasks", default=",".join(suite.TASK_NAMES),
                   help=f"comma-separated subset of {','.join(suite.TASK_NAMES)} (default: all)")
    p.add_argument("--workers", type=int, default=usable_cores(),
                   help="tasks at once, one process each (default: cores)")
    p.add_argument("--suite", type=Path, default=Path("benchmarks/results/suite"),
                   help="the suite's results folder (its studies and corpora; default "
                        "%(default)s)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/seed_noise"),
                   help="results folder: seed_noise.md and the studies' copies (default "
                        "%(default)s)")
    args = p.parse_args(argv)
    # --repeats 0 ran the studies, then failed to find its seeds.
    refuse_below_one(p, {"--repeats": args.repeats, "--workers": args.workers})
    names = se.names_given(p, "--tasks", args.tasks, [t.name for t in suite.TASKS])
    picked = [t for t in suite.TASKS if t.name in names]
    if problem := suite.task_problems(picked):
        p.error(problem)
    # Before anything is written (the corpora under --suite, the copies under --out).
    if missing := [str(suite_study(t, args.suite)) for t in picked
                   if not suite_study(t, args.suite).is_file()]:
        p.error(f"--suite: not found: {', '.join(missing)}; run python -m benchmarks.suite first "
                "(or give --suite the folder that holds its studies)")
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(t, args.suite, args.out, args.repeats) for t in picked]
    start = time.perf_counter()
    groups = se.map_jobs(repeat_best, jobs, args.workers, ordered=True)
    print(f"{len(groups)} tasks in {time.perf_counter() - start:.0f} s", flush=True)
    text = table(groups, se.command_line(p, argv))
    (args.out / "seed_noise.md").write_text(text)
    print(text)


if __name__ == "__main__":
    run_main(main, "seed_noise", "the same command resumes where it stopped")
