"""Two checks beside benchmarks.pruner_replay's shuffled orders, on the suite's random-search
studies rebuilt from the committed trial tables.

    PYTHONPATH=. python benchmarks/results/pruners/shuffled_orders.py

1. More features over shuffled orders: other_features.py regressed the drops on more than log
   lr in the order the trials ran only. Here the same variants (its ``Regressed``: lr, lr x wd,
   both) are replayed in each study's own order and 10 shuffles (pruner_replay.orders), at
   confidence 0.9, 0.95 and 0.97.
2. Orders like TPE's: two trials drawn at random, then the rest by final loss with noise (log
   final loss plus a normal draw of standard deviation 0.05), so that runs near the best come
   early, while few complete curves reach back; 10 such orders per study. The median pruner
   (scaletune's: 25% warmup, 4 start-up) and grid points of the predicted pruner.

Printed: compute saved (mean over replays) and false prunes (stopped trials that ended within
1% of their study's best) summed over the replays. Run 2026-12-03; output in shuffled_orders.txt.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter

sys.path.insert(0, str(Path(__file__).parent))
from other_features import Regressed  # noqa: E402

from benchmarks.pruner_replay import load_tables, orders  # noqa: E402
from scaletune.search.config import PrunerConfig  # noqa: E402
from scaletune.search.pruners import audit, replay  # noqa: E402

build = TypeAdapter(PrunerConfig).validate_python


def tpe_like(task: str, seed: int, trials: list, k: int) -> list:
    rng = random.Random(f"tpe-like/{task}/{seed}/{k}")
    head = rng.sample(trials, 2)
    rest = [t for t in trials if t not in head]
    noisy = {id(t): math.log(t.value) + rng.gauss(0, 0.05) for t in rest}
    return head + sorted(rest, key=lambda t: noisy[id(t)])


def score(results: list[dict]) -> str:
    saved = np.mean([r["compute_saved"] for r in results])
    false = sum(r["false_prunes"] for r in results)
    return f"saved {saved:.1%}  false prunes {false:3d}  in {len(results)} replays"


def main() -> None:
    studies = load_tables(Path("benchmarks/results/suite"))
    print("1. drops regressed on more than lr, 11 orders per study (its own and 10 shuffles)")
    for confidence in (0.9, 0.95, 0.97):
        for features in (("lr",), ("lr x wd",), ("lr", "lr x wd")):
            results = []
            for (task, seed), (cfg, trials) in studies.items():
                product = build({"name": "predicted", "confidence": confidence}).build(cfg)
                for shuffled in orders(task, seed, trials, 10):
                    pruner = Regressed(cfg.tokens_per_trial, product._progress,
                                       n_startup_trials=product._n_startup_trials,
                                       confidence=confidence, features=features,
                                       with_loss=False)
                    results.append(audit(replay(pruner, shuffled), cfg.tokens_per_trial))
            print(f"  confidence {confidence:<4g} {' + '.join(features):<12} {score(results)}",
                  flush=True)
    print("2. orders like TPE's (10 per study)")
    specs = {"median (scaletune: 25% warmup, 4 start-up)": {"name": "median"}}
    for confidence, leading in ((0.9, 0), (0.9, 0.25), (0.95, 0), (0.97, 0), (0.97, 0.25)):
        specs[f"predicted, confidence {confidence:g}, leading {leading:g}"] = {
            "name": "predicted", "confidence": confidence, "leading": leading}
    for label, spec in specs.items():
        results = []
        for (task, seed), (cfg, trials) in studies.items():
            for k in range(10):
                results.append(audit(replay(build(spec).build(cfg), tpe_like(task, seed, trials, k)),
                                     cfg.tokens_per_trial))
        print(f"  {label:<45} {score(results)}", flush=True)


if __name__ == "__main__":
    main()
