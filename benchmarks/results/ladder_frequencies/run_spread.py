"""The rungs of the 18 ladders of run_rungs.py (in ROOT, argv[2]) run again into ROOT-spread2
with the lr prior's spread (sigma, log10) doubled in the rungs: 0.6 dex where it is 0.3, the
start-up trials' draws truncated to the search range as ever. The product has no such option:
this replaces ``heuristics.priors._published_lr_prior`` in this process (the driver's, where the
rungs' priors are made). argv[1] lists task:seed pairs.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/run_spread.py \
        shakespeare-bpe:0,shakespeare-byte:0,... /tmp/rungs
"""

import dataclasses
import sys
from pathlib import Path

from common import run_again, spread_root

import scaletune.heuristics.priors as priors

SPREAD = 2.0
published = priors._published_lr_prior


def _wider(*args, **kwargs):
    prior = published(*args, **kwargs)
    return dataclasses.replace(prior, sigma=prior.sigma * SPREAD)


priors._published_lr_prior = _wider
SRC = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rungs")
run_again(sys.argv[1], SRC, spread_root(SRC))
