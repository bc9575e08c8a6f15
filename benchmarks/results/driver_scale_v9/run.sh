# Run on 2026-12-01, 2 cores: 256 trials every 10 s on PostgreSQL (a fresh server each run), from a
# study with 3,000 complete trials (--history 3000), 45-s windows, the predicted pruner, as in
# driver_scale_v8. RUNS: "profile" samples the driver with py-spy for its loop's first 100 s;
# "switch" sets Python's switch interval to 0.5 ms; "base" neither.
cd /work/main && . .venv/bin/activate && export PYTHONPATH=.
out=benchmarks/results/driver_scale_v9
for v in ${RUNS:-profile switch base}; do
  case $v in
    profile) env="PROFILE=$out/profile.txt PROFILE_S=100" ;;
    switch) env="SWITCH_MS=0.5" ;;
    *) env="" ;;
  esac
  eval "$(bash tests/postgres.sh start 2>/dev/null)"
  env $env python benchmarks/results/driver_scale_v9/probe.py --trials 256 --fast "" --seconds 45 --big 0 \
    --history 3000 --storages postgresql --postgres "$SCALETUNE_TEST_POSTGRES_URL" --pruner predicted \
    --out $out --tag $v 2>&1 | grep -E "^postgresql" | sed "s/^/$v: /"
  bash tests/postgres.sh stop 2>/dev/null
done
echo "=== done $(date +%T)"
