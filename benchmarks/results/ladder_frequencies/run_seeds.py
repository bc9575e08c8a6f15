"""The rungs of the 18 ladders of run_rungs.py (in ROOT, argv[2]) run again into ROOT-seeds, each
rung's sampler drawing from a seed of its own (``numpy.random.SeedSequence((seed, rung))``, seed
the ladder's sampler seed),
where every rung of a ladder drew with the ladder's seed: the same start-up draws, in sigmas of
its prior, at every rung (anchored.txt: each seed's drawn range is the same at all four rungs).
argv[1] lists task:seed pairs.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/run_seeds.py \
        shakespeare-bpe:0,shakespeare-byte:0,... /tmp/rungs
"""

import shutil
import sys
from pathlib import Path

import numpy as np
from common import seeds_root
from rich.console import Console

from scaletune.search.ladder import load_ladder, with_data_sized
from scaletune.search.runner import run_study

SRC = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rungs")
OUT = seeds_root(SRC)
for key in sys.argv[1].split(","):
    task, seed = key.split(":")
    d = OUT / task / f"s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / task / f"s{seed}" / "ladder.yaml", d / "ladder.yaml")
    text = (SRC / task / f"s{seed}" / "target.yaml").read_text()
    (d / "target.yaml").write_text(text.replace(str(SRC / task / f"s{seed}"), str(d)))
    ladder = with_data_sized(load_ladder(d / "ladder.yaml"))
    for i, rung in enumerate(ladder.rungs):
        ladder_seed = rung.cfg.seed if rung.cfg.sampler.seed is None else rung.cfg.sampler.seed
        own = int(np.random.SeedSequence((ladder_seed, i)).generate_state(1)[0])
        cfg = rung.cfg.model_copy(update={"sampler": rung.cfg.sampler.model_copy(
            update={"seed": own})})
        run_study(cfg, Console(quiet=True), summary=False)
    print("done", task, seed, flush=True)
