"""Malformed study files: exit code 2, a message naming the key and what is allowed, and
nothing written to the storage."""

from __future__ import annotations

import copy
import gzip
import os

import pytest
import yaml

from scaletune.search.cli import main
from scaletune.search.config import load_study, validate_study
from scaletune.trainer.errors import ConfigError
from tests.search.helpers import flat, tiny_study, write_study


def _set(study, dotted, value):
    node = study
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(leaf)
    else:
        node[leaf] = value


_DELETE = object()

# (case id, dotted key to set, value, text the message must contain)
CASES = [
    ("unknown top-level key", "epochs", 3, "epochs: unknown key; allowed: name"),
    ("unknown model key", "model.nlayer", 3, "model.nlayer: unknown key; allowed: n_layer"),
    ("wrong type", "n_trials", "many", "n_trials: Input should be a valid integer"),
    # A folder's name (runs/NAME) is at most 255 bytes: a longer one ended on a traceback.
    ("a name too long for a folder", "name", "a" * 256,
     "name: String should have at most 100 characters"),
    ("missing required key", "tokens_per_trial", _DELETE, "tokens_per_trial: Field required"),
    ("low above high", "search.lr", {"low": 1e-2, "high": 1e-3}, "low must be < high"),
    # "low must be < high, got low=nan, high=0.1": of a range in order.
    ("an end of a range that is nan", "search.dropout", {"low": float("nan"), "high": 0.1},
     "search.dropout: low: nan is not a number; a range's ends are two numbers, low < high"),
    ("log range touching zero", "search.lr", {"low": 0.0, "high": 1e-3, "log": True},
     "log range must have low > 0"),
    ("log range from zero by default", "search.lr", {"low": 0.0, "high": 1e-3},
     "search.lr.low: a log range must start above 0, got 0.0 (lr is searched on a log scale "
     "unless log: false)"),
    ("AdamW weight decay range read as tau", "search.weight_decay", {"low": 0.0, "high": 0.1},
     "search.weight_decay: a range of [0.0, 0.1] reads as tau = B/(eta*lambda*D), weight decay's "
     "timescale in runs (as: tau, the default), which is an AdamW timescale tau > 0; if these are "
     "AdamW weight_decay values, write as: lambda, with log: false for a range from 0"),
    ("tau range from zero", "search.weight_decay", {"low": 0.0, "high": 100.0},
     "search.weight_decay.low: a log range must start above 0, got 0.0 (weight_decay is searched "
     "on a log scale unless log: false)"),
    ("negative lr", "search.lr", {"value": -1e-3}, "search.lr: -0.001 is not allowed"),
    ("empty choices", "search.dropout", {"choices": []}, "search.dropout: choices must not be empty"),
    ("dropout out of range", "search.dropout", {"value": 1.5}, "a dropout rate in [0, 0.95]"),
    ("batch not a multiple of micro-batch", "trainer.micro_batch_size", 6,
     "multiple of trainer.micro_batch_size=6"),
    ("fractional batch size", "search.batch_size", {"choices": [8, 12.5]},
     "search.batch_size: 12.5 is not allowed"),
    ("unknown pruner", "pruner", {"name": "medain"}, "'median', 'percentile'"),
    # Ray held N GPUs for a trial that trained on one.
    ("several GPUs per trial", "workers.gpus_per_trial", 2,
     "workers: gpus_per_trial: 2: a trial trains in one process on one GPU, and the others it "
     "held would stay idle: give 1, or a fraction to share one"),
    ("unknown pruner argument", "pruner", {"name": "median", "percentile": 3},
     "percentile: unknown key; allowed: n_startup_trials"),
    ("predicted pruner's rank", "pruner", {"name": "predicted", "rank": 0},
     "pruner.rank: must be >= 1 (got 0)"),
    ("predicted pruner's noise floor", "pruner", {"name": "predicted", "noise_floor": 1.5},
     "pruner.noise_floor: must be 'auto' or a number in [0, 1) (got 1.5)"),
    ("predicted pruner's progress", "pruner", {"name": "predicted", "progress": "steps"},
     "pruner.progress: Input should be 'lr_area' or 'tokens'"),
    ("predicted pruner's unknown key", "pruner", {"name": "predicted", "k": 3},
     "pruner.k: unknown key; allowed: name, n_startup_trials"),
    ("unknown sampler", "sampler", {"name": "bayes"}, "sampler.name: Input should be 'tpe'"),
    ("heads do not divide width", "model.n_head", 3, "n_head must divide n_embd"),
    ("eval cadence above budget", "eval_every_tokens", 10_000_000,
     "eval_every_tokens must be <= tokens_per_trial"),
    ("budget not a number", "tokens_per_trial", "lots", "tokens_per_trial"),
    ("fitted laws without file", "priors", {"laws": "fitted"}, "priors.fitted_file is required"),
    ("unknown searched trainer field", "search.other", {"optim.lrr": {"choices": [1, 2]}},
     "unknown trainer field 'lrr'"),
    ("misspelt searched trainer field", "search.other", {"model.n_layr": {"choices": [1, 2]}},
     "search.other.model.n_layr: unknown trainer field 'n_layr' (did you mean 'model.n_layer'?)"),
    ("searching a data field", "search.other", {"data.path": {"choices": ["a", "b"]}},
     "set by the study itself"),
    # Accepted, and each trial trained with the section it drew in place of its lr and warmup.
    ("searching a whole section", "search.other",
     {"optim": {"choices": [{"name": "sgd"}, {"name": "adamw"}]}},
     "search.other.optim: 'optim' is a section, not a field: search its fields one by one, such "
     "as optim.name, optim.beta1"),
    # The README said it could be searched; refused as "set by the study itself".
    ("searching the block size", "search.other", {"model.block_size": {"choices": [32, 64]}},
     "search.other.model.block_size: every trial trains and is judged on the same windows of "
     "the data, cut at model.block_size: set it under model:"),
    # A section written as a mapping: the hint named model.block_size, which is refused, and a
    # second error called the section's field an unknown key of a search.
    ("a section as a mapping", "search.other",
     {"model": {"norm": {"choices": ["layernorm", "rmsnorm"]}}},
     "1 error(s) in"),
    ("a section as a mapping's hint", "search.other",
     {"model": {"norm": {"choices": ["layernorm", "rmsnorm"]}}},
     "search.other.model: 'model' is a section, not a field: search its fields one by one, such "
     "as model.n_layer, model.n_head, model.n_embd, model.positions"),
    # Every field of data is the study's: the hint listed none ("such as " and nothing).
    ("the data section", "search.other", {"data": {"choices": [{"path": "a.txt"}]}},
     "search.other.data: 'data' is a section the study sets for every trial: none of its fields "
     "can be searched"),
    ("fixing a trial's run folder", "search.other", {"out_dir": {"value": "shared"}},
     "search.other.out_dir: this field is set for each trial by the study (trials keep no run "
     "folder; the storage holds their results) and cannot be searched"),
    ("fixing a trial's threads", "search.other", {"num_threads": {"value": 2}},
     "search.other.num_threads: this field is set for each trial by the study (from "
     "workers.cpus_per_trial)"),
    ("weight decay as what", "search.weight_decay", {"prior": "auto", "as": "gamma"},
     "Input should be 'lambda' or 'tau'"),
    ("a negative tau", "search.weight_decay", {"low": -1, "high": 10, "as": "tau", "log": False},
     "search.weight_decay: with as: tau (the default) its values must be an AdamW timescale "
     "tau > 0"),
    ("a negative lambda", "search.weight_decay", {"low": -1, "high": 0.1, "as": "lambda",
                                                  "log": False},
     "search.weight_decay: -1 is not allowed, expected a weight decay (lambda or tau) >= 0"),
    ("a number as the prior", "search.lr", {"prior": 0.001},
     "search.lr.prior: prior takes auto, the laws' center (got 0.001): to train 0.001 in every "
     "trial write {value: 0.001}; to search around it give low and high"),
    ("no CPUs per trial", "workers.cpus_per_trial", 0, "workers.cpus_per_trial"),
    ("an address without a port", "workers.address", "localhost",
     "workers.address: not an address Ray takes (got 'localhost'): give local"),
    ("a Ray Client address with a negative port", "workers.address", "ray://127.0.0.1:-5",
     "workers.address: not an address Ray takes (got 'ray://127.0.0.1:-5'): give local"),
    ("a job server address without a host", "workers.address", "http://:8265",
     "workers.address: not an address Ray takes (got 'http://:8265'): give local"),
    ("choices with a range", "search.warmup_frac", {"choices": [0.1], "low": 0.0, "high": 0.2},
     "choices cannot be combined"),
    ("bad study name", "name", "my study", "name: not a name this takes: Study name (ASCII"),
    ("a name read as an option", "name", "-lead", "name: not a name this takes: Study name"),
    ("unknown tokenizer source", "data.source", "web", "data.source: Input should be 'builtin'"),
    ("batch range without a power of two", "search.batch_size", {"low": 40, "high": 60},
     "search.batch_size: no power of two in [40, 60], and batch"),
    ("a linear batch range", "search.batch_size", {"low": 8, "high": 64, "log": False},
     "search.batch_size.log: false does not apply: batch sizes are searched as the powers of "
     "two in the range"),
    ("AdamW weight decay value read as tau", "search.weight_decay", {"value": 0.1},
     "search.weight_decay: a value of 0.1 reads as tau = B/(eta*lambda*D), weight decay's "
     "timescale in runs (as: tau, the default), at most 1: a decay faster than the run, where "
     "the usual taus are above it; if AdamW weight_decay is meant, write as: lambda; if tau is, "
     "write as: tau"),
    ("AdamW weight decay choices read as tau", "search.weight_decay", {"choices": [0.01, 0.1]},
     "search.weight_decay: choices of [0.01, 0.1] reads as tau"),
    ("zero read as tau", "search.weight_decay", {"value": 0},
     "for no weight decay write {value: 0, as: lambda}"),
    ("prior auto on another field", "search.other", {"model.n_layer": {"prior": "auto"}},
     "search.other.model.n_layer: prior: auto exists for lr"),
    ("another field that is one of the five", "search.other", {"optim.lr": {"value": 0.02}},
     "search.other.optim.lr: this is search.lr: set it there"),
    ("low above the prior's range", "search.lr", {"prior": "auto", "low": 0.5},
     "is an empty range: the prior's range here is"),
    ("trials as a yes", "n_trials", True, "n_trials: expected a number, got true"),
    ("concurrency as a yes", "workers.max_concurrent", True,
     "workers.max_concurrent: expected a number, got true"),
    # Read as 1 or 0 where a field was not strict: one layer trained, gradients clipped at 1.
    ("layers as a yes", "model.n_layer", True, "model.n_layer: expected a number, got true"),
    ("gradient clipping as a yes", "trainer.optim.grad_clip", True,
     "trainer.optim.grad_clip: expected a number, got true"),
    ("a range's end as a no", "search.lr", {"low": False, "high": 0.01},
     "search.lr.low: expected a number, got false"),
    ("a repeated choice", "search.batch_size", {"choices": [2, 2, 4]},
     "search.batch_size: choices [2, 2, 4] name 2 more than once: give each value once"),
    ("a fixed value with a prior", "search.lr", {"value": 0.01, "prior": "auto"},
     "search.lr: value (fixed, 0.01) cannot be combined with prior"),
    ("a name that climbs out of runs/", "name", "..", "name: not a name this takes"),
    ("cuda for trials that ask for no GPU", "trainer.device", "cuda",
     "trainer.device: cuda, but workers.gpus_per_trial is 0, and Ray gives no GPU to a trial "
     "that asks for none"),
    ("a share of a CPU below Ray's smallest", "workers", {"cpus_per_trial": 0.00001},
     "workers: cpus_per_trial must be 0 or at least 0.0001, Ray's smallest share, got 1e-05"),
    ("a tokenizer that does not exist", "data.tokenizer", "gpt3",
     "data.tokenizer: unknown tokenizer 'gpt3': it takes 'byte', a tiktoken encoding name"),
    # `datasets` read every JSON file of the folder the run started in (the study files too).
    ("a files builder without its files", "data", {"source": "hf", "dataset": "json"},
     "data.data_files is required with dataset: json, which reads the files it names"),
    # `datasets` looked for a Hub dataset of that name: 25 s of retries, offline.
    ("a file given as the dataset", "data", {"source": "hf", "dataset": "my.jsonl"},
     "data.dataset: 'my.jsonl' names a file, where dataset names a Hub dataset or a builder of "
     "`datasets`: give dataset: json, data_files: my.jsonl"),
    # Each passed validate; the run failed, on `datasets`' Unknown split "test" and on a JSON
    # parse error of the csv file.
    ("a split of a files builder", "data", {"source": "hf", "dataset": "json",
                                            "data_files": "a.jsonl", "split": "test"},
     "data.split: dataset: json reads its data_files as one split, train, which has no split "
     "'test': leave split out"),
    ("a csv file read as json", "data", {"source": "hf", "dataset": "json",
                                         "data_files": "a.jsonl", "val_path": "held.csv.gz"},
     "data.val_path: held.csv.gz is a csv file by its name, and dataset: json reads data_files "
     "and val_path with the json builder: give json files, or dataset: csv for csv files"),
    ("an extension given as the builder", "data", {"source": "hf", "dataset": "jsonl"},
     "data.dataset: 'jsonl' is not a builder of `datasets`; json reads jsonl files"),
    ("a path and a dataset and no source", "data", {"path": "a.txt", "dataset": "json"},
     "data.source: give text (data.path) or hf (data.dataset): this data names both"),
    # It said "did you mean micro_batch_size?"
    ("a searched value under trainer", "trainer.batch_size", 8,
     "trainer.batch_size: unknown key; a study sets batch_size under search: (searched with its "
     "prior where search: leaves it out): to train every trial with it, give search.batch_size: "
     "{value: 8}"),
    # Accepted, and nothing came of it.
    ("log on choices", "search.lr", {"choices": [1e-3, 3e-3], "log": False},
     "search.lr: log: false applies to a range (low, high or prior: auto), not to choices: "
     "drop it"),
    # Passed validate, then Optuna's sampler refused it with a traceback (at a resume, for a
    # seed near the top).
    ("a negative seed", "seed", -1, "seed: must be in [0, 4294967295] (got -1)"),
    ("a sampler seed past numpy's", "sampler", {"name": "tpe", "seed": 2**40},
     "sampler.seed: must be in [0, 4294967295] (got 1099511627776)"),
    # Accepted, then sampling up to it raised OverflowError after the first trial.
    ("a weight decay range up to infinity", "search.weight_decay",
     {"low": 10, "high": float("inf"), "as": "lambda"}, "search.weight_decay: inf is not allowed"),
    # `datasets`' own form: it said "expected text or a list".
    ("data_files by split", "data", {"source": "hf", "dataset": "json",
                                     "data_files": {"train": "a.jsonl", "validation": "b.jsonl"}},
     "data.data_files: a mapping of splits (train, validation) is what `datasets` takes; here "
     "data_files names the training files (a file, a glob or a list) and data.val_path"),
    # As the plan and `best` name it.
    ("tau as a search key", "search.tau", {"low": 1, "high": 10},
     "tau is weight decay's timescale: search it as weight_decay: {..., as: tau}"),
]


@pytest.mark.parametrize("case, key, value, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_study_file(tmp_path, shakespeare, capsys, case, key, value, expected):
    study = copy.deepcopy(tiny_study(tmp_path, shakespeare))
    _set(study, key, value)
    path = write_study(tmp_path, study)
    code = main(["run", str(path)])
    out = capsys.readouterr().err
    assert code == 2, out
    assert expected in out, out
    # Nothing was written: no storage, no study folder content.
    assert not (tmp_path / "study" / "study.db").exists()


def test_all_errors_are_reported_at_once(tmp_path, shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare)
    study["epochs"] = 3
    study["n_trials"] = "many"
    study["search"]["dropout"] = {"choices": []}
    code = main(["validate", str(write_study(tmp_path, study))])
    out = capsys.readouterr().err
    assert code == 2
    assert "3 error(s)" in out
    for key in ("epochs", "n_trials", "search.dropout"):
        assert key in out


def test_yes_and_no_in_number_fields_are_each_said_beside_the_sections_other_errors(
        tmp_path, shakespeare, capsys):
    # The check ran on the whole section and stopped at its first yes: "model: n_layer: expected
    # a number, got true", with the section's other errors said only once it was fixed.
    study = tiny_study(tmp_path, shakespeare)
    study["model"].update(n_layer=True, n_embd=False, n_head="four")
    study["trainer"] = {"optim": {"grad_clip": True, "beta2": "high"}}
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    out = flat(capsys.readouterr().err)
    assert "5 error(s)" in out, out
    for said in ("model.n_layer: expected a number, got true",
                 "model.n_embd: expected a number, got false", "model.n_head:",
                 "trainer.optim.grad_clip: expected a number, got true", "trainer.optim.beta2:"):
        assert said in out, out


@pytest.mark.parametrize("also", [{"n_trials": 0}, {"epochs": 3},
                                  {"model": {"n_layer": 1, "n_head": 3, "n_embd": 32}}])
def test_a_bad_pair_of_fields_is_said_beside_a_bad_field(tmp_path, shakespeare, capsys, also):
    # The check across fields (eval_every_tokens against tokens_per_trial) ran only once every
    # field was valid: fixing the bad field brought a second error to light.
    study = {**tiny_study(tmp_path, shakespeare, tokens_per_trial=30_000,
                          eval_every_tokens=50_000), **also}
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    out = flat(capsys.readouterr().err)
    assert "2 error(s)" in out, out
    assert "eval_every_tokens must be <= tokens_per_trial, got 50000 > 30000" in out
    assert next(iter(also)) in out


def test_whole_numbers_are_written_as_counts_of_tokens_are(tmp_path, shakespeare, capsys):
    # tokens_per_trial took 2e4; n_trials: 1e1 was "Input should be a valid integer", with no
    # word of the forms it takes.
    study = tiny_study(tmp_path, shakespeare, n_trials="1e1", max_retries="1e0", seed="1_0")
    study["model"] = {**study["model"], "n_layer": "1e0"}
    study["workers"] = {**study.get("workers", {}), "max_concurrent": "1e0"}
    # ... and so do the sampler's, the pruner's and the trainer's counts (they refused 1e1).
    study["sampler"] = {"name": "tpe", "n_startup_trials": "1e1", "seed": "1e0"}
    study["pruner"] = {"name": "predicted", "n_startup_trials": "1_0", "rank": "1e0"}
    study["data"] = {**study["data"], "val_windows": "1e1"}
    cfg = validate_study(study)
    assert (cfg.n_trials, cfg.max_retries, cfg.seed, cfg.model.n_layer,
            cfg.workers.max_concurrent) == (10, 1, 10, 1, 1)
    assert (cfg.sampler.n_startup_trials, cfg.sampler.seed, cfg.pruner.n_startup_trials,
            cfg.pruner.rank, cfg.data.val_windows) == (10, 1, 10, 1, 10)
    for pruner in ({"name": "median", "interval_steps": "1e0", "n_startup_trials": "2e0"},
                   {"name": "hyperband", "reduction_factor": "3e0"},
                   {"name": "patient", "patience": "2e0"}):
        assert validate_study({**study, "pruner": pruner}).pruner.name == pruner["name"]
    # 1.0e1 is how YAML writes 1e1 as a number: n_layer took it, n_trials, seed and the
    # sampler's and pruner's counts refused it ("a whole number ... (got 10.0)").
    floats = {**study, "n_trials": 10.0, "seed": 0.0, "max_retries": 1.0,
              "workers": {**study["workers"], "max_concurrent": 1.0},
              "sampler": {"name": "tpe", "n_startup_trials": 2.0},
              "pruner": {"name": "predicted", "n_startup_trials": 2.0, "rank": 1.0}}
    cfg = validate_study(floats)
    assert (cfg.n_trials, cfg.seed, cfg.max_retries, cfg.workers.max_concurrent,
            cfg.sampler.n_startup_trials, cfg.pruner.n_startup_trials, cfg.pruner.rank) == (
        10, 0, 1, 1, 2, 2, 1)
    assert all(type(n) is int for n in (cfg.n_trials, cfg.seed, cfg.sampler.n_startup_trials))
    bad = tiny_study(tmp_path, shakespeare, n_trials=3.5, seed="lots")
    assert main(["validate", str(write_study(tmp_path, bad))]) == 2
    out = flat(capsys.readouterr().err)
    for key, got in (("n_trials", "3.5"), ("seed", "'lots'")):
        assert (f"{key}: Input should be a valid integer, a whole number such as 2e6, 2_000_000 "
                f"or 2000000 (got {got})") in out, out


def test_a_check_across_fields_is_not_said_of_a_value_that_failed(tmp_path, shakespeare, capsys):
    # tokens_per_trial is bad: the check that compares it is not run on a value that stood in.
    study = tiny_study(tmp_path, shakespeare, tokens_per_trial="lots", eval_every_tokens=50_000)
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    out = flat(capsys.readouterr().err)
    assert "1 error(s)" in out and "tokens_per_trial:" in out and "(got 'lots')" in out, out
    assert "eval_every_tokens" not in out


def test_a_training_file_says_its_bad_batch_beside_a_bad_field(tmp_path, shakespeare):
    from scaletune.trainer.config import validate_train_config

    raw = {"data": {"source": "text", "path": str(shakespeare)}, "batch_size": 6,
           "micro_batch_size": 4, "tokens": 100_000, "out_dir": None,
           "optim": {"lr": -1.0}}
    with pytest.raises(ConfigError) as e:
        validate_train_config(raw)
    said = flat(str(e.value))
    assert "optim.lr" in said
    assert "batch_size must be a multiple of micro_batch_size, got batch_size=6" in said


def test_a_study_that_searches_nothing_is_a_note_of_validate_and_the_plan(tmp_path, shakespeare,
                                                                           capsys):
    # Every hyperparameter given a value: each trial trained the same run, without a word.
    fixed = {"lr": {"value": 0.001}, "weight_decay": {"value": 0.1, "as": "lambda"},
             "dropout": {"value": 0.0}, "warmup_frac": {"value": 0.1},
             "batch_size": {"value": 8}}
    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare, search=fixed,
                                                n_trials=3)))
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 0
        out = flat(capsys.readouterr().out)
        assert ("search: every hyperparameter has a value, so nothing is searched: each of the 3 "
                "trials trains the same config with the same seed, to the same loss") in out, out
    once = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare, search=fixed,
                                                n_trials=1), "once.yaml"))
    searched = str(write_study(tmp_path, tiny_study(
        tmp_path, shakespeare, search={**fixed, "dropout": {"low": 0.0, "high": 0.1}},
        n_trials=3), "searched.yaml"))
    for path in (once, searched):
        assert main(["validate", path]) == 0
        assert "nothing is searched" not in capsys.readouterr().out
    # A batch-size range that holds one power of two searched it alone, unsaid.
    narrow = str(write_study(tmp_path, tiny_study(
        tmp_path, shakespeare, search={**fixed, "batch_size": {"low": 3, "high": 5},
                                       "lr": {"low": 1e-3, "high": 1e-2}}), "narrow.yaml"))
    for command in (["validate", narrow], ["run", narrow, "--dry-run"]):
        assert main(command) == 0
        assert ("search.batch_size: [3, 5] holds one batch size, 4 (a range searches its powers "
                "of two), so every trial trains it: widen the range, or give choices") in flat(
            capsys.readouterr().out)
    wide = str(write_study(tmp_path, tiny_study(
        tmp_path, shakespeare, search={**fixed, "batch_size": {"low": 3, "high": 9}}),
        "wide.yaml"))
    assert main(["validate", wide]) == 0  # 4 and 8: nothing said
    assert "holds one batch size" not in capsys.readouterr().out
    # Far from the priors' center, the note of centers outside their range says it: once.
    far = str(write_study(tmp_path, tiny_study(
        tmp_path, shakespeare, search={**fixed, "batch_size": {"low": 100, "high": 130},
                                       "lr": {"low": 1e-3, "high": 1e-2}}), "far.yaml"))
    assert main(["validate", far]) == 0
    out = flat(capsys.readouterr().out)
    assert "search.batch_size: one value is searched, batch_size = 128" in out, out
    assert "holds one batch size" not in out


def test_evaluations_finer_than_a_step_are_a_note_of_validate_and_the_plan(tmp_path, shakespeare,
                                                                           capsys):
    # batch choices 8 and 16 of 32 tokens: one step of the smallest is 256 tokens.
    fine = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare, eval_every_tokens=256),
                           "fine.yaml"))
    between = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare, eval_every_tokens=600),
                              "between.yaml"))
    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare, eval_every_tokens=100)))
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 0
        out = " ".join(capsys.readouterr().out.split())
        # Rule: a note (the study runs), naming the value, the step and the way out.
        assert ("eval_every_tokens: 100 is less than one optimizer step of the smallest batch "
                "searched (256 tokens): trials evaluate after every step (160 evaluations at "
                "that batch)") in out, out
    # Rule: steps that do not divide the grid, nor it them, file losses measured well after
    # the point they are filed at: batch 16's loss at 1,024 tokens filed at 600 (it said
    # nothing). A grid of 256 against steps of 256 and 512 files every loss where measured.
    assert main(["validate", between]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("eval_every_tokens: 600 and one optimizer step of batch_size 8, 16 do not divide "
            "each other: those trials evaluate at the first step past each multiple of 600 and "
            "file the loss there, measured up to 504 tokens later") in out, out
    assert "a multiple of every batch's step (512, say)" in out, out
    assert main(["validate", fine]) == 0
    assert "eval_every_tokens" not in capsys.readouterr().out


def test_missing_data_file_names_the_path(tmp_path, shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare)
    study["data"]["path"] = str(tmp_path / "nowhere.txt")
    code = main(["run", str(write_study(tmp_path, study))])
    out = capsys.readouterr().err
    assert code == 2
    assert "data.path" in out and "nowhere.txt" in out
    assert not (tmp_path / "study" / "study.db").exists()


def test_unreachable_storage_is_named_without_its_password(tmp_path, shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare)
    study["storage"] = "postgresql://scaletune:hunter2@127.0.0.1:1/studies"
    code = main(["run", str(write_study(tmp_path, study))])
    out = capsys.readouterr().err
    assert code == 2
    assert "storage: cannot open postgresql://scaletune:***@127.0.0.1:1/studies" in out
    assert "hunter2" not in out
    # validate, beside the storage's error, keeps the notes of the valid file (a study for a
    # cluster checked offline lost its notes of what it would download).
    study["search"]["warmup_frac"] = {"low": 0.001, "high": 0.002}
    code = main(["validate", str(write_study(tmp_path, study))])
    captured = capsys.readouterr()
    assert code == 2 and "storage: cannot open" in captured.err
    assert "note: search.warmup_frac: the priors' center warmup_frac" in captured.out


def test_a_storage_server_that_never_answers_is_waited_for_once(tmp_path, shakespeare, capsys,
                                                               monkeypatch):
    # A host that accepts the connection and never answers: validate and run waited for
    # libpq's timeout three times (31 s), and said "timeout expired" without what to check.
    import socket
    import threading

    import scaletune.search.storage

    monkeypatch.setattr(scaletune.search.storage, "CONNECT_TIMEOUT_S", 2)  # libpq's least
    for command in ("validate", "run"):
        tries: list[socket.socket] = []
        with socket.socket() as server:  # a server of its own: what validate learnt is not run's
            server.bind(("127.0.0.1", 0))
            server.listen()
            server.settimeout(0.2)

            def count(server=server, tries=tries) -> None:
                while True:
                    try:
                        tries.append(server.accept()[0])
                    except TimeoutError:
                        continue
                    except OSError:
                        return

            threading.Thread(target=count, daemon=True).start()
            study = tiny_study(tmp_path, shakespeare)
            study["storage"] = f"postgresql://u:hunter2@127.0.0.1:{server.getsockname()[1]}/db"
            assert main([command, str(write_study(tmp_path, study))]) == 2
            out = flat(capsys.readouterr().err)
            assert ("failed: timeout expired (no answer in 2 s: is the database server up, and "
                    "is this its host and port, reachable from here through any firewall?)"
                    ) in out, out
            assert len(tries) == 1, command
        for peer in tries:
            peer.close()


def test_every_range_outside_its_prior_is_named_at_once(tmp_path, shakespeare, capsys):
    # Checked as the space was built, the first stopped it: validate named one per fix.
    study = tiny_study(tmp_path, shakespeare)
    study["search"]["lr"] = {"prior": "auto", "high": 1e-6}
    study["search"]["warmup_frac"] = {"prior": "auto", "low": 0.98}
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    out = flat(capsys.readouterr().err)
    assert "2 error(s)" in out, out
    assert "search.lr: low=" in out and "search.warmup_frac: low=0.98, high=" in out, out


def test_yaml_syntax_error_and_non_mapping(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["validate", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    bad.write_text("- a\n- b\n")
    assert main(["validate", str(bad)]) == 2
    assert "top level must be a mapping" in capsys.readouterr().err


def test_yaml_is_loaded_safely(tmp_path, capsys):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["validate", str(evil)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_read_only_study_folder_is_refused_before_any_trial(tmp_path, shakespeare, capsys):
    from tests.trainer.test_bad_files import read_only

    ro = tmp_path / "ro"
    ro.mkdir()
    study = tiny_study(tmp_path, shakespeare, study_dir=str(ro / "study"))
    path = write_study(tmp_path, study)
    with read_only(ro):  # by its mode, or for root by a read-only mount
        code = main(["run", str(path)])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert f"study_dir: cannot write to {ro}" in out, out
    assert not (ro / "study").exists()


@pytest.mark.parametrize("where", ["study_dir", "below it"])
def test_a_file_where_the_study_folder_goes_is_named_by_validate_and_run(tmp_path, shakespeare,
                                                                         capsys, where):
    # validate said ok, and run "study_dir: cannot write to ...: File exists" (or "Not a
    # directory"), which does not say that a file is in the way.
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / ("study" if where == "below it" else "")
    study = tiny_study(tmp_path, shakespeare, study_dir=str(target))
    path = write_study(tmp_path, study)
    said = (f"study_dir: {tmp_path / 'a-file'} is a file, where the study's folder "
            f"{target} needs a folder: move the file, or give study_dir another folder")
    for command in ("validate", "run"):
        assert main([command, str(path)]) == 2, command
        assert said in " ".join(capsys.readouterr().err.split()), command
    assert (tmp_path / "a-file").read_text() == ""


def test_a_default_storage_folder_that_refuses_writes_is_refused_before_any_trial(
        tmp_path, shakespeare, capsys):
    import subprocess

    # runs/<name> writable, runs/ itself not (where runs/studies.db and its journal go): the
    # study "stopped" at its first write and advised freeing disk space.
    study = tiny_study(tmp_path, shakespeare)
    study.pop("study_dir")
    path = write_study(tmp_path, study)
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(runs)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not allowed here (root ignores permissions, so no other way)")
    try:
        code = main(["run", str(path)])
    finally:
        subprocess.run(["chattr", "-i", str(runs)], check=True)
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert (f"study_dir: the default storage's folder: cannot write to {runs.resolve()}: "
            "Operation not permitted") in out, out
    assert "the study stopped" not in out and not (runs / "studies.db").exists()


def test_every_shipped_study_validates():
    from pathlib import Path

    from scaletune.search.ladder import load_ladder
    from scaletune.trainer.config import load_train_config

    studies = Path(__file__).resolve().parents[2] / "studies"
    files = sorted(studies.glob("**/*.yaml"))
    assert any(f.name == "quickstart.yaml" for f in files)
    for f in files:
        raw = yaml.safe_load(f.read_text())
        if "n_trials" in raw:
            load_study(f)
        elif "rungs" in raw:
            load_ladder(f)
        else:
            load_train_config(f)


def test_resume_on_changed_data_is_refused_and_the_study_kept(tmp_path, shakespeare, capsys):
    import optuna

    from scaletune.search.plan import record_or_check
    from scaletune.search.runner import preflight
    from scaletune.search.space import study_priors
    from scaletune.search.storage import make_storage
    from scaletune.trainer.errors import ConfigError

    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    cfg = load_study(path)

    def open_study():
        data = preflight(cfg)
        study = optuna.create_study(study_name=cfg.name, storage=make_storage(cfg.storage_url),
                                    load_if_exists=True)
        record_or_check(study, cfg, study_priors(cfg, data.vocab_size, data.n_train_tokens), data)
        return study

    first = open_study().user_attrs["data_fingerprint"]
    assert open_study().user_attrs["data_fingerprint"] == first  # same data: it resumes
    assert main(["validate", str(path)]) == 0
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(shakespeare.read_bytes()[200_000:260_000])  # the corpus was replaced
    with pytest.raises(ConfigError, match=f"trained on data {first} .* must not mix"):
        open_study()
    # validate and the dry run find it too, from the text, before anything is tokenized (they
    # said ok where the run refused).
    capsys.readouterr()
    for command in (["validate", str(path)], ["run", str(path), "--dry-run"]):
        assert main(command) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert (f"data: the study's trials trained on data {first} (" in out
                and "training tokens), but the data now reads as " in out
                and f"data.path {corpus}): its text or tokenizer changed" in out), out
    storage = make_storage(cfg.storage_url)
    assert optuna.load_study(study_name=cfg.name, storage=storage).user_attrs["data_fingerprint"] == first
    # The run refuses it before Ray starts and its lease is written: the file stays as it was
    # (refused after them, the storage's bytes changed).
    import ray

    database = cfg.folder / "study.db"
    stored = database.read_bytes()
    assert main(["run", str(path)]) == 2
    assert "its text or tokenizer changed" in " ".join(capsys.readouterr().err.split())
    assert not ray.is_initialized()
    assert database.read_bytes() == stored


def test_fit_on_a_study_that_never_ran_names_it(tmp_path, shakespeare, capsys):
    a = write_study(tmp_path, tiny_study(tmp_path, shakespeare, name="small"), "a.yaml")
    b = write_study(tmp_path, tiny_study(tmp_path, shakespeare, name="large",
                                         study_dir=str(tmp_path / "large")), "b.yaml")
    assert main(["fit", str(a), str(b), "-o", str(tmp_path / "laws.json")]) == 2
    out = capsys.readouterr().err
    assert "no study 'small'" in out and "run `scaletune run" in out and "Traceback" not in out
    assert not (tmp_path / "laws.json").exists()


@pytest.mark.parametrize("file", ["runs/studies.db", "runs/tiny/study.db", "study/study.db"],
                         ids=["shared", "own-of-0.1", "in-study_dir"])
@pytest.mark.parametrize("content, expected", [
    (b"", "is empty (0 bytes): it holds no study"),
    # Told first that the path may be wrong: a corpus given as the storage was to be moved aside.
    (b"not a database, some other file" * 100,
     "is not an SQLite database: nothing was written to it. If the path is wrong, give the "
     "study's database"),
], ids=["zero-length", "corrupt"])
def test_an_empty_or_corrupt_study_file_is_refused_and_kept(tmp_path, shakespeare, capsys,
                                                            content, expected, file):
    study = tiny_study(tmp_path, shakespeare)
    if file.startswith("runs/"):  # the default folder: the storage the studies there share, or
        del study["study_dir"]    # the study's own file of scaletune 0.1
    db = tmp_path / file
    db.parent.mkdir(parents=True)
    db.write_bytes(content)
    code = main(["run", str(write_study(tmp_path, study))])
    out = " ".join(capsys.readouterr().err.split())
    # Not taken for a new study, not reported as a full disk: named, with what to do.
    assert code == 2, out
    assert expected in out and "free some disk space" not in out.lower()
    # The file is left exactly as it was.
    assert db.read_bytes() == content


def test_a_study_file_cut_short_is_refused_and_kept(tmp_path, shakespeare, capsys):
    import optuna

    from scaletune.search.storage import sqlite_path

    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    cfg = load_study(path)
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    for lr in (1e-3, 2e-3, 3e-3):
        study.enqueue_trial({"lr": lr})
    db = sqlite_path(cfg.storage_url)
    with open(db, "r+b") as f:  # a full disk, a copy cut short: the header is intact
        f.truncate(db.stat().st_size // 2)
    cut = db.read_bytes()
    # It was a traceback from SQLAlchemy, exit 1.
    assert main(["run", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "database disk image is malformed" in out and "Traceback" not in out, out
    assert db.read_bytes() == cut


def test_a_study_file_damaged_inside_is_refused_by_every_command_and_kept(tmp_path, shakespeare,
                                                                          capsys, monkeypatch):
    # Its header whole and pages in its middle overwritten: the header's check passed it, the
    # readers ended on a traceback as they read the trials (exit 1), and `run` wrote to it
    # before it failed, saying to free disk space.
    import optuna
    from optuna.distributions import FloatDistribution

    from scaletune.search.storage import sqlite_path

    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    cfg = load_study(path)
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    for i in range(60):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
            value=3.0 + i / 100, intermediate_values={step: 4.0 for step in range(20)}))
    db = sqlite_path(cfg.storage_url)
    assert db.stat().st_size > 16 * 4096
    with open(db, "r+b") as f:
        f.seek(10 * 4096)
        f.write(b"\xaa" * 2 * 4096)
    damaged = db.read_bytes()
    for command in (["run", str(path)], ["show", str(path)], ["best", str(path)],
                    ["export", str(path), "-o", "final.yaml"], ["report", str(path)],
                    ["studies", str(path)], ["dashboard", str(path)]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert f"storage: {db} is damaged (SQLite's quick_check: " in out, (command, out)
        assert "restore it from a backup, or move it aside" in out and "Traceback" not in out
        assert "disk space" not in out
    assert db.read_bytes() == damaged  # nothing written


def test_the_readers_refuse_a_storage_that_is_a_folder_or_empty_and_keep_it(tmp_path, capsys,
                                                                            monkeypatch):
    # A folder was "does not exist"; an empty file was "no such table: version_info" to
    # `studies` and `dashboard`, and `show NAME` wrote Optuna's tables into it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.db").write_bytes(b"")
    folder = ("is a folder, not an SQLite file: give the database file, "
              f"sqlite:///{tmp_path / 'runs'}/NAME.db (it holds a.db)")
    empty = "is empty (0 bytes): it holds no study"
    for command, expected in [
            (["studies", "--storage", "sqlite:///runs"], folder),
            (["dashboard", "--storage", "sqlite:///runs"], folder),
            (["show", "tiny", "--storage", "sqlite:///runs"], folder),
            (["studies", "--storage", "sqlite:///runs/a.db"], empty),
            (["dashboard", "--storage", "sqlite:///runs/a.db"], empty),
            (["show", "tiny", "--storage", "sqlite:///runs/a.db"], empty),
            (["best", "tiny", "--storage", "sqlite:///runs/a.db"], empty),
            # A device: it said /dev/null "does not exist".
            (["studies", "--storage", "sqlite:////dev/null"],
             "storage: /dev/null is not a file (a device, a pipe or a socket)"),
            (["show", "tiny", "--storage", "sqlite:////dev/null"],
             "storage: /dev/null is not a file (a device, a pipe or a socket)")]:
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert expected in out, (command, out)
    assert (tmp_path / "runs" / "a.db").read_bytes() == b""


@pytest.mark.parametrize("overrides, expected", [
    ({"tokens_per_trial": 256, "eval_every_tokens": 128},
     "tokens_per_trial: 256 is less than one optimizer step of the largest batch searched "
     "(16 sequences x block_size 32 = 512 tokens)"),
    ({"model": {"n_layer": 2, "n_head": 4, "n_embd": 1_000_000_000, "block_size": 32}},
     "parameters need at least"),
    # Searched: not checked, and its trial took memory until the machine had none.
    ({"search": {"lr": {"low": 1e-4, "high": 3e-2}, "batch_size": {"choices": [8, 16]},
                 "other": {"model.n_layer": {"choices": [1, 10**12]}}}},
     "parameters (the largest model searched) need at least"),
    ({"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 100}},
     "model.vocab_size: 100 is smaller than the tokenizer's 256 tokens (byte)"),
    ({"trainer": {"max_loss": 1.0}},
     "trainer.max_loss: 1 is not above the loss a model starts from (ln 256 = 5.55, a uniform "
     "guess over the vocabulary): every trial would stop as diverged at its first step"),
    # Fixed under search.other, read by the priors before the trials' configs were checked: a
    # ValueError's traceback from run, validate and the dry run.
    ({"search": {"other": {"model.n_head": {"value": 3}}}},
     "search: the values it fixes (search.other.model.n_head=3) make a trial config no run "
     "can train: n_head must divide n_embd, got n_embd=32, n_head=3"),
    ({"search": {"other": {"optim.beta2": {"value": 1.5}}}},
     "search: the values it fixes (search.other.optim.beta2=1.5) make a trial config no run "
     "can train: beta2 must be in [0, 1)"),
    # Searched up to an n_embd the file's 2 heads do not divide: the memory check's model was
    # a traceback of every command.
    ({"search": {"lr": {"low": 1e-4, "high": 3e-2}, "batch_size": {"choices": [8, 16]},
                 "other": {"model.n_embd": {"choices": [32, 33]}}}},
     "search.other: 1 of the 2 combinations of values tried makes a trial config no run can "
     "train: model.n_embd=33"),
], ids=["budget below one batch", "model too large to train", "model searched too large",
        "vocabulary below the tokenizer's", "max_loss below the first loss",
        "n_head fixed under search.other", "beta2 fixed under search.other",
        "n_embd searched beyond the heads"])
def test_a_study_no_trial_could_run_is_refused_before_ray(tmp_path, shakespeare, capsys,
                                                          overrides, expected):
    study = tiny_study(tmp_path, shakespeare, **overrides)
    path = str(write_study(tmp_path, study))
    code = main(["run", path])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert expected in out
    # Nothing was written, and no empty study folder is left behind.
    assert not (tmp_path / "study").exists()
    # Known from the file alone (and the byte tokenizer's size, the machine's memory): validate
    # and --dry-run too (they said ok to a model too large).
    if True:
        for command in (["validate", path], ["run", path, "--dry-run"]):
            assert main(command) == 2
            assert expected in " ".join(capsys.readouterr().err.split())


def test_a_model_that_fits_once_but_not_as_many_times_as_trials_run_at_once_is_refused(
        tmp_path, shakespeare, monkeypatch):
    from scaletune.search import plan
    from scaletune.search.space import largest_shape

    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=4,
                                    workers={"cpus_per_trial": 1, "max_concurrent": 2}))
    need = plan.TRAINING_BYTES_PER_PARAM * largest_shape(cfg, 256).total_params
    monkeypatch.setattr(plan, "usable_cores", lambda: 2)
    # Room for one trial and a half: the check passed, and the plan ran two at once.
    monkeypatch.setattr(plan, "_memory_for_a_trial", lambda _: (1.5 * need, "the room here"))
    problem = plan.memory_problem(cfg, 256)
    assert problem is not None and ", 2 trials at once " in problem
    assert problem.endswith("more than the room here: set workers.max_concurrent: 1, or make the "
                            "model smaller")
    # One at a time fits (max_concurrent, or a study of one trial).
    for change in ({"workers": cfg.workers.model_copy(update={"max_concurrent": 1})},
                   {"n_trials": 1}):
        assert plan.memory_problem(cfg.model_copy(update=change), 256) is None
    monkeypatch.setattr(plan, "_memory_for_a_trial", lambda _: (0.5 * need, "the room here"))
    assert plan.memory_problem(cfg, 256).endswith("more than the room here: make the model smaller")


def test_the_memory_a_trial_may_use_is_known_without_proc(tmp_path, shakespeare, monkeypatch):
    # On a Mac (no /proc/meminfo) the check said nothing: the machine's memory bounds it there.
    import builtins

    from scaletune.search import plan

    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    here, what = plan._memory_for_a_trial(cfg)
    assert what == f"the {here / 2**30:,.1f} GiB of memory available on this machine"
    real = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    whole, what = plan._memory_for_a_trial(cfg)
    assert whole == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >= here
    assert what == f"the {whole / 2**30:,.1f} GiB of memory this machine has"


@pytest.mark.parametrize("files", [1, 2])
def test_an_empty_data_file_names_the_path_and_leaves_nothing(tmp_path, shakespeare, capsys,
                                                              files):
    study = tiny_study(tmp_path, shakespeare)
    for i in range(files):
        (tmp_path / f"empty{i}.txt").write_bytes(b"")
    # Two empty files were read as the separator between them, "2 tokens give 2 training and 0
    # validation tokens: use more text".
    empty = tmp_path / ("empty0.txt" if files == 1 else "empty*.txt")
    study["data"]["path"] = str(empty)
    path = str(write_study(tmp_path, study))
    for command in (["validate", path], ["run", path]):
        code = main(command)
        out = " ".join(capsys.readouterr().err.split())
        assert code == 2, out
        assert f"data.path {empty}: the data holds no text (0 tokens)" in out, (command, out)
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("text, expected", [
    # It trained: the spaces' pattern learned to a loss near 0, reported as the study's best.
    (" \t \n\n   \n" * 2_000, "the data holds only whitespace (18,000 characters of spaces, "
                               "tabs and line ends): nothing to learn; point it at text"),
    # Every trial reached a validation loss of 0.0000, the summary's best trial.
    (("a" * 99 + "\n") * 1_000, "the data holds one character, 'a', repeated (100,000 "
                                "characters, line ends and spaces apart): nothing to learn; "
                                "point it at text"),
], ids=["whitespace", "one character"])
def test_a_data_file_with_nothing_to_learn_is_refused_not_trained_to_loss_zero(
        tmp_path, shakespeare, capsys, text, expected):
    study = tiny_study(tmp_path, shakespeare)
    blank = tmp_path / "blank.txt"
    blank.write_text(text)
    study["data"]["path"] = str(blank)
    code = main(["run", str(write_study(tmp_path, study))])
    out = " ".join(capsys.readouterr().err.split())
    assert code == 2, out
    assert f"data.path {blank}: {expected}" in out
    assert not (tmp_path / "study").exists()
    # validate finds it too (it said ok).
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    assert f"data.path {blank}: {expected}" in " ".join(capsys.readouterr().err.split())
    # Two characters are text enough to be left to the user.
    blank.write_text("ab" * 50_000)
    assert main(["validate", str(write_study(tmp_path, study))]) == 0


@pytest.mark.parametrize("text, data, expected", [
    (b"", {}, "the data holds no text (0 tokens)"),
    (b"xy" * 150, {}, "data: 300 tokens give 270 training and 30 validation tokens; each split "
                     "needs at least block_size + 1 = 33: use more text or a shorter block_size "
                     "or another val_fraction (got val_fraction=0.1)"),
    # Below two windows no val_fraction gives both splits one: not suggested.
    (b"hello", {}, "data: 5 tokens give 5 training and 0 validation tokens; each split needs at "
                   "least block_size + 1 = 33: use more text or a shorter block_size (got "
                   "val_fraction=0.1)"),
    (b"xy" * 1_500, {"train_tokens": 20}, "data.train_tokens: 20 training tokens are fewer than "
                                         "one window, block_size + 1 = 33: give 33 or more"),
], ids=["empty", "too small", "below two windows", "train_tokens below a window"])
def test_data_too_small_to_train_is_an_error_of_every_planning_command(
        tmp_path, shakespeare, capsys, text, data, expected):
    # Byte-level text: its size is known from the file's, so validate, --dry-run and priors
    # find what run refuses (they passed it, or stopped on a ValueError traceback).
    study = tiny_study(tmp_path, shakespeare)
    small = tmp_path / "small.txt"
    small.write_bytes(text)
    study["data"] |= {"path": str(small), **data}
    path = str(write_study(tmp_path, study))
    for command in (["validate", path], ["run", path, "--dry-run"], ["run", path]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert f"1 error(s) in {path}: " in out and expected in out, (command, out)
    assert main(["priors", path]) == 0  # the priors of its model and budget
    assert not (tmp_path / "study").exists()


def test_priors_of_a_study_no_trial_could_train_say_so(tmp_path, shakespeare, capsys):
    # A budget below one optimizer step: priors printed a full table as if the study could run.
    study = tiny_study(tmp_path, shakespeare, tokens_per_trial=400, eval_every_tokens=200)
    path = str(write_study(tmp_path, study))
    for json in ([], ["--json"]):
        assert main(["priors", path, *json]) == 0
        out, err = capsys.readouterr()
        assert ("note: `scaletune run` refuses this study: tokens_per_trial: 400 is less than one "
                "optimizer step") in " ".join(err.split()), err
        assert "refuses" not in out  # --json's output stays JSON
    assert main(["priors", str(write_study(tmp_path, tiny_study(tmp_path, shakespeare)))]) == 0
    assert "refuses" not in capsys.readouterr().err
    # A model too big for this machine's memory, as validate says (priors said nothing).
    huge = tiny_study(tmp_path, shakespeare, model={"n_layer": 80, "n_head": 64, "n_embd": 8192,
                                                    "block_size": 64})
    assert main(["priors", str(write_study(tmp_path, huge))]) == 0
    assert "note: `scaletune run` refuses this study: model: " in " ".join(
        capsys.readouterr().err.split())


def test_priors_of_a_study_trained_with_sgd_say_the_laws_are_adamws(tmp_path, shakespeare,
                                                                    capsys):
    # The table reads as an AdamW study's (lambda from tau, the Adam square-root rule for lr);
    # validate and run said the priors were a guess under sgd, priors said nothing.
    study = tiny_study(tmp_path, shakespeare, trainer={"optim": {"name": "sgd"}})
    path = str(write_study(tmp_path, study))
    for json in ([], ["--json"]):
        assert main(["priors", path, *json]) == 0
        out, err = capsys.readouterr()
        assert ("note: trainer.optim.name sgd: the priors are scaling laws fitted on AdamW, so "
                "their centers are a guess here; under sgd, weight decay is torch's L2 "
                "penalty") in " ".join(err.split()), err
        assert "guess" not in out  # --json's output stays JSON


def test_a_token_cache_folder_that_cannot_be_made_names_its_setting(tmp_path, shakespeare, capsys,
                                                                      monkeypatch):
    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare)))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SCALETUNE_CACHE", str(blocker))
    # It was "data.path: [Errno 17] File exists" from run, and ok from validate.
    for command in (["validate", path], ["run", path, "--dry-run"], ["run", path]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert (f"$SCALETUNE_CACHE '{blocker}': cannot make the token cache's folder there (File "
                "exists): give a writable folder as data.cache_dir or $SCALETUNE_CACHE") in out, out
    assert not (tmp_path / "study").exists()


def test_a_data_path_without_a_source_is_the_text_file_it_names(tmp_path, shakespeare):
    # The builtin source, the default, ignored the path: the study trained on Python's
    # documentation, with a note among the plan's lines.
    study = tiny_study(tmp_path, shakespeare)
    del study["data"]["source"]
    cfg = validate_study(study)
    assert cfg.data.source == "text" and cfg.data.path == study["data"]["path"]
    study["data"] = {"dataset": "json", "data_files": str(tmp_path / "a.jsonl")}
    assert validate_study(study).data.source == "hf"
    study["data"] = {"builtin": "stdlib"}
    assert validate_study(study).data.source == "builtin"


def test_a_batch_that_leaves_a_trial_a_few_steps_is_a_note_of_validate_and_the_plan(
        tmp_path, shakespeare, capsys):
    # Trials of 2 optimizer steps ran, and the summary showed their batch as if it meant much.
    study = tiny_study(tmp_path, shakespeare, tokens_per_trial=400_000)
    study["search"]["batch_size"] = {"choices": [4096, 8192]}
    path = str(write_study(tmp_path, study))
    note = ("note: search.batch_size: 8192 sequences, the largest batch searched, leave a trial 2 "
            "optimizer steps (262,144 tokens a step, tokens_per_trial 400,000): too few for "
            "warmup and decay to mean much")
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert note in out
        # A step above the training split (180,000 tokens of the 200 kB text): said too.
        assert ("a step of 8192 sequences is 262,144 tokens, more than the 180,000 training "
                "tokens of the data: every step repeats it") in out
    study["search"]["batch_size"] = {"choices": [4, 8]}
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    assert "optimizer steps" not in capsys.readouterr().out


def test_a_field_another_data_source_reads_is_noted_as_ignored(tmp_path, shakespeare, capsys):
    # `source: text` with `dataset: json` loaded the text file and said nothing.
    study = tiny_study(tmp_path, shakespeare)
    study["data"] |= {"dataset": "json", "text_column": "body"}
    path = str(write_study(tmp_path, study))
    note = ("note: data.dataset, data.text_column: read only when data.source is 'hf', and this "
            "data's source is 'text': they are ignored")
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 0
        assert note in " ".join(capsys.readouterr().out.split())
    # Another source's field at its default (a full config dump holds them all): no note.
    del study["data"]["dataset"], study["data"]["text_column"]
    study["data"] |= {"split": "train", "builtin": "pydoc_topics"}
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    assert "ignored" not in capsys.readouterr().out


def test_validate_checks_every_file_after_a_bad_tokenizer_file(tmp_path, shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare)
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    first = write_study(tmp_path, {**study, "data": {**study["data"], "tokenizer": str(bad)}},
                        "first.yaml")
    second = write_study(tmp_path, {**study, "data": {**study["data"], "tokenizer": "gpt3"}},
                         "second.yaml")
    assert main(["validate", str(first), str(second)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    # Each file's error under its name; the second file is checked too.
    assert f"1 error(s) in {first}: data.tokenizer: '{bad}' is not a tokenizer file" in out
    assert f"in {second}:" in out and "gpt3" in out
    assert main(["priors", str(first)]) == 2
    assert f"1 error(s) in {first}: data.tokenizer:" in " ".join(capsys.readouterr().err.split())


def test_a_compiled_study_without_a_cpp_compiler_is_refused_before_it_starts(tmp_path, shakespeare):
    from torch._inductor import config as inductor

    from scaletune.search.runner import preflight
    from scaletune.search.storage import sqlite_path
    from scaletune.trainer.errors import ConfigError

    cfg = load_study(write_study(tmp_path, tiny_study(tmp_path, shakespeare,
                                                      trainer={"compile": True})))
    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++")}), \
            pytest.raises(ConfigError) as refused:
        preflight(cfg)
    assert [e for e in refused.value.errors if "compile" in e] == [
        "trainer.compile: true needs a C++ compiler, which torch.compile builds its kernels with, "
        "and none works here (tried /nonexistent/g++); install one (apt install g++), set CXX to "
        "one, or set compile: false"]
    assert not sqlite_path(cfg.storage_url).exists()  # no study was created
    # validate says so (it said ok), as it says of GPUs or cores the machine lacks.
    from scaletune.search.manage import validate_file

    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++")}):
        _, notes = validate_file(cfg.source)
    assert ("trainer.compile: true needs a C++ compiler, which torch.compile builds its kernels "
            "with, and none works here (tried /nonexistent/g++); install one (apt install g++), "
            "set CXX to one, or set compile: false (`scaletune run` refuses it on this machine)"
            ) in notes


def test_validate_and_dry_run_say_when_the_first_run_would_download_an_encoding(
        tmp_path, shakespeare, monkeypatch, capsys):
    # An empty tiktoken cache: `validate` passes the file (a machine with network runs it) but
    # says that the run downloads gpt2's files, and the dry run says it too.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    study = tiny_study(tmp_path, shakespeare)
    study["data"]["tokenizer"] = "gpt2"
    path = str(write_study(tmp_path, study))
    assert main(["validate", path]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok" in out
    assert "note: tokenizer 'gpt2': tiktoken's files for it (2) are not in its cache" in out
    assert main(["run", path, "--dry-run"]) == 0
    assert "note: tokenizer 'gpt2': tiktoken's files" in capsys.readouterr().out


def test_validate_says_when_a_weight_decay_range_reads_as_tau(tmp_path, shakespeare, capsys):
    # A new user's AdamW weight decay range, 0.001 to 0.2, under the default as: tau: it trained
    # lambda in the tens after a note, where a value or choices so written were refused.
    study = tiny_study(tmp_path, shakespeare)
    study["search"]["weight_decay"] = {"low": 0.001, "high": 0.2}
    path = str(write_study(tmp_path, study))
    for command in (["validate", path], ["run", path, "--dry-run"]):
        assert main(command) == 2
        out = flat(capsys.readouterr().err)
        assert ("search.weight_decay: a range of [0.001, 0.2] reads as tau = B/(eta*lambda*D), "
                "weight decay's timescale in runs (as: tau, the default), at most 1") in out, out
        assert "write as: lambda; if tau is, write as: tau" in out
    # Written as tau, it is what the file means; the plan notes the priors' center above it.
    study["search"]["weight_decay"] = {"low": 0.001, "high": 0.2, "as": "tau"}
    path = str(write_study(tmp_path, study))
    assert main(["validate", path]) == 0
    out = flat(capsys.readouterr().out)
    assert "note: search.weight_decay: the priors' center tau = " in out
    assert "lies above the range searched [0.001, 0.2]" in out
    # Searched as lambda, the same range is what the file means: no note on it.
    study["search"]["weight_decay"] = {"low": 0.001, "high": 0.2, "as": "lambda"}
    path = str(write_study(tmp_path, study))
    assert main(["validate", path]) == 0
    assert "search.weight_decay" not in capsys.readouterr().out


def test_a_value_out_of_bounds_is_reported_with_the_files_other_errors(tmp_path, shakespeare,
                                                                        capsys):
    # The dropout of 1.5 was named only once the unknown key had been fixed.
    study = tiny_study(tmp_path, shakespeare)
    study["model"]["colour"] = "red"
    study["search"]["dropout"] = {"low": 0.0, "high": 1.5}
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    out = flat(capsys.readouterr().err)
    assert "2 error(s)" in out and "model.colour: unknown key" in out
    assert "search.dropout: 1.5 is not allowed, expected a dropout rate in [0, 0.95]" in out


def test_validate_finds_a_tokenizer_that_does_not_exist(tmp_path, shakespeare, capsys):
    # As `scaletune run` would, without preparing the data: tiktoken names its encodings offline.
    study = tiny_study(tmp_path, shakespeare)
    study["data"]["tokenizer"] = "cl100k"
    code = main(["validate", str(write_study(tmp_path, study))])
    out = capsys.readouterr().err
    assert code == 2
    assert "data.tokenizer: unknown tokenizer 'cl100k'" in out
    assert "cl100k_base" in out  # the encodings it could mean are listed


def test_validate_finds_text_that_is_not_utf8_and_a_missing_text_column(tmp_path, shakespeare,
                                                                        capsys):
    # Both passed validate, and run refused them once it read the data.
    study = tiny_study(tmp_path, shakespeare)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9 cr\u00e8me ".encode("latin-1") * 2_000)
    study["data"]["path"] = str(latin)
    path = write_study(tmp_path, study)
    for command in (["validate", str(path)], ["run", str(path), "--dry-run"], ["run", str(path)]):
        assert main(command) == 2
        assert f"data.path: {str(latin)!r} is not UTF-8 text" in capsys.readouterr().err
    # A compressed file is told how to be read through (the README says compressed files are,
    # of source: hf).
    packed = tmp_path / "corpus.txt.gz"
    packed.write_bytes(gzip.compress(shakespeare.read_bytes()))
    study["data"]["path"] = str(packed)
    path = write_study(tmp_path, study)
    for command in (["validate", str(path)], ["run", str(path)]):
        assert main(command) == 2
        assert (f"data.path: {str(packed)!r} is not UTF-8 text ('utf-8' codec can't decode byte "
                f"0x8b in position 1: invalid start byte): a gzip file, which source: text reads "
                f"as it is; `source: hf, dataset: text, data_files: {packed}` reads it through"
                ) in " ".join(capsys.readouterr().err.split())
    table = tmp_path / "table.csv"
    table.write_text("title,body\n" + "".join(f"t{i},some text {i}\n" for i in range(2_000)))
    study = tiny_study(tmp_path, shakespeare)
    study["data"] = {"source": "hf", "dataset": "csv", "data_files": str(table),
                     "tokenizer": "byte"}
    path = write_study(tmp_path, study)
    assert main(["validate", str(path)]) == 2
    # It named the builder, 'csv', where the file is what the user wrote.
    assert (f"data.text_column: 'text' is not a column of {str(table)!r} (data.data_files, read "
            "as csv), which has ['title', 'body']" in flat(capsys.readouterr().err))
    study["data"]["text_column"] = "body"
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    records = tmp_path / "records.jsonl"
    records.write_text("".join(f'{{"content": "line {i}"}}\n' for i in range(2_000)))
    study["data"] = {"source": "hf", "dataset": "json", "data_files": str(records),
                     "tokenizer": "byte"}
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    assert "which has ['content']" in capsys.readouterr().err


def test_validate_finds_json_lines_that_are_not_json_or_not_utf8(tmp_path, shakespeare, capsys):
    # Both passed validate; the run then failed on them once `datasets` read the file.
    study = tiny_study(tmp_path, shakespeare)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{'text': 'single quotes are not JSON'}\n" * 50)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "caf\u00e9 cr\u00e8me"}\n'.encode("latin-1") * 50)
    for path, said in [(broken, f"data.data_files: {str(broken)!r} line 1 is not JSON (Expecting "
                                "property name enclosed in double quotes): a JSON Lines file "
                                "holds one JSON object per line"),
                       (latin, f"data.data_files: {str(latin)!r} is not UTF-8 text ('utf-8' "
                               "codec can't decode byte 0xe9")]:
        study["data"] = {"source": "hf", "dataset": "json", "data_files": str(path),
                         "tokenizer": "byte"}
        assert main(["validate", str(write_study(tmp_path, study))]) == 2
        assert said in " ".join(capsys.readouterr().err.split())


def test_validate_finds_a_text_column_of_numbers(tmp_path, shakespeare, capsys):
    # A column of numbers passed validate; run refused it once `datasets` had read every file.
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "table.csv"
    table.write_text("id,body\n" + "".join(f"{i},some text {i}\n" for i in range(2_000)))
    records = tmp_path / "records.jsonl"
    records.write_text("".join(f'{{"score": {i / 3}, "body": "text {i}"}}\n' for i in range(99)))
    columns = tmp_path / "columns.parquet"
    pq.write_table(pa.table({"id": list(range(99)), "body": [f"text {i}" for i in range(99)]}),
                   str(columns))
    study = tiny_study(tmp_path, shakespeare)
    for builder, path, column, kind in [("csv", table, "id", "int64"),
                                        ("json", records, "score", "float64"),
                                        ("parquet", columns, "id", "int64")]:
        study["data"] = {"source": "hf", "dataset": builder, "data_files": str(path),
                         "text_column": column, "tokenizer": "byte"}
        assert main(["validate", str(write_study(tmp_path, study))]) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert (f"data.text_column: {column!r} of {str(path)!r} (data.data_files, read as "
                f"{builder}) holds {kind} values" in out
                and "not text: name a column of text (the columns: [" in out), out
        study["data"]["text_column"] = "body"
        assert main(["validate", str(write_study(tmp_path, study))]) == 0, capsys.readouterr()


def test_a_ray_that_cannot_start_here_is_an_error_not_a_traceback(tmp_path, shakespeare, capsys,
                                                                   monkeypatch):
    import ray

    # A real failure of Ray's start: its temporary folder lies below a file. Ray's traceback
    # from its node start-up was all the user saw; a start that timed out under load, the same.
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("RAY_TMPDIR", str(afile / "x"))
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    assert main(["run", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert (f"Ray could not start a cluster on this machine for the trials: NotADirectoryError: "
            f"[Errno 20] Not a directory: '{afile / 'x'}'. Ray keeps its files under "
            f"{afile / 'x'}/ray (RAY_TMPDIR, set here): it must be a writable folder") in out, out
    assert not ray.is_initialized()
    assert not (tmp_path / "study").exists()  # the folders this launch made are gone again


def test_ray_start_failing_on_its_token_names_home(tmp_path, monkeypatch):
    # A full or read-only HOME, where Ray writes its token at its first start: the error sent
    # the user to /tmp/ray, which had 74 GB free.
    from scaletune.search.cluster import local_start_failed

    monkeypatch.setenv("HOME", str(tmp_path))
    token = tmp_path / ".ray" / "auth_token"
    said = local_start_failed(OSError(30, "Read-only file system", str(token.parent)))
    assert said == ("Ray could not start a cluster on this machine for the trials: OSError: "
                    f"[Errno 30] Read-only file system: '{token.parent}'. Ray writes the token of "
                    f"its authentication to {token} at its first start: {tmp_path} (HOME) must be "
                    "writable, with free space")
    token.parent.mkdir()
    token.write_bytes(b"")  # what a full disk leaves: the file, empty, and no name in the error
    assert "(HOME) must be writable" in local_start_failed(OSError(28, "No space left on device"))
    token.write_text("a token")  # another failure of the same kind: Ray's folder, as before
    assert "Ray keeps its files under" in local_start_failed(OSError(28, "No space left"))


def test_a_storage_path_longer_than_sqlite_opens_is_refused_before_anything(tmp_path,
                                                                           shakespeare, capsys):
    # 617 bytes: SQLite could not open it, and the run said the storage file "is no longer there
    # (deleted while the study ran?), and the trials it held went with it" of a study never run.
    from scaletune.search.storage import SQLITE_MAX_PATH

    deep = tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 100)
    study = tiny_study(tmp_path, shakespeare, study_dir=str(deep))
    path = write_study(tmp_path, study)
    database = deep / "study.db"
    assert len(str(database)) > SQLITE_MAX_PATH
    for command in (["validate", str(path)], ["run", str(path)]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert (f"study.db is a path of {len(str(database))} bytes, and SQLite opens none "
                f"longer than {SQLITE_MAX_PATH} (its journal's name must fit its 512): give a "
                "shorter study_dir or storage") in out, out
        assert "no longer there" not in out


def test_a_command_run_in_a_deleted_folder_finds_the_study_beside_its_file(tmp_path,
                                                                         shakespeare,
                                                                         monkeypatch):
    # The current folder was looked in for a study of before 0.1: a FileNotFoundError's
    # traceback from run, show, validate, export and report once it was deleted.
    study = tiny_study(tmp_path, shakespeare)
    del study["study_dir"]
    path = write_study(tmp_path, study)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(["validate", str(path)]) == 0
    assert load_study(path).folder == tmp_path / "runs" / "tiny"


def test_ray_start_failing_names_the_folder_ray_used(tmp_path, monkeypatch):
    # Ray takes TMPDIR where RAY_TMPDIR is not set: the error named /tmp/ray all the same.
    from scaletune.search.cluster import local_start_failed

    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    said = local_start_failed(TimeoutError("the node did not start"))
    assert (f"Ray keeps its files under {tmp_path}/ray (TMPDIR, set here; RAY_TMPDIR names "
            f"another)") in said and f"logs: {tmp_path}/ray/session_latest/logs" in said


def test_a_fitted_laws_file_of_something_else_is_an_error_of_the_file_not_a_traceback(
        tmp_path, shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare)
    bad = tmp_path / "laws.json"
    bad.write_text('{"not": "laws"}')
    study["priors"] = {"laws": "fitted", "fitted_file": str(bad)}
    path = write_study(tmp_path, study)
    other = write_study(tmp_path, tiny_study(tmp_path, shakespeare), "other.yaml")
    # validate goes on to the next file (it stopped on the traceback, exit code 1).
    for command in (["validate", str(path), str(other)], ["run", str(path), "--dry-run"],
                    ["priors", str(path)], ["run", str(path)]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert f"in {path}: priors.fitted_file: {bad}: not a fitted-laws file this scaletune " \
               "reads" in out, out
    assert main(["validate", str(path), str(other)]) == 2
    assert f"{other}: ok" in capsys.readouterr().out


@pytest.mark.parametrize("key, value, expected", [
    ("lr", {"prior": "auto", "low": 0.5},
     "search.lr: low=0.5, high=0.0"),
    ("batch_size", {"prior": "auto", "low": 1024},
     "search.batch_size: low=1024, high="),
], ids=["lr", "batch_size"])
def test_a_range_narrowed_past_the_priors_names_the_file_and_the_prior(
        tmp_path, shakespeare, capsys, key, value, expected):
    # It said "1 error(s) in study:", and for batch sizes "widen the range" of an inverted one.
    study = tiny_study(tmp_path, shakespeare)
    study["search"][key] = value
    path = write_study(tmp_path, study)
    assert main(["validate", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert f"1 error(s) in {path}: {expected}" in out, out
    assert "is an empty range: the prior's range here is [" in out


def test_a_trainer_value_that_search_sets_instead_is_a_note(tmp_path, shakespeare, capsys):
    # The trials searched weight decay and warmup, and trained with dropout 0, without a word.
    study = tiny_study(tmp_path, shakespeare)
    study["trainer"] = {"optim": {"weight_decay": 0.1, "warmup_frac": 0.05}}
    study["model"]["dropout"] = 0.1
    study["search"].pop("warmup_frac")  # left out: searched with its prior
    path = write_study(tmp_path, study)
    assert main(["validate", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for line in ("trainer.optim.weight_decay: 0.1 is not what the trials train with: "
                 "search.weight_decay searches it; to train every trial with 0.1, give "
                 "search.weight_decay: {value: 0.1, as: lambda}",
                 "model.dropout: 0.1 is not what the trials train with: search.dropout fixes it "
                 "at 0; to train every trial with 0.1, give search.dropout: {value: 0.1}",
                 "trainer.optim.warmup_frac: 0.05 is not what the trials train with: "
                 "search.warmup_frac searches it"):
        assert line in out, out
    # Nor were values that search.other sets (the README's example study did so with norm).
    study["model"]["norm"] = "rmsnorm"
    study["trainer"] = {"optim": {"beta2": 0.99}, "max_loss": 20.0}
    study["search"]["other"] = {"model.norm": {"value": "layernorm"},
                                "optim.beta2": {"choices": [0.9, 0.95]},
                                "max_loss": {"value": 20.0}}
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for line in ("model.norm: rmsnorm is not what the trials train with: search.other.model.norm "
                 "fixes it at layernorm; to train every trial with rmsnorm, leave model.norm out "
                 "of search.other",
                 "trainer.optim.beta2: 0.99 is not what the trials train with: search.other."
                 "optim.beta2 searches it"):
        assert line in out, out
    assert "max_loss: 20" not in out  # fixed at the value given: nothing to say
    # Given as search: gives it, nothing to say.
    study["model"]["dropout"] = 0.0
    study["model"].pop("norm")
    study["search"].pop("other")
    study["trainer"] = {}
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    assert "is not what the trials train with" not in capsys.readouterr().out


def test_trials_asking_more_than_this_machine_has_are_a_note_of_validate(tmp_path, shakespeare,
                                                                       capsys):
    # validate said ok, and the dry run that "GPUs are counted when Ray starts"; run refused.
    study = tiny_study(tmp_path, shakespeare, workers={"cpus_per_trial": 1, "gpus_per_trial": 1})
    path = write_study(tmp_path, study)
    assert main(["validate", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "note: workers.gpus_per_trial: 1, and this machine has 0 GPU(s)" in out, out
    assert "`scaletune run` refuses it here; give 0 to train on CPUs" in out
    # A cluster's GPUs are its own: nothing to say from here.
    study["workers"]["address"] = "auto"
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    assert "gpus_per_trial" not in capsys.readouterr().out
    # So for the cores (found by run alone, and shown as 8.0).
    from scaletune.trainer.config import usable_cores

    cores = usable_cores() + 1
    study["workers"] = {"cpus_per_trial": cores, "gpus_per_trial": 0}
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (f"note: workers.cpus_per_trial: {cores}, and this machine has {usable_cores()} "
            f"CPU(s): `scaletune run` refuses it here; give at most {usable_cores()}") in out
    study["workers"]["address"] = "auto"
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    assert "cpus_per_trial" not in capsys.readouterr().out


def test_records_read_as_plain_text_are_a_note(tmp_path, shakespeare, capsys):
    records = tmp_path / "small.jsonl"
    records.write_text("".join(f'{{"text": "line {i} of the corpus"}}\n' for i in range(3_000)))
    study = tiny_study(tmp_path, shakespeare)
    study["data"]["path"] = str(records)
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    assert ("note: data.path: small.jsonl is read as plain text, its jsonl syntax and all; to "
            "train on one column of its records, give source: hf, dataset: json, data_files: "
            "small.jsonl and text_column") in " ".join(capsys.readouterr().out.split())


def test_validate_names_a_missing_data_file_beside_the_files_other_errors(tmp_path, shakespeare,
                                                                          capsys):
    # Found only in a second round, once the other keys were fixed.
    study = tiny_study(tmp_path, shakespeare)
    study["n_trial"] = study.pop("n_trials")
    study["data"]["path"] = str(tmp_path / "tinyshakespear.txt")
    path = write_study(tmp_path, study)
    assert main(["validate", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "3 error(s)" in out and "n_trial: unknown key" in out, out
    assert f"data.path: file not found: '{tmp_path / 'tinyshakespear.txt'}'" in out, out


@pytest.mark.parametrize("storage, said", [
    ("sqlite://", "storage: sqlite:// is an in-memory SQLite database, which each connection sees "
                  "empty: give a file, sqlite:///PATH"),
    ("journal:///tmp/j.log", "storage: cannot open journal:///tmp/j.log: Can't load plugin: "
                             "sqlalchemy.dialects:journal; a storage URL is sqlite:///PATH"),
    ("runs.log", "storage: runs.log is not a storage URL: give sqlite:///PATH or postgresql://"),
    ("", "storage: must not be empty (got ''): leave it out for the default"),
    ("sqlite:///{tmp}/none/deep/s.db", "storage: the folder of {tmp}/none/deep/s.db does not "
                                       "exist: create it, or give another path"),
], ids=["in-memory", "unknown dialect", "not a URL", "empty", "missing folder"])
def test_validate_finds_a_storage_that_run_refuses(tmp_path, shakespeare, capsys, storage, said):
    # validate and the dry run said "ok" to each; run refused them (or, in memory, started the
    # study and stopped at its first write, advising disk space).
    storage, said = storage.format(tmp=tmp_path), said.format(tmp=tmp_path)
    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare, storage=storage)))
    for command in (["validate", path], ["run", path, "--dry-run"], ["run", path]):
        assert main(command) == 2, command
        out = " ".join(capsys.readouterr().err.split())
        assert said in out and out.count(said) == 1, (command, out)
    assert not (tmp_path / "none").exists() and not (tmp_path / "study").exists()


def test_validate_checks_the_storage_given_as_run_is_given_it(tmp_path, shakespeare, capsys):
    # `run --storage "$SCALETUNE_STORAGE"` is the README's way with a password: validate could
    # not check that storage (no --storage), only the file's.
    path = str(write_study(tmp_path, tiny_study(tmp_path, shakespeare)))
    assert main(["validate", path, "--storage", "postgresql://u:hunter2@127.0.0.1:1/db"]) == 2
    out = flat(capsys.readouterr().err)
    assert "storage: cannot open postgresql://u:***@127.0.0.1:1/db" in out and "hunter2" not in out
    missing = f"sqlite:///{tmp_path}/none/deep/s.db"
    assert main(["validate", path, "--storage", missing]) == 2
    assert "the folder of" in capsys.readouterr().err
    assert main(["validate", path]) == 0  # the file's own storage, by default
    # A ladder or a training file sets no study's storage: said, not ignored.
    ladder = tmp_path / "ladder.yaml"
    ladder.write_text("target: study.yaml\nrungs: [{tokens: 0.25}, {tokens: 0.5}]\n")
    assert main(["validate", str(ladder), "--storage", f"sqlite:///{tmp_path}/s.db"]) == 2
    assert "is a ladder, whose storage it does not set" in flat(capsys.readouterr().err)
    assert not (tmp_path / "none").exists() and not (tmp_path / "s.db").exists()


def test_an_empty_storage_a_study_ran_with_before_it_was_refused_still_reads(tmp_path, shakespeare):
    # Refused in a file now (above), `storage: ""` ran as the default storage before: the
    # config such a study recorded reads (show, report and export by its name read it).
    raw = tiny_study(tmp_path, shakespeare, storage="")
    with pytest.raises(ConfigError, match="storage: must not be empty"):
        validate_study(raw)
    assert validate_study(raw, recorded=True).storage == ""


def test_a_storage_or_a_laws_file_given_as_the_study_file_is_named_as_what_it_is(
        tmp_path, shakespeare, capsys):
    # An SQLite storage was "larger than 256 KB" or "not UTF-8 text"; a laws file, a dozen
    # unknown and missing keys.
    import sqlite3

    db = tmp_path / "studies.db"
    sqlite3.connect(db).execute("create table t (x)").connection.commit()
    laws = tmp_path / "laws.json"
    laws.write_text('{"format_version": 2, "scale_kind": "tokens", "laws": {}}')
    for command in ("validate", "show", "run", "train"):
        assert main([command, str(db)]) == 2
        said = capsys.readouterr()
        # For train too: it was told to give the study's file, with a --storage it lacks.
        assert ("this is an SQLite database (a study storage), not a study or training file: "
                f"the study commands take the study's YAML file (with --storage sqlite:///{db} "
                "where the study file names another storage), `scaletune train` a training "
                "file (`scaletune export` writes one)") in flat(said.out + said.err), (command,
                                                                                       said)
        assert main([command, str(laws)]) == 2
        said = capsys.readouterr()
        assert ("a fitted-laws file (written by `scaletune fit` or a ladder), not a study or "
                "training file: a study starts from it with `priors: {laws: fitted, "
                f"fitted_file: {laws}}}`") in flat(said.out + said.err), (command, said)


def test_a_bad_searched_trainer_field_is_said_with_the_files_other_errors(tmp_path, shakespeare,
                                                                          capsys):
    study = tiny_study(tmp_path, shakespeare)
    study["sampler"] = {"name": "tpee"}
    study["search"]["other"] = {"optim.beta3": {"value": 0.9}, "model.norm": {"prior": "auto"}}
    path = write_study(tmp_path, study)
    assert main(["validate", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    # Rule: every error at once: the searched fields' came in a round of their own, once the
    # sampler's typo was fixed.
    assert f"3 error(s) in {path}" in out, out
    for line in ("search.other.optim.beta3: unknown trainer field 'beta3' (did you mean "
                 "'optim.beta2'?)", "search.other.model.norm: prior: auto exists for lr",
                 "sampler.name: Input should be 'tpe'"):
        assert line in out, out


def test_a_sampler_or_pruner_given_by_its_name_alone_is_that_one(tmp_path, shakespeare):
    # validate's notes say "or pruner: none"; written so, it was refused as "expected a mapping
    # with name: one of ... 'none' (got 'none')".
    study = tiny_study(tmp_path, shakespeare, pruner="none", sampler="random")
    cfg = validate_study(study)
    assert (cfg.pruner.name, cfg.sampler.name) == ("none", "random")
    with pytest.raises(ConfigError, match=r"pruner.name: Input should be 'median'.* \(got 'nope'\)"):
        validate_study({**study, "pruner": "nope"})


def test_a_saved_dataset_beside_the_study_file_validates_and_dry_runs_from_any_folder(
        tmp_path, shakespeare, capsys, monkeypatch):
    # `dataset: corpus`, a folder saved with save_to_disk beside the study file, was looked for
    # in the folder the command ran in, and load_dataset refused it ("use load_from_disk").
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    home = tmp_path / "project"
    home.mkdir()
    text = shakespeare.read_text()[:120_000]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"body": [text[i:i + 4_000] for i in range(0, len(text), 4_000)]})}).save_to_disk(
        str(home / "corpus"))
    study = tiny_study(home, shakespeare)
    study["data"] = {"source": "hf", "dataset": "corpus", "text_column": "content",
                     "cache_dir": "tokens", "tokenizer": "byte", "val_windows": 16}
    path = write_study(home, study)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["validate", str(path)]) == 2
    assert (f"data.text_column: 'content' is not a column of {str(home / 'corpus')!r}, which "
            "has ['body']") in " ".join(capsys.readouterr().err.split())
    study["data"]["text_column"] = "body"
    path = write_study(home, study)
    assert main(["validate", str(path)]) == 0
    assert main(["run", str(path), "--dry-run"]) == 0
    assert (home / "tokens").is_dir() and not (elsewhere / "tokens").exists()


def test_a_locked_storage_is_not_asked_whether_it_is_an_optuna_storage(tmp_path):
    import sqlite3

    from scaletune.search.storage import cannot_read

    url = f"sqlite:///{tmp_path / 'study.db'}"
    locked = RuntimeError("wrapped")
    locked.__cause__ = sqlite3.OperationalError("database is locked")
    line = cannot_read(locked, url, "cannot list the studies in")
    assert line == f"storage: cannot list the studies in {url}: database is locked"
    other = RuntimeError("wrapped")
    other.__cause__ = sqlite3.OperationalError("no such table: studies")
    assert "(is it an Optuna storage?)" in cannot_read(other, url, "cannot open")
    # A read-only file with the journal of a write that failed beside it: SQLite must write to
    # read it. It was asked whether it is an Optuna storage.
    readonly = RuntimeError("wrapped")
    readonly.__cause__ = sqlite3.OperationalError("attempt to write a readonly database")
    (tmp_path / "study.db-journal").write_bytes(b"\0" * 512)
    line = cannot_read(readonly, url, "cannot open")
    assert line == (f"storage: cannot open {url}: attempt to write a readonly database (a write "
                    f"to it failed and left {tmp_path / 'study.db'}-journal, which SQLite must "
                    "roll back before it reads the file: make the file and its folder writable)")


def test_an_empty_server_database_says_no_study_ran_there():
    from scaletune.search.storage import cannot_read

    url = "postgresql://me:secret@127.0.0.1:5432/studies"
    empty = RuntimeError("wrapped")
    empty.__cause__ = RuntimeError('relation "version_info" does not exist')
    assert cannot_read(empty, url, "cannot list the studies in") == (
        "storage: cannot list the studies in postgresql://me:***@127.0.0.1:5432/studies: it "
        "holds no Optuna tables: no study has run there (`scaletune run STUDY.yaml` of a study "
        "stored there creates them: its file's storage, or --storage)")


def test_a_postgresql_driver_the_extra_does_not_install_is_named(capsys):
    import importlib.util

    from scaletune.search.cli import main

    if importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg is installed here")
    assert main(["studies", "--storage", "postgresql+psycopg://me:secret@127.0.0.1:1/db"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    # It said pip install "scaletune[postgres]", which installs psycopg2, not psycopg.
    assert ("the Python driver of postgresql+psycopg:// is not installed: install psycopg, "
            "or write postgresql://") in err, err


@pytest.mark.parametrize("key, value", [("study_dir", "d" * 10_000),
                                        ("priors", {"laws": "fitted",
                                                    "fitted_file": "f" * 10_000 + ".json"})])
def test_a_path_too_long_for_the_file_system_is_an_error_not_a_traceback(tmp_path, shakespeare,
                                                                         capsys, key, value):
    # OSError "File name too long" where the path was first looked at: a traceback, exit 1.
    path = write_study(tmp_path, {**tiny_study(tmp_path, shakespeare), key: value})
    assert main(["validate", str(path)]) == 2
    err = flat(capsys.readouterr().err)
    assert "a path is longer than the file system allows (File name too long): " in err, err
    assert len(err) < 400  # the path cut to a line


def test_a_storage_deleted_as_the_study_ran_says_how_to_start_again(tmp_path, shakespeare):
    from scaletune.search.runner import _write_failed

    # Its folder gone too, where the file named it: "run the same command to start it again"
    # was refused, since run makes no folder but the default runs/.
    for storage, said in ((tmp_path / "gone" / "s.db", "run the same command to start it again "
                           f"once its folder {tmp_path / 'gone'} is made again (run makes the "
                           "default runs/ folder only)."),
                          (None, "run the same command to start it again.")):
        study = tiny_study(tmp_path, shakespeare)
        if storage is not None:
            study["storage"] = f"sqlite:///{storage}"
        cfg = validate_study(study)
        error = _write_failed(cfg, {}, "a trial's report", Exception("disk I/O error"))
        assert "is no longer there (deleted while the study ran?)" in error.errors[0]
        assert error.errors[0].endswith(said), error.errors[0]


def test_a_huge_value_is_cut_in_the_errors_that_quote_it(tmp_path, shakespeare, capsys):
    # A 10 KB tokenizer name, or option value, was echoed whole by the errors that quote it
    # (where the schema's own errors cut it to a line); the advice around it stays.
    study = tiny_study(tmp_path, shakespeare)
    study["data"] = {**study["data"], "tokenizer": "x" * 10_000}
    assert main(["validate", str(write_study(tmp_path, study))]) == 2
    err = capsys.readouterr().err
    assert len(err) < 1_000 and "x" * 100 + "..." + "x" * 50 in err, err
    assert "it takes 'byte', a tiktoken encoding name" in flat(err)
    with pytest.raises(SystemExit):
        main(["run", "--n-trials", "z" * 10_000, "study.yaml"])
    err = capsys.readouterr().err
    assert len(err) < 1_000 and "argument --n-trials: expected a whole number" in err, len(err)
    with pytest.raises(SystemExit):  # the same for a count of tokens
        main(["export", "study.yaml", "--tokens", "z" * 10_000, "-o", "final.yaml"])
    err = capsys.readouterr().err
    assert len(err) < 1_000 and "argument --tokens: expected a whole number of tokens" in err
