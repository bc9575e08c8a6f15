"""The law's lr at the target fitted on the rungs as they ran (ROOT, run_rungs.py) and on the
rungs run with the lr prior's spread doubled (ROOT-spread2, run_spread.py), against the best
trial's lr (benchmarks/results/ladder_v5_prior/ladder_suite.csv); each rung's optimum beside.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/spread.py /tmp/rungs > spread.txt
"""

import math
import sys
from pathlib import Path

import optuna
import pandas as pd

from scaletune.search.ladder import fit_rungs, load_ladder, with_data_sized

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/rungs")
HERE = Path(__file__).resolve().parent
BEST = pd.read_csv(HERE.parent / "ladder_v5_prior" / "ladder_suite.csv").set_index(
    ["task", "ladder_seed"])
TASKS = ("shakespeare-byte", "pydoc-byte", "docstrings-byte", "code-bpe", "shakespeare-bpe",
         "pydoc-long")
ROOTS = {"sigma 0.3": ROOT, "sigma 0.6": ROOT.with_name(ROOT.name + "-spread2")}

rows = []
for task in TASKS:
    for seed in range(3):
        row = {"task": task, "seed": seed}
        for name, root in ROOTS.items():
            ladder = with_data_sized(load_ladder(root / task / f"s{seed}" / "ladder.yaml"))
            fitted = fit_rungs(ladder, ladder.rungs)
            law = fitted.lr.predict(ladder.target_scale).value
            row[f"gap, {name}"] = math.log10(law / BEST.loc[(task, seed), "best_lr"])
            row[f"rung optima, {name}"] = " ".join(f"{r.value:.4f}" for r in fitted.lr.rungs)
        rows.append(row)
pd.set_option("display.width", 250)
df = pd.DataFrame(rows)
print(df.round(3).to_string(index=False))
for name in ROOTS:
    gap = df[f"gap, {name}"].abs()
    print(f"{name}: the law's lr within 0.15 dex of the best trial's on {(gap <= 0.15).sum()} "
          f"of {len(gap)}, mean |gap| {gap.mean():.3f} dex")
