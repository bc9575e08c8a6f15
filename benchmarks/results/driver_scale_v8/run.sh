# Run on 2026-12-01, 2 cores. A study under way with 3,000 complete trials (--history 3000)
# instead of 100: 256 trials every 10 s on PostgreSQL (a fresh server), 45-s windows, the
# default pruner (predicted), with the full collections timed (driver_scale_v6/gc.py).
# before = 4c36ad8 (PYTHONPATH=/tmp/before, from `git archive`); after = the working tree, where
# the predicted pruner reads every complete curve side by side (search.pruners._Curves).
# --data: the before tree has no ../shared beside it.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/driver_scale_v8
for v in ${VERSIONS:-before after}; do
  if [ $v = before ]; then export PYTHONPATH=/tmp/before:.; else export PYTHONPATH=.; fi
  eval "$(bash tests/postgres.sh start 2>/dev/null)"
  python benchmarks/results/driver_scale_v6/gc.py --trials 256 --fast "" --seconds 45 --big 0 --history 3000 \
    --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner predicted \
    --data /work/shared/data/tinyshakespeare.txt \
    --out $out --tag history3000_$v 2>&1 | grep -E "^postgresql|^full collections" | sed "s/^/$v: /"
  bash tests/postgres.sh stop 2>/dev/null
done
echo "=== done $(date +%T)"
