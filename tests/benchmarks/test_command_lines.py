"""What every benchmark script says of itself: its --help, and the command line it records."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex

import pytest

from benchmarks.search_efficiency import command_line

SCRIPTS = ("driver_scale", "gpu_check", "ladder_coverage", "ladder_suite", "orchestration",
           "pruner_replay", "search_efficiency", "seed_noise", "suite", "trainer_throughput")


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
