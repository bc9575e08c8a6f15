"""What a person reads when a training file is wrong: one line per problem, naming the key as the
file spells it, what is allowed (the closest key when one is misspelt) and the value given; and
the data files a config names, checked without reading them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from scaletune.trainer.config import (
    DataConfig,
    TrainConfig,
    format_errors,
    load_train_config,
    text_files,
    unknown_key,
)
from scaletune.trainer.errors import ConfigError


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate(raw)
    return format_errors(err.value, TrainConfig)


@pytest.mark.parametrize("raw, expected", [
    ({"tokenz": 3}, "tokenz: unknown key; allowed: model, data, optim, tokens, "),
    ({"optim": {"warmup": 0.1}}, "optim.warmup: unknown key; allowed: name, lr, "),
    ({"model": {"n_embed": 64}}, "model.n_embed: unknown key; allowed: n_layer, "),
])
def test_a_misspelt_key_suggests_the_closest_after_the_allowed_ones(raw, expected):
    (line,) = errors_of(raw)
    assert line.startswith(expected), line
    meant = {"tokenz": "tokens", "optim.warmup": "warmup_frac", "model.n_embed": "n_embd"}
    assert line.endswith(f"; did you mean {meant[line.split(':')[0]]}?"), line


def test_unknown_key_guesses_only_a_close_key():
    assert unknown_key("optim", "wd", ["lr", "weight_decay"]) == (
        "optim.wd: unknown key; allowed: lr, weight_decay")
    assert unknown_key("", "Seed", ["seed", "tokens"]) == (
        "Seed: unknown key; allowed: seed, tokens; did you mean seed?")
    # A key that begins one allowed key as a whole word is taken for it; for two, for neither.
    assert unknown_key("", "batch", ["batch_size", "seed"]).endswith("; did you mean batch_size?")
    assert "did you mean" not in unknown_key("", "batch", ["batch_size", "batch_tokens"])
    assert "did you mean" not in unknown_key("", "bat", ["batch_size"])


@pytest.mark.parametrize("raw, expected", [
    ({"optim": {"name": "adam"}},
     "optim.name: Input should be 'adamw', 'sgd' or 'muon' (got 'adam'); did you mean 'adamw'?"),
    ({"optim": {"lr": "fast"}}, "optim.lr: expected a number, such as 0.5 or 3e-4 (got 'fast')"),
    ({"optim": {"warmup_frac": 1.5}}, "optim.warmup_frac: must be in [0, 1) (got 1.5)"),
    ({"batch_size": 0}, "batch_size: must be >= 1 (got 0)"),
    ({"optim": {"grad_clip": 0}}, "optim.grad_clip: must be > 0 (got 0); null turns clipping off"),
    ({"compile": "maybe"}, "compile: expected true or false (got 'maybe')"),
    ({"tokens": "lots"}, "tokens: Input should be a valid integer, a whole number such as 2e6, "
                         "2_000_000, 2000000 or 2M (got 'lots')"),
    ({"tokens": "1.0005k"}, "tokens: Input should be a valid integer, a whole number such as 2e6, "
                            "2_000_000, 2000000 or 2M (got 1000.5)"),
    ({"model": 3}, "model: expected a mapping with keys among: n_layer, n_head, n_embd, "
                   "block_size, vocab_size, positions, rope_theta, norm, qkv_bias, bias, "
                   "tie_weights, dropout, embd_dropout, attn_dropout, resid_dropout, mlp_dropout, "
                   "init_std (got 3)"),
    ({"data": {"data_files": 3}}, "data.data_files: expected text or a list (got 3)"),
    ({"out_dir": 3}, "out_dir: expected text; put it in quotes (got 3)"),
], ids=["literal", "float", "range", "lower bound", "clip at zero", "bool", "tokens",
        "tokens not whole", "section", "union", "text"])
def test_each_error_reads_as_advice_with_the_value_last(raw, expected):
    assert errors_of(raw) == [expected]


def test_a_list_of_the_wrong_items_names_each_item_not_the_union():
    # data_files is text or a list of text: a list whose items are numbers is a list, so the
    # items are named, not "expected text" for the whole list.
    assert errors_of({"data": {"data_files": ["a.txt", 2]}}) == [
        "data.data_files[1]: expected text; put it in quotes (got 2)"]


def test_a_training_file_shows_the_same_lines(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"tokenz": 1000, "optim": {"name": "adam"}}))
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert err.value.source == str(path)
    assert [e.split(":")[0] for e in err.value.errors] == ["optim.name", "tokenz"]
    assert err.value.errors[1].endswith("; did you mean tokens?")


def test_the_run_checks_give_every_error_at_once():
    # The batch error hid the fsdp one until the batch was fixed.
    errors = errors_of({"parallel": "fsdp", "optim": {"name": "muon"}, "batch_size": 8,
                        "micro_batch_size": 3, "tokens": 100})
    assert [e.split(",")[0].split(":")[0] for e in errors] == [
        "batch_size must be a multiple of micro_batch_size", "tokens", "parallel"], errors


def test_a_validators_own_message_is_kept_and_names_its_key():
    assert errors_of({"model": {"n_head": 3}}) == [
        "model: n_head must divide n_embd, got n_embd=256, n_head=3"]
    assert errors_of({"data": {"source": "text"}}) == [
        "data.path is required when data.source is 'text'"]


# --------------------------------------------------------------------------- files named


def test_text_files_are_a_globs_sorted_matches_or_the_one_file(tmp_path: Path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    assert text_files(str(tmp_path / "*.txt")) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert text_files(str(tmp_path / "a.txt")) == [str(tmp_path / "a.txt")]
    with pytest.raises(ValueError, match="no file matches"):
        text_files(str(tmp_path / "*.md"))


def test_file_errors_name_each_missing_file_once_with_its_key(tmp_path: Path):
    (tmp_path / "here.json").write_text("{}")
    text = DataConfig(source="text", path="nowhere.txt").resolved(tmp_path)
    assert text.file_errors() == [f"data.path: file not found: '{tmp_path}/nowhere.txt'"]
    local = DataConfig(source="hf", dataset="json",
                       data_files=["here.json", "gone.json", "*.jsonl"])
    assert local.resolved(tmp_path).file_errors() == [
        f"data.data_files: file not found: '{tmp_path}/gone.json'",
        f"data.data_files: no file matches '{tmp_path}/*.jsonl'",
    ]
    # A hub dataset's data_files are files in its repository, URLs are fetched: not looked for.
    assert DataConfig(source="hf", dataset="user/set", data_files="x.json").file_errors() == []
    assert DataConfig(source="hf", dataset="json",
                      data_files="https://example.org/a.json").file_errors() == []
    assert DataConfig().file_errors() == []


def test_without_the_root_model_a_line_still_reads_as_advice():
    # A caller that does not pass the model gets pydantic's key, with the plain message.
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({"batch_size": 0, "compile": "maybe"})
    assert format_errors(err.value) == ["batch_size: must be greater than or equal to 1 (got 0)",
                                        "compile: expected true or false (got 'maybe')"]


@pytest.mark.parametrize("kind", ["ConfigError", "StorageError"])
def test_an_error_with_its_lines_survives_pickling_as_a_process_pool_or_ray_sends_it(kind):
    import pickle

    from scaletune.trainer import errors

    error = getattr(errors, kind)("ladder.yaml", ["rungs[1].tokens_per_trial: must be > 0",
                                                 "target: no such file"])
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.source, back.errors, str(back)) == (error.source, error.errors, str(error))


def test_a_training_config_built_in_python_is_validated_as_a_file_is(tmp_path, monkeypatch):
    from scaletune.trainer import validate_train_config

    # TrainConfig(**d) raises pydantic's own error: no allowed keys, no "did you mean".
    with pytest.raises(ConfigError) as info:
        validate_train_config({"model": {"n_layers": 2}, "tokens": 4096})
    assert info.value.source == "<training config>"
    assert info.value.errors[0].startswith("model.n_layers: unknown key; allowed: n_layer, ")
    assert info.value.errors[0].endswith("did you mean n_layer?")
    # Relative paths are the folder's it was validated in, not the one it later runs in.
    monkeypatch.chdir(tmp_path)
    cfg = validate_train_config({"tokens": 4096, "out_dir": "run", "data": {"path": "a.txt"}})
    assert (cfg.out_dir, cfg.data.path) == (str(tmp_path / "run"), str(tmp_path / "a.txt"))
