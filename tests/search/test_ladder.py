"""The scale ladder: its file names every bad key, and a tiny ladder runs end to end through
the real runner, resumes without training a trial twice, and seeds its target from the fit."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import replace

import optuna
import pytest
import yaml

import scaletune.search.ladder
from scaletune.heuristics.fit import EXPONENT_PRIOR_SD, SHORT_RUN_LR_EXPONENT
from scaletune.search.cli import main
from scaletune.search.config import load_study
from scaletune.search.fit import fit_laws
from scaletune.search.ladder import (
    epochs,
    epochs_warning,
    load_ladder,
    named_target,
    run_ladder,
)
from scaletune.search.report import make_report
from scaletune.search.runner import run_study
from scaletune.search.storage import make_storage
from scaletune.search.summary import MORE_TRIALS, more_trials
from scaletune.trainer.errors import ConfigError
from tests.search.helpers import flat, tiny_study, write_study


def ladder_files(tmp_path, shakespeare, **ladder):
    """A tiny target study (1x32 model, 40,960 tokens, 2 trials) and a ladder of three rungs."""
    study = tiny_study(tmp_path, shakespeare, name="tiny", n_trials=2,
                       search={"lr": {"prior": "auto"}, "weight_decay": {"prior": "auto", "as": "tau"},
                               "dropout": {"value": 0.0}, "warmup_frac": {"value": 0.05},
                               "batch_size": {"choices": [4, 8]}},
                       sampler={"name": "tpe", "n_startup_trials": 2},
                       pruner={"name": "none"})
    study.pop("study_dir")  # runs/<name> beside the file, one storage for every rung
    write_study(tmp_path, study, "target.yaml")
    raw = {"target": {"study": "target.yaml"},
           "rungs": [{"tokens_per_trial": 16_384}, {"tokens_per_trial": 4_096},
                     {"tokens_per_trial": 8_192}],
           "rung_trials": 2, **ladder}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def errors_of(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_ladder(path)
    return info.value.errors


def test_a_ladder_runs_its_rungs_cheapest_first_under_names_of_their_own(tmp_path, shakespeare):
    ladder = load_ladder(ladder_files(tmp_path, shakespeare))
    # Rule: rungs run cheapest first, whatever the file's order; each is its own study in the
    # target's storage; the target study is the ladder's, seeded from its laws file.
    assert [r.cfg.tokens_per_trial for r in ladder.rungs] == [4_096, 8_192, 16_384]
    assert [r.cfg.name for r in ladder.rungs] == ["ladder-rung-4.096k-1x32",
                                                  "ladder-rung-8.192k-1x32",
                                                  "ladder-rung-16.384k-1x32"]
    assert {r.cfg.storage_url for r in ladder.rungs} == {ladder.target.storage_url}
    assert ladder.target.name == "ladder-target"
    assert ladder.target.priors.laws == "fitted"
    assert ladder.target.priors.fitted_file == str(ladder.laws_file)
    # A rung evaluates a tenth of its own budget at a time, not the target's cadence.
    assert [r.cfg.eval_interval for r in ladder.rungs] == [409, 819, 1638]
    # More trials of the target are the ladder file's target.n_trials, run by `scaletune ladder`
    # (the best-at-an-edge note said n_trials or --n-trials, which `ladder` refuses and which the
    # ladder file's target.n_trials overrides in the study file).
    assert more_trials(named_target(ladder)) == (
        "run the ladder again for more trials of its target (target.n_trials in "
        f"{ladder.source}, then scaletune ladder)")
    assert more_trials(load_study(tmp_path / "target.yaml")) == MORE_TRIALS


def test_rungs_along_width_take_the_targets_tokens_unless_they_name_their_own(
        tmp_path, shakespeare):
    path = ladder_files(tmp_path, shakespeare, scale="params")
    raw = yaml.safe_load(path.read_text())
    raw["rungs"] = [{"model": {"n_embd": 16}}, {"model": {"n_embd": 24, "n_head": 2}},
                    {"tokens_per_trial": 20_480, "model": {"n_embd": 8}}]
    path.write_text(yaml.safe_dump(raw))
    ladder = load_ladder(path)
    # A rung along width alone trains the target's 40,960 tokens per trial.
    assert [(r.cfg.tokens_per_trial, r.cfg.model.n_embd) for r in ladder.rungs] == [
        (20_480, 8), (40_960, 16), (40_960, 24)]
    assert [r.cfg.name for r in ladder.rungs] == [
        "ladder-rung-20.48k-1x8", "ladder-rung-40.96k-1x16", "ladder-rung-40.96k-1x24"]
    # Written differently but the same study as an earlier rung: the target's tokens given
    # again, or another n_head at the same size.
    raw["rungs"] += [{"tokens_per_trial": 40_960, "model": {"n_embd": 16}},
                     {"model": {"n_embd": 24, "n_head": 4}}]
    path.write_text(yaml.safe_dump(raw))
    assert errors_of(path) == [
        "rungs[3]: the same tokens per trial and model size as an earlier rung "
        "(ladder-rung-40.96k-1x16): give each rung its own tokens_per_trial or model size",
        "rungs[4]: the same tokens per trial and model size as an earlier rung "
        "(ladder-rung-40.96k-1x24): give each rung its own tokens_per_trial or model size"]


def test_a_width_rung_that_is_no_study_is_an_error_of_the_rung_and_labels_are_exact(
        tmp_path, shakespeare):
    # A rung at the target's tokens whose width n_head does not divide: pydantic's traceback.
    path = ladder_files(tmp_path, shakespeare, scale="params")
    raw = yaml.safe_load(path.read_text())
    raw["rungs"] = [{"model": {"n_embd": 30, "n_head": 4}}, {"model": {"n_embd": 16}},
                    {"model": {"n_embd": 24, "n_head": 2}}]
    path.write_text(yaml.safe_dump(raw))
    assert any(e.startswith("rungs[0]: model: n_head must divide n_embd, got n_embd=30, n_head=4")
               for e in errors_of(path)), errors_of(path)
    # Two rungs a token apart were named alike (1234.57k) and refused as one.
    raw["rungs"] = [{"tokens_per_trial": 1_234_567}, {"tokens_per_trial": 1_234_568},
                    {"tokens_per_trial": 600_000}]
    raw["target"] = {"study": "target.yaml", "tokens_per_trial": 3_000_000}
    raw["scale"] = "tokens"
    path.write_text(yaml.safe_dump(raw))
    assert [r.cfg.name for r in load_ladder(path).rungs] == [
        "ladder-rung-600k-1x32", "ladder-rung-1234.567k-1x32", "ladder-rung-1234.568k-1x32"]


def test_bad_ladder_input_names_the_key(tmp_path, shakespeare):
    path = ladder_files(tmp_path, shakespeare)
    raw = yaml.safe_load(path.read_text())
    raw["rungs"][0]["modle"] = {"n_embd": 16}
    raw["rungs"][1]["tokens_per_trial"] = -5
    raw["near_best"] = 2
    raw["target"]["n_trials"] = 0
    path.write_text(yaml.safe_dump(raw))
    said = "\n".join(errors_of(path))
    # Rule: every problem at once, each under its own key.
    assert "rungs[0].modle" in said
    assert "rungs[1].tokens_per_trial" in said
    assert "near_best" in said
    assert "target.n_trials" in said

    raw = yaml.safe_load(ladder_files(tmp_path, shakespeare).read_text())
    raw["rungs"][1]["model"] = {"n_embd": 30}  # n_head 2 divides it, the rung is fine
    raw["rungs"][2]["model"] = {"n_head": 3}  # 3 does not divide 32
    path.write_text(yaml.safe_dump(raw))
    said = errors_of(path)
    # A rung's own study problems are named by the rung, then the study key.
    assert len(said) == 1 and said[0].startswith("rungs[2]: model") and "n_head" in said[0], said

    raw = yaml.safe_load(ladder_files(tmp_path, shakespeare).read_text())
    raw["rungs"] = [{"tokens_per_trial": 20_000, "model": {"n_embd": 16}},
                    {"tokens_per_trial": 80_000}]
    path.write_text(yaml.safe_dump(raw))
    said = errors_of(path)
    # Two rungs at one tokens per parameter (and above the target's budget) are refused.
    assert any(e.startswith("rungs: every rung trains") for e in said), said
    assert any(e.startswith("rungs[1]: its tokens (80,000) is not below the target's") for e in said)
    rungs = raw["rungs"]
    # Rungs whose values print alike are given one value (it read "1.22-1.22").
    raw["rungs"] = [{"tokens_per_trial": 20_000}, {"tokens_per_trial": 20_010}]
    path.write_text(yaml.safe_dump(raw))
    said = [e for e in errors_of(path) if e.startswith("rungs: every rung trains")]
    assert len(said) == 1 and re.match(r"rungs: every rung trains [\d.]+ tokens per", said[0]), said

    raw["rungs"] = [{**rungs[0], "n_layer": 1}, *rungs[1:]]  # beside tokens_per_trial
    path.write_text(yaml.safe_dump(raw))
    # It was "unknown key; allowed: tokens_per_trial, model, n_trials", naming no model.
    assert "rungs[0]: n_layer is a model field: give it under model, as model: {n_layer: 1}" \
        in errors_of(path)
    raw["rungs"] = rungs
    raw["target"]["study"] = "missing.yaml"
    path.write_text(yaml.safe_dump(raw))
    # The path looked for, as it was taken from the ladder file's folder (it said no path).
    assert errors_of(path)[0] == (f"target.study: file not found: {str(tmp_path / 'missing.yaml')!r}"
                                  " (taken from the ladder file's folder)")
    raw["rungs"] = rungs[:1]
    path.write_text(yaml.safe_dump(raw))
    # Beside the ladder's own errors: it came to light only once the second rung was given.
    said = errors_of(path)
    assert said[0].startswith("rungs: a ladder needs at least two rungs"), said
    assert said[1:] == [f"target.study: file not found: {str(tmp_path / 'missing.yaml')!r} "
                        "(taken from the ladder file's folder)"]


def test_a_rung_at_the_targets_scale_is_refused_and_what_the_ladder_drops_is_noted(
        tmp_path, shakespeare):
    raw = yaml.safe_load(ladder_files(tmp_path, shakespeare).read_text())
    # The target's tokens and size, its n_head apart: it passed, and ran the target's cost.
    raw["rungs"][2] = {"tokens_per_trial": 40_960, "model": {"n_head": 4}}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert errors_of(path) == ["rungs[2]: the target's own tokens per trial and model size: a "
                               "rung is a smaller study"]
    # The study file's own folder and priors: dropped without a word.
    study = yaml.safe_load((tmp_path / "target.yaml").read_text())
    study.update(study_dir="mine", priors={"laws": "published"})
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "target.yaml").write_text(yaml.safe_dump(study))
    raw["rungs"][2] = {"tokens_per_trial": 8_192}
    raw["target"]["study"] = "studies/target.yaml"
    (tmp_path / "ladder.yaml").write_text(yaml.safe_dump(raw))
    ladder = load_ladder(tmp_path / "ladder.yaml")
    # The note named the ladder file's folder: the studies live beside the study file.
    assert ladder.notes == (
        "target.study: its study_dir (mine) is not used: the ladder's studies live in runs/ "
        f"beside the study file ({tmp_path / 'studies' / 'runs'}; their storage is the one the "
        "study file names, where it names one)",
        "target.study: its priors: section is not used: the rungs start from the published "
        "laws, the target from the laws they fit")
    assert {r.cfg.folder.parent for r in ladder.rungs} == {tmp_path / "studies" / "runs"}


def test_a_ladders_paths_take_home_as_a_study_files_do(tmp_path, shakespeare, monkeypatch):
    # laws_file: ~/laws/l.json wrote a folder named ~ beside the ladder file; target.study and
    # a study's priors.fitted_file starting with ~ were not found.
    home = tmp_path / "home"
    (home / "laws").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    path = ladder_files(tmp_path / "home", shakespeare, laws_file="~/laws/l.json")
    raw = yaml.safe_load(path.read_text())
    raw["target"]["study"] = "~/target.yaml"
    (tmp_path / "ladder.yaml").write_text(yaml.safe_dump(raw))
    ladder = load_ladder(tmp_path / "ladder.yaml")
    assert ladder.laws_file == home / "laws" / "l.json"
    assert ladder.target.priors.fitted_file == str(home / "laws" / "l.json")
    study = yaml.safe_load((home / "target.yaml").read_text())
    study["priors"] = {"laws": "fitted", "fitted_file": "~/laws/l.json"}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    assert load_study(tmp_path / "study.yaml").priors.fitted_file == str(home / "laws" / "l.json")


def test_a_ladder_interrupted_before_its_trials_says_so(tmp_path, shakespeare, capsys,
                                                      monkeypatch):
    from scaletune.search import ladder as ladder_module

    # Ctrl-C while the ladder checked its data, or between two rungs: exit code 130, not a word.
    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(ladder_module, "checked", interrupted)
    assert main(["ladder", str(ladder_files(tmp_path, shakespeare))]) == 130
    assert capsys.readouterr().err == ("scaletune ladder: interrupted; the next run of the same "
                                       "command recovers any trial left running\n")
    # A dry run runs no trial to recover.
    assert main(["ladder", str(tmp_path / "ladder.yaml"), "--dry-run"]) == 130
    assert capsys.readouterr().err == "scaletune ladder: interrupted\n"


def test_fit_of_a_ladder_says_what_it_lacks_and_refuses_another_scale(tmp_path, shakespeare,
                                                                      capsys):
    path = ladder_files(tmp_path, shakespeare)
    # No rung has run: it ended on an IndexError traceback.
    assert main(["fit", str(path), "-o", str(tmp_path / "laws.json")]) == 2
    assert ("0 of its 3 rungs have run trials: a law needs rungs at two or more scales; "
            f"`scaletune ladder {path}` runs them") in flat(capsys.readouterr().err)
    # --by params was dropped without a word: the rungs were fitted along tokens.
    assert main(["fit", str(path), "--by", "params", "-o", str(tmp_path / "laws.json")]) == 2
    assert (f"--by params: {path} is a ladder whose laws are fitted along tokens (its scale: "
            "tokens): leave --by out") in flat(capsys.readouterr().err)
    assert not (tmp_path / "laws.json").exists()
    # Two ladders along two scales: the rungs were fitted along the last one's, unsaid.
    raw = yaml.safe_load(path.read_text())
    widths = tmp_path / "widths.yaml"
    widths.write_text(yaml.safe_dump({**raw, "scale": "params", "rungs": [
        {"model": {"n_embd": 8}}, {"model": {"n_embd": 16}}]}))
    assert main(["fit", str(path), str(widths), "-o", str(tmp_path / "laws.json")]) == 2
    assert (f"the ladders given are fitted along other scales or near_best ({path}: tokens, "
            f"near_best 0.03, {widths}: params, near_best 0.03): fit each apart"
            ) in flat(capsys.readouterr().err)
    with pytest.raises(ConfigError, match="fit each apart"):
        fit_laws([path, widths])
    # From Python, the argument is by (it named --by).
    with pytest.raises(ConfigError, match=r"by params: .* leave by out"):
        fit_laws([path], by="params")


def test_a_laws_file_that_would_replace_another_file_or_cannot_be_written_is_refused(
        tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare, laws_file="target.yaml")
    target = (tmp_path / "target.yaml").read_bytes()
    # The target study file was replaced by the laws' JSON, and the ladder said nothing.
    for command in (["validate", str(path)], ["ladder", str(path), "--dry-run"],
                    ["ladder", str(path)]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        # Named as what it is, not by the JSON parser's words ("Expecting value: line 1...").
        assert (f"laws_file: {tmp_path / 'target.yaml'} is a study or training file, not fitted "
                "laws, which writing the laws would replace") in out, out
    assert (tmp_path / "target.yaml").read_bytes() == target
    # The report, which reads the laws file alone, does not tell the user to delete a study file.
    from scaletune.search.ladder_report import make_ladder_figures

    with pytest.raises(ConfigError) as e:
        make_ladder_figures(load_ladder(path), tmp_path / "figures")
    assert "delete" not in str(e.value) and "give the ladder's laws file as laws_file" in str(
        e.value), str(e.value)
    assert (tmp_path / "target.yaml").read_bytes() == target
    # Laws cut short (a disk that filled, a copy stopped): the message said only "give another
    # path", where deleting them lets the ladder fit them again.
    damaged = ladder_files(tmp_path, shakespeare, laws_file="laws.json")
    (tmp_path / "laws.json").write_text('{"version": 2, "scale_kind": "tokens", "lr": {')
    assert main(["validate", str(damaged)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert ("holds a file that is not fitted laws (Expecting property name enclosed in double "
            "quotes: line 1 column 47 (char 46))") in out, out
    assert ("delete the file if it is such laws, damaged (a ladder fits them again from its "
            "finished rungs)") in out, out
    # The commands that only read the ladder were refused alike ("which writing the laws would
    # replace"); report, which draws the laws, ended on json's traceback.
    assert load_ladder(damaged).laws_file == tmp_path / "laws.json"
    with pytest.raises(ConfigError, match=re.escape(
            f"laws_file: {tmp_path / 'laws.json'} cannot be read (not a fitted-laws file this "
            "scaletune reads: Expecting property name")) as e:
        make_ladder_figures(load_ladder(damaged), tmp_path / "figures")
    assert f"delete it, and `scaletune ladder {damaged}` fits the laws again" in str(e.value)
    # A folder that cannot hold the file: refused before the first rung trains, not after the
    # rungs with a traceback.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = ladder_files(tmp_path, shakespeare, laws_file="a-file/laws.json")
    assert main(["ladder", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert (f"laws_file: {blocker / 'laws.json'}: cannot write the fitted laws there (a file "
            "stands where a folder of the path would be): give a path in a writable folder") in out, out
    assert "rung 1/3" not in out
    assert not (tmp_path / "runs" / "ladder" / "studies.db").exists()


def test_a_target_that_fixes_lr_is_refused(tmp_path, shakespeare):
    path = ladder_files(tmp_path, shakespeare)
    target = yaml.safe_load((tmp_path / "target.yaml").read_text())
    target["search"]["lr"] = {"value": 0.003}
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(target))
    # It ran every rung at lr 0.003 and predicted 0.0025 at the target from the exponent prior.
    assert errors_of(path) == [
        "target: its study fixes lr (search.lr: {value: 0.003}), so every rung would train one "
        "lr and the ladder would fit a law to no optimum; search lr in the study (search.lr: "
        "{prior: auto})"]


def test_a_rung_none_of_whose_trials_completed_says_how_to_go_on(tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare)
    ladder = load_ladder(path)
    cheapest = ladder.rungs[0].cfg
    cheapest.folder.mkdir(parents=True, exist_ok=True)
    # Its two trials ran and were stopped (diverged, say): the rung counts as finished.
    study = optuna.create_study(study_name=cheapest.name, storage=make_storage(cheapest.storage_url))
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, params={"lr": 0.5},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}))
    # It said "study '...' has no complete trial to fit on" on every run, rung counted finished.
    assert main(["ladder", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert (f"rungs: no trial of {cheapest.name} completed (2 pruned), so the laws have no loss "
            "at this rung to fit: raise rung_trials above 2 and run the ladder again, which runs "
            "only the rung's missing trials") in out, out
    # Lower learning rates are a change of what the rung trains: refused under the same name,
    # which the advice did not say.
    assert ("search lower learning rates (search.lr in the target study) with a new name: in "
            "the ladder file (its rungs, which trained with the range they had, start again "
            "then)") in out, out


def test_commands_on_a_ladder_whose_target_has_not_run_name_the_ladder_command(
        tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare)
    # They said to run `scaletune run ladder.yaml`, which refuses a ladder file.
    for command in (["show"], ["export", "-o", str(tmp_path / "final.yaml")], ["best"]):
        assert main([command[0], str(path), *command[1:]]) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert ("the ladder's target runs after its rungs: run `scaletune ladder "
                f"{path}` first") in out, (command, out)
        assert "scaletune run" not in out and "name: " not in out


def test_ladder_mistakes_are_said_in_the_ladders_words(tmp_path, shakespeare):
    path = ladder_files(tmp_path, shakespeare)
    raw = yaml.safe_load(path.read_text())

    def errors_with(**changes):
        path.write_text(yaml.safe_dump({**raw, **changes}))
        return errors_of(path)

    # It was pydantic's "List should have at least 2 items after validation, not 1".
    assert errors_with(rungs=[{"tokens_per_trial": 4_096}]) == [
        "rungs: a ladder needs at least two rungs to fit a line through, and three or more for a "
        "law that something tests; got 1"]
    # Which earlier rung it repeats (4k and 4_096 are one budget).
    assert errors_with(rungs=[{"tokens_per_trial": 4_096}, {"tokens_per_trial": 8_192},
                              {"tokens_per_trial": "4.096k"}]) == [
        "rungs[2] repeats rungs[0] (the same tokens and model): give each rung its own "
        "tokens_per_trial or model"]
    # A rung that is the target itself ran the target's study a second time.
    said = errors_with(rungs=[{"tokens_per_trial": 4_096}, {"tokens_per_trial": 40_960}])
    assert ("rungs[1]: the target's own tokens_per_trial (40,960) and model: it would run the "
            "target's study once more; a rung is a smaller study") in said, said
    # Rungs along the width alone, under the default scale: the fix in tokens, and the scale
    # that fits them.
    said = errors_with(rungs=[{"model": {"n_embd": 16}}, {"model": {"n_embd": 8}}])
    assert said == ["rungs: every rung has the same tokens (40,960), so no law in tokens can be "
                    "fitted: vary tokens_per_trial; or, for rungs that vary the model's size, "
                    "fit the laws in it (scale: params)"], said
    # A wider rung than the target, at fewer tokens: it passed, and cost 8 times the target.
    said = errors_with(rungs=[{"tokens_per_trial": 4_096},
                              {"tokens_per_trial": 8_192, "model": {"n_embd": 64}}])
    assert said == ["rungs[1]: its params (49,152 non-embedding parameters) are more than the "
                    "target's (12,288): a rung is a smaller study"], said
    # A ladder file as the target: thirty "unknown key" lines.
    (tmp_path / "other.yaml").write_text(path.read_text())
    assert errors_with(target={"study": "other.yaml"}) == [
        f"target.study: {tmp_path / 'other.yaml'} is a ladder file (it has rungs), not a study "
        "file: name the study file whose model and budget the ladder's target runs"]
    # A laws_file the run cannot write: validate and the dry run passed it, the run refused.
    (tmp_path / "a-file").write_text("")
    assert errors_with(laws_file="a-file/laws.json") == [
        f"laws_file: {tmp_path / 'a-file' / 'laws.json'}: cannot write the fitted laws there (a "
        "file stands where a folder of the path would be): give a path in a writable folder"]
    # A training config as the target, and a study or training file given as the ladder: one
    # line saying what the file is (it was eighteen "unknown key" lines, fifteen, twenty-two).
    (tmp_path / "final.yaml").write_text(yaml.safe_dump({"tokens": 4096, "out_dir": "run"}))
    assert errors_with(target={"study": "final.yaml"}) == [
        f"target.study: {tmp_path / 'final.yaml'} is a training config (tokens, no n_trials), "
        "not a study file: name the study file whose model and budget the ladder's target runs"]
    study_path = tmp_path / "target.yaml"
    assert errors_of(study_path) == [
        f"a study file, not a ladder file (target, rungs): run it with `scaletune run "
        f"{study_path}`, or name it as a ladder's target (target: {{study: target.yaml}})"]
    assert errors_of(tmp_path / "final.yaml") == [
        f"a training config, not a ladder file (target, rungs): train it with `scaletune train "
        f"{tmp_path / 'final.yaml'}`"]
    # A typo in the target's study file is named there, once (it came once for the target and
    # once for each rung, all said to be in the ladder file).
    path.write_text(yaml.safe_dump(raw))
    study = yaml.safe_load((tmp_path / "target.yaml").read_text())
    study["search"]["warmup_fracc"] = study["search"].pop("warmup_frac")
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(study))
    said = errors_of(path)
    assert len(said) == 1 and said[0].startswith(
        "target.study target.yaml: search.warmup_fracc: unknown key"), said


def test_the_plan_warns_of_rungs_that_cost_more_than_the_target(tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare)
    assert main(["ladder", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "the rungs cost" not in out  # 57,344 tokens against 81,920
    assert "repeats:" not in out
    # The repeats of the target's best, as `run --dry-run` shows a study's (it said nothing).
    assert main(["ladder", str(path), "--dry-run", "--repeat-best", "2"]) == 0
    assert ("repeats: the target study's best complete trial, 2 more time(s) with training "
            "seeds it has not used") in " ".join(capsys.readouterr().out.split())
    path = ladder_files(tmp_path, shakespeare, rung_trials=10)
    assert main(["ladder", str(path), "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # 10 trials of 4k, 8k and 16k tokens against 2 of 40,960 on one model: 3.5x.
    assert ("warning: the rungs cost 2.11e+10 FLOPs (6ND), 3.5x the target study's 6.04e+09: a "
            "ladder pays when its rungs are cheaper than the search at the target") in out, out


def test_deleting_a_ladder_says_its_rungs_stay(tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare)
    ladder = load_ladder(path)
    ladder.target.folder.mkdir(parents=True, exist_ok=True)
    storage = make_storage(ladder.target.storage_url)
    for name in (ladder.target.name, ladder.rungs[0].cfg.name):
        optuna.create_study(study_name=name, storage=storage)
    assert main(["delete", str(path), "--yes"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # It deleted the target and said nothing of the rungs, which no command deletes.
    assert f"deleted study '{ladder.target.name}'" in out
    assert (f"note: the ladder's target only: its 1 rung studies stay in the storage "
            f"({ladder.rungs[0].cfg.name}), and `scaletune ladder {path}` runs the target again "
            "from their laws") in out, out
    assert optuna.get_all_study_names(storage) == [ladder.rungs[0].cfg.name]


def test_validate_checks_each_rungs_budget_before_its_laws_exist(tmp_path, shakespeare, capsys):
    from scaletune.search.cli import main

    path = ladder_files(tmp_path, shakespeare)
    # Rule: the target's priors come from laws its rungs have not fitted yet; that is no error.
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out
    out = flat(capsys.readouterr().out)
    assert "ok (ladder)" in out
    # The rungs' plan notes, said once for all (validate said none; each rung's run did).
    note = ("note: every rung: search.batch_size: the priors' center batch_size = 2 lies below "
            "the range searched [4, 8]")
    assert out.count(note) == 1
    # The target's own, of its n_trials (validate of its study file gave it; of the ladder not).
    assert ("note: ladder-target: sampler.n_startup_trials: n_trials 2 <= n_startup_trials 2: "
            "every trial is a start-up trial") in out, out
    assert main(["ladder", str(path), "--dry-run"]) == 0
    assert flat(capsys.readouterr().out).count(note) == 1
    # Rule: a laws file the ladder cannot write is validate's error, as it is the run's.
    (tmp_path / "a-file").write_text("")
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "laws_file": "a-file/laws.json"}))
    assert main(["validate", str(path)]) == 2
    assert (f"laws_file: {tmp_path / 'a-file' / 'laws.json'}: cannot write the fitted laws there "
            "(a file stands where a folder of the path would be)") in flat(capsys.readouterr().err)
    path.write_text(yaml.safe_dump(raw))
    raw = yaml.safe_load(path.read_text())
    raw["rungs"][1]["tokens_per_trial"] = 200  # below one step of 8 sequences of 32 tokens
    path.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    # Named where the file gives the rung (rungs[1], the cheapest: first to run), as the
    # ladder's other problems of a rung are: it named the rung's study.
    assert ("rungs[1]: tokens_per_trial: 200 is less than one optimizer step of the "
            "largest batch searched (8 sequences x block_size 32 = 256 tokens)") in out, out


def test_rungs_that_vary_the_quantity_the_laws_are_not_of_are_warned_about(tmp_path, shakespeare):
    from scaletune.search.fit import _mixed_scales

    raw = yaml.safe_load(ladder_files(tmp_path, shakespeare).read_text())
    path = tmp_path / "ladder.yaml"
    plain = [r.cfg for r in load_ladder(path).rungs]
    # Rungs along tokens at one width, laws in tokens: nothing to say.
    assert _mixed_scales(plain, "tokens") == ()
    raw["rungs"][0]["model"] = {"n_embd": 16}
    path.write_text(yaml.safe_dump(raw))
    mixed = [r.cfg for r in load_ladder(path).rungs]
    # Rule: the warning names the sizes and both ways on; laws in parameters over several token
    # budgets are warned about the other way round.
    assert _mixed_scales(mixed, "tokens") == (
        "the studies are models of 2 sizes (1x16, 1x32, layers x width) and the laws are in "
        "tokens per trial, so the fit reads the models' differences as the horizon's: fit studies "
        "of one model (vary tokens_per_trial), or fit in parameters (scale: params, fit --by "
        "params) studies of one tokens_per_trial",)
    said = _mixed_scales(mixed, "params")
    assert len(said) == 1 and said[0].startswith(
        "the studies train 3 token budgets per trial (4,096, 8,192, 16,384) and the laws are in "
        "non-embedding parameters")


def test_a_target_that_searches_the_model_size_is_refused(tmp_path, shakespeare):
    path = ladder_files(tmp_path, shakespeare)
    study = yaml.safe_load((tmp_path / "target.yaml").read_text())
    study["search"]["other"] = {"model.n_layer": {"choices": [1, 2]},
                                "model.norm": {"choices": ["layernorm", "rmsnorm"]}}
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(study))
    # Rule: every rung would mix models of several sizes, at no one scale; a norm searched
    # changes no size and is not named.
    assert errors_of(path) == [
        "target: its study searches model.n_layer, so each rung's trials would be models of "
        "several sizes, at no one scale for the laws; fix the model's size in the study "
        "(model:), and vary it across rungs instead"]
    study["search"]["other"] = {"model.n_layer": {"value": 1}}  # fixed, not searched
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(study))
    assert load_ladder(path).rungs


def finished_counts(url: str) -> dict[str, int]:
    storage = make_storage(url)
    counts = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        counts[summary.study_name] = len([t for t in study.get_trials(deepcopy=False)
                                          if t.state.is_finished()])
    return counts


@pytest.mark.slow
def test_a_tiny_ladder_runs_end_to_end_and_resumes(tmp_path, shakespeare, capsys, monkeypatch):
    path = ladder_files(tmp_path, shakespeare, settle_log10=None)
    ladder = load_ladder(path)
    # A ladder cut short: its cheapest rung ran one of its two trials.
    first = ladder.rungs[0].cfg
    run_study(first.model_copy(update={"n_trials": 1}))
    assert finished_counts(first.storage_url) == {first.name: 1}

    assert main(["ladder", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    counts = finished_counts(first.storage_url)
    # Rule: every rung and the target have exactly their trials; the cut rung ran only the
    # trial it missed.
    assert counts == {r.cfg.name: 2 for r in ladder.rungs} | {"ladder-target": 2}
    assert "laws fitted on 2 rung(s)" in out and "laws fitted on 3 rung(s)" in out
    # After the first rung, a line says why there is no fit yet (nothing was said).
    assert out.count("no laws yet: a law needs rungs at two scales") == 1
    # The plan's notes, as the dry run gives them (a launch said none).
    assert ("note: every rung: sampler.n_startup_trials: n_trials 2 <= n_startup_trials 2: "
            "every trial is a start-up trial") in out, out
    # The fit after two rungs says it is untested; the laws file is a small summary.
    assert "warning: lr law: fitted on 2 rungs" in out
    # The summary counts what the rungs cost beside the target's compute: 2 full trials of
    # 4,096, 8,192 and 16,384 tokens (a trial rounds its tokens up to whole steps).
    cost = re.search(r"ladder 3 rung\(s\) before the target: (\d+) trials, ([\d,]+) tokens, "
                     r"(\S+) FLOPs \(6ND\); (\S+) FLOPs with the target's", out)
    assert cost, out
    assert int(cost[1]) == 6
    assert 2 * 28_672 <= int(cost[2].replace(",", "")) <= 1.1 * 2 * 28_672
    assert float(cost[3]) < float(cost[4])
    saved = json.loads(ladder.laws_file.read_text())
    assert saved["format_version"] == 2 and saved["lr"]["n_rungs"] == 3
    # A 1x32 model is far below every published lr law: the lr exponent is drawn toward the
    # suite's short-run exponent, and the law says so.
    assert saved["lr"]["exponent_prior"] == [SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD]
    assert "drawn toward the prior -0.12 +- 0.10" in saved["laws"][0]
    # It gives each law's prediction at the target's tokens with its interval.
    at_target = saved["predictions"]["target"]
    assert at_target["scale"] == ladder.target_scale == 40_960
    assert at_target["lr"]["low"] < at_target["lr"]["value"] < at_target["lr"]["high"]
    assert "boot_" not in ladder.laws_file.read_text()

    # The target's priors came from the fitted laws, and its record says so.
    storage = make_storage(first.storage_url)
    target = optuna.load_study(study_name="ladder-target", storage=storage)
    recorded = target.user_attrs["priors"]
    assert recorded["laws"]["kind"] == "fitted" and len(recorded["laws"]["fits"]) >= 1
    assert recorded["lr"]["sources"][0]["law"] == "fitted lr"
    assert target.user_attrs["config"]["priors"]["laws"] == "fitted"

    # Rule: running it again trains nothing: every rung and the target are finished. Laws that
    # settle before the last rung (as with a cheaper rung added below finished ones) still fit
    # every finished rung: the rung nearest the target was dropped from the fit, "skipped".
    laws_before = ladder.laws_file.read_text()
    with monkeypatch.context() as m:
        m.setattr(scaletune.search.ladder, "settled", lambda *args: True)
        assert main(["ladder", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert "skipped" not in out, out
    assert finished_counts(first.storage_url) == counts
    assert len(re.findall(r"rung \d/3 \S+: 2/2 trials finished", out)) == 3
    assert "target ladder-target: 2/2 trials finished" in out
    assert ladder.laws_file.read_text() == laws_before
    # It prints the fit it ends on, not the one after two finished rungs again.
    assert "laws fitted on 3 rung(s)" in out and "laws fitted on 2 rung(s)" not in out
    assert "no laws yet" not in out
    assert "ladder 3 rung(s) before the target" in out and "best trial" in out
    # The time of the run is the rungs' and the target's, the training summed the target's.
    assert re.search(r"time \S+( \S+)? this run, rungs and target; .* of training summed over the "
                     r"target's trials", out), out
    assert not list(ladder.laws_file.parent.glob("*.earlier-*"))
    # A laws file another version wrote (its lr at the target twice this fit's): fitted again
    # on the same rungs, it was replaced without a word, and export then carried other values.
    other = json.loads(laws_before)
    other["predictions"]["target"]["lr"]["value"] *= 2
    ladder.laws_file.write_text(json.dumps(other))
    assert main(["ladder", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    lr = other["predictions"]["target"]["lr"]["value"]
    assert f"note: the laws fitted again moved at the target (lr {lr:.3g} -> {lr / 2:.3g})" in out
    kept = ladder.laws_file.with_name("laws.earlier-1.json")
    assert f"the earlier file is kept as {kept}" in out
    assert json.loads(kept.read_text()) == other and ladder.laws_file.read_text() == laws_before
    # A rung added below finished ones, and the launch stopped in it: the file was left fitted
    # on the rungs below it alone (without the finished one nearest the target, which export
    # then carried), and the laws the target's trials were seeded from were lost.
    ladder.laws_file.write_text(json.dumps(other))
    rungs_file = path.read_text()
    path.write_text(rungs_file.replace("- tokens_per_trial: 8192",
                                       "- tokens_per_trial: 8192\n- tokens_per_trial: 12288"))
    assert len(load_ladder(path).rungs) == 4

    def stopped(cfg, *args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C in the new rung does, before it writes

    with monkeypatch.context() as m:
        m.setattr(scaletune.search.runner, "run_study", stopped)
        assert main(["ladder", str(path)]) == 130
    capsys.readouterr()
    assert json.loads(ladder.laws_file.read_text())["lr"]["n_rungs"] == 3
    assert ladder.laws_file.read_text() == laws_before
    assert json.loads(ladder.laws_file.with_name("laws.earlier-2.json").read_text()) == other
    path.write_text(rungs_file)
    # The ladder file stands for its target study in the commands that read a study.
    assert main(["best", str(path), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["study"] == "ladder-target" and "lr" in best["params"]
    # show names the file it was given, not the target's study file.
    assert main(["show", str(path)]) == 0
    assert f"study ladder-target ({path})" in capsys.readouterr().out
    # fit of the ladder file fits its rungs, as the ladder does (it took the target alone, one
    # study at one scale, and refused: "a law needs studies at two or more tokens per trial").
    assert main(["fit", str(path), "-o", str(tmp_path / "mine.json")]) == 0
    out = flat(capsys.readouterr().out)
    assert f"{path}: a ladder file: its 3 rung(s) that have run, fitted along tokens" in out and (
        "fitted on 3 studies") in out, out
    mine = json.loads((tmp_path / "mine.json").read_text())
    assert mine["lr"] == json.loads(ladder.laws_file.read_text())["lr"]  # the ladder's own fit
    # So does fit_laws, which `scaletune fit` is (it refused a ladder file, pointing to fit).
    assert json.loads(json.dumps(fit_laws([path]).lr.to_json())) == mine["lr"]
    assert load_study(tmp_path / "target.yaml").name == "tiny"
    # Rule: the report of a ladder opens on its figures: index.html shows each law's figure
    # and summary.json lists them with the target study's files.
    capsys.readouterr()
    assert main(["report", str(path), "-o", str(tmp_path / "report")]) == 0
    # The figures it drew there a moment before are not files it "replaced" (it said 9 were).
    assert "replaced" not in capsys.readouterr().out
    index = (tmp_path / "report" / "index.html").read_text()
    files = json.loads((tmp_path / "report" / "summary.json").read_text())["files"]
    for name in ("ladder_lr", "ladder_tau"):
        assert f'<img src="{name}.png"' in index and {f"{name}.png", f"{name}.html"} <= set(files)
    assert index.index("The ladder") < index.index("<h2>Figures</h2>")
    # Each figure's own caption: lr's spoke of the warmup fraction's weighted mean.
    carried = "their weighted mean (no trend fitted)"
    assert index.count(carried) == int("ladder_warmup_frac.png" in files), index
    assert index.count("the law fitted to them") == len(
        [f for f in files if f.startswith("ladder_") and f.endswith(".png")]) - index.count(carried)
    # The seed noise is measured by the ladder's own command (the report named `scaletune run
    # ladder.yaml`, which refuses a ladder file), on its target.
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["seed_noise"]["measure"] == f"scaletune ladder {path} --repeat-best 2"
    # make_report of the ladder file writes what the command writes (it wrote the target's
    # report alone, without the ladder's figures).
    python = make_report(path, tmp_path / "python")
    assert python["files"] == files and python["study"] == "ladder-target"
    assert (tmp_path / "python" / "ladder_lr.png").is_file()
    assert main(["ladder", str(path), "--repeat-best", "1"]) == 0
    capsys.readouterr()
    target = optuna.load_study(study_name="ladder-target", storage=storage)
    assert [t.user_attrs.get("repeat_of") for t in target.trials][2:] == [_first(target)]
    counts["ladder-target"] += 1
    assert finished_counts(first.storage_url) == counts
    assert main(["ladder", str(path)]) == 0  # the repeat is said apart: it read "(3/2 trials)"
    out = flat(capsys.readouterr().out)
    assert ("target ladder-target: 3/3 trials finished (2 of the search and 1 repeat of the best "
            "with other seeds)") in out
    assert "3/3 (1 repeat)" in out, out  # and so in the plan's table, where it read 3/2

    # Rule: a change to the target study that its stored rungs did not train with is refused
    # before the first rung, naming the ladder's name as what to change; the run said every
    # stage was finished and changed nothing, and the dry run showed a plan.
    study_file = tmp_path / "target.yaml"
    before = study_file.read_text()
    raw = yaml.safe_load(before)
    raw["search"]["batch_size"]["choices"] = [2, 4, 8]
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    for command in (["ladder", str(path)], ["ladder", str(path), "--dry-run"],
                    ["validate", str(path)]):
        assert main(command) == 2
        out = flat(capsys.readouterr().err)
        assert ("1 error(s) in" in out and "name: studies named 'ladder-rung-4.096k-1x32', "
                "'ladder-rung-8.192k-1x32', 'ladder-rung-16.384k-1x32', 'ladder-target' already "
                "exist in sqlite:///") in out, out
        assert ("and the ladder's files change what their trials trained with: "
                "search.batch_size.choices: [4, 8] -> [2, 4, 8]; give the ladder a new name "
                "(name: in ladder.yaml; its rungs and target are new studies then") in out, out
    # A wider lr range resumes every stage: validate says so of each, as of a study.
    raw = yaml.safe_load(before)
    raw["search"]["lr"]["high"] = 0.5
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["validate", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    widened = re.findall(r"note: (\S+): the stored study resumes with its search widened "
                         r"\(search\.lr\.high: \S+ -> 0\.5\)", out)
    assert widened == [*(r.cfg.name for r in ladder.rungs), "ladder-target"], out
    study_file.write_text(before)
    raw = yaml.safe_load(before)
    raw["search"]["batch_size"]["choices"] = [2, 4, 8]
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    # From Python too: run_ladder checked nothing before its rungs (here: all finished, it
    # said so and returned the target as it was).
    with pytest.raises(ConfigError, match=re.escape("search.batch_size.choices: [4, 8] -> [2, 4")):
        run_ladder(load_ladder(path))
    assert finished_counts(first.storage_url) == counts
    # Other text under the same settings: one line for every stage, named as the ladder's.
    other = tmp_path / "other.txt"
    other.write_bytes(shakespeare.read_bytes()[200_000:300_000])
    raw = yaml.safe_load(before)
    raw["data"]["path"] = str(other)
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["ladder", str(path)]) == 2
    out = flat(capsys.readouterr().err)
    assert out.count("data: the study's trials trained on data") == 1, out
    assert ("its text or tokenizer changed, and one study must not mix trials on different "
            "data; restore the data, or give the ladder a new name (name: in ladder.yaml") in out
    assert finished_counts(first.storage_url) == counts
    # The figures of a target whose study file changed since it ran: its best trial was drawn
    # at the file's scale now (twice the tokens its trials trained), not where it trained.
    from scaletune.search.ladder_report import make_ladder_figures

    trained = load_ladder(path).target_scale
    raw = yaml.safe_load(before)
    raw["tokens_per_trial"] = 2 * raw["tokens_per_trial"]
    study_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    for drawn in make_ladder_figures(load_ladder(path), tmp_path / "changed"):
        shown = {t.name: t.x for t in drawn.html.data}
        assert shown["target study's best trial"] == (trained,), shown
        assert shown["prediction at the target"][-1] == trained, shown
        # Beside the prediction, the center the target searched around (a blend where the fit
        # is weak, which the star alone left unexplained).
        assert shown["target study's prior center"] == (trained,), shown
        # The published center drawn at the target is the one the prior was blended with (at
        # the batch of the target's prior): the blend lay below both values drawn.
        ys = {t.name: t.y for t in drawn.html.data}
        if drawn.paths[0].stem in ("ladder_lr", "ladder_tau"):
            center = ys["target study's prior center"][0]
            published = ys["published laws' prior center"][-1]
            predicted = ys["prediction at the target"][-1]
            assert (min(published, predicted) * (1 - 1e-9) <= center
                    <= max(published, predicted) * (1 + 1e-9)), (drawn.paths[0].stem, ys)
    study_file.write_text(before)

    # Rule: a launch whose fit replaces laws that differ at the target keeps the file it
    # replaced and says so. A fit by hand over the ladder's file (`scaletune fit -o`, no
    # predictions in it, its lr law twice the ladder's): it was replaced without a word.
    hand = json.loads(laws_before)
    del hand["predictions"]
    hand["lr"]["log10_coef"] += math.log10(2)
    ladder.laws_file.write_text(json.dumps(hand))
    assert main(["ladder", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert "note: the laws fitted again moved at the target (lr " in out, out
    assert "written by hand or by `scaletune fit`" in out
    kept = ladder.laws_file.with_name("laws.earlier-3.json")
    assert f"the earlier file is kept as {kept}" in out and json.loads(kept.read_text()) == hand
    # More trials on each rung, after the target ran from the laws of the rungs' first two:
    # the target's new trials take other laws, said once the rungs have trained.
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "rung_trials": 3}, sort_keys=False))
    assert main(["ladder", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    moved = "note: the laws fitted again moved at the target"
    assert (f"{moved} (" in out and "after the target study ladder-target had finished 3 "
            "trial(s) seeded from the laws before; the earlier file is kept as") in out, out
    assert json.loads(ladder.laws_file.with_name("laws.earlier-4.json").read_text()) == \
        json.loads(laws_before)
    assert not ladder.laws_file.with_name("laws.earlier-5.json").exists()  # kept once
    # A rung taken out of the ladder file: the note named every cause but that one.
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "rungs": raw["rungs"][1:]}, sort_keys=False))
    assert main(["ladder", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert (f"{moved} (" in out and "though no rung trained in this launch: the ladder file's "
            "rungs changed, and the laws are fitted without the rung(s) at 16,384;") in out, out


@pytest.mark.slow
def test_a_study_of_the_target_s_name_run_apart_is_not_taken_for_the_target(tmp_path, shakespeare,
                                                                           capsys):
    # A study file named ladder-target, run by itself: the ladder resumed it as its target
    # without a word (its priors the published laws', its first trial never the laws' center).
    path = ladder_files(tmp_path, shakespeare)
    ladder = load_ladder(path)
    apart = load_study(tmp_path / "target.yaml").model_copy(
        update={"name": "ladder-target", "n_trials": 1})
    run_study(apart, summary=False)
    for command in (["ladder", str(path), "--dry-run"], ["validate", str(path)]):
        assert main(command) == 2
        out = flat(capsys.readouterr().err)
        assert ("name: a study named 'ladder-target' already exists in sqlite:///" in out
                and "run apart from this ladder (its priors are the published laws, where the "
                "ladder's target takes the laws its rungs fit): give the ladder a new name "
                "(name: in ladder.yaml" in out), out
        assert "scaletune delete ladder-target --storage sqlite:///" in out
    # Nothing of the ladder ran.
    assert finished_counts(ladder.target.storage_url) == {"ladder-target": 1}


def _first(study: optuna.Study) -> int:
    """The number of the target's best trial before its repeats: the one repeated."""
    plain = [t for t in study.trials if "repeat_of" not in t.user_attrs and t.value is not None]
    return min(plain, key=lambda t: t.value).number


def test_the_rungs_cost_counts_a_failure_run_again_once(tmp_path, shakespeare):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from scaletune.search.ladder import rungs_compute

    ladder = load_ladder(ladder_files(tmp_path, shakespeare))
    rung = ladder.rungs[0].cfg
    rung.folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=rung.name, storage=make_storage(rung.storage_url))
    lr = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    attrs = {"tokens_seen": 4_096}
    for state, more in [(TrialState.COMPLETE, {}), (TrialState.FAIL, {"retried": True}),
                        (TrialState.COMPLETE, {})]:
        study.add_trial(optuna.trial.create_trial(
            state=state, value=2.0 if state == TrialState.COMPLETE else None,
            params={"lr": 1e-3}, distributions=lr, user_attrs={**attrs, **more}))
    # Rule: a trial stopped with its driver and run again is one trial of the rung, not two.
    cost = rungs_compute(ladder)
    assert cost["trials"] == 2
    # Its tokens count (3 x 4,096), and the summary's line says so: "24 trials" beside tokens
    # that held 4 stopped trials' read as if those were all.
    assert cost["tokens"] == 3 * 4_096 and cost["stopped"] == 1


def exported_with_laws(tmp_path, tau_spread: tuple[float, float]):
    """A study seeded by laws fitted to lr * x^-0.5, tau * x^-0.2 and batch * x^0.5 at four
    rungs, two near-best trials each (lr and batch 0.95 and 1/0.95 of the law, tau by
    ``tau_spread``), its best trial exported to 16x the tokens."""
    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.export import export_study
    from tests.search.test_export import add_trial, make_study, params, study_file

    points = [ScalePoint(x, "tokens", 0.3 * x**-0.5 * j, 50 * x**-0.2 * k, 0.5 * x**0.5 * j, 3.0)
              for x in (1e4, 2e4, 4e4, 8e4)
              for j, k in zip((0.95, 1 / 0.95), tau_spread, strict=True)]
    laws_path = tmp_path / "laws.json"
    fit_studies(points, n_boot=100).save(laws_path)
    path, cfg = study_file(tmp_path, priors={"laws": "fitted", "fitted_file": str(laws_path)})
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3, tau=0.8, batch_size=16), 2.2)
    return export_study(cfg, tmp_path / "final.yaml", source=str(path),
                        tokens=16 * cfg.tokens_per_trial)


def test_export_to_another_model_says_its_laws_in_parameters_are_not_carried(tmp_path):
    # A ladder along width fits laws in parameters; export --model took the published width
    # rules without a word of the laws the study was seeded with.
    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.export import export_study
    from tests.search.test_export import add_trial, make_study, params, study_file

    points = [ScalePoint(x, "params", 0.3 * x**-0.3 * j, 50 * x**0.3 * j, 16.0, 3.0)
              for x in (3e3, 1e4, 3e4) for j in (0.95, 1 / 0.95)]
    fit_studies(points, n_boot=100).save(tmp_path / "laws.json")
    path, cfg = study_file(tmp_path, priors={"laws": "fitted",
                                             "fitted_file": str(tmp_path / "laws.json")})
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3, tau=0.8, batch_size=16), 2.2)
    done = export_study(cfg, tmp_path / "final.yaml", source=str(path),
                        model={"n_embd": 2 * cfg.model.n_embd})
    said = " ".join(done.config.provenance["notes"])
    assert ("the study's priors are laws fitted in parameters (" in said and "--model is carried "
            "with the published width rules below, not with those laws, which from 12,288 to "
            "49,152 non-embedding parameters give lr 0.002639 (x0.66 of the trial's), tau 1.213 "
            "(x1.52 of the trial's): set those in the written file to follow them") in said, said
    # The same width: nothing carried, nothing said.
    same = export_study(cfg, tmp_path / "same.yaml", source=str(path))
    assert "laws fitted in parameters" not in " ".join(same.config.provenance["notes"])


def test_export_carries_the_horizon_with_the_fitted_exponents(tmp_path):
    done = exported_with_laws(tmp_path, (0.95, 1 / 0.95))
    # Rule: with laws fitted in tokens, the horizon uses their exponents: lr * 16^-0.5,
    # tau * 16^-0.2, batch * 16^0.5 (64 sequences), each rule citing the fitted law.
    final = done.transfer.final
    assert final.lr == pytest.approx(4e-3 * 16**-0.5, rel=1e-6)
    assert final.tau == pytest.approx(0.8 * 16**-0.2, rel=1e-6)
    assert final.batch_size == 64
    sources = {r.value: r.source for r in done.transfer.rules}
    # The laws file by its path and content, which a later fit rotates (it was "(laws.json)").
    digest = hashlib.sha256((tmp_path / "laws.json").read_bytes()).hexdigest()[:12]
    assert sources["lr"].startswith(f"fitted lr law, fitted on 4 rungs ({tmp_path / 'laws.json'}, "
                                    f"sha256 {digest})")
    assert sources["batch_size"].startswith("fitted batch-size law")
    assert "fitted tau law" in next(r.formula for r in done.transfer.rules
                                    if r.value == "weight_decay")
    # Intervals this tight exclude the published exponents: no note of them.
    assert not [n for n in done.config.provenance["notes"] if "do not tell the two apart" in n]


def test_export_says_where_a_fitted_exponent_does_not_exclude_the_published_one(tmp_path):
    # lr and batch tight around their laws; tau's near-best trials 16x apart at every rung.
    done = exported_with_laws(tmp_path, (0.25, 4.0))
    notes = done.config.provenance["notes"]
    # It moved tau by 16^-0.2 and said nothing of an interval that holds the published 0.
    said = [n for n in notes if "the rungs do not tell the two apart" in n]
    assert len(said) == 1 and said[0].startswith(
        "the fitted tau law's exponent -0.200 has a 95% interval [-2.103, +1.703] that holds the "
        "published horizon rule's +0 (tau kept, Wang & Aitchison: how tau moves as the run "
        "lengthens at a fixed model, not the priors' law)"), notes


def test_export_notes_the_warnings_of_the_laws_it_uses_only(tmp_path):
    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.export import export_study, summary_lines
    from tests.search.test_export import add_trial, make_study, params, study_file

    # Two studies: every fit warns (two rungs), the carried warmup too.
    points = [ScalePoint(x, "tokens", 0.3 * x**-0.5 * j, 50 * x**-0.2 * j, None, 3.0,
                         warmup_frac=w) for x in (1e4, 4e4) for j, w in ((0.95, 0.2), (1.05, 0.3))]
    laws_path = tmp_path / "laws.json"
    fitted = replace(fit_studies(points, n_boot=100),
                     study_warnings=("the studies are models of 2 sizes (2x64, 4x128, ...)",))
    assert any(w.startswith("warmup_frac:") for w in fitted.warnings)
    fitted.save(laws_path)
    path, cfg = study_file(tmp_path, priors={"laws": "fitted", "fitted_file": str(laws_path)})
    study = make_study(cfg)
    add_trial(study, cfg, params(4e-3, tau=0.8, batch_size=16), 2.2)
    done = export_study(cfg, tmp_path / "final.yaml", source=str(path),
                        tokens=16 * cfg.tokens_per_trial)
    # Rule: the export names the warnings of the laws that carry the config to the longer run;
    # the warmup fraction is kept as the trial had it, so its warning is not the export's.
    assert any(n.startswith("fitted laws: lr law: fitted on 2 rungs") for n in done.notes)
    assert "fitted laws: the studies are models of 2 sizes (2x64, 4x128, ...)" in done.notes
    assert not any("warmup_frac" in n for n in done.notes)
    # Rule: a rule whose fitted law warns says its exponent is a mean with the published one,
    # and the closing line does not call the laws all published.
    lr_rule = next(r for r in done.transfer.rules if r.value == "lr")
    assert lr_rule.source.startswith("mean of the fitted lr law's exponent and the published")
    # ... naming the published one, which for tau is the horizon rule's 0, not Power Lines' law.
    assert "the published horizon rule's, -0.32 (Bjorck et al.; the fit warns)" in lr_rule.source
    assert any("(lr -0.32" in n for n in done.notes), done.notes
    lines = summary_lines(done.config.provenance)
    assert any("fitted on your rungs, on smaller runs than this one" in line for line in lines)
    assert not any(line.startswith("Scaling laws fitted on far larger") for line in lines)
    # A run shorter than the trial: the laws carry it down, not up from smaller runs.
    done = export_study(cfg, tmp_path / "short.yaml", source=str(path),
                        tokens=cfg.tokens_per_trial // 4)
    lines = " ".join(summary_lines(done.config.provenance))
    assert "carry the trial's values down to a shorter run" in lines
    assert "on smaller runs than this one" not in lines
    # Rule: a run of the trial's own tokens moves nothing, and says nothing of the laws that
    # would move it (their exponents' notes were there, under "transfer none").
    same = export_study(cfg, tmp_path / "same.yaml", source=str(path))
    assert not [n for n in same.notes if "fitted" in n], same.notes


def test_the_ladder_figure_shows_rungs_law_published_prior_and_prediction(tmp_path, shakespeare):
    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.ladder_report import make_ladder_figures

    ladder = load_ladder(ladder_files(tmp_path, shakespeare))
    points = [ScalePoint(r.scale, "tokens", 0.5 * r.scale**-0.3 * j, 10 * r.scale**-0.2 * j,
                         None, 3.0) for r in ladder.rungs for j in (0.9, 1 / 0.9)]
    fitted = fit_studies(points, n_boot=100)
    drawn = make_ladder_figures(ladder, tmp_path / "report", fitted)
    # Rule: one figure per fitted law (no batch law here), PNG and HTML each.
    assert [d.paths[0].name for d in drawn] == ["ladder_lr.png", "ladder_tau.png"]
    assert all(path.is_file() for d in drawn for path in d.paths)
    html = drawn[0].html
    names = {trace.name for trace in html.data}
    assert {"fitted law", "95% prediction interval", "published laws' prior center",
            "prediction at the target"} <= {n for n in names}
    assert any(n.startswith("rung optimum") for n in names)
    # The prediction's star sits at the target's tokens, at the law's value there.
    star = next(t for t in html.data if t.name == "prediction at the target" and len(t.x) == 1)
    assert star.x[0] == ladder.target_scale
    assert star.y[0] == pytest.approx(fitted.lr.predict(ladder.target_scale).value)
    # The title gives the exponent with its interval.
    assert "lr ~ tokens^-0.300" in drawn[0].png.axes[0].get_title(loc="left")
    # Rule: a law drawn toward a prior exponent says so, with the rungs' own slope, which its
    # line does not follow (it was "fitted law" alone).
    pulled = fit_studies(points, n_boot=100, lr_exponent_prior=(0.1, 0.05))
    drawn = make_ladder_figures(ladder, tmp_path / "pulled", pulled)
    names = {trace.name for trace in drawn[0].html.data}
    assert (f"fitted law, exponent drawn toward the prior +0.10 (the rungs alone: "
            f"{pulled.lr.data_exponent:+.3f})") in names
    assert pulled.lr.data_exponent == pytest.approx(-0.3, abs=0.01)


def test_the_published_center_at_the_target_is_taken_at_the_batch_of_its_prior(tmp_path,
                                                                               shakespeare):
    # The target's lr prior is taken at the fitted batch's, and a fit that warns is blended
    # there with the published laws; the figure drew the published lr at the published batch,
    # and the blend lay below both values drawn (0.00608 between 0.00632 and 0.00828).
    from scaletune.search.ladder_report import published_center
    from scaletune.search.space import trained_batches

    target = load_ladder(ladder_files(tmp_path, shakespeare)).target
    low, high = trained_batches(target)
    assert low < high
    at_low, at_high = (published_center(target, "lr", b) for b in (low, high))
    assert at_high / at_low == pytest.approx(math.sqrt(high / low))  # Adam's square-root rule
    assert published_center(target, "batch_size", low) == published_center(target, "batch_size")


def test_the_carried_warmup_gets_a_figure_of_its_own(tmp_path, shakespeare):
    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.ladder_report import make_ladder_figures

    ladder = load_ladder(ladder_files(tmp_path, shakespeare))
    points = [ScalePoint(r.scale, "tokens", 0.5 * r.scale**-0.3 * j, None, None, 3.0,
                         warmup_frac=w) for r in ladder.rungs for j, w in ((0.9, 0.2), (1.1, 0.3))]
    fitted = fit_studies(points, n_boot=100)
    drawn = make_ladder_figures(ladder, tmp_path / "report", fitted)
    # Rule: the warmup carried from the rungs is drawn after the laws, on a linear axis, as a
    # flat line at the rungs' mean with the target's prediction on it.
    assert [d.paths[0].name for d in drawn] == ["ladder_lr.png", "ladder_warmup_frac.png"]
    ax = drawn[1].png.axes[0]
    assert ax.get_yscale() == "linear" and ax.get_xscale() == "log"
    assert ax.get_title(loc="left").startswith("warmup_frac 0.25: the mean of 3 rungs, carried")
    line = next(t for t in drawn[1].html.data if t.name.startswith("carried value"))
    assert list(line.y) == pytest.approx([0.25] * len(line.y))
    star = next(t for t in drawn[1].html.data
                if t.name == "prediction at the target" and len(t.x) == 1)
    assert star.x[0] == ladder.target_scale and star.y[0] == pytest.approx(0.25)


def test_a_ladder_settles_only_on_three_agreeing_rungs_without_warnings(tmp_path, shakespeare):
    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.ladder import settled

    ladder = load_ladder(ladder_files(tmp_path, shakespeare))

    def laws(exponent, scales):
        return fit_studies([ScalePoint(x, "tokens", 0.5 * x**exponent * j, None, None, 3.0)
                            for x in scales for j in (0.9, 1 / 0.9)], n_boot=100)

    two, three = (4e3, 8e3), (4e3, 8e3, 16e3)
    # Rule: the target's prediction moved by less than settle_log10 (0.05) with the third rung.
    assert settled(ladder, laws(-0.3, two), laws(-0.3, three), n_rungs=3)
    # Not when it moved more, not on two rungs, not when a law warns (lr rising with tokens).
    assert not settled(ladder, laws(-0.2, two), laws(-0.3, three), n_rungs=3)
    assert not settled(ladder, laws(-0.3, two), laws(-0.3, two), n_rungs=2)
    assert not settled(ladder, laws(0.3, two), laws(0.3, three), n_rungs=3)
    # settle_log10: null runs every rung.
    every = replace(ladder, cfg=ladder.cfg.model_copy(update={"settle_log10": None}))
    assert not settled(every, laws(-0.3, two), laws(-0.3, three), n_rungs=3)


def test_a_target_that_repeats_its_data_unlike_its_rungs_is_warned_of(tmp_path, shakespeare,
                                                                      capsys):
    small = tmp_path / "small.txt"
    small.write_text(shakespeare.read_text()[:20_000])  # plain ASCII: a token per character
    path = ladder_files(tmp_path, small)
    ladder = load_ladder(path)
    # Rule: epochs come from the files' sizes (nothing is tokenized); the rungs stay under one.
    assert [round(epochs(r.cfg), 2) for r in ladder.rungs] == [0.23, 0.46, 0.91]
    assert round(epochs(ladder.target), 2) == 2.28
    warning = epochs_warning([epochs(r.cfg) for r in ladder.rungs], epochs(ladder.target))
    assert warning.startswith("the target trains 2.3 epochs of its data and the rungs at most 0.91")
    # The plan says it, and shows the epochs of every study.
    assert main(["ladder", str(path), "--dry-run"]) == 0
    out = flat(capsys.readouterr().out)
    assert "warning: the target trains 2.3 epochs" in out and "epochs" in out
    # On the whole text every study sees each token once at most: nothing to warn of.
    whole = tmp_path / "whole"
    whole.mkdir()
    ladder = load_ladder(ladder_files(whole, shakespeare))
    assert epochs_warning([epochs(r.cfg) for r in ladder.rungs], epochs(ladder.target)) is None


def test_hold_epochs_trains_each_rung_on_a_share_of_the_data_with_the_targets_passes(
        tmp_path, shakespeare, capsys):
    from scaletune.trainer.data import prepare_data

    small = tmp_path / "small.txt"
    small.write_text(shakespeare.read_text()[:20_000])  # the target trains 2.28 epochs of it
    path = ladder_files(tmp_path, small, hold_epochs=True)
    ladder = load_ladder(path)
    target_epochs = epochs(ladder.target)
    # Rule: each rung trains on the first tokens/2.28 of the 18,000 training tokens (rounded up
    # to three digits), so it makes the target's passes over them; its name says so; nothing to
    # warn of.
    shares = [r.cfg.data.train_tokens for r in ladder.rungs]
    assert shares == [1_800, 3_600, 7_200]
    assert [r.cfg.name for r in ladder.rungs] == ["ladder-rung-4.096k-1x32-data1.8k",
                                                  "ladder-rung-8.192k-1x32-data3.6k",
                                                  "ladder-rung-16.384k-1x32-data7.2k"]
    assert [round(epochs(r.cfg), 2) for r in ladder.rungs] == [round(target_epochs, 2)] * 3
    assert ladder.target.data.train_tokens is None
    assert epochs_warning([epochs(r.cfg) for r in ladder.rungs], target_epochs) is None
    assert main(["ladder", str(path), "--dry-run"]) == 0
    out = flat(capsys.readouterr().out)
    assert "hold_epochs: the target makes 2.3 passes over its data; each rung trains" in out
    assert "warning" not in out
    # Nor a note on model fields the file never set (every default was passed as set: "model.
    # rope_theta is read only when model.positions is rope").
    assert "rope_theta" not in out and "model.dropout" not in out, out
    # The rung's data: the first tokens of the training split; validation is the target's.
    rung, whole = (prepare_data(c.data, c.model.block_size)
                   for c in (ladder.rungs[0].cfg, ladder.target))
    assert rung.n_train_tokens == 1_800
    assert list(rung.train) == list(whole.train[:1_800])
    assert list(rung.val) == list(whole.val)
    # A target that sees its data once at most (200 kB): the rungs train on all of it, as said.
    wide = tmp_path / "wide"
    wide.mkdir()
    ladder = load_ladder(ladder_files(wide, shakespeare, hold_epochs=True))
    assert {r.cfg.data.train_tokens for r in ladder.rungs} == {None}
    assert ladder.held.startswith("hold_epochs: the target makes 0.23 passes over its data, no "
                                  "more than one: the rungs train on all of it")


def test_hold_epochs_with_a_tokenizer_file_sizes_the_data_before_the_rungs(tmp_path,
                                                                           shakespeare):
    from scaletune.search.ladder import with_data_sized
    from tests.trainer.test_tokenizer_files import byte_level_bpe

    small = tmp_path / "small.txt"
    small.write_text(shakespeare.read_text()[:20_000])
    path = ladder_files(tmp_path, small, hold_epochs=True)
    target = yaml.safe_load((tmp_path / "target.yaml").read_text())
    byte_level_bpe(tmp_path / "tok" / "tokenizer.json", small.read_text(), vocab_size=300)
    target["data"]["tokenizer"] = "tok/tokenizer.json"
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(target))
    # A BPE's token count is not known before tokenizing: the rungs wait, and say so.
    ladder = load_ladder(path)
    assert epochs(ladder.target) is None
    assert {r.cfg.data.train_tokens for r in ladder.rungs} == {None}
    assert "not known until the data is prepared" in ladder.held
    # What `scaletune ladder` does first: tokenize, then plan the rungs on the real count.
    sized = with_data_sized(ladder)
    passes = epochs(sized.target)
    assert passes > 2.28  # fewer tokens than bytes: more passes than on the bytes
    assert [r.cfg.data.train_tokens for r in sized.rungs] == [
        pytest.approx(r.cfg.tokens_per_trial / passes, rel=0.01) for r in sized.rungs]
    assert [round(epochs(r.cfg), 1) for r in sized.rungs] == [round(passes, 1)] * 3
    assert with_data_sized(sized) is sized


def test_a_ladder_file_given_to_run_says_to_use_ladder_and_studies_lists_its_storage(
        tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare)
    # Not the wall of a study file's missing keys: what the file is and the command for it.
    assert main(["run", str(path)]) == 2
    out = flat(capsys.readouterr().err)
    assert "1 error(s)" in out
    assert f"a ladder file (target, rungs), not a study file: run it with `scaletune ladder {path}`" in out
    # `studies` takes a ladder file as the other readers do: its target's storage, every rung's.
    ladder = load_ladder(path)
    first = ladder.rungs[0].cfg
    first.folder.mkdir(parents=True, exist_ok=True)
    optuna.create_study(study_name=first.name, storage=make_storage(first.storage_url))
    assert main(["studies", str(path)]) == 0
    out = flat(capsys.readouterr().out)
    assert f"Studies in {ladder.target.storage_url}" in out and first.name in out


def test_priors_of_a_ladder_before_its_laws_name_its_keys(tmp_path, shakespeare, capsys):
    path = ladder_files(tmp_path, shakespeare)
    assert main(["priors", str(path)]) == 2
    out = flat(capsys.readouterr().err)
    # Rule: the ladder file's own key and the command that writes its laws (it named
    # priors.fitted_file, which the ladder file does not have), and where the published
    # priors are shown until then.
    assert (f"laws_file: {tmp_path / 'runs' / 'ladder' / 'laws.json'} does not exist yet: the "
            f"target's priors come from the laws `scaletune ladder {path}` fits once two rungs "
            f"have finished; the published laws' priors at the target: `scaletune priors "
            f"{tmp_path / 'target.yaml'}`") in out, out
    assert main(["priors", str(tmp_path / "target.yaml")]) == 0


def test_a_batch_law_that_predicts_less_than_a_sequence_says_so(tmp_path, shakespeare):
    from rich.console import Console

    from scaletune.heuristics.fit import ScalePoint, fit_studies
    from scaletune.search.ladder import print_fit

    ladder = load_ladder(ladder_files(tmp_path, shakespeare))
    block = ladder.target.model.block_size
    # Tokens per step falling 4x for each doubling of the rungs' tokens: 40,960 at the target
    # gives a few tokens a step, less than one sequence (it was printed as any prediction).
    points = [ScalePoint(scale=x, scale_kind="tokens", lr=1e-3, tau=None,
                         batch_size=32.0 * (16_384 / x) ** 2, value=3.0)
              for x in (4_096, 8_192, 16_384) for _ in range(2)]
    console = Console(record=True, width=400)
    print_fit(ladder, fit_studies(points, n_boot=50), console)
    out = flat(console.export_text())
    # Rule: a prediction no batch can train is said to be one.
    assert f"(less than one sequence of {block} tokens: no batch trains that; the target's " \
           "batch is a sequence or more)" in out, out
    assert out.count("less than one sequence") == 1  # the batch law's line alone
    # Every rung's trials on one line (one lr, a batch exactly on its law): the bootstrap had
    # nothing to vary, and [x, x] read as a certain 95% interval.
    assert "no prediction interval (zero width: the rungs gave nothing to vary; see the " \
           "warnings)" in out and "prediction interval [" not in out, out
    noisy = [ScalePoint(scale=x, scale_kind="tokens", lr=1e-3 * (x / 4_096) ** -0.3 * wiggle,
                        tau=None, batch_size=32.0, value=3.0)
             for x in (4_096, 8_192, 16_384) for wiggle in (0.8, 1.25)]
    console = Console(record=True, width=400)
    print_fit(ladder, fit_studies(noisy, n_boot=50), console)
    assert re.search(r"peak learning rate, 95% prediction interval \[[0-9.e-]+, [0-9.e-]+\]",
                     flat(console.export_text())), console.export_text()
    # One sequence a step at every rung, predicted as 63.999999999999986 tokens at block 64:
    # "64 tokens per step ... (less than one sequence of 64 tokens ...)".
    target = yaml.safe_load((tmp_path / "target.yaml").read_text())
    target["model"]["block_size"] = 64
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(target))
    ladder = load_ladder(tmp_path / "ladder.yaml")
    points = [ScalePoint(scale=x, scale_kind="tokens", lr=1e-3, tau=None, batch_size=64.0,
                         value=3.0) for x in (4_096, 8_192) for _ in range(2)]
    console = Console(record=True, width=400)
    print_fit(ladder, fit_studies(points, n_boot=50), console)
    assert "less than one sequence" not in flat(console.export_text())


def test_a_target_given_as_its_file_alone_is_the_target_study(tmp_path, shakespeare, capsys):
    from scaletune.search.cli import main

    path = ladder_files(tmp_path, shakespeare)
    raw = yaml.safe_load(path.read_text())
    whole = load_ladder(path).target.name
    path.write_text(yaml.safe_dump({**raw, "target": "target.yaml"}))
    # Rule: `target: FILE` reads as {study: FILE} (it was "expected a mapping"), and a file
    # with a target and no rungs is a ladder that lacks them (validate called it a study file
    # with an unknown key, target).
    assert load_ladder(path).target.name == whole
    path.write_text(yaml.safe_dump({"target": "target.yaml"}))
    for command in (["validate", str(path)], ["ladder", str(path), "--dry-run"]):
        assert main(command) == 2
        out = flat(capsys.readouterr().err)
        assert "rungs: Field required; add it: The rungs below the target, as a list" in out, out
        assert "unknown key" not in out
