# Run on 2026-12-02 22:12-22:18 UTC, 2 cores, nothing else running. 'before' is 566465c, the code
# that took 44.4 s on average on 2026-12-01 (orchestration_v3): git archive 566465c | tar -x -C
# /tmp/before, then search/, trainer/, heuristics/ moved under /tmp/before/scaletune/. 'after' is
# 4acb442. Each line of quickstart_alternating.log is benchmarks.orchestration's quickstart().
cd /work/main && . .venv/bin/activate
for round in 1 2 3; do
  for v in before after; do
    if [ $v = before ]; then export PYTHONPATH=/tmp/before; else unset PYTHONPATH; fi
    python -c "
import json
from benchmarks.orchestration import quickstart
q = quickstart()
print('$v $round', json.dumps(q), flush=True)"
  done
done
echo "=== done $(date +%T)"
