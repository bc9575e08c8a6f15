#!/usr/bin/env bash
# Orchestration with a Ray cluster started per study (the default) against one started once
# (`ray start --head`, then --address auto), alternating, 2 workers, 6 trials, three rounds.
#   bash benchmarks/results/orchestration_v7/run.sh 2>&1 | tee benchmarks/results/orchestration_v7/orchestration.log
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=benchmarks/results/orchestration_v7
for round in 1 2 3; do
    echo "== round $round, per study"
    python -m benchmarks.orchestration --trials 6 --workers 2 --out "$out/per_study$round"
    echo "== round $round, cluster started once"
    ray start --head --num-cpus 2 --include-dashboard false --disable-usage-stats >/dev/null 2>&1
    python -m benchmarks.orchestration --trials 6 --workers 2 --address auto \
        --out "$out/cluster$round"
    ray stop >/dev/null 2>&1
done
