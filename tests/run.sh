#!/usr/bin/env bash
# The test suite: fast unit and integration tests first, then the slow end-to-end studies and
# fault tests (real Ray clusters, real processes killed). Run from an installed environment:
#   pip install "torch==2.13.0" -e ".[dev]" && bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pytest -m "not slow" -q -p no:cacheprovider
python -m pytest -m slow -q -p no:cacheprovider
