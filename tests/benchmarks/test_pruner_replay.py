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


def test_replay_writes_a_row_per_pruner_and_study_and_leaves_the_suite_alone(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("x")
    cfg = validate_study(tiny_study(tmp_path, text, pruner={"name": "none"}))
    studies = tmp_path / "suite" / "code-bpe" / "studies"
    studies.mkdir(parents=True)
    db = studies / "random-s0.db"
    study = optuna.create_study(study_name="random-s0", storage=f"sqlite:///{db}")
    study.set_user_attr("config", cfg.model_dump(mode="json", by_alias=True))
    budget, every = cfg.tokens_per_trial, cfg.eval_interval
    for final in (2.0, 2.2, 2.1, 2.3, 6.0, 2.05):
        study.add_trial(optuna.trial.create_trial(
            value=final,
            intermediate_values={s: final + 2 * (1 - s / budget)
                                 for s in range(every, budget + 1, every)}))
    before = db.read_bytes()

    pruner_replay.main(["--suite", str(tmp_path / "suite"), "--out", str(tmp_path / "out")])

    rows = pd.read_csv(tmp_path / "out" / "pruner_replay.csv")
    # Rule: one row per pruner for the one study, each over its six complete trials.
    assert set(pruner_replay.PRUNERS) <= set(rows["pruner"])
    assert (rows["trials"] == 6).all()
    # Rule: the predicted pruner stops the hopeless trial and none near the best; none stops none.
    predicted = rows[rows["pruner"] == "predicted (scaletune)"].iloc[0]
    assert predicted["stopped"] >= 1 and predicted["false_prunes"] == 0
    assert rows[rows["pruner"] == "none"].iloc[0]["stopped"] == 0
    assert "| predicted (scaletune) | 1 | 6 |" in (tmp_path / "out" / "pruner_replay.md").read_text()
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


def test_the_committed_trial_tables_replay_to_the_figures_of_record():
    """Without the suite's study files (not committed), the studies are rebuilt from the trial
    tables, and each study's replay gives what the committed results say."""
    from pydantic import TypeAdapter

    from scaletune.search.config import PrunerConfig
    from scaletune.search.pruners import audit, replay

    suite = Path(pruner_replay.__file__).parent / "results" / "suite"
    studies = pruner_replay.load_tables(suite)
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
