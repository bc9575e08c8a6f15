"""The rungs of the 18 ladders of run_rungs.py (in ROOT, argv[2]) run again into ROOT-seeds, each
rung's sampler drawing from a seed of its own (``numpy.random.SeedSequence((seed, rung))``, seed
the ladder's sampler seed),
where every rung of a ladder drew with the ladder's seed: the same start-up draws, in sigmas of
its prior, at every rung (anchored.txt: each seed's drawn range is the same at all four rungs).
argv[1] lists task:seed pairs.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/run_seeds.py \
        shakespeare-bpe:0,shakespeare-byte:0,... /tmp/rungs
"""

import sys
from pathlib import Path

import numpy as np
from common import run_again, seeds_root


def own_seed(i: int, cfg):
    """Rung i's study, its sampler seeded by the ladder's seed and i."""
    ladder_seed = cfg.seed if cfg.sampler.seed is None else cfg.sampler.seed
    own = int(np.random.SeedSequence((ladder_seed, i)).generate_state(1)[0])
    return cfg.model_copy(update={"sampler": cfg.sampler.model_copy(update={"seed": own})})


SRC = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rungs")
run_again(sys.argv[1], SRC, seeds_root(SRC), own_seed)
