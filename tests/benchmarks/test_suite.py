"""Smoke test of the task suite: two tiny tasks (bytes, and a BPE trained on Python's docs), three
strategies, through the product's search plan; then the suite's tables and prior calibration."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchmarks import suite
from benchmarks.suite import Task, analyze_suite, bench_of, run_suite

pytestmark = pytest.mark.slow

TINY = [
    Task("tiny-byte", "shakespeare", 0, 1, 2, 32, 32, 0.125, "smoke"),
    Task("tiny-bpe", "pydoc", 320, 1, 2, 32, 32, 0.125, "smoke"),
]


def test_tiny_suite_runs_every_task_and_writes_the_tables(tmp_path):
    benches = [bench_of(t, tmp_path, budget=2, tpe_budget=3, seeds=1, workers=1,
                        strategies=("random", "tpe_median", "scaletune")) for t in TINY]
    # The BPE task trains on its own tokenizer file, the byte task on bytes.
    assert benches[0].tokenizer == "byte"
    assert benches[1].tokenizer.endswith("pydoc-bpe320.json")
    # Batch choices follow the budget: 320 down to 40 optimizer steps.
    assert benches[0].batch_sizes == (2, 4, 8, 16)
    run_suite(benches, workers=1)
    text = analyze_suite(TINY, benches, tmp_path, "smoke")

    summary = pd.read_csv(tmp_path / "suite_summary.csv")
    assert set(summary["task"]) == {"tiny-byte", "tiny-bpe"}
    assert summary["best_at_8"].isna().all()  # budget 2: no seed has used 8 trials
    # TPE + median ran its longer budget; the others stopped at 2.
    for bench in benches:
        trials = pd.read_csv(bench.out / "search_efficiency_trials.csv")
        used = trials.groupby("strategy")["tokens"].sum() / bench.tokens_per_trial
        assert 3 <= used["tpe_median"] < 4 and 2 <= used["random"] < 3, used
    calib = pd.read_csv(tmp_path / "suite_calibration.csv")
    assert len(calib) == 2 * len(suite.CALIBRATED)
    assert calib["z"].map(math.isfinite).all()
    # z is the best value's distance from the prior's center in sigmas.
    lr = calib[(calib["task"] == "tiny-byte") & (calib["param"] == "lr")].iloc[0]
    assert lr["z"] == pytest.approx(math.log10(lr["best"] / lr["center"]) / lr["sigma"])
    # The tiny models lie far below every law: the priors carry the short-run corrections, and
    # the calibration gives the published center they moved from.
    from scaletune.heuristics.priors import SHORT_RUN_LR_SHIFT_LOG10
    lr_rows = calib[calib["param"] == "lr"]
    assert lr_rows["correction"].tolist() == pytest.approx([SHORT_RUN_LR_SHIFT_LOG10] * 2)
    assert lr_rows["baseline_near_best_n"].min() >= 1
    # A task whose best trial is scaletune's at the prior's center has z of 0 by construction:
    # its row says so (a new task read "all inside 1 sigma" from it).
    for name, c in calib.groupby("task"):
        centered = c["best_strategy"].iloc[0] == "scaletune" and (c["z"].abs() < 1e-9).all()
        assert (f"| {name} (center) |" in text) == centered, text
    # Two tasks are too few to leave one out and fit on the others: no shift is claimed.
    assert "Leave-one-task-out" not in (tmp_path / "suite.md").read_text()
    for heading in ("Best validation loss at 8", "Compute to within 1%", "Prior calibration",
                    "Python documentation (pydoc topics)", "byte-level BPE, 320 tokens"):
        assert heading in text
    assert (benches[1].out / "search_efficiency.png").is_file()
    # Each task's markdown names its own corpus.
    assert "Python documentation" in (benches[1].out / "search_efficiency.md").read_text()

    # Tables at the run's own budget, 2, and a line for 8 and 16, which no study reached.
    assert "## Best validation loss at 2 full-trial equivalents (mean of 1 seed" in text
    assert "## Best validation loss at 16 full-trial equivalents: none yet" in text

    # Re-running resumes: finished studies train nothing more.
    before = len(pd.read_csv(benches[0].out / "search_efficiency_trials.csv"))
    run_suite(benches, workers=1)
    analyze_suite(TINY, benches, tmp_path, "smoke")
    assert len(pd.read_csv(benches[0].out / "search_efficiency_trials.csv")) == before

    # A run of one strategy (the README's longer TPE + median, say) still compares every study
    # the folder holds: its tables were written from that strategy's studies alone, and "the
    # best loss any strategy found" was its own best.
    reach = pd.read_csv(benches[0].out / "search_efficiency_to_1pct.csv")
    only = [bench_of(t, tmp_path, budget=2, tpe_budget=3, seeds=1, workers=1,
                     strategies=("random",)) for t in TINY]
    text = analyze_suite(TINY, only, tmp_path, "smoke")
    assert set(pd.read_csv(tmp_path / "suite_summary.csv")["strategy"]) == {
        "random", "tpe_median", "scaletune"}
    pd.testing.assert_frame_equal(
        pd.read_csv(benches[0].out / "search_efficiency_to_1pct.csv"), reach)
