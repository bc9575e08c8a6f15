"""Add a rung at 1/2 of the target's tokens to each ladder that run_rungs.py ran again (in ROOT,
argv[2]) as ladder-half.yaml, and run that rung alone: argv[1] lists task:seed pairs.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/run_half.py \
        shakespeare-bpe:0,shakespeare-byte:0,... /tmp/rungs
"""

import sys
from pathlib import Path

import yaml
from rich.console import Console

from scaletune.search.ladder import load_ladder, with_data_sized
from scaletune.search.runner import run_study

ROOT = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rungs")
for key in sys.argv[1].split(","):
    task, seed = key.split(":")
    d = ROOT / task / f"s{seed}"
    lad = yaml.safe_load((d / "ladder.yaml").read_text())
    target = yaml.safe_load((d / "target.yaml").read_text())
    lad["rungs"] = lad["rungs"] + [{"tokens_per_trial": target["tokens_per_trial"] // 2}]
    lad["laws_file"] = "laws-half.json"
    (d / "ladder-half.yaml").write_text(yaml.safe_dump(lad, sort_keys=False))
    ladder = with_data_sized(load_ladder(d / "ladder-half.yaml"))
    run_study(ladder.rungs[-1].cfg, Console(quiet=True), summary=False)
    print("done", task, seed, flush=True)
