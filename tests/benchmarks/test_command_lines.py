"""What every benchmark script says of itself: its --help, and the command line it records."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex

import pytest

from benchmarks.search_efficiency import command_line

SCRIPTS = ("driver_scale", "dropout_cpu", "gpu_check", "ladder_coverage", "ladder_suite",
           "orchestration", "pruner_replay", "search_efficiency", "seed_noise", "suite",
           "trainer_throughput")


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_names_the_script_as_it_is_run_and_each_folder_and_its_default(script, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"benchmarks.{script}").main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    # Rule: the usage line is the command a user types (three of them said "gpu_check.py").
    assert text.startswith(f"usage: python -m benchmarks.{script} ")
    # Rule: --out and --data, where the script has them, say what they are and their default.
    options = text.split("\noptions:\n", 1)[1]
    for flag in ("--out OUT", "--data DATA"):
        if flag in options:
            said = options.split(flag, 1)[1].split("\n  -", 1)[0]
            assert re.match(r" +\S", said), f"{flag} has no help"
            assert "(default" in " ".join(said.split()), f"{flag} hides its default"


def test_the_recorded_command_pastes_back_with_its_empty_and_spaced_arguments():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.driver_scale")
    argv = ["--trials", "256", "--fast", "", "--out", "/tmp/a folder"]
    line = command_line(parser, argv)
    # Rule: the line splits back into the very arguments (`--fast ''` was written `--fast  `).
    assert shlex.split(line) == ["python", "-m", "benchmarks.driver_scale", *argv]
    assert line == "python -m benchmarks.driver_scale --trials 256 --fast '' --out '/tmp/a folder'"


@pytest.mark.parametrize("repeats", ["0", "-3"])
def test_ladder_coverage_refuses_no_repeats(repeats, capsys):
    # A ZeroDivisionError, and for -3 a table of nan written with exit 0.
    from benchmarks.ladder_coverage import main

    with pytest.raises(SystemExit) as e:
        main(["--repeats", repeats])
    assert e.value.code == 2
    assert f"--repeats: must be 1 or more, got {repeats}" in capsys.readouterr().err


def refused(script: str, argv: list[str], capsys) -> str:
    """What ``script`` says as it refuses ``argv`` (exit 2, before anything runs)."""
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"benchmarks.{script}").main(argv)
    assert e.value.code == 2
    return " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("script, flag", [
    ("suite", "--tasks"), ("suite", "--strategies"), ("search_efficiency", "--strategies"),
    ("ladder_suite", "--tasks"), ("seed_noise", "--tasks")])
def test_an_empty_list_of_names_is_refused_by_its_flag(script, flag, tmp_path, capsys):
    # suite: "max() arg is an empty sequence"; search_efficiency and ladder_suite ran nothing and
    # said there were no studies, naming no flag.
    said = refused(script, [flag, "", "--out", str(tmp_path / "out")], capsys)
    assert f"{flag}: give at least one of [" in said
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--seeds", "--workers"])
def test_ladder_suite_refuses_no_seeds_or_workers(flag, tmp_path, capsys):
    # --workers 0 ran a whole ladder; --seeds 0 said "no ladder has run" and wrote its command.
    said = refused("ladder_suite", ["--tasks", "shakespeare-byte", flag, "0", "--out",
                                    str(tmp_path / "out")], capsys)
    assert f"{flag}: must be 1 or more, got 0" in said
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, error", [
    (["--rounds", "0"], "--rounds: must be 1 or more, got 0"),
    (["--threads", "0"], "--threads: must be 1 or more, got 0"),
    (["--rate", "1.5"], "--rate: must be a dropout rate in (0, 1), got 1.5"),
    (["--rate", "nan"], "--rate: must be a dropout rate in (0, 1), got nan")])
def test_dropout_cpu_refuses_what_it_cannot_time(argv, error, capsys):
    # A StatisticsError, torch's RuntimeError, and torch's ValueError for a rate out of range.
    assert error in refused("dropout_cpu", argv, capsys)


def test_ladder_coverage_prints_its_columns_and_checks_its_file_first(tmp_path, capsys):
    from benchmarks.ladder_coverage import main

    # Rule: the rows on the terminal come under their header (six bare numbers a row, before).
    main(["--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| rungs | rung scatter (dex) |") and len(lines) > 3
    # Rule: a file it cannot write is refused before the computation, not after it.
    said = refused("ladder_coverage", ["--repeats", "1", "-o", str(tmp_path / "no" / "t.md")],
                   capsys)
    assert "--output: the folder of" in said and "does not exist" in said


def test_orchestration_records_the_task_it_ran_not_the_search_benchmarks_settings(tmp_path):
    from benchmarks.orchestration import settings
    from benchmarks.search_efficiency import Bench

    recorded = settings(Bench(out=tmp_path))["bench"]
    assert not {"budget", "tpe_budget", "seeds", "workers", "strategies"} & recorded.keys()
    assert {"n_layer", "tokens_per_trial", "batch_sizes", "data"} <= recorded.keys()
