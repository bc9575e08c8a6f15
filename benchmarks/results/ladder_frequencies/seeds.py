"""The law's lr at the target fitted on the rungs as they ran (ROOT, run_rungs.py: every rung of
a ladder drew with the ladder's sampler seed) and on the rungs run with a sampler seed each
(ROOT-seeds, run_seeds.py), against the best trial's lr
(benchmarks/results/ladder_v5_prior/ladder_suite.csv); each rung's optimum beside, and the lr
range the rungs' trials drew (dex from each rung's prior center) taken together.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/seeds.py /tmp/rungs > seeds.txt
"""

import math

import numpy as np
import pandas as pd
from common import gap, ladders, root, seeds_root

from scaletune.search.ladder import fit_rungs, stored_study

ROOTS = {"one seed": root(), "seed per rung": seeds_root(root())}
rows = []
for pair in zip(*(ladders(folder) for folder in ROOTS.values()), strict=True):
    task, seed, _ = pair[0]
    row = {"task": task, "seed": seed}
    for name, (_, _, ladder) in zip(ROOTS, pair, strict=True):
        fitted = fit_rungs(ladder, ladder.rungs)
        row[f"gap, {name}"] = gap(fitted.lr.predict(ladder.target_scale).value, task, seed)
        row[f"rung optima, {name}"] = " ".join(f"{r.value:.4f}" for r in fitted.lr.rungs)
        drawn = []
        for rung in ladder.rungs:
            study = stored_study(rung.cfg)
            center = math.log10(study.user_attrs["priors"]["lr"]["center"])
            drawn += [math.log10(t.params["lr"]) - center for t in study.trials
                      if "lr" in t.params]
        row[f"drawn, {name}"] = f"{np.min(drawn):+.2f}..{np.max(drawn):+.2f}"
    rows.append(row)
pd.set_option("display.width", 300)
df = pd.DataFrame(rows)
print(df.round(3).to_string(index=False))
for name in ROOTS:
    g = df[f"gap, {name}"]
    print(f"{name}: the law's lr within 0.15 dex of the best trial's on {(g.abs() <= 0.15).sum()} "
          f"of {len(g)}, mean |gap| {g.abs().mean():.3f} dex, mean gap {g.mean():+.3f}")
