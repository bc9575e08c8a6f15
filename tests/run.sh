#!/usr/bin/env bash
# The test suite: fast unit and integration tests first, then the slow end-to-end studies and
# fault tests (real Ray clusters, real processes killed). Run from an installed environment:
#   pip install "torch==2.13.0" -e ".[dev]" && bash tests/run.sh
# The PostgreSQL tests use the server in $SCALETUNE_TEST_POSTGRES_URL; when it is not set and
# PostgreSQL is installed, a private server on 127.0.0.1 is started for them (tests/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${SCALETUNE_TEST_POSTGRES_URL:-}" ] && bash tests/postgres.sh available; then
    if pg_env=$(bash tests/postgres.sh start); then
        eval "$pg_env"
        trap 'bash tests/postgres.sh stop' EXIT
    else
        echo "tests/run.sh: PostgreSQL did not start; its tests are skipped (failed if CI=true)" >&2
    fi
fi

# pytest exits with 5 when no test carries the marker: nothing to run is not a failure.
run_pytest() {
    local code=0
    python -m pytest -q -p no:cacheprovider "$@" || code=$?
    if [ "$code" -eq 5 ]; then
        code=0
    fi
    return "$code"
}

# Two tests at a time (pytest-xdist): most of a slow test's time is spent waiting on processes
# it starts (Ray, trainers, a driver), so two share 2 cores well. One session for the fast and
# the slow tests, the slow ones first (tests/conftest.py), handed out one at a time
# (--maxschedchunk 1; xdist's default hands the first quarter of the list to one worker, every
# slow test with it): the short tests fill in behind the long ones. A test that reads the whole
# machine's listening ports, or takes grants away from the test database (marked alone), would
# see or break the other test's, so it runs by itself.
run_pytest -m "not alone" -n 2 --maxschedchunk 1 --durations=15  # the slowest, for keeping CI short
# Only the files that hold such tests are collected: collecting every file imports the whole
# project and its libraries (~8 s) for one test.
run_pytest -m alone $(grep -rl "mark\.alone" tests --include="test_*.py")
