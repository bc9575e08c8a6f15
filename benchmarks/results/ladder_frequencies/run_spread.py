"""The rungs of the 18 ladders of run_rungs.py (in ROOT, argv[2]) run again into ROOT-spread2
with the lr prior's spread (sigma, log10) doubled in the rungs: 0.6 dex where it is 0.3, the
start-up trials' draws truncated to the search range as ever. The product has no such option:
this replaces ``heuristics.priors._published_lr_prior`` in this process (the driver's, where the
rungs' priors are made). argv[1] lists task:seed pairs.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/run_spread.py \
        shakespeare-bpe:0,shakespeare-byte:0,... /tmp/rungs
"""

import dataclasses
import shutil
import sys
from pathlib import Path

from common import spread_root
from rich.console import Console

import scaletune.heuristics.priors as priors
from scaletune.search.ladder import load_ladder, with_data_sized
from scaletune.search.runner import run_study

SPREAD = 2.0
published = priors._published_lr_prior


def _wider(*args, **kwargs):
    prior = published(*args, **kwargs)
    return dataclasses.replace(prior, sigma=prior.sigma * SPREAD)


priors._published_lr_prior = _wider
SRC = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rungs")
OUT = spread_root(SRC)
for key in sys.argv[1].split(","):
    task, seed = key.split(":")
    d = OUT / task / f"s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(SRC / task / f"s{seed}" / "ladder.yaml", d / "ladder.yaml")
    text = (SRC / task / f"s{seed}" / "target.yaml").read_text()
    (d / "target.yaml").write_text(text.replace(str(SRC / task / f"s{seed}"), str(d)))
    ladder = with_data_sized(load_ladder(d / "ladder.yaml"))
    for rung in ladder.rungs:
        run_study(rung.cfg, Console(quiet=True), summary=False)
    print("done", task, seed, flush=True)
