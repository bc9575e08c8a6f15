"""A rung's lr optimum from all its complete trials (the vertex of a quadratic of log loss on
log10 lr, where it curves upward; clipped to the lr drawn) instead of its near-best trials'
weighted mean, and the lr law fitted on those (with the exponent's prior, as the ladder fits),
against the best trial's lr; on the rungs of run_rungs.py (ROOT) and of run_spread.py
(ROOT-spread2). No training: it reads their studies.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/curvature.py /tmp/rungs \
        > curvature.txt
"""

import numpy as np
import pandas as pd
from common import gap, ladders, root, spread_root

from scaletune.heuristics.fit import EXPONENT_PRIOR_SD, SHORT_RUN_LR_EXPONENT, fit_power_law
from scaletune.search.ladder import fit_rungs, stored_study


def vertex(xs: np.ndarray, ys: np.ndarray) -> float | None:
    """The lowest point of the least-squares quadratic, where it curves upward (4+ trials)."""
    if len(xs) < 4:
        return None
    _, b, c = np.linalg.lstsq(np.vstack([np.ones_like(xs), xs, xs**2]).T, ys, rcond=None)[0]
    return None if c <= 0 else float(np.clip(-b / (2 * c), xs.min(), xs.max()))


rows = []
for label, folder in (("sigma 0.3", root()), ("sigma 0.6", spread_root(root()))):
    for task, seed, ladder in ladders(folder):
        scales, optima = [], []
        for rung in ladder.rungs:
            done = [t for t in stored_study(rung.cfg).trials if t.state.name == "COMPLETE"]
            v = vertex(np.log10([t.params["lr"] for t in done]), np.log([t.value for t in done]))
            if v is not None:
                scales.append(rung.cfg.tokens_per_trial)
                optima.append(10**v)
        near = fit_rungs(ladder, ladder.rungs).lr.predict(ladder.target_scale).value
        row = {"rungs": label, "task": task, "seed": seed, "near-best mean": gap(near, task, seed),
               "rungs that curve": len(scales)}
        if len(set(scales)) >= 2:
            law = fit_power_law(scales, optima, "lr", "", "tokens", n_boot=200,
                                exponent_prior=(SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD))
            row["curvature"] = gap(law.predict(ladder.target_scale).value, task, seed)
        rows.append(row)
pd.set_option("display.width", 200)
df = pd.DataFrame(rows)
print(df.round(3).to_string(index=False))
for label in ("sigma 0.3", "sigma 0.6"):
    for name in ("near-best mean", "curvature"):
        gap = df[df.rungs == label][name].dropna().abs()
        print(f"{label}, {name}: the law's lr within 0.15 dex of the best trial's on "
              f"{(gap <= 0.15).sum()} of {len(gap)} ladders with a law, mean |gap| "
              f"{gap.mean():.3f}")
