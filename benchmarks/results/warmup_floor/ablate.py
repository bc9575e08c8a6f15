"""Where pydoc-long's first ladder trial loses: its warmup, not its tau.

The first target trial of the hold_epochs ladder (benchmarks/results/ladder_v3_hold, seed 1:
lr 0.0108, tau 63.5, dropout 0.0136, warmup_frac 0.125, batch 32) scored 1.8958 against the
best known 1.8050. Trained again here, as the trial was (the target's study file, 655,360
tokens), with warmup 0.125 or 0.25 and dropout 0.0136 or 0, on training seed 0, and on seed 1
for the two warmups.

    python benchmarks/results/warmup_floor/ablate.py > benchmarks/results/warmup_floor/ablate.txt
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TARGET = ROOT / "benchmarks/results/ladder_v3_hold/pydoc-long/s1/target.yaml"
FIRST = {"lr": 0.010800143177763155, "tau": 63.46795261175676, "batch_size": 32}


def one(job: tuple[float, float, int]) -> tuple[float, float, int, float]:
    import tempfile

    import torch

    from scaletune.search.config import load_study
    from scaletune.search.space import trial_config
    from scaletune.trainer.loop import train

    warmup, dropout, seed = job
    torch.set_num_threads(1)
    cfg = load_study(TARGET)
    params = {**FIRST, "dropout": dropout, "warmup_frac": warmup}
    config, _ = trial_config(cfg, params, {}, 1, seed=seed)
    with tempfile.TemporaryDirectory() as out:
        result = train(config.model_copy(update={"out_dir": out}))
    return warmup, dropout, seed, result.final_val_loss


def main() -> None:
    jobs = [(w, d, 0) for w in (0.125, 0.25) for d in (0.0136, 0.0)]
    jobs += [(0.125, 0.0136, 1), (0.25, 0.0136, 1)]
    print(f"{'warmup_frac':>12}{'dropout':>9}{'seed':>6}{'final val loss':>16}")
    with ProcessPoolExecutor(2) as pool:
        for warmup, dropout, seed, loss in pool.map(one, jobs):
            print(f"{warmup:>12}{dropout:>9}{seed:>6}{loss:>16.4f}", flush=True)


if __name__ == "__main__":
    main()
