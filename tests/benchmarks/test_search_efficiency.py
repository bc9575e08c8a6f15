"""Smoke test of the search-efficiency benchmark: a tiny model, budget 2, two seeds, two strategies."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.search_efficiency import Bench, analyze, load_trials, run_all

pytestmark = pytest.mark.slow


def test_tiny_benchmark_respects_budgets_and_writes_the_table(tmp_path, shakespeare):
    bench = Bench(
        data=shakespeare, out=tmp_path / "results", budget=2, seeds=2, workers=1,
        strategies=("random", "scaletune"), n_layer=1, n_head=2, n_embd=32, block_size=32,
        tokens_per_trial=20_480, val_windows=16,
    )
    bench.out.mkdir(parents=True)
    run_all(bench)
    analyze(bench, "smoke")

    summary = pd.read_csv(bench.out / "search_efficiency.csv")
    # One row per (strategy, budget), each averaged over the two seeds.
    assert sorted(zip(summary["strategy"], summary["budget"], strict=True)) == [
        ("random", 2), ("scaletune", 2)]
    assert (summary["n_seeds"] == 2).all()
    assert summary["mean"].notna().all()

    trials = load_trials(bench)
    for key, t in trials.groupby(["strategy", "seed"]):
        used = t["tokens"].sum()
        # A study stops asking once it has used its budget: it overshoots by less than one trial.
        assert bench.budget * bench.tokens_per_trial <= used, key
        assert used < (bench.budget + 1) * bench.tokens_per_trial, key
        assert (t["tokens"] <= bench.tokens_per_trial).all()
    # scaletune's first trial is the priors' center.
    first = trials[trials["strategy"] == "scaletune"].iloc[0]
    assert first["number"] == 0 and first["state"] == "COMPLETE"
    # Every seed trains with the same seed, so the task is one function of the hyperparameters:
    # the same first trial gives the same loss on both seeds, while the searches differ.
    firsts = trials[(trials["strategy"] == "scaletune") & (trials["number"] == 0)]
    assert len(firsts) == 2 and firsts["value"].nunique() == 1
    draws = trials[(trials["strategy"] == "random") & (trials["number"] == 0)]
    assert draws["param_lr"].nunique() == 2

    # Re-running the same command resumes: finished studies train nothing more.
    run_all(bench)
    assert len(load_trials(bench)) == len(trials)
    for name in ("search_efficiency.png", "search_efficiency_to_1pct.csv",
                 "search_efficiency_command.txt"):
        assert (bench.out / name).is_file()


@pytest.mark.parametrize("module, flags, said", [
    ("search_efficiency", ["--budget", "0"], "--budget: must be 1 or more, got 0"),
    ("orchestration", ["--workers", "a"], "--workers: comma-separated counts of 1 or more, got 'a'"),
    ("orchestration", ["--workers", "0"], "--workers: comma-separated counts of 1 or more, got '0'"),
    ("orchestration", ["--trials", "0"], "--trials: must be 1 or more, got 0"),
    # A Ray traceback ("Invalid address format") once the study started.
    ("orchestration", ["--address", "bogus"], "--address: not an address Ray takes (got 'bogus')"),
    # A ValidationError of the study config.
    ("suite", ["--budget", "0", "--analyze-only"], "--budget: must be 1 or more, got 0"),
    ("suite", ["--tpe-budget", "-1"], "--tpe-budget: must be 1 or more, got -1"),
], ids=["budget 0", "workers a", "workers 0", "trials 0", "address bogus", "suite budget 0",
        "suite tpe-budget -1"])
def test_a_bad_count_is_refused_by_name_before_anything_runs(tmp_path, capsys, module, flags,
                                                             said):
    import importlib

    # They were a ValidationError, a ValueError, a ZeroDivisionError once a study had run, and a
    # ValueError of min() on no trials.
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"benchmarks.{module}").main([*flags, "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_is_refused_by_name(tmp_path, capsys):
    from benchmarks.search_efficiency import main

    (tmp_path / "afile").write_text("kept")
    with pytest.raises(SystemExit) as e:  # a FileExistsError traceback
        main(["--out", str(tmp_path / "afile")])
    assert e.value.code == 2
    assert f"--out: {tmp_path / 'afile'} is a file; give a folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "kept"
