# Run on 2026-12-01, 2 cores. 'before' is 536eef5 (git archive HEAD | tar -x -C /tmp/before, then
# search/, trainer/, heuristics/ moved under /tmp/before/scaletune/); 'after' is the working tree
# with search.cluster._no_api_server. Alternating rounds; each round: init_time.py three times,
# then benchmarks.orchestration with 2 workers and the quickstart.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/orchestration_v4
for round in 1 2 3; do
  for v in before after; do
    if [ $v = before ]; then export PYTHONPATH=/tmp/before; else unset PYTHONPATH; fi
    echo "=== $v round $round $(date +%T)"
    for i in 1 2 3; do python $out/init_time.py 2>&1 | grep init_ray; done
    python -m benchmarks.orchestration --trials 6 --workers 2 --quickstart \
      --data /work/shared/data/tinyshakespeare.txt --out $out/$v$round 2>&1 \
      | grep -E "^workers|^quickstart"
  done
done
echo "=== done $(date +%T)"
