"""What the scripts of this folder share: the ladders they read (the suite's tasks, three seeds
each, as run_rungs.py ran them into ROOT) and the best trial's lr of each, the mark a law's lr
is measured against (benchmarks/results/ladder_v5_prior/ladder_suite.csv: the best of the suite
and of the ladders). The scripts import it from their own folder."""

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pandas as pd

from benchmarks.suite import TASK_NAMES
from scaletune.search.ladder import Ladder, fit_rungs, load_ladder, with_data_sized

optuna.logging.set_verbosity(optuna.logging.WARNING)
SEEDS = range(3)
BEST_LR = pd.read_csv(Path(__file__).resolve().parent.parent / "ladder_v5_prior"
                      / "ladder_suite.csv").set_index(["task", "ladder_seed"])["best_lr"]


def root() -> Path:
    """The folder run_rungs.py ran the rungs into: the command's first argument."""
    return Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rungs")


def spread_root(folder: Path) -> Path:
    """Where run_spread.py runs the rungs of ``folder`` again, their lr prior twice as wide."""
    return folder.with_name(folder.name + "-spread2")


def seeds_root(folder: Path) -> Path:
    """Where run_seeds.py runs the rungs of ``folder`` again, each rung's sampler seeded apart."""
    return folder.with_name(folder.name + "-seeds")


def run_again(pairs: str, src: Path, out: Path, rung_cfg=lambda i, cfg: cfg) -> None:
    """Run the rungs of the ladders in ``src`` (``pairs``: task:seed, comma-separated) again
    into ``out``, their files copied there; ``rung_cfg(i, cfg)`` gives the study rung i runs."""
    import shutil

    from rich.console import Console

    from scaletune.search.runner import run_study

    for key in pairs.split(","):
        task, seed = key.split(":")
        d = out / task / f"s{seed}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / task / f"s{seed}" / "ladder.yaml", d / "ladder.yaml")
        text = (src / task / f"s{seed}" / "target.yaml").read_text()
        (d / "target.yaml").write_text(text.replace(str(src / task / f"s{seed}"), str(d)))
        ladder = with_data_sized(load_ladder(d / "ladder.yaml"))
        for i, rung in enumerate(ladder.rungs):
            run_study(rung_cfg(i, rung.cfg), Console(quiet=True), summary=False)
        print("done", task, seed, flush=True)


def ladders(folder: Path, name: str = "ladder.yaml") -> Iterator[tuple[str, int, Ladder]]:
    """(task, seed, ladder) of every ladder file ``name`` under ``folder``, the suite's order."""
    for task in TASK_NAMES:
        for seed in SEEDS:
            yield task, seed, with_data_sized(load_ladder(folder / task / f"s{seed}" / name))


def gap(lr: float, task: str, seed: int) -> float:
    """log10 of ``lr`` over the best trial's lr of the ladder's task and seed (dex)."""
    return math.log10(lr / BEST_LR.loc[(task, seed)])


def print_law_gaps(roots: dict[str, Path],
                   more: Callable[[Ladder], dict[str, str]] | None = None) -> None:
    """The law's lr at the target fitted on the rungs of each folder of ``roots`` (by name),
    against the best trial's lr, each rung's optimum beside (and ``more`` of each ladder's),
    then, per folder, how many ladders put it within 0.15 dex of the best and the mean gap."""
    rows = []
    for pair in zip(*(ladders(folder) for folder in roots.values()), strict=True):
        task, seed, _ = pair[0]
        row = {"task": task, "seed": seed}
        for name, (_, _, ladder) in zip(roots, pair, strict=True):
            fitted = fit_rungs(ladder, ladder.rungs)
            row[f"gap, {name}"] = gap(fitted.lr.predict(ladder.target_scale).value, task, seed)
            row[f"rung optima, {name}"] = " ".join(f"{r.value:.4f}" for r in fitted.lr.rungs)
            row.update({f"{k}, {name}": v for k, v in (more(ladder) if more else {}).items()})
        rows.append(row)
    pd.set_option("display.width", 300)
    df = pd.DataFrame(rows)
    print(df.round(3).to_string(index=False))
    for name in roots:
        g = df[f"gap, {name}"]
        print(f"{name}: the law's lr within 0.15 dex of the best trial's on "
              f"{(g.abs() <= 0.15).sum()} of {len(g)}, mean |gap| {g.abs().mean():.3f} dex, mean "
              f"gap {g.mean():+.3f}")
