"""What a person reads when a study file is wrong: one line per problem that names the key as the
file spells it, says what to write instead and shows the bad value; `validate` finds the files a
study names that are not there, as `run` would."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaletune.search.config import check_study_files, load_study, validate_study
from scaletune.trainer.errors import ConfigError

STUDY: dict[str, Any] = {"name": "s", "tokens_per_trial": 100_000, "n_trials": 2}
"""The smallest valid study: built-in text, so that no file is needed."""

PYDANTIC_WORDS = ("valid dictionary", "instance of", "Unable to extract tag", "Input tag",
                  "does not match any of the expected tags", "unable to parse", "unable to interpret",
                  "Input should be greater", "Input should be less", "String should have")
"""pydantic's phrasing that a person cannot act on, and that no error may show."""


DROP = object()
"""A change that removes the key."""


def errors_of(**changes: Any) -> list[str]:
    """The error lines of STUDY with ``changes`` ('dotted__key' for a nested one)."""
    raw = copy.deepcopy(STUDY)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is DROP:
            del node[leaf]
        else:
            node[leaf] = value
    with pytest.raises(ConfigError) as err:
        validate_study(raw)
    return err.value.errors


def write(path: Path, study: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


# (case, changes, the line expected)
LINES = [
    ("a bare value under search", {"search__dropout": 0.0},
     "search.dropout: give {value: 0.0} to fix it, or {low: .., high: ..}, {choices: [..]}, "
     "{prior: auto} to search it"),
    ("a training file's tokens under trainer: where a study file gives it",
     {"trainer__tokens": 1000},
     "trainer.tokens: unknown key; a training file's tokens is the study file's "
     "tokens_per_trial, at its top level, for every trial"),
    ("a training file's out_dir under trainer:, which a study sets itself",
     {"trainer__out_dir": "x"},
     "trainer.out_dir: unknown key; a study sets out_dir for each trial itself (trials keep no "
     "run folder; the storage holds their results)"),
    ("a search from the priors written short: {prior: auto}, not {value: 'auto'}, refused",
     {"search__warmup_frac": "auto"},
     "search.warmup_frac: give {prior: auto} to search it around the scaling laws' value, or "
     "{low: .., high: ..}, {choices: [..]} to search it, {value: ..} to fix it"),
    ("a bare list of two numbers under search: a range, as Optuna's users write it",
     {"search__lr": [1e-4, 1e-2]},
     "search.lr: give {low: 0.0001, high: 0.01}, {prior: auto} to search that range, or "
     "{choices: [0.0001, 0.01]} to search the two values, {value: ..} to fix it"),
    ("a bare list under search, 3e-4 as YAML reads it", {"search__lr": ["1e-4", "3e-4", "1e-3"]},
     "search.lr: give {choices: [0.0001, 0.0003, 0.001]} to search these values, or {low: .., "
     "high: ..}, {prior: auto} to search a range, {value: ..} to fix it"),
    ("a trainer field under search.other written as nested in the study file",
     {"search__other": {"trainer.optim.beta2": {"choices": [0.9, 0.95]}}},
     "search.other.trainer.optim.beta2: the keys under search.other are trainer fields as they "
     "are named in a training file, without 'trainer.': write 'optim.beta2'"),
    ("an unknown field under search.other: those it may set", {"search__other": {"bogus": {"value": 1}}},
     "search.other.bogus: unknown trainer field 'bogus'; allowed here: ['compile', 'cpu_matmul', "
     "'dtype', 'max_loss', 'micro_batch_size', 'model', 'optim']"),
    ("a misspelt field nearest one search.other may not set: no 'did you mean' to a refusal",
     {"search__other": {"out_dirr": {"value": 1}}},
     "search.other.out_dirr: unknown trainer field 'out_dirr' ('out_dir', the field nearest to "
     "it, is not one search.other sets); allowed here: ['compile', 'cpu_matmul', 'dtype', "
     "'max_loss', 'micro_batch_size', 'model', 'optim']"),
    ("a noise floor written as YAML reads 1e-2", {"pruner": {"name": "predicted",
                                                            "noise_floor": "1e-2x"}},
     "pruner.noise_floor: must be 'auto' or a number in [0, 1) (got '1e-2x')"),
    ("a bare value under search.other, which has no priors", {"search__other": {"model.n_layer": 3}},
     "search.other.model.n_layer: give {value: 3} to fix it, or {low: .., high: ..}, "
     "{choices: [..]} to search it"),
    ("a section that is not a mapping", {"workers": [1, 2]},
     "workers: expected a mapping with keys among: address, gpus_per_trial, cpus_per_trial, "
     "max_concurrent (got [1, 2])"),
    ("a pruner that is not a mapping", {"pruner": 3},
     "pruner: expected a mapping with name: one of 'median', 'percentile', 'successive_halving', "
     "'hyperband', 'wilcoxon', 'patient', 'predicted' or 'none' (got 3)"),
    ("a pruner without a name, with options the default one has not", {"pruner": {"percentile": 30}},
     "pruner.name: Field required; one of 'median', 'percentile', 'successive_halving', "
     "'hyperband', 'wilcoxon', 'patient', 'predicted' or 'none'"),
    ("a misspelt pruner", {"pruner": {"name": "medain"}},
     "pruner.name: Input should be 'median', 'percentile', 'successive_halving', 'hyperband', "
     "'wilcoxon', 'patient', 'predicted' or 'none' (got 'medain'); did you mean 'median'?"),
    ("a misspelt literal", {"model__positions": "rop"},
     "model.positions: Input should be 'learned' or 'rope' (got 'rop'); did you mean 'rope'?"),
    ("a literal with nothing close", {"sampler__name": "bayes"},
     "sampler.name: Input should be 'tpe', 'random', 'gp' or 'cmaes' (got 'bayes')"),
    ("a required key left out", {"tokens_per_trial": DROP},
     "tokens_per_trial: Field required; add it: Training tokens of every trial"),
    ("a token count that is no number", {"tokens_per_trial": "lots"},
     "tokens_per_trial: Input should be a valid integer, a whole number such as 2e6, 2_000_000, "
     "2000000 or 2M (got 'lots')"),
    ("an integer with a fraction", {"model__n_layer": 2.5},
     "model.n_layer: Input should be a valid integer, a whole number such as 2e6, 2_000_000 or "
     "2000000 (got 2.5)"),
    ("a float that is text", {"model__dropout": "none"},
     "model.dropout: expected a number, such as 0.5 or 3e-4 (got 'none')"),
    ("a bound on both sides", {"model__dropout": 1.5}, "model.dropout: must be in [0, 1) (got 1.5)"),
    ("a lower bound", {"max_retries": -1}, "max_retries: must be >= 0 (got -1)"),
    ("a strict lower bound", {"workers__cpus_per_trial": 0},
     "workers.cpus_per_trial: must be > 0 (got 0)"),
    ("a yes/no that is neither", {"model__qkv_bias": "maybe"},
     "model.qkv_bias: expected true or false (got 'maybe')"),
    ("text given as a number", {"description": 3}, "description: expected text; put it in quotes (got 3)"),
    ("an empty name", {"name": ""}, "name: must not be empty (got '')"),
    ("a name with a space", {"name": "my study"},
     "name: not a name this takes: Study name (ASCII letters, digits, _ . -, not starting with a "
     "dot, so that '..' cannot put the study folder above runs/, nor with a hyphen, which "
     "commands read as an option) (got 'my study')"),
    ("a number that fits no member of int | float", {"search__lr": {"low": "abc", "high": 1}},
     "search.lr.low: expected a number (got 'abc')"),
    ("text or a list, given neither", {"data": {"source": "hf", "dataset": "json", "data_files": 3}},
     "data.data_files: expected text or a list (got 3)"),
    ("search.other that is not a mapping", {"search__other": 3},
     "search.other: expected a mapping of keys to values (got 3)"),
    ("search that is not a mapping", {"search": 3},
     "search: expected a mapping of hyperparameters, such as {lr: {prior: auto}} (got 3)"),
]


def test_a_noise_floor_in_scientific_notation_is_a_number():
    # noise_floor: 1e-2, which YAML reads as text, was "must be a number" (confidence took it).
    raw = {**STUDY, "pruner": {"name": "predicted", "noise_floor": "1e-2"}}
    assert validate_study(raw).pruner.noise_floor == 0.01


@pytest.mark.parametrize("case, changes, expected", LINES, ids=[c[0] for c in LINES])

def test_each_pydantic_error_reads_as_advice(case, changes, expected):
    # The rule: the one line names the key, says what is allowed, and shows the value given.
    assert errors_of(**changes) == [expected]
    assert not any(words in expected for words in PYDANTIC_WORDS)


@pytest.mark.parametrize("pruner, key", [
    ({"name": "median", "n_warmup_steps": "abc"}, "pruner.n_warmup_steps"),
    ({"name": "percentile", "percentile": 200}, "pruner.percentile"),
    ({"name": "patient", "wrapped": {"name": "median", "interval_steps": 0}},
     "pruner.wrapped.interval_steps"),
])
def test_a_key_names_what_the_file_has_without_the_pruner_tag(pruner, key):
    (line,) = errors_of(pruner=pruner)
    # pydantic puts the tag of a tagged union in the location (pruner.median.x); the file has
    # no key 'median', so the error names pruner.x.
    assert line.startswith(f"{key}: "), line
    assert ".median." not in line and ".percentile." not in line and ".patient." not in line


@pytest.mark.parametrize("changes, expected", [
    ({"n_trial": 6}, "n_trial: unknown key; allowed: name, description, "),
    ({"model__nlayer": 3}, "model.nlayer: unknown key; allowed: n_layer, "),
    ({"search__lrr": {"value": 1e-3}}, "search.lrr: unknown key; allowed: lr, "),
    ({"pruner": {"name": "patient", "wrapped": {"name": "median", "n_warmup_step": 3}}},
     "pruner.wrapped.n_warmup_step: unknown key; allowed: n_startup_trials, "),
    ({"search__weight_decay": {"prior": "auto", "ass": "tau"}},
     "search.weight_decay.ass: unknown key; allowed: prior, low, high, log, choices, value, as;"),
    ({"tokens": 40_960}, "tokens: unknown key; allowed: name, description, "),
    ({"search__batch": {"choices": [8, 16]}}, "search.batch: unknown key; allowed: lr, "),
    # No guess came: too short for a close match, and no word of its own in high.
    ({"search__lr": {"prior": "auto", "hi": 0.1}}, "search.lr.hi: unknown key; allowed: prior, "),
], ids=["top level", "model", "search", "a wrapped pruner", "an alias",
        "a key that begins the meant one", "the same in search", "a key cut short"])
def test_a_misspelt_key_suggests_the_closest_allowed_one(changes, expected):
    (line,) = errors_of(**changes)
    # "unknown key; allowed:" stays as it was; the guess comes after the list.
    assert line.startswith(expected), line
    meant = {"n_trial": "n_trials", "model.nlayer": "n_layer", "search.lrr": "lr",
             "pruner.wrapped.n_warmup_step": "n_warmup_steps", "search.weight_decay.ass": "as",
             "tokens": "tokens_per_trial", "search.batch": "batch_size", "search.lr.hi": "high"}
    assert line.endswith(f"; did you mean {meant[line.split(':')[0]]}?"), line


def test_a_key_like_no_allowed_one_gets_no_guess():
    (line,) = errors_of(epochs=3)
    assert line.startswith("epochs: unknown key; allowed: name") and "did you mean" not in line


def test_search_reports_its_unknown_keys_and_those_of_other_at_once():
    lines = errors_of(search={"lrr": {"value": 1e-3}, "other": {"model.norm": {"choice": ["a"]}}})
    assert len(lines) == 2
    assert lines[0].startswith("search.lrr: unknown key")
    assert lines[1].startswith("search.other.model.norm.choice: unknown key; allowed: prior, ")
    assert lines[1].endswith("; did you mean choices?")


# --------------------------------------------------------------------------- files a study names


@pytest.fixture
def study_file(tmp_path: Path):
    """A writer of a study file in tmp_path with the given sections."""

    def make(**sections: Any) -> Path:
        return write(tmp_path / "study.yaml", {**STUDY, **sections})

    return make


def test_check_study_files_is_empty_when_every_file_is_there(tmp_path, study_file):
    (tmp_path / "corpus.txt").write_text("text")
    (tmp_path / "laws.json").write_text("{}")
    cfg = load_study(study_file(data={"source": "text", "path": "corpus.txt"},
                                priors={"laws": "fitted", "fitted_file": "laws.json"}))
    assert check_study_files(cfg) == []
    # A glob with a match, and the built-in text, which names no file.
    assert check_study_files(load_study(study_file(data={"source": "text", "path": "*.txt"}))) == []
    assert check_study_files(load_study(study_file())) == []


@pytest.mark.parametrize("data, expected", [
    ({"source": "text", "path": "nowhere.txt"}, "data.path: file not found: '{d}/nowhere.txt'"),
    ({"source": "text", "path": "no*.txt"}, "data.path: no file matches '{d}/no*.txt'"),
    ({"source": "text", "path": "sub"}, "data.path: '{d}/sub' is a folder; give a file or a glob "
                                        "such as {d}/sub/*.txt"),
    ({"source": "hf", "dataset": "json", "data_files": ["a.json", "b.json"]},
     "data.data_files: file not found: '{d}/b.json'"),
    ({"tokenizer": "tok/tokenizer.json"}, "data.tokenizer: file not found: '{d}/tok/tokenizer.json'"),
], ids=["missing file", "glob without a match", "a folder", "local data_files", "tokenizer file"])
def test_a_missing_data_file_is_named_as_resolved(tmp_path, study_file, data, expected):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    # The file validates: only check_study_files looks for what it names, and names the path
    # resolved against the study file's folder, with "data" once.
    errors = check_study_files(load_study(study_file(data=data)))
    assert errors == [expected.format(d=tmp_path)]
    assert not any(e.startswith("data: data") for e in errors)


def test_hub_files_and_urls_are_not_looked_for(study_file):
    hub = {"source": "hf", "dataset": "someone/corpus", "data_files": "train/*.parquet"}
    assert check_study_files(load_study(study_file(data=hub))) == []
    url = {"source": "hf", "dataset": "json", "data_files": "https://example.org/a.json"}
    assert check_study_files(load_study(study_file(data=url))) == []


def test_a_missing_fitted_file_is_named_when_fitted_laws_are_used(tmp_path, study_file):
    priors = {"laws": "fitted", "fitted_file": "laws.json"}
    assert check_study_files(load_study(study_file(priors=priors))) == [
        f"priors.fitted_file: file not found: '{tmp_path}/laws.json' (`scaletune fit STUDY... "
        "-o FILE` writes it)"]
    # Published laws read no file: one named for later is not an error yet, but a note of the
    # plan (nothing said the study would run on the published laws).
    from scaletune.search.manage import plan_notes

    unused = {"laws": "published", "fitted_file": "laws.json"}
    assert check_study_files(load_study(study_file(priors=unused))) == []
    assert (f"priors.fitted_file: {tmp_path}/laws.json is not read: laws is published (the "
            "default), and laws: fitted uses the file") in plan_notes(
                load_study(study_file(priors=unused)))


def test_a_config_knows_the_file_it_was_read_from(study_file):
    path = study_file()
    cfg = load_study(path)
    # The rule: errors found after loading name the study file, not "study".
    assert cfg.source == str(path)
    assert cfg.model_copy(update={"n_trials": 3}).source == str(path)
    assert validate_study(copy.deepcopy(STUDY)).source == "study"
    # Where the config came from does not change what its trials train.
    assert cfg.fingerprint() == validate_study(copy.deepcopy(STUDY)).fingerprint()


def test_validate_and_run_name_the_study_file_and_a_missing_data_file_once(tmp_path, capsys):
    from scaletune.search.cli import main

    path = write(tmp_path / "study.yaml", {**STUDY, "study_dir": str(tmp_path / "runs"),
                                           "data": {"source": "text", "path": "nowhere.txt"}})
    expected = [f"1 error(s) in {path}:", f"  data.path: file not found: '{tmp_path}/nowhere.txt'"]
    for command in ("validate", "run"):
        assert main([command, str(path)]) == 2
        assert capsys.readouterr().err.splitlines() == expected
    assert not (tmp_path / "runs").exists()


def test_priors_taken_at_a_size_the_study_searches_are_said(study_file):
    # A width searched over 256 and 512 took the priors of the file's width (the default 64 here
    # too): its lr 8x the laws' at 512, and nothing said so.
    from scaletune.search.manage import plan_notes

    said = [n for n in plan_notes(load_study(study_file(
        search={"other": {"model.n_embd": {"choices": [256, 512]},
                          "optim.beta2": {"low": 0.99, "high": 0.999}}})))
        if n.startswith("priors: taken at")]
    model = load_study(study_file()).model
    # (The file gives no beta2: 0.95 is the default, which it said the file gave.)
    assert said == [f"priors: taken at model.n_embd {model.n_embd}, optim.beta2 0.95, the file's "
                    "(model: and trainer:, or the default of a field it leaves out), while "
                    "search: searches them: the "
                    "laws' lr, tau, batch and warmup move with them, so the priors fit trials "
                    "at those values alone; set them in the file to what the study centers on, "
                    "or search each value in a study of its own"]
    # Fixed by search: (the priors follow a fixed value), or no prior at all: nothing to say.
    for search in ({"other": {"model.n_embd": {"value": 256}}},
                   {**{name: {"low": 0.1, "high": 0.2} for name in ("dropout", "warmup_frac")},
                    "lr": {"low": 1e-4, "high": 1e-2}, "weight_decay": {"value": 0.1, "as": "lambda"},
                    "batch_size": {"value": 8}, "other": {"model.n_embd": {"choices": [8, 16]}}}):
        notes = plan_notes(load_study(study_file(search=search, seeding="none")))
        assert not [n for n in notes if n.startswith("priors: taken at")], notes
