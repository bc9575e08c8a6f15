# Run on 2026-12-01, 2 cores. Successive halving and Hyperband at 256 concurrent trials on
# PostgreSQL, each run on a fresh server; 'before' is da7b057 (git archive HEAD | tar -x -C
# /tmp/before, then search/, trainer/, heuristics/ moved under /tmp/before/scaletune/), 'after'
# the working tree with DriverHyperband and DriverStudy.held() around the pruner's decision.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/driver_scale_v4
for round in 1 2; do
  for pruner in hyperband successive_halving; do
    for v in before after; do
      if [ $v = before ]; then export PYTHONPATH=/tmp/before; else unset PYTHONPATH; fi
      eval "$(bash tests/postgres.sh start 2>/dev/null)"
      python -m benchmarks.driver_scale --trials 256 --fast "" --seconds 45 --big 0 \
        --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner $pruner \
        --out $out --tag ${pruner}_${v}_${round} 2>&1 | grep "^postgresql" | sed "s/^/$pruner $v $round: /"
      bash tests/postgres.sh stop 2>/dev/null
    done
  done
done
echo "=== done $(date +%T)"
