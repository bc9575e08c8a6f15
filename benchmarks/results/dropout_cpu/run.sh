# Run on 2026-12-05, 2 cores, nothing else running. 'before' is 9968aa4 (torch's dropout):
# git worktree add /tmp/me/old 9968aa4, with /tmp/me/shim/scaletune/{search,trainer,heuristics}
# linking to its folders, put first on the import path. 'after' is the working tree.
cd /work/main && . .venv/bin/activate
B=benchmarks/results/dropout_cpu
python -m benchmarks.dropout_cpu > $B/dropout_cpu.txt
for v in before after; do
  if [ $v = before ]; then export PYTHONPATH=/tmp/me/shim; else unset PYTHONPATH; fi
  python $B/trial_alternating.py $v
done > $B/trial_alternating.log
for round in 1 2 3; do
  for v in before after; do
    if [ $v = before ]; then export PYTHONPATH=/tmp/me/shim; else unset PYTHONPATH; fi
    python -c "
import json
from benchmarks.orchestration import quickstart
q = quickstart()
print('$v $round', json.dumps(q), flush=True)"
  done
done > $B/quickstart_alternating.log
echo "=== done $(date +%T)" >> $B/quickstart_alternating.log
