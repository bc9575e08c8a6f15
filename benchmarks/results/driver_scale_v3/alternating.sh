# Alternating runs, 2026-12-01, 2 cores, each with a fresh PostgreSQL of tests/postgres.sh.
# before: 14863cd (a copy on PYTHONPATH); after: 9955623 (stale kept trials read again beside the report path).
cd /work/main && . .venv/bin/activate
for round in 1 2; do
  for v in before after; do
    if [ $v = before ]; then export PYTHONPATH=/tmp/before2; else unset PYTHONPATH; fi
    eval "$(bash tests/postgres.sh start)" > /dev/null
    echo "=== $v $round $(date +%T)"
    python -m benchmarks.driver_scale --trials 256 --interval 10 --fast "" --seconds 90 --history 100 --big 0 --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --out /tmp/dsbench3/$v$round --tag driver_scale_$v --data ../shared/data/tinyshakespeare.txt 2>&1 | grep -E "reports/s"
    bash tests/postgres.sh stop > /dev/null
  done
done
echo "=== done $(date +%T)"
