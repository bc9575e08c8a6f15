# Run on 2026-12-01 after run2.sh, 2 cores: the working tree now also keeps each complete
# trial's curve against progress in the predicted pruner (read off once, not at every decision).
# 'before' as in run.sh (da7b057). The default pruner (predicted), alternating.
cd /work/main && . .venv/bin/activate
out=benchmarks/results/driver_scale_v4
for v in after before after; do
  if [ $v = before ]; then export PYTHONPATH=/tmp/before; else unset PYTHONPATH; fi
  eval "$(bash tests/postgres.sh start 2>/dev/null)"
  tag=predicted_${v}_4; [ -e $out/$tag.csv ] && tag=predicted_${v}_5
  python -m benchmarks.driver_scale --trials 256 --fast "" --seconds 45 --big 0 \
    --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner predicted \
    --out $out --tag $tag 2>&1 | grep "^postgresql" | sed "s/^/$tag: /"
  bash tests/postgres.sh stop 2>/dev/null
done
echo "=== done $(date +%T)"
