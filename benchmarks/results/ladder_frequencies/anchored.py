"""How far each rung's lr optimum lies from the center of the lr prior it searched around.

The rungs of the suite's 18 ladders as run_rungs.py ran them (ROOT), and the rung at 1/2 of the
target's tokens that run_half.py added to each: per rung, the lr prior's center (the published
laws at the rung's scale, its study's user attr ``priors``), the lr values its trials drew, and
its optimum as the ladder's fit takes it (the near-best trials' weighted mean,
``heuristics.fit.RungOptimum``); then, per ladder, the law's lr at the target fitted on the
rungs at 1/16-1/4 (the ladder as run) and with the 1/2 rung added, against the best trial's lr
(benchmarks/results/ladder_v5_prior/ladder_suite.csv).

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/anchored.py /tmp/rungs > anchored.txt
"""

import math

import numpy as np
import pandas as pd
from common import gap, ladders, root

from scaletune.search.ladder import fit_rungs, stored_study

rungs, laws = [], []
for task, seed, ladder in ladders(root(), "ladder-half.yaml"):
    have = [r for r in ladder.rungs if stored_study(r.cfg) is not None]
    full = fit_rungs(ladder, have)
    for rung, opt in zip(have, full.lr.rungs, strict=True):
        study = stored_study(rung.cfg)
        center = study.user_attrs["priors"]["lr"]["center"]
        drawn = np.log10([t.params["lr"] for t in study.trials if "lr" in t.params])
        rungs.append({"task": task, "seed": seed, "tokens": rung.cfg.tokens_per_trial,
                      "center": center, "drawn_low": drawn.min() - math.log10(center),
                      "drawn_high": drawn.max() - math.log10(center),
                      "optimum_vs_center": math.log10(opt.value / center)})
    row = {"task": task, "seed": seed}
    for name, chosen in (("1/16-1/4", have[:3]), ("1/16-1/2", have)):
        row[f"gap {name}"] = gap(fit_rungs(ladder, chosen).lr.predict(ladder.target_scale).value,
                                 task, seed)
    laws.append(row)

pd.set_option("display.width", 200)
r = pd.DataFrame(rungs)
print("Each rung: its lr prior's center, the lr its trials drew and its optimum (dex from center)")
print(r.round(3).to_string(index=False))
off = r.optimum_vs_center.abs()
print(f"\nrung optimum within 0.1 dex of its prior's center: {(off <= 0.1).sum()} of {len(r)}; "
      f"within 0.2: {(off <= 0.2).sum()}; median |offset| {off.median():.3f} dex; the trials "
      f"drew from {r.drawn_low.median():+.2f} to {r.drawn_high.median():+.2f} dex (medians)")
d = pd.DataFrame(laws)
print("\nThe law's lr at the target against the best trial's (dex)")
print(d.round(3).to_string(index=False))
for c in ("gap 1/16-1/4", "gap 1/16-1/2"):
    g = d[c].abs()
    print(f"{c}: within 0.15 dex on {(g <= 0.15).sum()} of {len(g)}, mean |gap| {g.mean():.3f}")
