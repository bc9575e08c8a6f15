"""The law's lr at the target fitted on the rungs as they ran (ROOT, run_rungs.py) and on the
rungs run with the lr prior's spread doubled (ROOT-spread2, run_spread.py), against the best
trial's lr (benchmarks/results/ladder_v5_prior/ladder_suite.csv); each rung's optimum beside.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/spread.py /tmp/rungs > spread.txt
"""

import pandas as pd
from common import gap, ladders, root, spread_root

from scaletune.search.ladder import fit_rungs

ROOTS = {"sigma 0.3": root(), "sigma 0.6": spread_root(root())}
rows = []
for pair in zip(*(ladders(folder) for folder in ROOTS.values()), strict=True):
    task, seed, _ = pair[0]
    row = {"task": task, "seed": seed}
    for name, (_, _, ladder) in zip(ROOTS, pair, strict=True):
        fitted = fit_rungs(ladder, ladder.rungs)
        row[f"gap, {name}"] = gap(fitted.lr.predict(ladder.target_scale).value, task, seed)
        row[f"rung optima, {name}"] = " ".join(f"{r.value:.4f}" for r in fitted.lr.rungs)
    rows.append(row)
pd.set_option("display.width", 250)
df = pd.DataFrame(rows)
print(df.round(3).to_string(index=False))
for name in ROOTS:
    gap = df[f"gap, {name}"].abs()
    print(f"{name}: the law's lr within 0.15 dex of the best trial's on {(gap <= 0.15).sum()} "
          f"of {len(gap)}, mean |gap| {gap.mean():.3f} dex")
