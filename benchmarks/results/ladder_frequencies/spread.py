"""The law's lr at the target fitted on the rungs as they ran (ROOT, run_rungs.py) and on the
rungs run with the lr prior's spread doubled (ROOT-spread2, run_spread.py), against the best
trial's lr (benchmarks/results/ladder_v5_prior/ladder_suite.csv); each rung's optimum beside.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/spread.py /tmp/rungs > spread.txt
"""

from common import print_law_gaps, root, spread_root

print_law_gaps({"sigma 0.3": root(), "sigma 0.6": spread_root(root())})
