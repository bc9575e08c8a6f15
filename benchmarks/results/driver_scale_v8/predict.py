"""Time PredictedFinalPruner.predict against n complete trials (synthetic curves of 10
evaluations, 50 running trials at 40% of the budget): python predict.py 100 1000 3000."""
import sys
import time

import numpy as np
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from scaletune.search.pruners import PredictedFinalPruner

BUDGET = 100_000


def trials(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lr = float(10 ** rng.uniform(-4, -2))
        a = rng.uniform(2, 3)
        steps = range(10_000, BUDGET + 1, 10_000)
        iv = {s: a + 2 * (1 - s / BUDGET) ** 2 + 0.01 * rng.standard_normal() for s in steps}
        t = create_trial(state=TrialState.COMPLETE, value=iv[BUDGET], params={"lr": lr},
                         distributions={"lr": FloatDistribution(1e-5, 1e-1, log=True)},
                         intermediate_values=iv)
        t._trial_id, t.number = i, i
        out.append(t)
    return out


for n in [int(x) for x in sys.argv[1:]] or [100, 1000, 3000]:
    complete = trials(n)
    running = trials(50, seed=1)
    for t in running:
        t.intermediate_values = {s: v for s, v in t.intermediate_values.items() if s <= 40_000}
    p = PredictedFinalPruner(BUDGET)
    p.predict(running[0], complete)  # curves read off once
    start = time.perf_counter()
    preds = [p.predict(t, complete) for t in running for _ in range(4)]
    each = (time.perf_counter() - start) / len(preds)
    print(f"{n} complete: {1e3 * each:.2f} ms a prediction; first {preds[0]}", flush=True)
