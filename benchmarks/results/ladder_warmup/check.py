"""Would carrying the rungs' warmup to the target fix the ladder's first target trial? A check
on the whole suite before building it (issue 14).

For each task and sampler seed 0-2: the ladder of benchmarks.ladder_suite (rungs at 1/16, 1/8
and 1/4 of the target's tokens, 8 trials each; resumable), its laws fitted as ``scaletune
ladder`` fits them, and the target's first trial as the ladder plans it (the priors' center
with the fitted laws). That trial is then trained twice: as planned (the published warmup
prior's center), and with the warmup the rungs found instead (the weighted mean of their
near-best trials' warmup fractions, weighted as the laws' fit weighs them). Both are compared
with the best loss known at the task's target (benchmarks/results/ladder_v2's table).

    python -m benchmarks.results.ladder_warmup.check [--workers 2] > check.txt
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rungs(job: tuple[str, int]) -> str:
    """Run one ladder's rungs (not its target) with the product's runner."""
    import optuna
    import torch
    from rich.console import Console

    from benchmarks import ladder_suite as ls
    from benchmarks import suite
    from scaletune.search.ladder import finished_trials, load_ladder
    from scaletune.search.runner import run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    name, seed = job
    task = next(t for t in suite.TASKS if t.name == name)
    ladder = load_ladder(ls.write_ladder(task, HERE, seed))
    for rung in ladder.rungs:
        if finished_trials(rung.cfg) < rung.cfg.n_trials:
            run_study(rung.cfg, Console(file=open("/dev/null", "w")))
    return f"{name} s{seed}: rungs done"


def plan(job: tuple[str, int]) -> tuple[str, int, dict, float]:
    """The target's first trial as the ladder plans it, and the rungs' warmup."""
    import optuna

    from benchmarks import ladder_suite as ls
    from benchmarks import suite
    from scaletune.heuristics.fit import near_best_weights
    from scaletune.search.ladder import fit_rungs, load_ladder
    from scaletune.search.space import build_space, planning_priors, prior_center_params
    from scaletune.search.storage import make_storage

    name, seed = job
    task = next(t for t in suite.TASKS if t.name == name)
    ladder = load_ladder(ls.write_ladder(task, HERE, seed))
    fitted = fit_rungs(ladder, ladder.rungs)
    fitted.save(ladder.laws_file, predict_at={"target": ladder.target_scale})
    dims, _ = build_space(ladder.target, planning_priors(ladder.target))
    first = prior_center_params(dims)
    storage = make_storage(ladder.target.storage_url)
    values, weights = [], []
    for rung in ladder.rungs:
        study = optuna.load_study(study_name=rung.cfg.name, storage=storage)
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        w = near_best_weights([t.value for t in done], ladder.cfg.near_best)
        for t, wt in zip(done, w, strict=True):
            if wt > 0:
                values.append(t.params["warmup_frac"])
                weights.append(wt)
    warm = sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)
    return name, seed, first, warm


def train_one(job: tuple[str, int, dict]) -> float:
    import tempfile

    import torch

    from benchmarks import ladder_suite as ls
    from benchmarks import suite
    from scaletune.search.ladder import load_ladder
    from scaletune.search.space import trial_config
    from scaletune.trainer.loop import train

    torch.set_num_threads(1)
    name, seed, params = job
    task = next(t for t in suite.TASKS if t.name == name)
    target = load_ladder(ls.write_ladder(task, HERE, seed)).target
    config, _ = trial_config(target, params, {}, 1)
    with tempfile.TemporaryDirectory() as out:
        return train(config.model_copy(update={"out_dir": out})).final_val_loss


def main() -> None:
    import pandas as pd

    from benchmarks import search_efficiency as se
    from benchmarks import suite

    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    jobs = [(t.name, seed) for seed in range(3) for t in suite.TASKS]
    for line in se.map_jobs(rungs, jobs, args.workers):
        print(line, flush=True)
    plans = [plan(j) for j in jobs]
    runs = [(n, s, first) for n, s, first, _ in plans]
    runs += [(n, s, {**first, "warmup_frac": warm}) for n, s, first, warm in plans]
    losses = se.map_jobs(train_one, runs, args.workers, ordered=True)
    before = pd.read_csv(HERE.parent / "ladder_v2" / "ladder_suite.csv").set_index(
        ["task", "ladder_seed"])
    print(f"{'task':18}{'seed':>5}{'warmup planned':>16}{'rungs':>7}{'first as planned':>18}"
          f"{'with rungs warmup':>19}{'ladder_v2 first':>17}{'best':>8}")
    half = len(plans)
    within = [0, 0]
    for i, (name, seed, first, warm) in enumerate(plans):
        best = float(before.loc[(name, seed), "best_loss"])
        a, b = losses[i], losses[half + i]
        within[0] += a <= 1.01 * best
        within[1] += b <= 1.01 * best
        print(f"{name:18}{seed:>5}{first['warmup_frac']:>16.3f}{warm:>7.3f}"
              f"{a:>10.4f} {100 * (a / best - 1):+5.1f}%{b:>11.4f} {100 * (b / best - 1):+5.1f}%"
              f"{float(before.loc[(name, seed), 'first_loss']):>17.4f}{best:>8.4f}")
    print(f"first trial within 1% of the best: as planned {within[0]} of {half}, with the rungs' "
          f"warmup {within[1]} of {half}")
    assert not any(math.isnan(x) for x in losses)


if __name__ == "__main__":
    main()
