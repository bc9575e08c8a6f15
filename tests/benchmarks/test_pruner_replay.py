"""The pruner replay benchmark: on a suite folder of one small constructed study, and on the
committed trial tables of the suite."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest

from benchmarks import pruner_replay
from scaletune.search.config import validate_study
from tests.search.helpers import tiny_study


def one_study_suite(tmp_path: Path, task: str = "code-bpe", seed: int = 0) -> tuple[Path, int, int]:
    """A suite folder of one random-search study (of ``task``, ``seed``) of six complete
    trials; its storage, tokens per trial and evaluation interval."""
    text = tmp_path / "t.txt"
    text.write_text("x")
    cfg = validate_study(tiny_study(tmp_path, text, pruner={"name": "none"}))
    studies = tmp_path / "suite" / task / "studies"
    studies.mkdir(parents=True)
    db = studies / f"random-s{seed}.db"
    study = optuna.create_study(study_name=f"random-s{seed}", storage=f"sqlite:///{db}")
    study.set_user_attr("config", cfg.model_dump(mode="json", by_alias=True))
    budget, every = cfg.tokens_per_trial, cfg.eval_interval
    for final in (2.0, 2.2, 2.1, 2.3, 6.0, 2.05):
        study.add_trial(optuna.trial.create_trial(
            value=final,
            intermediate_values={s: final + 2 * (1 - s / budget)
                                 for s in range(every, budget + 1, every)}))
    return db, budget, every


def test_replay_writes_a_row_per_pruner_and_study_and_leaves_the_suite_alone(tmp_path):
    db, budget, every = one_study_suite(tmp_path)
    before = db.read_bytes()

    pruner_replay.main(["--suite", str(tmp_path / "suite"), "--out", str(tmp_path / "out"),
                        "--orders", "2", "--jobs", "1"])

    rows = pd.read_csv(tmp_path / "out" / "pruner_replay.csv")
    # Rule: one row per pruner for the one study in the order its trials ran, each over its six
    # complete trials; and one over the three orders (its own and two shuffles).
    assert set(pruner_replay.PRUNERS) <= set(rows["pruner"])
    assert rows["pruner"].is_unique and (rows["trials"] == 6).all()
    orders = pd.read_csv(tmp_path / "out" / "pruner_replay_orders.csv").set_index("pruner")
    assert set(orders.index) == set(rows["pruner"]) and (orders["replays"] == 3).all()
    # Rule: the predicted pruner stops the hopeless trial and none near the best, in every
    # order; none stops none.
    predicted = rows[rows["pruner"] == "predicted (scaletune)"].iloc[0]
    assert predicted["stopped"] >= 1 and predicted["false_prunes"] == 0
    assert orders.loc["predicted (scaletune)", "compute_saved"] > 0
    assert orders.loc["predicted (scaletune)", "false_prunes"] == 0
    assert rows[rows["pruner"] == "none"].iloc[0]["stopped"] == 0
    md = (tmp_path / "out" / "pruner_replay.md").read_text()
    assert "| predicted (scaletune) | 1 | 6 |" in md and "false prunes, 3 orders" in md
    assert "(1 task x 1 seed)" in md and "in 2 shuffled orders of each study" in md
    # Rule: the suite's study was read from a copy, not opened where it lies.
    assert db.read_bytes() == before
    # Rule: the ceiling stops, at the first evaluation, every trial after the first two that
    # ends more than 1% above the best complete trial before it (2.1, 2.3, 6.0 and 2.05 > 2.02).
    first, later = (rows[rows["pruner"] == label].iloc[0] for label in pruner_replay.CEILINGS)
    assert first["stopped"] == 4 and first["false_prunes"] == 0
    assert first["compute_saved"] == pytest.approx(4 / 6 * (1 - every / budget))
    # From 20% of the budget on: the same four, at the first evaluation there.
    at = min(s for s in range(every, budget + 1, every) if s >= 0.2 * budget)
    assert later["stopped"] == 4
    assert later["compute_saved"] == pytest.approx(4 / 6 * (1 - at / budget))


def test_one_task_without_shuffles_is_said_as_such_and_left_one_task_out_is_skipped(tmp_path,
                                                                                     capsys):
    one_study_suite(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pruner_replay_loto.csv").write_text("task,chosen_on_others\ncode-bpe,of record\n")
    pruner_replay.main(["--suite", str(tmp_path / "suite"), "--out", str(out), "--orders", "0",
                        "--jobs", "1"])
    md = (out / "pruner_replay.md").read_text()
    # Rule: the counts in the text are the ones read; one order is one, not "1 orders".
    assert "(1 task x 1 seed)" in md and "(6 tasks x 3 seeds)" not in md
    assert "in the order the trials ran. Compute saved" in md and "shuffled" not in md
    assert "| saved, 1 order | false prunes, 1 order |" in md
    # Rule: one task leaves none to choose on: the table is skipped, in one line, and no
    # table of it is left in --out (it printed an empty DataFrame and wrote a 1-byte CSV).
    assert pruner_replay.LOTO_SKIPPED in md and "| task left out |" not in md
    assert not (out / "pruner_replay_loto.csv").exists()
    printed = capsys.readouterr().out
    assert pruner_replay.LOTO_SKIPPED in printed and "Empty DataFrame" not in printed


def test_a_task_added_to_the_suite_and_a_fourth_seed_are_replayed(tmp_path, monkeypatch, capsys):
    # The replay read six task names and seeds 0-2 of its own: a task added to the suite's
    # TASKS, or a seed run since, was left out without a word.
    monkeypatch.setattr(pruner_replay, "TASK_NAMES", (*pruner_replay.TASK_NAMES, "mytext-byte"))
    one_study_suite(tmp_path, "mytext-byte", seed=3)
    out = tmp_path / "out"
    pruner_replay.main(["--suite", str(tmp_path / "suite"), "--out", str(out), "--orders", "0",
                        "--jobs", "1", "--tasks", "mytext-byte,code-bpe"])
    rows = pd.read_csv(out / "pruner_replay.csv")
    assert set(rows["task"]) == {"mytext-byte"} and set(rows["seed"]) == {3}
    assert "(1 task x 1 seed)" in (out / "pruner_replay.md").read_text()
    # A task asked for whose studies are not there is named.
    assert ("no random-search studies of code-bpe under " in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        pruner_replay.main(["--suite", str(tmp_path / "suite"), "--tasks", "nope"])
    assert "--tasks: unknown ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an empty list: "no random-search studies ... of " (none)
        pruner_replay.main(["--suite", str(tmp_path / "suite"), "--tasks", " , "])
    assert "--tasks: give at least one of" in capsys.readouterr().err


def test_a_suite_of_scaletune_trials_alone_is_told_what_the_replay_reads(tmp_path):
    # Its trial table was there, of scaletune's trials alone: "no search_efficiency_trials.csv".
    task = tmp_path / "suite" / "code-bpe"
    task.mkdir(parents=True)
    pd.DataFrame({"strategy": ["scaletune"], "seed": [0], "trial": [0]}).to_csv(
        task / "search_efficiency_trials.csv", index=False)
    with pytest.raises(SystemExit) as e:
        pruner_replay.main(["--suite", str(tmp_path / "suite"), "--tasks", "code-bpe",
                            "--out", str(tmp_path / "out")])
    assert ("no random-search trials in the trial tables of code-bpe (" in str(e.value)
            and "the replay reads random search's trials (the suite with --strategies random)"
            in str(e.value)), e.value
    assert not (tmp_path / "out").exists()
    # A suite folder that is not there is told its tables are missing.
    with pytest.raises(SystemExit) as e:
        pruner_replay.main(["--suite", str(tmp_path / "nope"), "--tasks", "code-bpe"])
    assert str(e.value).endswith(f"and no {tmp_path / 'nope'}/<task>/search_efficiency_trials"
                                 ".csv of code-bpe"), e.value


def test_the_suite_is_read_next_to_the_script_from_any_folder(tmp_path, monkeypatch, capsys):
    # It was benchmarks/results/suite under the current folder, while --out was next to the
    # script.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        pruner_replay.main(["--help"])
    assert "".join(str(pruner_replay.SUITE).split()) in "".join(capsys.readouterr().out.split())
    assert pruner_replay.SUITE == pruner_replay.OUT.parent / "suite" and pruner_replay.SUITE.is_dir()


def test_the_committed_trial_tables_replay_to_the_figures_of_record():
    """Without the suite's study files (not committed), the studies are rebuilt from the trial
    tables, and each study's replay gives what the committed results say."""
    from pydantic import TypeAdapter

    from scaletune.search.config import PrunerConfig
    from scaletune.search.pruners import audit, replay

    studies = pruner_replay.load_tables(pruner_replay.SUITE)
    assert len(studies) == 18 and sum(len(t) for _, t in studies.values()) == 286
    recorded = pd.read_csv(pruner_replay.OUT / "pruner_replay.csv")
    build = TypeAdapter(PrunerConfig).validate_python
    for label in ("predicted (scaletune)", "median (scaletune: 25% warmup, 4 start-up)"):
        spec = pruner_replay.PRUNERS[label]
        for (task, seed), (cfg, trials) in studies.items():
            got = audit(replay(build(spec).build(cfg), trials), cfg.tokens_per_trial)
            row = recorded[(recorded["task"] == task) & (recorded["seed"] == seed)
                           & (recorded["pruner"] == label)].iloc[0]
            assert (got["stopped"], got["false_prunes"]) == (row["stopped"], row["false_prunes"])
            assert got["compute_saved"] == pytest.approx(row["compute_saved"], abs=1e-9)


def test_each_study_is_replayed_in_its_order_then_in_seeded_shuffles():
    trials = list(range(12))
    got = pruner_replay.orders("code-bpe", 1, trials, 3)
    # Rule: the order the trials ran first, then shuffles of the same trials, each different.
    assert got[0] == trials and len(got) == 4
    assert all(sorted(o) == trials for o in got) and len({tuple(o) for o in got}) == 4
    # Rule: seeded by task, seed and number: the same in another call (and process), not the
    # same for another study.
    assert pruner_replay.orders("code-bpe", 1, trials, 3) == got
    assert pruner_replay.orders("code-bpe", 2, trials, 3)[1] != got[1]


def test_the_constants_chosen_save_the_most_within_the_bounds_false_prunes():
    rows = pd.DataFrame([
        {"task": "a", "pruner": pruner_replay.BOUND, "false_prunes": 2, "compute_saved": 0.3},
        {"task": "a", "pruner": pruner_replay.grid_label(2, 0.9, 0, 0), "false_prunes": 3,
         "compute_saved": 0.6},
        {"task": "a", "pruner": pruner_replay.grid_label(2, 0.97, 0, 0), "false_prunes": 2,
         "compute_saved": 0.4},
        {"task": "a", "pruner": pruner_replay.grid_label(4, 0.99, 0, 0), "false_prunes": 0,
         "compute_saved": 0.2},
    ])
    # Rule: the most saved among the points with no more false prunes than the bound's (2).
    assert pruner_replay.choose(rows) == pruner_replay.grid_label(2, 0.97, 0, 0)
    # With a bound no point meets, the fewest false prunes.
    rows.loc[0, "false_prunes"] = -1
    assert pruner_replay.choose(rows) == pruner_replay.grid_label(4, 0.99, 0, 0)
