# Run on 2026-12-02, 2 cores. 'before' is 984322e (git archive HEAD | tar -x -C /tmp/before, then
# search/, trainer/, heuristics/ moved under /tmp/before/scaletune/); 'after' is the working tree,
# whose trials build and step their optimizers without importing torch._dynamo. Alternating
# rounds; each round: benchmarks.orchestration with 2 workers and the quickstart.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/orchestration_v5
for round in 1 2 3; do
  for v in before after; do
    if [ $v = before ]; then export PYTHONPATH=/tmp/before; else unset PYTHONPATH; fi
    echo "=== $v round $round $(date +%T)"
    python -m benchmarks.orchestration --trials 6 --workers 2 --quickstart \
      --data /work/shared/data/tinyshakespeare.txt --out $out/$v$round 2>&1 \
      | grep -E "^workers|^quickstart"
  done
done
echo "=== done $(date +%T)"
