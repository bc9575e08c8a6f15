"""`scaletune export`: the best trial as a training config, carried over by the scaling laws.

Unit tests build studies through Optuna's public API (ask -> report -> tell) on a SQLite file,
with the user attrs the runner records, so they need no training. One slow test runs a real
tiny study, exports it and trains the exported config.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from scaletune.search.cli import main
from scaletune.search.config import StudyConfig, load_study
from scaletune.search.export import export_study
from scaletune.search.space import fixed_values, study_priors, trial_config
from scaletune.search.storage import mask_url
from scaletune.trainer.config import DataConfig, load_train_config
from scaletune.trainer.errors import ConfigError
from scaletune.trainer.record import code_revision
from tests import forked
from tests.search.helpers import tiny_study, write_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 3e-2, log=True),
    "tau": FloatDistribution(1e-3, 10.0, log=True),
    "warmup_frac": FloatDistribution(0.0, 0.2),
    "batch_size": CategoricalDistribution([8, 16]),
}
EVAL = 8_192


def study_file(tmp_path: Path, **overrides: Any) -> tuple[Path, StudyConfig]:
    """The tiny study of the runner tests, on a small text file of our own."""
    text = tmp_path / "text.txt"
    if not text.exists():
        text.write_text("It is a truth universally acknowledged. " * 6_000)
    path = write_study(tmp_path, tiny_study(tmp_path, text, **overrides))
    return path, load_study(path)


def make_study(cfg: StudyConfig) -> optuna.Study:
    """An empty study carrying the study user attrs that `scaletune run` records."""
    cfg.folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    study.set_user_attr("config", cfg.model_dump(mode="json", by_alias=True))
    study.set_user_attr("fingerprint", cfg.fingerprint())
    study.set_user_attr("data_tokens", {"train": 200_000, "val": 20_000})
    study.set_user_attr("vocab_size", 256)
    study.set_user_attr("priors", study_priors(cfg, 256, 200_000).to_json())
    study.set_user_attr("provenance", {"git_revision": "0123abcd", "optuna": optuna.__version__})
    return study


def add_trial(
    study: optuna.Study,
    cfg: StudyConfig,
    params: dict[str, Any],
    value: float,
    state: TrialState = TrialState.COMPLETE,
    trained: int | None = None,
    prune_reason: str = "median pruner at 16,384 tokens",
    code: str | None = "this",
) -> optuna.trial.FrozenTrial:
    """One trial as the runner leaves it: derived attrs, a loss per token checkpoint, the end."""
    study.enqueue_trial(params)
    trial = study.ask(DISTRIBUTIONS)
    _, derived = trial_config(cfg, trial.params, fixed_values(cfg), 1)
    for key, v in derived.items():
        trial.set_user_attr(key, v)
    budget = derived["steps"] * derived["tokens_per_step"]
    trained = budget if trained is None else trained
    for tokens in range(EVAL, trained + 1, EVAL):
        trial.report(value + 2.0 * (1 - tokens / budget), tokens)
    trial.set_user_attr("tokens_seen", trained)
    trial.set_user_attr("wall_time_s", 2.0)
    trial.set_user_attr("worker_started_at", 1.0)
    if code is not None:  # the code that trained it: this one's, unless given
        trial.set_user_attr("worker_code", code_revision() if code == "this" else code)
    if state == TrialState.COMPLETE:
        trial.set_user_attr("final_val_loss", value)
        study.tell(trial, value)
    elif state == TrialState.PRUNED:
        trial.set_user_attr("prune_reason", prune_reason)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("fail_reason", "RuntimeError: boom")
        study.tell(trial, state=TrialState.FAIL)
    return study.trials[-1]


def params(lr: float, tau: float = 0.5, warmup_frac: float = 0.1, batch_size: int = 16) -> dict:
    return {"lr": lr, "tau": tau, "warmup_frac": warmup_frac, "batch_size": batch_size}


@pytest.fixture
def finished(tmp_path) -> tuple[Path, StudyConfig, optuna.Study]:
    """Three complete trials (trial 1 is best) and a pruned one whose last loss is lowest."""
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(1e-3, tau=0.3, warmup_frac=0.05, batch_size=8), 2.6)
    add_trial(study, cfg, params(4e-3, tau=0.8, warmup_frac=0.15, batch_size=16), 2.2)
    add_trial(study, cfg, params(2e-2, tau=0.1, warmup_frac=0.10, batch_size=8), 2.9)
    add_trial(study, cfg, params(9e-3, tau=0.5), 0.5, TrialState.PRUNED, trained=2 * EVAL)
    return path, cfg, study


# --------------------------------------------------------------------------- exact copy


@pytest.mark.parametrize("code", ["0123abcd", None, "this"])
def test_a_trial_trained_by_other_code_is_said_not_to_repeat(tmp_path, capsys, code):
    # A study resumed after an upgrade: its trials from before were trained by the old code, and
    # the export said that the run repeats the trial's loss, and named the study's first code.
    (tmp_path / "study").mkdir()
    path, cfg = study_file(tmp_path / "study")
    study = make_study(cfg)  # its first launch ran 0123abcd
    add_trial(study, cfg, params(1e-3, tau=0.3), 2.6)
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2,  # the best
              code=code_revision() if code == "this" else code)
    add_trial(study, cfg, params(2e-2, tau=0.1), 2.9)
    out = tmp_path / "final.yaml"
    assert main(["export", str(path), "-o", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert main(["show", str(path)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    record = load_train_config(out).provenance
    if code == "0123abcd":
        # Without spaces: a revision with local changes ('-dirty.<hash>') may wrap at its hyphen.
        note = (f"trial 1 was trained by 0123abcd, and this is {code_revision()}: where the "
                "trainer changed between them, this run does not repeat the trial's loss")
        assert "".join(note.split()) in "".join(said.split()), said
        assert record["git_revision"] == "0123abcd" and "code revision 0123abcd" in said
        # and the transfer line no longer says that the run repeats the loss.
        assert record["transfer"] == ("none: the trial's config, trained by other code than "
                                      "this (the note below): the run may not repeat its loss, "
                                      "and repeats it at most with num_threads: 1, as the trial "
                                      "had")
        # `show` says which code trained which trials.
        assert f"trained by {code_revision()} (trials 0, 2); 0123abcd (trial 1)" in shown, shown
    elif code is None:  # a trial from before trials recorded their code: the study's is named
        assert ("trial 1 records no code revision (it trained before scaletune recorded each "
                "trial's); the study's first launch ran 0123abcd, and this is") in said, said
        assert f"trained by {code_revision()} (trials 0, 2); unrecorded (trial 1)" in shown
        # And run from an installed package (no git checkout), no revision: said in words.
        study.set_user_attr("provenance", {"git_revision": None})
        assert main(["export", str(path), "-o", str(out)]) == 0
        said = " ".join(capsys.readouterr().out.split())
        assert "code revision unknown (not run from a git checkout)" in said
        assert "records no code revision" not in said
    else:  # trained by this code: neither note nor row
        assert "does not repeat" not in said and "trained by" not in shown
        assert record["git_revision"] == code_revision()


def test_the_trials_each_code_trained_are_listed_in_a_few_runs():
    from scaletune.search.manage import _spans

    assert _spans([8, 0, 1, 2, 5, 7]) == "0-2, 5, 7-8"
    # Two codes turn about on a cluster of mixed nodes: one row held 11,032 characters.
    assert _spans(list(range(0, 2000, 2))) == "0, 2, 4, 6, 8, 10 and 994 more"


def test_export_copies_the_best_trial_exactly(finished, tmp_path):
    path, cfg, study = finished
    out = tmp_path / "out" / "final.yaml"

    assert main(["export", str(path), "-o", str(out)]) == 0

    loaded = load_train_config(out)
    # Rule: the best COMPLETE trial is exported (trial 1), not the pruned one with a lower loss.
    assert loaded.provenance["trial"] == 1
    assert loaded.optim.lr == 4e-3
    assert loaded.optim.warmup_frac == 0.15
    assert loaded.batch_size == 16
    assert loaded.model.dropout == 0.0
    # Rule: lambda is the trial's, derived from its tau with B and D in tokens.
    tokens_per_step = 16 * cfg.model.block_size
    assert loaded.optim.weight_decay == pytest.approx(
        tokens_per_step / (4e-3 * 0.8 * cfg.tokens_per_trial), rel=1e-12
    )
    assert loaded.optim.weight_decay == study.trials[1].user_attrs["weight_decay"]
    # Rule: same model, data, budget and evaluation grid as the study's trials.
    assert loaded.tokens == cfg.tokens_per_trial
    assert loaded.model == cfg.model
    assert loaded.eval_every_tokens == cfg.eval_interval
    assert loaded.seed == cfg.seed
    # Rule: everything else equals the trial's own training config.
    trial_cfg, _ = trial_config(cfg, study.trials[1].params, fixed_values(cfg), None)
    run_options = {"out_dir", "checkpoint_every_tokens", "progress", "num_threads", "provenance"}
    assert loaded.model_dump(exclude=run_options) == trial_cfg.model_dump(exclude=run_options)
    assert loaded.provenance["transfer"].startswith("none")
    # ... and says what a repeat of the trial's loss takes: the trial's torch threads.
    assert "only with num_threads: 1, as the trial had" in loaded.provenance["transfer"]
    assert loaded.provenance["rules"] == []


def test_export_and_report_functions_take_a_study_files_path(finished, tmp_path):
    # As their commands do ("every command is a function first"): a path was an AttributeError.
    from scaletune.search import make_report

    path, cfg, _ = finished
    assert export_study(str(path), tmp_path / "a.yaml").config.provenance["trial"] == 1
    assert make_report(path, tmp_path / "report")["best"]["number"] == 1
    with pytest.raises(TypeError, match=r"export_study takes a StudyConfig, a Ladder or the path "
                                        r"of a study or ladder file, not a dict"):
        export_study(cfg.model_dump(), tmp_path / "b.yaml")


def test_the_python_functions_say_what_they_take(finished, tmp_path):
    # Each of these was an error from deep inside: a TypeError of a comparison, pydantic's
    # error about TrainConfig.batch_size, "'str' object has no attribute 'source'", a file "t"
    # not found, an IndexError, "PosixPath('.') has an empty name", a FileExistsError.
    from scaletune.search import fit_laws, make_report, open_study, pick_trial, run_ladder
    from scaletune.trainer import train

    path, cfg, study = finished
    for bad in ("8", 2.5, True):
        with pytest.raises(ConfigError, match=rf"max_batch_size: expected a whole number of "
                                              rf"sequences >= 1, got {bad!r}"):
            export_study(cfg, tmp_path / "c.yaml", max_batch_size=bad)
    for bad in ("n_embd=64", ["n_embd=64"]):  # the command line's form: "'str' object is not
        with pytest.raises(TypeError, match=r"export_study: model takes a dict of the model's "
                                            r"fields to change \(model=\{'n_embd': 128\}"):
            export_study(cfg, tmp_path / "d.yaml", model=bad)  # a mapping"
    with pytest.raises(TypeError, match="pick_trial: the trial's number is an int"):
        pick_trial(study, "1", str(path))
    assert pick_trial(study, 1, str(path)).number == 1
    with pytest.raises(TypeError, match="open_study takes a StudyConfig, not a str"):
        open_study(str(path))
    with pytest.raises(TypeError, match="train takes a TrainConfig, not a str"):
        train(str(path))
    with pytest.raises(TypeError, match="run_ladder takes a Ladder or a ladder file's path, not "
                                        "a dict"):
        run_ladder({"target": {}})
    with pytest.raises(TypeError, match=r"a file's path is expected, not a dict \(a dict: "
                                        r"validate_study\(d\)"):
        load_study(cfg.model_dump())
    with pytest.raises(TypeError, match=r"fit_laws takes a list of two or more studies"):
        fit_laws(str(path))
    with pytest.raises(TypeError, match="fit_laws takes StudyConfigs or study files' paths, not "
                                        "a dict"):
        fit_laws([cfg.model_dump()])
    with pytest.raises(ConfigError, match="studies: none given"):
        fit_laws([])
    # A scale the laws are not fitted over, refused before the studies are read (a ValueError
    # of an internal parameter, scale_kind, once they had been).
    with pytest.raises(ConfigError, match=re.escape("by: 'flops' is not a scale the laws are "
                                                    "fitted over: 'tokens' (tokens per trial) "
                                                    "or 'params' (model size)")):
        fit_laws([path, path], by="flops")
    with pytest.raises(ConfigError, match=r"is a folder; give the file to write"):
        fit_laws([path, path], tmp_path)
    (tmp_path / "a-file").write_text("mine\n")
    with pytest.raises(ConfigError, match=r"a-file is a file; a report is a folder of files"):
        make_report(cfg, tmp_path / "a-file")
    assert (tmp_path / "a-file").read_text() == "mine\n"
    # console=sys.stdout, a notebook's easy slip: an AttributeError at its first line, after
    # Ray had started and the study had been written.
    import sys

    from scaletune.search import run_study

    for call, name in ((lambda: run_study(cfg, console=sys.stdout), "run_study"),
                       (lambda: run_ladder(tmp_path / "no.yaml", console="x"), "run_ladder"),
                       (lambda: make_report(cfg, tmp_path / "r", console=sys.stdout),
                        "make_report")):
        with pytest.raises(TypeError, match=rf"{name}: console takes a rich Console"):
            call()
    assert not (tmp_path / "r").exists()


def test_exported_run_options(finished, tmp_path):
    path, cfg, _ = finished
    out = tmp_path / "final.yaml"
    done = export_study(cfg, out, source=str(path))
    loaded = load_train_config(out)
    # Rule: the run writes next to the file; a checkpoint every 5% of its tokens; progress on.
    assert loaded.out_dir == str(tmp_path / "final-run")
    # As a path relative to the file: a copy in another folder trains there, not into this run.
    assert yaml.safe_load(out.read_text())["out_dir"] == "final-run"
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "final.yaml"
    copy.write_text(out.read_text())
    assert load_train_config(copy).out_dir == str(tmp_path / "elsewhere" / "final-run")
    assert loaded.checkpoint_every_tokens == cfg.tokens_per_trial // 20
    assert loaded.progress is True and loaded.num_threads is None
    # Rule: data paths are absolute, so the file works from any folder.
    assert Path(loaded.data.path).is_absolute() and Path(loaded.data.path).is_file()
    # Rule: what was written is what load_train_config reads back.
    assert loaded == done.config
    # Rule: the data section names only what its source reads (a text file's, no `builtin:`).
    written = yaml.safe_load(out.read_text())["data"]
    assert written["source"] == "text" and "path" in written
    assert not {"builtin", "dataset", "data_files", "split", "text_column"} & set(written)
    # Rule: no temporary file is left behind.
    assert list(tmp_path.glob(".final.yaml*")) == []


def test_an_output_that_ends_in_a_slash_names_a_folder_not_a_file(finished, tmp_path, capsys):
    # -o newdir/ (a folder not there yet) wrote a file named newdir, for export and fit alike.
    path, cfg, _ = finished
    for command, example in ((["export", str(path)], "final.yaml"),
                             (["fit", str(path), str(path)], "laws.json")):
        output = f"{tmp_path / 'newdir'}/"
        assert main([*command, "-o", output]) == 2
        assert (f"1 error(s) in -o {output}:\n  names a folder (it ends in /), and there is none: "
                f"give the file to write, e.g. -o {output}{example}") in capsys.readouterr().err
        assert not (tmp_path / "newdir").exists()


def test_a_best_trial_told_complete_outside_the_driver_before_its_budget_is_said(finished,
                                                                                 tmp_path):
    # Told COMPLETE from the dashboard (--allow-writes) at 90,016 of 120,000 tokens, with a
    # value typed there: export took it as the best without a word.
    path, cfg, study = finished
    assert not [n for n in export_study(cfg, tmp_path / "a.yaml", source=str(path)).notes
                if "reported up to" in n]
    told = add_trial(study, cfg, params(5e-3), 1.5, trained=2 * EVAL)
    notes = export_study(cfg, tmp_path / "b.yaml", source=str(path)).notes
    assert (f"trial {told.number} reported up to {2 * EVAL:,} of its {cfg.tokens_per_trial:,} "
            "tokens: it was ended outside the driver (the dashboard with --allow-writes, or "
            "another program), and its value 1.5000 is the one set there, not a trained run's"
            ) in notes, notes


def test_a_study_of_pythons_own_text_exported_under_another_python_says_so(tmp_path, capsys):
    # pydoc_data.topics is another text in each Python version: a study whose trials read it
    # under 3.10 (another fingerprint of its text) exported and trained here.
    import sys

    from scaletune.trainer.data import prepare_data, read_fingerprint
    from scaletune.trainer.loop import train

    path, cfg = study_file(tmp_path, data={"source": "builtin", "builtin": "pydoc_topics",
                                           "tokenizer": "byte",
                                           "cache_dir": str(tmp_path / "cache")})
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3), 2.2)
    # Cached, as the study's driver leaves it: export reads its fingerprint without tokenizing.
    now = prepare_data(cfg.data, cfg.model.block_size).fingerprint
    assert read_fingerprint(cfg.data) == now
    ran_on = f"186670d0cb960e29-{now.partition('-')[2]}"
    study.set_user_attr("data_fingerprint", ran_on)
    study.set_user_attr("provenance", {**study.user_attrs["provenance"], "python": "3.10.13"})
    out = tmp_path / "final.yaml"
    notes = " ".join(export_study(cfg, out, source=str(path)).notes)
    here = sys.version.split()[0]
    assert ("the final run trains on the data as it is now (the built-in corpus is read from the "
            f"Python that runs it, and the study ran under Python 3.10.13, where this is Python "
            f"{here}; train it under that Python to train on what the trial did)") in notes, notes
    final = load_train_config(out)
    capsys.readouterr()
    train(final.model_copy(update={"tokens": 4 * final.tokens_per_step, "out_dir": None}))
    said = " ".join(capsys.readouterr().err.split())
    assert (f"now reads as {now}: this run trains on the data as it is now (the built-in corpus "
            "is read from the Python that runs it, and its study ran under Python 3.10.13, where "
            f"this is Python {here})") in said, said


def test_data_changed_since_the_study_is_said_by_export_and_by_the_final_run(finished, tmp_path,
                                                                            capsys):
    # The study's text grew after its trials trained: export wrote the config without a word
    # (with the old data's fingerprint in its provenance) and the final run trained on the new
    # text without one either; `run` and `validate` refuse the same change.
    from scaletune.trainer.data import read_fingerprint
    from scaletune.trainer.loop import train

    path, cfg, study = finished
    ran_on = read_fingerprint(cfg.data)
    study.set_user_attr("data_fingerprint", ran_on)
    out = tmp_path / "final.yaml"
    assert not [n for n in export_study(cfg, out, source=str(path)).notes if "data" in n]
    with open(cfg.data.path, "a") as text:
        text.write("A new chapter. " * 100)
    now = read_fingerprint(cfg.data)
    notes = export_study(cfg, out, source=str(path)).notes
    assert (f"data: the study's trials trained on data {ran_on}, and data.path {cfg.data.path} "
            f"now reads as {now}: the final run trains on the data as it is now (restore it to train on "
            "what the trial did)") in notes, notes
    final = load_train_config(out)
    assert final.provenance["data_fingerprint"] == ran_on
    capsys.readouterr()
    train(final.model_copy(update={"tokens": 4 * final.tokens_per_step, "out_dir": None}))
    assert (f"note: data: the trial this config was exported from trained on data {ran_on}, and "
            f"data.path {cfg.data.path} now reads as {now}: this run trains on the data as it is now"
            ) in capsys.readouterr().err
    Path(cfg.data.path).unlink()  # elsewhere: on the cluster that ran the study, say
    notes = export_study(cfg, out, source=str(path)).notes
    assert any(n.startswith(f"data: data.path {cfg.data.path}, which the study's trials trained on, "
                            "cannot be read here (") for n in notes), notes


def test_a_study_folder_moved_or_copied_reads_its_data_where_its_file_now_says(tmp_path, capsys):
    # The study records the config of its first launch, data path and all: after `mv A B`,
    # show named A's data and export wrote A's path (gone: the final run refused it); in a
    # `cp -r A C`, C's export trained on A's data without a word.
    from scaletune.trainer.data import read_fingerprint

    first = tmp_path / "A"
    first.mkdir()
    data = {"source": "text", "path": "corpus.txt", "tokenizer": "byte", "val_windows": 16}
    path, cfg = study_file(first, study_dir="study", data=data)
    study = make_study(cfg)
    trained_on = read_fingerprint(cfg.data)
    study.set_user_attr("data_fingerprint", trained_on)
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2)
    copied, moved = tmp_path / "C", tmp_path / "B"
    shutil.copytree(first, copied)
    first.rename(moved)
    for folder in (moved, copied):
        out = folder / "final.yaml"
        assert main(["export", str(folder / path.name), "-o", str(out)]) == 0
        said = capsys.readouterr().out
        assert "data" not in said.replace("data_fingerprint", ""), said  # no note on the data
        assert load_train_config(out).data.path == str(folder / "corpus.txt")
        assert main(["show", str(folder / path.name)]) == 0
        shown = capsys.readouterr().out
        assert str(folder / "corpus.txt") in shown and str(first) not in shown, shown
    # Data the file names that is not what the trials trained on is not taken for it: the
    # commands say so, and go by the study's record (here a path gone since, which export says).
    (copied / "corpus.txt").write_text("Another text altogether. " * 4_000)
    now = read_fingerprint(load_study(copied / path.name).data)
    assert main(["export", str(copied / path.name), "-o", str(copied / "final.yaml")]) == 0
    said = "".join(capsys.readouterr().out.split())  # paths wrapped at a hyphen: no spaces
    note = (f"note: the study file's data.path {copied / 'corpus.txt'} reads as {now}, not as the "
            f"data the study's trials trained on ({trained_on}, "
            f"data.path {first / 'corpus.txt'}); using the config stored in the study")
    gone = f"data: data.path {first / 'corpus.txt'}, which the study's trials trained on, cannot"
    assert "".join(note.split()) in said and "".join(gone.split()) in said, said


def test_a_study_folder_moved_with_its_tokenizer_file_reads_the_file_where_it_now_lies(
        tmp_path, capsys):
    from scaletune.trainer.data import read_fingerprint
    from tests.trainer.test_tokenizer_files import byte_level_bpe

    # After `mv A B`, export wrote A's tokenizer path (gone) into the final run's config.
    first, moved = tmp_path / "A", tmp_path / "B"
    byte_level_bpe(first / "tok.json", "It is a truth universally acknowledged. " * 500)
    data = {"source": "text", "path": "corpus.txt", "tokenizer": "tok.json", "val_windows": 16}
    path, cfg = study_file(first, study_dir="study", data=data)
    study = make_study(cfg)
    study.set_user_attr("data_fingerprint", read_fingerprint(cfg.data))
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2)
    first.rename(moved)
    out = moved / "final.yaml"
    assert main(["export", str(moved / path.name), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "note" not in said, said
    assert load_train_config(out).data.tokenizer == str(moved / "tok.json")
    assert main(["show", str(moved / path.name)]) == 0
    shown = capsys.readouterr().out
    assert str(moved / "tok.json") in shown and str(first) not in shown, shown


def test_a_study_folder_copied_with_its_saved_dataset_reads_the_copy(tmp_path, capsys,
                                                                      monkeypatch):
    import datasets

    from scaletune.trainer.data import read_fingerprint

    # A dataset's fingerprint was not known without preparing it, so after `cp -r A C` the
    # copy's show and export named A's dataset (and a ladder's report failed once A was gone).
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    first, copied = tmp_path / "A", tmp_path / "C"
    first.mkdir()
    datasets.Dataset.from_dict({"text": ["It is a truth universally acknowledged. " * 100] * 50}
                               ).save_to_disk(str(first / "corpus"))
    data = {"source": "hf", "dataset": "corpus", "tokenizer": "byte", "val_windows": 16,
            "cache_dir": str(tmp_path / "cache")}
    path, cfg = study_file(first, study_dir="study", data=data)
    study = make_study(cfg)
    study.set_user_attr("data_fingerprint", read_fingerprint(cfg.data, local_datasets=True))
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2)
    shutil.copytree(first, copied)
    out = copied / "final.yaml"
    assert main(["export", str(copied / path.name), "-o", str(out)]) == 0
    assert "note" not in capsys.readouterr().out
    assert load_train_config(out).data.dataset == str(copied / "corpus")
    assert main(["show", str(copied / path.name)]) == 0
    shown = capsys.readouterr().out
    assert str(copied / "corpus") in shown and str(first) not in shown, shown


def test_export_says_when_a_local_dataset_changed_or_is_gone(tmp_path, capsys, monkeypatch):
    import datasets

    from scaletune.trainer.data import read_fingerprint

    # A json dataset's fingerprint was not known without preparing it: export of a study whose
    # docs.jsonl was edited said nothing (a text file's study got a note), and after the data
    # was copied away and its first place removed, export wrote the gone path without a word.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    first = tmp_path / "A"
    first.mkdir()
    rows = first / "docs.jsonl"
    rows.write_text("".join(f'{{"body": "It is a truth universally acknowledged, {i}."}}\n'
                            for i in range(3_000)))
    data = {"source": "hf", "dataset": "json", "data_files": "docs.jsonl", "text_column": "body",
            "tokenizer": "byte", "val_windows": 16, "cache_dir": str(tmp_path / "cache")}
    path, cfg = study_file(first, study_dir="study", data=data)
    study = make_study(cfg)
    trained_on = read_fingerprint(cfg.data, local_datasets=True)
    study.set_user_attr("data_fingerprint", trained_on)
    add_trial(study, cfg, params(4e-3, tau=0.8), 2.2)
    with rows.open("a") as f:
        f.write('{"body": "A row added since."}\n')
    assert main(["export", str(path), "-o", str(first / "final.yaml")]) == 0
    said = "".join(capsys.readouterr().out.split())
    edited = (f"note: data: the study's trials trained on data {trained_on}, and data.data_files "
              f"{rows} now reads as ")
    assert "".join(edited.split()) in said, said
    # A copy without its data: the commands go by the record, and say why.
    copied = tmp_path / "C"
    shutil.copytree(first, copied)
    (copied / "docs.jsonl").unlink()
    assert main(["show", str(copied / path.name)]) == 0
    said = "".join(capsys.readouterr().out.split())
    why = (f"the study file's data.data_files {copied / 'docs.jsonl'} cannot be read to "
           "compare it with the data the study's trials trained on (data.data_files: file not "
           f"found: '{copied / 'docs.jsonl'}'); using the config stored in the study")
    assert "".join(why.split()) in said, said
    first.rename(tmp_path / "B")
    assert main(["export", str(tmp_path / "B" / path.name), "-o", str(tmp_path / "f.yaml")]) == 0
    said = "".join(capsys.readouterr().out.split())  # paths wrapped at a hyphen: no spaces
    gone = (f"note: data: data.data_files {rows}, which the study's trials trained on, cannot be "
            f"read here (data.data_files: file not found: '{rows}'): the final run needs it")
    assert "".join(gone.split()) in said, said


def test_a_ladder_target_moved_with_its_laws_file_reads_the_file_where_it_now_lies(tmp_path):
    # The target of a ladder moved to another folder: export read the laws fitted in the first
    # folder, gone, and fell back to the published rules (with a note that it could not read them).
    from scaletune.search.studies import open_study
    from scaletune.trainer.data import read_fingerprint
    from tests.conftest import REPO

    laws = REPO / "benchmarks/results/ladder_warmup/pydoc-byte/s0/laws.json"
    first = tmp_path / "A"
    first.mkdir()
    shutil.copy(laws, first / "laws.json")
    fitted = {"laws": "fitted", "fitted_file": "laws.json"}
    path, cfg = study_file(first, study_dir="study", priors=fitted,
                           data={"source": "text", "path": "corpus.txt", "tokenizer": "byte"})
    make_study(cfg).set_user_attr("data_fingerprint", read_fingerprint(cfg.data))
    moved = tmp_path / "B"
    first.rename(moved)
    _, ran_with, notes = open_study(load_study(moved / path.name))
    assert ran_with.priors.fitted_file == str(moved / "laws.json"), notes
    assert ran_with.data.path == str(moved / "corpus.txt")


def test_export_records_provenance(finished, tmp_path):
    path, cfg, study = finished
    out = tmp_path / "final.yaml"
    export_study(cfg, out, source=str(path), tokens=4 * cfg.tokens_per_trial)
    text = out.read_text()
    record = yaml.safe_load(text)["provenance"]
    # Rule: the study, masked storage, trial, value, fingerprint and revision are recorded.
    assert record["study"] == cfg.name
    assert record["storage"] == mask_url(cfg.storage_url)
    assert record["trial"] == 1 and record["value"] == pytest.approx(2.2)
    assert record["fingerprint"] == cfg.fingerprint()
    # The code that trained the trial (test_a_trial_trained_by_other_code_is_said_not_to_repeat).
    assert record["git_revision"] == code_revision()
    assert f"code revision {code_revision()}" in text
    assert record["study_file"] == str(path.resolve())
    # Rule: both the raw best values and the transferred ones are recorded, with formulas.
    assert record["best"]["lr"] == 4e-3 and record["best"]["tokens"] == cfg.tokens_per_trial
    assert record["final"]["tokens"] == 4 * cfg.tokens_per_trial
    assert record["final"]["lr"] == pytest.approx(4e-3 * 4**-0.32)
    formulas = " ".join(r["formula"] for r in record["rules"])
    assert "(D_new/D_old)^-0.32" in formulas and "(D_new/D_old)^0.383" in formulas
    assert "lambda = B/(eta*tau*D)" in formulas
    # Rule: the same record is readable as comments at the top of the file.
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert text.startswith("# scaletune export")
    assert "# trial        1, val loss 2.2000 (of 3 complete trials)" in head
    # Its column is named by the trial's number: export --trial N copies another than the best.
    assert any(re.search(r"trial 1 +this run$", line) for line in head), head
    assert any(line.startswith("# lr ") and "0.004" in line and "*" in line for line in head)
    assert any("arXiv 2409.19913" in line for line in head)


# --------------------------------------------------------------------------- --tokens, --model, --trial


def test_export_with_longer_horizon_and_wider_model(finished, tmp_path):
    path, cfg, _ = finished
    out = tmp_path / "big.yaml"
    tokens = 64 * cfg.tokens_per_trial
    code = main(["export", str(path), "--tokens", f"{tokens:.6e}", "--model", "n_embd=64",
                 "--model", "n_head=4", "--max-batch-size", "32", "-o", str(out)])
    assert code == 0
    loaded = load_train_config(out)
    lr = 4e-3 * 64**-0.32 * (32 / 64)
    # Rule: the horizon and width rules multiply; the model keys are applied.
    assert loaded.optim.lr == pytest.approx(lr)
    assert (loaded.model.n_embd, loaded.model.n_head, loaded.model.n_layer) == (64, 4, 1)
    assert loaded.tokens == tokens
    # Rule: 16 * 64^0.383 = 78.9 -> 64, capped at 32 by --max-batch-size.
    assert loaded.batch_size == 32
    # Rule: tau (0.8) is kept: lambda re-derived for the new lr, batch and horizon.
    tau = 32 * cfg.model.block_size / (loaded.optim.lr * loaded.optim.weight_decay * tokens)
    assert tau == pytest.approx(0.8)
    # Rule: warmup stays the same fraction of the steps.
    assert loaded.optim.warmup_frac == 0.15
    assert loaded.checkpoint_every_tokens == int(tokens * 0.05)


def test_model_fields_set_by_model_that_no_rule_carries_are_said_not_called_the_trials(
        finished, tmp_path):
    # --model n_head=8 norm=rmsnorm read "transfer none: the trial's config ... repeat its loss
    # exactly", with no rule: the run trained another model, and another loss.
    path, cfg, _ = finished
    out = tmp_path / "m.yaml"
    assert main(["export", str(path), "--model", "n_head=4", "--model", "norm=rmsnorm",
                 "-o", str(out)]) == 0
    record = load_train_config(out).provenance
    assert record["transfer"] == "none: the trial's config, with the model --model sets"
    (rule,) = record["rules"]
    assert rule["value"] == "model" and rule["formula"] == (
        f"set by --model: n_head {cfg.model.n_head} -> 4, norm layernorm -> rmsnorm")
    assert "repeat its loss exactly" not in out.read_text()


def test_the_threads_an_exact_copy_needs_are_the_trials_not_the_files_now(finished, tmp_path):
    # workers is no part of what a study's trials train, so it may change in the file: the
    # export named the file's cpus_per_trial as the threads that repeat the trial's loss.
    path, cfg, _ = finished
    raw = yaml.safe_load(path.read_text())
    raw["workers"] = {**raw.get("workers", {}), "cpus_per_trial": 2}
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "t.yaml"
    assert main(["export", str(path), "-o", str(out)]) == 0
    transfer = load_train_config(out).provenance["transfer"]
    assert f"only with num_threads: {int(cfg.workers.cpus_per_trial)}, as the trial had" in transfer


def test_a_dropout_set_by_model_is_the_runs_and_said_so(finished, tmp_path):
    path, cfg, study = finished
    out = tmp_path / "d.yaml"
    assert main(["export", str(path), "--model", "dropout=0.1", "-o", str(out)]) == 0
    loaded = load_train_config(out)
    trial_dropout = study.best_trial.params.get("dropout", cfg.model.dropout)
    assert loaded.model.dropout == 0.1 != trial_dropout
    # The header and the record said the run kept the trial's dropout, and "transfer none".
    record = loaded.provenance
    assert record["final"]["dropout"] == 0.1 and record["best"]["dropout"] == trial_dropout
    assert record["transfer"] == "none: the trial's config, with the dropout --model sets"
    assert [r["value"] for r in record["rules"]] == ["dropout"]
    head = out.read_text()
    assert re.search(r"# dropout +\S+ +0\.1  \*", head), head
    assert "set to 0.1 by --model" in head and "Scaling laws fitted" not in head
    # Otherwise the trial's config: its evaluations and budget.
    assert loaded.tokens == cfg.tokens_per_trial and loaded.eval_every_tokens is not None


def test_a_vocab_size_below_the_tokenizers_is_refused_by_export(finished, tmp_path, capsys):
    # --model vocab_size=10 under a byte tokenizer (256 tokens) was written, and refused only
    # by the run and by validate of the file.
    path, _, study = finished
    out = tmp_path / "v.yaml"
    assert study.user_attrs["vocab_size"] == 256
    assert main(["export", str(path), "--model", "vocab_size=10", "-o", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("--model model.vocab_size: 10 is smaller than the tokenizer's 256 tokens (byte), so "
            "no run could embed them") in err, err
    assert not out.exists()
    assert main(["export", str(path), "--model", "vocab_size=512", "-o", str(out)]) == 0


def test_export_a_chosen_trial(finished, tmp_path):
    path, cfg, _ = finished
    out = tmp_path / "t0.yaml"
    assert main(["export", str(path), "--trial", "0", "-o", str(out)]) == 0
    loaded = load_train_config(out)
    # Rule: --trial N exports trial N even when it is not the best.
    assert loaded.provenance["trial"] == 0
    assert loaded.optim.lr == 1e-3 and loaded.batch_size == 8


def test_export_uses_the_config_the_study_ran_with(finished, tmp_path):
    path, cfg, _ = finished
    raw = yaml.safe_load(path.read_text())
    raw["model"].update(n_embd=64, n_head=4)
    path.write_text(yaml.safe_dump(raw))
    done = export_study(load_study(path), tmp_path / "final.yaml", source=str(path))
    # Rule: the trials trained the stored config, so the export keeps its model and says why.
    assert done.config.model.n_embd == cfg.model.n_embd == 32
    assert any("changed since the study ran" in note for note in done.notes)
    assert "# note: the study file changed" in (tmp_path / "final.yaml").read_text()


# --------------------------------------------------------------------------- errors


def test_unknown_study_is_exit_2_and_creates_nothing(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    code = main(["export", str(path), "-o", str(tmp_path / "final.yaml")])
    printed = capsys.readouterr().err
    # Rule: a clear message and exit code 2; no storage file appears; nothing is written.
    assert code == 2
    assert "no study 'tiny'" in printed and "scaletune run" in printed
    assert not (cfg.folder / "study.db").exists()
    assert not (tmp_path / "final.yaml").exists()


def test_a_database_that_is_no_optuna_storage_is_read_and_left_as_it_is(tmp_path, capsys):
    import sqlite3

    path, cfg = study_file(tmp_path)
    mine = tmp_path / "mine.db"
    with sqlite3.connect(mine) as db:
        db.execute("CREATE TABLE mydata (x)")
    url = f"sqlite:///{mine}"
    # Each wrote Optuna's 13 tables into it (and PostgreSQL's, pointed at a mistyped database)
    # before saying it held no such study.
    for command in (["show", "foo", "--storage", url], ["best", "foo", "--storage", url],
                    ["report", "foo", "--storage", url], ["show", str(path), "--storage", url],
                    ["export", str(path), "--storage", url, "-o", str(tmp_path / "f.yaml")]):
        assert main(command) == 2, command
        assert (f"storage: cannot open {url} (is it an Optuna storage?): no such table: "
                "version_info") in capsys.readouterr().err
        with sqlite3.connect(mine) as db:
            assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("mydata",)]


def test_unknown_study_name_in_an_existing_storage(finished, tmp_path, capsys):
    _, cfg, _ = finished
    raw = yaml.safe_load((tmp_path / "study.yaml").read_text())
    raw["name"] = "other"
    other = write_study(tmp_path, raw, name="other.yaml")
    code = main(["export", str(other), "-o", str(tmp_path / "final.yaml")])
    printed = capsys.readouterr().err
    # Rule: the message names the study and lists those that exist.
    assert code == 2
    assert "no study named 'other'" in printed and "tiny" in printed


def test_study_without_a_complete_trial_is_exit_2(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(1e-3), 3.0, TrialState.PRUNED, trained=EVAL)
    add_trial(study, cfg, params(2e-3), 3.0, TrialState.FAIL, trained=EVAL)
    code = main(["export", str(path), "-o", str(tmp_path / "final.yaml")])
    printed = capsys.readouterr().err
    # Rule: no complete trial -> exit 2 with the states found.
    assert code == 2
    assert "no complete trial to export (1 pruned, 1 failed)" in printed
    with pytest.raises(ConfigError, match="PRUNED, not COMPLETE"):
        export_study(cfg, tmp_path / "final.yaml", source=str(path), trial=0)
    with pytest.raises(ConfigError, match="no trial 7"):
        export_study(cfg, tmp_path / "final.yaml", source=str(path), trial=7)


def printed_flat(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


def test_bad_model_keys_are_exit_2(finished, tmp_path, capsys):
    path, _, _ = finished
    out = tmp_path / "final.yaml"
    # Rule: an unknown model key names the key and what is allowed.
    assert main(["export", str(path), "--model", "width=512", "-o", str(out)]) == 2
    printed = capsys.readouterr().err
    assert "--model width: unknown model key" in printed and "n_embd" in printed
    assert main(["export", str(path), "--model", "n_embed=128", "-o", str(out)]) == 2
    assert printed_flat(capsys).endswith("init_std; did you mean n_embd?")  # as the file's keys
    # Rule: a value the model rejects names the field and the problem.
    assert main(["export", str(path), "--model", "n_embd=33", "-o", str(out)]) == 2
    printed = capsys.readouterr().err
    assert "--model" in printed and "n_head must divide n_embd" in printed
    # ... and blames the flag, as an unknown key does, not the study file.
    assert printed.startswith("1 error(s) in --model:") and str(path) not in printed, printed
    assert main(["export", str(path), "--model", "n_embd", "-o", str(out)]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    # Rule: a key with nothing after '=' says so (it read as null: "got None").
    assert main(["export", str(path), "--model", "n_embd=", "-o", str(out)]) == 2
    assert "--model n_embd: no value after '='" in printed_flat(capsys)
    assert not out.exists()


def test_bad_tokens_are_exit_2(finished, tmp_path, capsys):
    path, _, _ = finished
    # Rule: --tokens must be a whole number >= 1 (argparse exits with 2).
    for bad in ("lots", "0", "1.5"):
        with pytest.raises(SystemExit) as e:
            main(["export", str(path), "--tokens", bad, "-o", str(tmp_path / "f.yaml")])
        assert e.value.code == 2
    assert "expected" in capsys.readouterr().err
    # Rule: fewer tokens than one step of the run's batch (the batch law carries it down to 1
    # sequence) is refused, naming the step, and nothing is written.
    assert main(["export", str(path), "--tokens", "10", "-o", str(tmp_path / "f.yaml")]) == 2
    assert ("--tokens: one optimizer step of the run's batch (batch_size 1 x block_size 32 = 32 "
            "tokens) is more than its 10 tokens: give --tokens of at least 32"
            ) in printed_flat(capsys)
    # Without --tokens the run keeps the trial's budget: a --model block_size beyond it is named.
    assert main(["export", str(path), "--model", "block_size=99999999", "-o",
                 str(tmp_path / "f.yaml")]) == 2
    said = printed_flat(capsys)
    assert "--model block_size=99999999: one optimizer step" in said and "--tokens:" not in said
    assert not (tmp_path / "f.yaml").exists()


def test_bad_arguments_through_the_api_name_their_flag(finished, tmp_path, capsys):
    path, cfg, _ = finished
    out = tmp_path / "final.yaml"
    # Rule: a budget that is no whole count >= 1 is named; transfer() rejects a cap below 1.
    for bad in (0, 1.5, "lots"):
        with pytest.raises(ConfigError, match=rf"tokens: expected a whole number of tokens >= 1 "
                                              rf".*, got {re.escape(repr(bad))}"):
            export_study(cfg, out, source=str(path), tokens=bad)
    with pytest.raises(ConfigError, match=r"max_batch_size must be >= 1, got max_batch_size=0"):
        export_study(cfg, out, source=str(path), max_batch_size=0)
    # From the command line, argparse's own line names the flag alone (it was the study file's
    # "--tokens/--max-batch-size: max_batch_size must be >= 1").
    from scaletune.search.cli import main

    with pytest.raises(SystemExit) as done:
        main(["export", str(path), "--max-batch-size", "0", "-o", str(out)])
    assert done.value.code == 2
    assert ("scaletune export: error: argument --max-batch-size: expected a whole number >= 1, "
            "got '0'") in capsys.readouterr().err
    # Rule: ModelConfig rejects an unknown model key, listing the keys allowed.
    with pytest.raises(ConfigError, match=r"--model width: unknown key; allowed: .*n_embd"):
        export_study(cfg, out, source=str(path), model={"width": 512})
    assert not out.exists()
    # Rule: a count as a float (3e6 in Python) or as text trains that many tokens, written
    # as a whole number (a float wrote "3,000,000.0 tokens" and warned from pydantic).
    tokens = 64 * cfg.tokens_per_trial
    for given in (float(tokens), f"{tokens:.6e}"):
        export_study(cfg, out, source=str(path), tokens=given)
        assert load_train_config(out).tokens == tokens
        assert ".0 tokens" not in out.read_text() and f"{tokens:,}" in out.read_text()


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_real_study_export_and_train(tmp_path, shakespeare, capsys):
    import ray

    from scaletune.search.cluster import lean_head_node
    from scaletune.search.runner import run_study

    raw = tiny_study(tmp_path, shakespeare, n_trials=2)
    path = write_study(tmp_path, raw)
    cfg = load_study(path)
    with lean_head_node():  # as a study's own cluster starts (search.cluster)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, object_store_memory=100 * 1024**2)
    try:
        study = run_study(cfg)
    finally:
        ray.shutdown()
    best = study.best_trial
    out = tmp_path / "final.yaml"
    tokens = 2 * cfg.tokens_per_trial
    assert main(["export", str(path), "--tokens", str(tokens), "-o", str(out)]) == 0
    exported = load_train_config(out)
    # Rule: the horizon rule applied to the real best trial.
    assert exported.optim.lr == pytest.approx(best.params["lr"] * 2**-0.32)

    run = forked.run("-m", "scaletune.search.cli", "train", str(out))  # tests/forked.py
    # Rule: `scaletune train final.yaml` trains the exported config to its end.
    assert run.returncode == 0, run.stderr[-2000:]
    assert "status          completed" in run.stdout
    records = [json.loads(ln) for ln in
               (Path(exported.out_dir) / "metrics.jsonl").read_text().splitlines()]
    end = [r for r in records if r["event"] == "end"]
    assert end and end[-1]["status"] == "completed" and end[-1]["tokens_seen"] >= tokens
    assert math.isfinite(end[-1]["final_val_loss"])
    # Rule: the run's own record keeps the export's provenance.
    start = next(r for r in records if r["event"] == "start")
    assert start["config"]["provenance"]["trial"] == best.number
    # Exported again to the same file, for more tokens: its out_dir holds the run above, which
    # train refuses; the export said nothing, and named the command as if it would train.
    capsys.readouterr()
    assert main(["export", str(path), "--tokens", str(2 * tokens), "-o", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (f"note: out_dir {exported.out_dir} holds the checkpoint of a run of another config "
            "(") in said and f"tokens: {tokens} -> {2 * tokens})" in said, said
    assert "set another out_dir for this run (--overwrite would replace that run)" in said
    assert said.index("note: out_dir") < said.index("train it with:")
    # validate of the file says it too (it said ok).
    assert main(["validate", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (f"note: out_dir {exported.out_dir} holds the checkpoint of a run of another config "
            "(") in said and "(`scaletune train` as it is refuses it)" in said, said


def test_an_export_to_more_tokens_than_any_corpus_is_refused(finished, tmp_path, capsys):
    path, _, _ = finished
    code = main(["export", str(path), "--tokens", "1e30", "-o", str(tmp_path / "final.yaml")])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--tokens: 1e+30 is more than any corpus holds" in out
    assert not (tmp_path / "final.yaml").exists()


def test_a_model_value_nested_deep_is_one_error():
    from scaletune.search.export import parse_model_overrides
    from scaletune.trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="--model n_embd: the value is nested too deep"):
        parse_model_overrides(["n_embd=" + "[" * 5000 + "]" * 5000])
    # Digits past Python's 4,300 for an int: its ValueError was a traceback.
    with pytest.raises(ConfigError, match="--model n_embd: the value is too large a number"):
        parse_model_overrides(["n_embd=" + "9" * 5000])


def test_a_final_run_past_its_data_notes_the_epochs_and_dropout(finished, tmp_path):
    path, cfg, study = finished
    train = study.user_attrs["data_tokens"]["train"]  # 200,000 tokens (make_study)
    out = tmp_path / "long.yaml"
    export = export_study(cfg, out, source=str(path), tokens=5 * train)
    # Rule: a run of more tokens than the study's data holds says how many epochs that is and
    # points at dropout and at effective data, in the notes, the header and the provenance.
    expected = ("this run trains 1,000,000 tokens, 5 epochs of the 200,000 training tokens the "
                "study's data holds: repeated data; see dropout (kept at the trial's 0; the "
                "epochs heuristic gives 0.079)")
    (note,) = [n for n in export.notes if n.startswith("this run trains")]
    assert note.startswith(expected) and "arXiv 2305.16264" in note
    assert "Wang & Aitchison's rule (arXiv 2405.13698: tau constant per epoch) only while" in note
    head = " ".join(line[2:] for line in out.read_text().splitlines() if line.startswith("# "))
    assert f"note: {note}" in " ".join(head.split())
    assert note in yaml.safe_load(out.read_text())["provenance"]["notes"]
    # A dropout --model sets is said to be that, not the trial's (it said "kept at the trial's").
    dropped = export_study(cfg, tmp_path / "dropped.yaml", source=str(path), tokens=5 * train,
                           model={"dropout": 0.1})
    (note,) = [n for n in dropped.notes if n.startswith("this run trains")]
    assert "see dropout (set to 0.1 by --model; the epochs heuristic gives 0.079)" in note
    # Rule: a run inside the data (the trial's own 40,960 tokens) has no such note.
    within = export_study(cfg, tmp_path / "copy.yaml", source=str(path))
    assert within.config.tokens <= train
    assert not [n for n in within.notes if "epochs" in n]


def test_a_micro_batch_that_no_longer_divides_the_batch_is_lowered_no_further_than_needed():
    from scaletune.search.export import fitting_micro

    # The gcd lowered 12 to 4 for a batch of 16 (and of 64), twice the micro-steps of 8.
    assert [fitting_micro(b, 12) for b in (16, 64, 48, 6)] == [8, 8, 12, 6]


def test_only_fields_at_their_defaults_are_left_out_of_a_written_data_section():
    # Left out, they load back the same; a value given where the source ignores it is kept.
    data = DataConfig(source="text", path="corpus.txt", builtin="stdlib")
    assert "builtin" not in data.unread_defaults() and "path" not in data.unread_defaults()
    assert {"dataset", "data_files", "split", "text_column"} <= set(data.unread_defaults())
    hub = DataConfig(source="hf", dataset="roneneldan/TinyStories")
    assert {"builtin", "path"} == set(hub.unread_defaults())
    # Validation given apart: val_fraction, unread, was written beside it as if 10% were held out.
    assert "val_fraction" in data.model_copy(update={"val_path": "val.txt"}).unread_defaults()
    assert "val_fraction" in hub.model_copy(update={"val_split": "validation"}).unread_defaults()
    assert "val_fraction" not in data.unread_defaults()
    set_apart = data.model_copy(update={"val_path": "val.txt", "val_fraction": 0.2})
    assert "val_fraction" not in set_apart.unread_defaults()  # given: kept, and noted as unused


def test_a_final_run_shorter_than_the_trial_is_noted(finished, tmp_path, capsys):
    path, cfg, study = finished
    out = tmp_path / "short.yaml"
    # A slip of the exponent (1e3 for 1e7): carried down, with a note to check the value.
    assert main(["export", str(path), "--tokens", "1e3", "-o", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert ("note: --tokens: 1,000 tokens, fewer than the 40,960 the trial trained: the rules "
            "carry its config to a shorter run too, but a final run is usually the longer one; "
            "check the value") in printed
    # The trial's own budget and a longer run have no such note.
    for tokens in (None, 10 * cfg.tokens_per_trial):
        export = export_study(cfg, tmp_path / "other.yaml", source=str(path), tokens=tokens)
        assert not [n for n in export.notes if n.startswith("--tokens:")]


def test_an_export_replaces_only_an_earlier_export(finished, tmp_path, capsys):
    path, _, _ = finished
    out = tmp_path / "final.yaml"
    assert main(["export", str(path), "-o", str(out)]) == 0
    assert "(it replaces" not in capsys.readouterr().out
    # Rule: a training config (an earlier export) is replaced, and the output says so.
    assert main(["export", str(path), "--trial", "0", "-o", str(out)]) == 0
    assert "(it replaces the training config that was there)" in capsys.readouterr().out
    assert load_train_config(out).provenance["trial"] == 0

    # Rule: anything else at the path is refused, by name, and left byte for byte as it was.
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    other_study = tmp_path / "other.yaml"
    other_study.write_text("name: other\ntokens_per_trial: 1000\n")
    folder = tmp_path / "runs_here"
    folder.mkdir()
    for target, says in [(path, "the study file itself"), (other_study, "a study file is there"),
                         (notes, "not a training config"), (folder, "a folder")]:
        before = {p: p.read_bytes() for p in (path, other_study, notes)}
        assert main(["export", str(path), "-o", str(target)]) == 2
        printed = capsys.readouterr().err
        assert f"-o {target}" in printed and says in printed
        assert {p: p.read_bytes() for p in (path, other_study, notes)} == before
    assert list(folder.iterdir()) == []


def test_an_export_of_a_repeated_config_gives_its_other_seeds(tmp_path):
    from scaletune.search.noise import REPEAT_OF, TRAIN_SEED

    path, cfg = study_file(tmp_path)
    study = make_study(cfg)
    add_trial(study, cfg, params(3e-3), 2.40)  # trial 0, under the study's seed
    study.enqueue_trial(params(3e-3), user_attrs={REPEAT_OF: 0, TRAIN_SEED: 1})
    study.tell(study.ask(DISTRIBUTIONS), 2.30)  # its repeat (run --repeat-best), luckier
    done = export_study(cfg, tmp_path / "final.yaml", source=str(path))
    # Rule: the best trial is a config and a seed: the export says which seed it took and what
    # the config's other seeds scored (it said "trial 1, val loss 2.3000" alone).
    assert done.trial.number == 1 and done.config.seed == 1
    said = ("trial 1 repeats trial 0's config with training seed 1; the config ran with 2 training "
            "seeds: 2.4000 (seed 0), 2.3000 (seed 1), mean 2.3500")
    assert [n for n in done.notes if n.startswith(said)], done.notes
    header = " ".join(line[2:] for line in (tmp_path / "final.yaml").read_text().splitlines()
                      if line.startswith("# "))
    assert said in " ".join(header.split())


def test_the_summarys_columns_stay_apart_for_long_numbers():
    # 1e12 tokens filled its 16 characters and more: "20,0001,000,000,000,000" read as one number.
    from scaletune.search.export import _ROWS, summary_lines

    best = {key: 1 for key, _ in _ROWS} | {"tokens": 20_000}
    record = {"best": best, "final": best | {"tokens": 10**12}, "study": "s", "storage": "x",
              "trial": 1, "value": 2.0, "n_complete_trials": 3, "fingerprint": "f",
              "git_revision": "g", "exported_at": "t", "transfer": "t", "rules": [], "notes": []}
    [row] = [line for line in summary_lines(record) if line.split()[:1] == ["tokens"]]
    assert row.split() == ["tokens", "20,000", "1,000,000,000,000", "*"], row
