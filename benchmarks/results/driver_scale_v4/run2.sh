# Run on 2026-12-01 after run.sh, 2 cores: the working tree now also serves the pruned trial's
# own system attrs from the driver, and prints the live view's event lines with its next redraw
# (at most 10% of the driver's time). 'before' as in run.sh (da7b057).
cd /work/main && . .venv/bin/activate
out=benchmarks/results/driver_scale_v4
for pruner in hyperband successive_halving predicted; do
  for v in after before; do
    if [ $v = before ] && [ $pruner != predicted ]; then continue; fi
    if [ $v = before ]; then export PYTHONPATH=/tmp/before; else unset PYTHONPATH; fi
    eval "$(bash tests/postgres.sh start 2>/dev/null)"
    python -m benchmarks.driver_scale --trials 256 --fast "" --seconds 45 --big 0 \
      --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner $pruner \
      --out $out --tag ${pruner}_${v}_3 2>&1 | grep "^postgresql" | sed "s/^/$pruner $v 3: /"
    bash tests/postgres.sh stop 2>/dev/null
  done
done
echo "=== done $(date +%T)"
