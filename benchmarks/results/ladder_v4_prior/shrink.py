"""Where heuristics.fit.SHORT_RUN_LR_EXPONENT and EXPONENT_PRIOR_SD come from (issue 14).

The lr law of each of the suite's 18 ladders (benchmarks/results/ladder_v2: three rungs at 1/16,
1/8 and 1/4 of the target's tokens, 8 trials each; the same rungs as ladder_warmup, ladder_v3_warmup
and ladder_v4_prior) has a fitted exponent b and its bootstrap standard error se, in its laws.json
(fitted on the rungs alone: no prior then). A random-effects pool of the exponents
(DerSimonian-Laird: the tasks' true exponents spread with sd tau around a mean mu, each ladder
measures its task's with error se) gives mu and tau; fitted on five tasks and applied to the sixth
(leave one task out), each ladder's exponent is combined with the prior N(mu, sd) by precision, the
line turned about the rungs' center, and its lr at the target compared with the best trial's lr
(benchmarks/results/ladder_v3_warmup/ladder_suite.csv: the best of the suite and the ladders).

    PYTHONPATH=. python benchmarks/results/ladder_v4_prior/shrink.py > shrink.txt
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
V2 = HERE.parent / "ladder_v2"
BEST = pd.read_csv(HERE.parent / "ladder_v3_warmup" / "ladder_suite.csv").set_index(
    ["task", "ladder_seed"])


def ladders() -> pd.DataFrame:
    rows = []
    for (task, seed), best in BEST.iterrows():
        laws = json.loads((V2 / task / f"s{seed}" / "laws.json").read_text())
        lr = laws["lr"]
        lx = np.log10([r["scale"] for r in lr["rungs"]])
        n = np.array([r["n_trials"] for r in lr["rungs"]], dtype=float)
        pivot = float(np.average(lx, weights=n))
        rows.append({"task": task, "seed": seed, "b": lr["exponent"], "se": math.sqrt(lr["cov"][2]),
                     "center": lr["log10_coef"] + lr["exponent"] * pivot, "pivot": pivot,
                     "target": math.log10(laws["predictions"]["target"]["scale"]),
                     "best": math.log10(best["best_lr"])})
    return pd.DataFrame(rows)


def pooled(b: np.ndarray, se: np.ndarray) -> tuple[float, float]:
    """DerSimonian-Laird random-effects mean and between-task sd."""
    w = 1 / se**2
    mu = float((w * b).sum() / w.sum())
    q = float((w * (b - mu) ** 2).sum())
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (len(b) - 1)) / c)
    w2 = 1 / (se**2 + tau2)
    return float((w2 * b).sum() / w2.sum()), math.sqrt(tau2)


def gap(r: pd.Series, b: float) -> float:
    """log10 of the law's lr at the target over the best trial's."""
    return r.center + b * (r.target - r.pivot) - r.best


def main() -> None:
    df = ladders()
    mu_all, tau_all = pooled(df.b.to_numpy(), df.se.to_numpy())
    print(f"all 18 ladders: pooled exponent {mu_all:+.3f}, between-task sd {tau_all:.3f}; "
          f"exponents {df.b.min():+.3f} to {df.b.max():+.3f}, se {df.se.min():.3f} to "
          f"{df.se.max():.3f}")
    as_fitted = np.array([gap(r, r.b) for _, r in df.iterrows()])
    print(f"as fitted: lr within 0.15 dex of the best on {(abs(as_fitted) <= 0.15).sum()} of 18, "
          f"mean gap {abs(as_fitted).mean():.3f} dex")
    for sd in (0.03, 0.05, 0.1, 0.15, 0.2):
        gaps, mus = [], []
        for _, r in df.iterrows():
            mu, _ = pooled(*(df[df.task != r.task][k].to_numpy() for k in ("b", "se")))
            b = (r.b / r.se**2 + mu / sd**2) / (1 / r.se**2 + 1 / sd**2)
            gaps.append(gap(r, b))
            mus.append(mu)
        g = np.abs(gaps)
        print(f"leave one task out, prior sd {sd:.2f}: mu {min(mus):+.3f} to {max(mus):+.3f}; "
              f"within 0.15 dex on {(g <= 0.15).sum()} of 18, mean gap {g.mean():.3f} dex")
        if sd == 0.1:
            df[f"gap_sd{sd}"] = gaps
    df["gap_as_fitted"] = as_fitted
    print()
    print(df[["task", "seed", "b", "se", "gap_as_fitted", "gap_sd0.1"]].round(3).to_string(
        index=False))


if __name__ == "__main__":
    main()
