"""The seed-noise benchmark's table: per-task spread, the pooled floor, and left one task out."""

from __future__ import annotations

import statistics

import pytest

from benchmarks import seed_noise
from scaletune.search.noise import SeedGroup


def group(task, values, lost=()):
    return {"task": task, "trial": 3, "seeds": list(range(len(values))), "values": list(values),
            "lost": list(lost)}


def test_the_table_says_which_tasks_the_default_floor_covers_and_pools_the_rest():
    quiet = group("a", [2.00, 2.01, 2.005])       # 2 sd 0.5%: covered by 1%
    loud = group("b", [3.00, 3.09, 3.03], ["seed 3 diverged: spike"])  # 2 sd ~3%: not
    text = seed_noise.table([quiet, loud], "python -m benchmarks.seed_noise")
    rows = [line for line in text.splitlines() if line.startswith(("| a ", "| b "))]
    two_sd_b = 2 * statistics.stdev([3.00, 3.09, 3.03]) / statistics.fmean([3.00, 3.09, 3.03])
    assert f"| {two_sd_b:.2%} | no |" in text
    assert "| 0.50% | yes |" in text
    assert "seed 3 diverged: spike |" in text
    # The repeats' mean over seed 0: what picking seed 0 as the best owed to luck.
    assert seed_noise.lucky(SeedGroup(3, (0, 1, 2), (2.0, 2.02, 2.04))) == pytest.approx(0.015)
    assert "| +0.37% | none |" in text  # task a: (2.01 + 2.005) / 2 / 2.00 - 1 = 0.375%
    # Left one task out: each task against the floor the other one measures.
    assert f"| a | {two_sd_b:.2%} | 0.50% | yes |" in text
    assert f"| b | 0.50% | {two_sd_b:.2%} | no |" in text
    assert len(rows) == 4  # a row each in both tables


def test_one_task_says_the_left_out_table_is_skipped_not_an_empty_one():
    # A run of a task of one's own printed the header of an empty table, "over the 1 tasks".
    text = seed_noise.table([group("mine", [2.00, 2.01, 2.005])], "python -m benchmarks.seed_noise")
    assert "Pooled over the 1 task (each" in text
    assert "Left one task out: skipped, the run measured one task (it needs two or more)." in text
    assert "| task left out |" not in text


def test_an_unknown_task_is_refused_by_name(tmp_path, capsys):
    # It was dropped in silence, or a TypeError from the table when none was left.
    with pytest.raises(SystemExit) as e:
        seed_noise.main(["--tasks", "shakespeare-byte,bogus", "--out", str(tmp_path / "sn")])
    assert e.value.code == 2
    assert "--tasks: unknown ['bogus']; choose from ['shakespeare-byte'," in capsys.readouterr().err
    assert not (tmp_path / "sn").exists()


def test_no_repeats_is_refused_before_anything_runs(tmp_path, capsys):
    # --repeats 0 ran each task's study, then failed to unpack the seeds it had not repeated.
    with pytest.raises(SystemExit) as e:
        seed_noise.main(["--repeats", "0", "--tasks", "pydoc-byte", "--out", str(tmp_path / "sn")])
    assert e.value.code == 2
    assert "--repeats: must be 1 or more, got 0" in capsys.readouterr().err
    assert not (tmp_path / "sn").exists()


def test_a_suite_without_the_studies_is_refused_before_anything_is_written(tmp_path, capsys):
    # It wrote the corpus into the suite's corpora/ and made --out, then stopped on the study.
    suite = tmp_path / "suite"
    with pytest.raises(SystemExit) as e:
        seed_noise.main(["--tasks", "pydoc-byte", "--workers", "1", "--suite", str(suite),
                         "--out", str(tmp_path / "sn")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--suite: not found: {suite}/pydoc-byte/studies/scaletune-s0.db" in err
    assert "run python -m benchmarks.suite first" in err
    assert not suite.exists() and not (tmp_path / "sn").exists()
