"""The law's lr at the target fitted on the rungs as they ran (ROOT, run_rungs.py: every rung of
a ladder drew with the ladder's sampler seed) and on the rungs run with a sampler seed each
(ROOT-seeds, run_seeds.py), against the best trial's lr
(benchmarks/results/ladder_v5_prior/ladder_suite.csv); each rung's optimum beside, and the lr
range the rungs' trials drew (dex from each rung's prior center) taken together.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/seeds.py /tmp/rungs > seeds.txt
"""

import math

import numpy as np
from common import print_law_gaps, root, seeds_root

from scaletune.search.ladder import Ladder, stored_study


def drawn(ladder: Ladder) -> dict[str, str]:
    """The lr range the rungs' trials drew, in dex from each rung's prior center, together."""
    offsets = []
    for rung in ladder.rungs:
        study = stored_study(rung.cfg)
        center = math.log10(study.user_attrs["priors"]["lr"]["center"])
        offsets += [math.log10(t.params["lr"]) - center for t in study.trials
                    if "lr" in t.params]
    return {"drawn": f"{np.min(offsets):+.2f}..{np.max(offsets):+.2f}"}


print_law_gaps({"one seed": root(), "seed per rung": seeds_root(root())}, drawn)
