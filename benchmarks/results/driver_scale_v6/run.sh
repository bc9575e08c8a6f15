# Run on 2026-12-01, 2 cores: before = 427ff52 (PYTHONPATH=/tmp/before, from `git archive`), after =
# the working tree (the driver's loop runs with what it began with frozen out of Python's
# garbage collector, runner._frozen_heap). 256 trials every 10 s on PostgreSQL, 45-s windows,
# a fresh server each run; Hyperband and the default pruner (predicted), alternating.
# gc.py is benchmarks.driver_scale with the full collections timed during the driver's loop.
# --data: the before tree has no ../shared beside it.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/driver_scale_v6
for round in 1 2; do
  for pruner in hyperband predicted; do
    for v in before after; do
      if [ $v = before ]; then export PYTHONPATH=/tmp/before:.; else export PYTHONPATH=.; fi
      eval "$(bash tests/postgres.sh start 2>/dev/null)"
      tag=${pruner}_${v}_${round}
      python $out/gc.py --trials 256 --fast "" --seconds 45 --big 0 \
        --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner $pruner \
        --data /work/shared/data/tinyshakespeare.txt \
        --out $out --tag $tag 2>&1 | grep -E "^postgresql|^full collections" | sed "s/^/$tag: /"
      bash tests/postgres.sh stop 2>/dev/null
    done
  done
done
echo "=== done $(date +%T)"
