# Run on 2026-12-02, 2 cores. 'before' is ae0cb2b (git archive ae0cb2b | tar -x -C /tmp/before2, then
# search/, trainer/, heuristics/ moved under /tmp/before2/scaletune/); 'after' is the working tree,
# whose local Ray starts without the autoscaler monitor and the log monitor. Alternating
# rounds; each round: benchmarks.orchestration with 2 workers and the quickstart.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/orchestration_v6
for round in 1 2 3; do
  for v in before after; do
    if [ $v = before ]; then export PYTHONPATH=/tmp/before2; else unset PYTHONPATH; fi
    echo "=== $v round $round $(date +%T)"
    python -m benchmarks.orchestration --trials 6 --workers 2 --quickstart \
      --data /work/shared/data/tinyshakespeare.txt --out $out/$v$round 2>&1 \
      | grep -E "^workers|^quickstart"
  done
done
echo "=== done $(date +%T)"
