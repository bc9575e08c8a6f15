# Run on 2026-12-01, 2 cores, at 520f057 (every change to the driver so far: the storage thread,
# one transaction per ask/start/end, the frozen heap). Every point of issue 16, item 1, on the
# current code: 32, 128 and 256 trials reporting every 10 s, then 256 every 2, 0.5 and 0.2 s,
# on SQLite and on PostgreSQL (a fresh server), 45-s windows, the default pruner (predicted).
cd /work/main && . .venv/bin/activate
out=benchmarks/results/driver_scale_v7
eval "$(bash tests/postgres.sh start 2>/dev/null)"
python -m benchmarks.driver_scale --trials 32,128,256 --fast 2,0.5,0.2 --seconds 45 --big 0 \
  --storages sqlite,postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner predicted \
  --out $out --tag driver_scale 2>&1 | grep -v "^trial \|Token auth"
bash tests/postgres.sh stop 2>/dev/null
echo "=== done $(date +%T)"
