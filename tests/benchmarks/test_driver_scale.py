"""Smoke test of the driver-at-scale benchmark: four fake trials on SQLite for a few seconds,
then the costs of one report and one ask; and what it reports and records of a run."""

from __future__ import annotations

import shlex

import pandas as pd
import pytest
import ray

from benchmarks.driver_scale import main


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_ctrl_c_stops_the_run_and_writes_no_table(tmp_path, shakespeare, monkeypatch, capsys):
    # A Ctrl-C was taken for the point's planned end (the SIGTERM that closes its window): the
    # run went on to the next point and wrote its tables, the cut point's among them, exit 0.
    import signal

    import scaletune.search.runner
    from benchmarks import run_main
    from scaletune.trainer.interrupt import Interrupted

    if ray.is_initialized():
        ray.shutdown()

    def interrupted(*args, **kwargs):
        raise Interrupted(signal.SIGINT)  # as the study's driver raises a Ctrl-C in its window

    monkeypatch.setattr(scaletune.search.runner, "run_study", interrupted)
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(["--trials", "4,8", "--interval", "0.3", "--fast", "",
                               "--seconds", "60", "--history", "12", "--actors", "1", "--big",
                               "0", "--data", str(shakespeare), "--out", str(tmp_path)]),
                 "driver_scale", "its tables are written at the end of a run")
    assert e.value.code == 130
    assert capsys.readouterr().err.endswith(
        "benchmarks.driver_scale: interrupted; its tables are written at the end of a run\n")
    assert not [f for f in tmp_path.iterdir() if f.suffix in (".csv", ".md", ".txt")], list(
        tmp_path.iterdir())


def test_the_report_holds_only_what_this_run_measured(tmp_path, shakespeare):
    out = tmp_path / "ds"
    out.mkdir()
    # An earlier run's tables in the folder: the load on PostgreSQL, and a big study of another tag.
    (out / "driver_scale.csv").write_text(
        "storage,trials,interval_s,reports_per_s,latency_median_ms,latency_p99_ms,"
        "driver_report_median_ms,driver_report_p99_ms,driver_cpu,driver_rss_mib,pruned,fill_s\n"
        "postgresql,256,10.0,23.2,15.2,96.1,5.2,30.7,0.45,336,109,10.8\n")
    (out / "driver_scale_10k_big.csv").write_text(
        "storage,trials,report_s,studies_s,show_s,dashboard_first_s,dashboard_study_s,"
        "load_every_trial_s\npostgresql,10000,24.1,3.6,10.8,0.1,11.6,10.9\n")
    main(["--trials", "2", "--seconds", "0", "--costs", "--history", "4", "--big", "0",
          "--fast", "", "--data", str(shakespeare), "--out", str(out)])
    md = (out / "driver_scale.md").read_text()
    # Rule: the report is of this run's CSVs alone: the costs on SQLite, nothing of the others.
    assert "| sqlite | 2 |" in md
    assert "postgresql" not in md and "nan" not in md
    assert "under load" not in md and "A study of finished trials" not in md
    # Rule: the command recorded pastes back as it ran, its empty argument included.
    command = (out / "driver_scale_command.txt").read_text().splitlines()[0]
    assert shlex.split(command)[3:] == ["--trials", "2", "--seconds", "0", "--costs",
                                        "--history", "4", "--big", "0", "--fast", "",
                                        "--data", str(shakespeare), "--out", str(out)]


def test_a_report_of_runs_made_in_steps_takes_the_csvs_of_each(tmp_path):
    from benchmarks.driver_scale import write_tables

    # As driver_scale.md of record: the costs of one run, the big study of another (its own tag).
    (tmp_path / "driver_scale_costs.csv").write_text(
        "storage,running,optuna_study_ms,driver_study_ms,optuna_ask_ms,driver_ask_ms\n"
        "sqlite,256,121.4,6.8,40.0,25.0\n")
    (tmp_path / "driver_scale_10k_big.csv").write_text(
        "storage,trials,report_s,studies_s,show_s,dashboard_first_s,dashboard_study_s,"
        "load_every_trial_s\nsqlite,10000,25.7,3.8,12.0,0.1,10.6,9.2\n")
    md = write_tables(tmp_path, "driver_scale", [tmp_path / "driver_scale_costs.csv"]).read_text()
    assert "| sqlite | 256 | 121.4 | 6.8 | 17.9x |" in md and "10,000" not in md
    md = write_tables(tmp_path, "driver_scale", [tmp_path / "driver_scale_costs.csv",
                                                 tmp_path / "driver_scale_10k_big.csv"]).read_text()
    assert "| sqlite | 10,000 | 25.7 |" in md


@pytest.mark.parametrize("flags, said", [
    (["--trials", "0"], "--trials: comma-separated counts of 1 or more ('' for none), got '0'"),
    (["--trials", "32,x"], "--trials: comma-separated counts of 1 or more ('' for none), got "
                           "'32,x'"),
    (["--fast", "2,0"], "--fast: comma-separated seconds above 0 ('' for none), got '2,0'"),
    (["--interval", "0"], "--interval: must be above 0, got 0"),
    (["--actors", "0"], "--actors: must be 1 or more, got 0"),
    (["--big", "-1"], "--big: must be 0 or more, got -1"),
    (["--trials", "", "--costs"], "--costs needs --trials"),
    (["--trials", "", "--big", "0"], "nothing to measure: give --trials with --seconds above 0, "
                                     "--costs, or --big"),
    (["--seconds", "0", "--big", "0"], "nothing to measure"),
    # Tracebacks, the second with driver_scale_work/ left behind.
    (["--pruner", "bogus"], "--pruner: Input tag 'bogus' found using 'name' does not match"),
    (["--data", "/nonexistent.txt"], "--data: file not found: /nonexistent.txt"),
], ids=["trials 0", "trials x", "fast 0", "interval 0", "actors 0", "big -1", "costs alone",
        "no trials", "no seconds", "pruner bogus", "data missing"])
def test_a_bad_argument_is_refused_by_name_before_anything_is_written(tmp_path, capsys, flags,
                                                                      said):
    # --trials 0 was a ConfigError with driver_scale_work/ left behind; --trials '' measured
    # nothing and exited 0, having rewritten the tables and the command of record.
    with pytest.raises(SystemExit) as e:
        main([*flags, "--out", str(tmp_path / "ds")])
    assert e.value.code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_a_storage_it_cannot_measure_is_refused(tmp_path, capsys):
    # Both measured nothing and exited 0, having written a command file over the one of record.
    for storages, said in (("sqllite", "--storages: unknown ['sqllite']; choose from sqlite, "
                                       "postgresql"),
                           ("postgresql", "--storages postgresql needs --postgres URL")):
        with pytest.raises(SystemExit) as e:
            main(["--trials", "2", "--seconds", "1", "--big", "0", "--storages", storages,
                  "--out", str(tmp_path / "ds")])
        assert e.value.code == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()
