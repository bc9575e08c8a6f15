"""Train the quickstart's best trial (trial14.yaml) at seeds 0-3 with the code on the import
path, printing the wall time of train() and the final validation loss. Run alternately with the
code before and after (trial_alternating.sh)."""

import shutil
import sys
import time
from pathlib import Path

import yaml

from scaletune.trainer import TrainConfig, train

raw = yaml.safe_load(Path(__file__).with_name("trial14.yaml").read_text())
label = sys.argv[1]
for seed in range(4):
    raw["seed"] = seed
    cfg = TrainConfig.model_validate(raw)
    shutil.rmtree(cfg.out_dir, ignore_errors=True)
    start = time.perf_counter()
    result = train(cfg)
    print(f"{label} seed {seed}: {time.perf_counter() - start:.2f} s, "
          f"val loss {result.history[-1]['val_loss']:.4f}", flush=True)
