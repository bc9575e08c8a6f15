"""Smoke test of the driver-at-scale benchmark: four fake trials on SQLite for a few seconds,
then the costs of one report and one ask."""

from __future__ import annotations

import pandas as pd
import pytest
import ray

from benchmarks.driver_scale import main

pytestmark = pytest.mark.slow


def test_tiny_run_measures_latencies_and_prunes(tmp_path, shakespeare):
    if ray.is_initialized():
        ray.shutdown()
    main(["--trials", "4", "--interval", "0.3", "--fast", "", "--seconds", "10",
          "--history", "12", "--actors", "1", "--big", "0", "--data", str(shakespeare),
          "--costs", "--out", str(tmp_path)])
    row = pd.read_csv(tmp_path / "driver_scale.csv").iloc[0]
    # Rule: the real driver answered the fake trials' reports, and the trials saw the latency.
    assert row["reports"] > 0
    assert 0 < row["latency_median_ms"] <= row["latency_p99_ms"]
    assert row["driver_rss_mib"] > 0
    # The median pruner, given the study's complete trials, stopped some of them.
    assert row["pruned"] > 0
    # --costs: one report and one ask through Optuna's study and the driver's, side by side.
    costs = pd.read_csv(tmp_path / "driver_scale_costs.csv")
    sqlite = costs[costs["storage"] == "sqlite"].iloc[0]
    for column in ("optuna_study_ms", "driver_study_ms", "optuna_ask_ms", "driver_ask_ms"):
        assert sqlite[column] > 0, column
    assert "one ask, Optuna's study (ms)" in (tmp_path / "driver_scale.md").read_text()
