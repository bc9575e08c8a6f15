# Run on 2026-12-01, 2 cores. 'before' is 5743510 (git archive HEAD | tar -x -C /tmp/before, then
# search/, trainer/, heuristics/ moved under /tmp/before/scaletune/); 'after' is the working tree
# with search/summary.py. Each line of quickstart_alternating.log is benchmarks.orchestration's quickstart().
cd /work/main && . .venv/bin/activate
for round in 1 2 3 4; do
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
