import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from scaletune.trainer.cli import check_launch, torchrun_command, train_main
from scaletune.trainer.config import load_train_config
from scaletune.trainer.errors import ConfigError
from tests import forked

REPO = Path(__file__).resolve().parents[2]
SEED_STUDIES = sorted((REPO / "studies").glob("seed000_*.yaml"))


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_unknown_keys_are_errors_that_name_the_key(tmp_path):
    path = write(tmp_path, {"model": {"n_layers": 6}, "optim": {"lr": -1}, "tokenz": 5})
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    # The rule: every problem at once, each naming its dotted key.
    assert any(e.startswith("model.n_layers: unknown key") for e in err.value.errors)
    assert any(e.startswith("tokenz: unknown key") for e in err.value.errors)
    assert any(e.startswith("optim.lr:") and "-1" in e for e in err.value.errors)


def test_a_budget_below_one_step_is_an_error_that_names_the_step(tmp_path):
    path = write(tmp_path, {"tokens": 100, "batch_size": 4, "model": {"block_size": 64}})
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    # Rule: a run trains whole steps; a budget below one would train more than it says.
    assert err.value.errors == [
        "tokens: 100 is less than one optimizer step (batch_size 4 x block_size 64 = 256 "
        "tokens): a run trains whole steps, so it would train more than it says; give tokens "
        "of at least 256, or a smaller batch_size"]


def test_token_counts_read_as_a_study_file_reads_them(tmp_path):
    # PyYAML reads 2e6 as a string; a training file takes it, and 2_000_000, as a study does.
    path = tmp_path / "run.yaml"
    path.write_text("tokens: 2e6\neval_every_tokens: 200_000\ncheckpoint_every_tokens: '1e6'\n")
    cfg = load_train_config(path)
    assert (cfg.tokens, cfg.eval_every_tokens, cfg.checkpoint_every_tokens) == (
        2_000_000, 200_000, 1_000_000)
    # And with a suffix, as counts of tokens are usually written: k, M, B (or G), T.
    path.write_text("tokens: 20M\neval_every_tokens: 2.5k\ncheckpoint_every_tokens: 1b\n")
    cfg = load_train_config(path)
    assert (cfg.tokens, cfg.eval_every_tokens, cfg.checkpoint_every_tokens) == (
        20_000_000, 2_500, 1_000_000_000)
    path.write_text("tokens: lots\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert err.value.errors[0].startswith("tokens:") and "'lots'" in err.value.errors[0]


def test_train_main_prints_every_error_and_returns_2(tmp_path, capsys):
    path = write(tmp_path, {"model": {"n_layers": 6}, "batch": 3})
    assert train_main(str(path)) == 2
    err = capsys.readouterr().err
    assert "model.n_layers: unknown key" in err and "batch: unknown key" in err


def test_a_closed_output_stops_the_run_without_a_traceback_and_it_resumes(tmp_path,
                                                                          shakespeare):
    # `scaletune train F.yaml 2>&1 | head -2`: the run died at its next line, exit code 1, with
    # nothing said; `... | true` (no reader for the summary): a BrokenPipeError traceback
    # after a run that had completed.
    path = write(tmp_path, {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "c")},
        "batch_size": 4, "tokens": 4 * 16 * 400, "eval_every_tokens": 4 * 16 * 10,
        "checkpoint_every_tokens": 4 * 16 * 20, "progress": True, "num_threads": 1,
        "out_dir": "out"})
    command = [sys.executable, "-m", "scaletune.search.cli", "train", str(path)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        proc.stdout.readline()  # "training 400 steps ...": then no reader
        proc.stdout.close()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1
    # What it trained is kept: the same command with --resume ends it.
    done = forked.run(*command[1:], "--resume", timeout=120)  # tests/forked.py
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "Traceback" not in done.stderr
    # Stdout closed before the summary, stderr open: said there, exit code of the run.
    again = subprocess.run(f"set -o pipefail; {shlex.join(command)} --overwrite | true",
                           shell=True, executable="/bin/bash", cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0
    assert (f"{path}: the output was closed before the summary (a broken pipe); the run "
            "completed") in again.stderr
    assert "Traceback" not in again.stderr, again.stderr


def test_train_notes_data_fields_its_source_does_not_read(tmp_path, shakespeare, capsys):
    path = write(tmp_path, {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "dataset": "json",
                 "cache_dir": str(tmp_path / "cache")},
        "batch_size": 4, "tokens": 4 * 4 * 16, "progress": False, "num_threads": 1})
    assert train_main(str(path)) == 0
    # Rule: as validate says it (train trained on the text file without a word).
    err = " ".join(capsys.readouterr().err.split())
    assert "note: data.dataset: read only when data.source is 'hf'" in err, err


def test_bfloat16_on_a_cpu_without_bfloat16_arithmetic_is_noted_by_train_and_validate(
        tmp_path, shakespeare, capsys, monkeypatch):
    from scaletune.search.manage import validate_file
    from scaletune.trainer import kernels

    # It trained 5.6x slower than float32 on an AVX2 CPU without a word. The CPU under test
    # may compute in bfloat16: here it does not (its flags: test_kernels.py).
    monkeypatch.setattr(kernels, "cpu_bf16_arithmetic", lambda cpuinfo=None: False)
    raw = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
           "data": {"source": "text", "path": str(shakespeare),
                    "cache_dir": str(tmp_path / "cache")},
           "batch_size": 4, "tokens": 4 * 4 * 16, "progress": False, "num_threads": 1,
           "device": "cpu", "dtype": "bfloat16"}
    said = ("dtype: bfloat16 on this machine's CPU, which has no bfloat16 arithmetic (its flags "
            "name neither avx512_bf16 nor amx_bf16): torch emulates it")
    path = write(tmp_path, raw)
    assert train_main(str(path)) == 0
    assert f"note: {said}" in " ".join(capsys.readouterr().err.split())
    assert said in " ".join(validate_file(str(path))[1])
    # float32, or a run on a GPU, is not noted.
    for other in ({"dtype": "float32"}, {"dtype": "auto"}, {"device": "cuda"}):
        assert not [n for n in validate_file(str(write(tmp_path, raw | other)))[1]
                    if "bfloat16" in n], other


def test_train_notes_a_validation_split_too_small_for_its_windows(tmp_path, shakespeare,
                                                                   capsys):
    # A study's run and validate said it; `scaletune train` trained on 70 tokens of validation
    # for 64 windows of 33 without a word.
    (tmp_path / "small.txt").write_bytes(shakespeare.read_bytes()[:3_000])
    path = write(tmp_path, {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
        "data": {"source": "text", "path": str(tmp_path / "small.txt"), "val_windows": 64,
                 "cache_dir": str(tmp_path / "cache")},
        "batch_size": 4, "tokens": 4 * 4 * 32, "progress": False, "num_threads": 1})
    assert train_main(str(path)) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert ("note: data: the validation split holds 300 tokens (val_fraction 0.1 of the data), "
            "fewer than its 64 windows of block_size + 1 = 33 tokens would cover (2,112)") in err, err


def test_validate_refuses_a_vocabulary_smaller_than_the_tokenizers(tmp_path, capsys):
    from scaletune.search.cli import main

    path = write(tmp_path, {"model": {"vocab_size": 100}, "data": {"source": "builtin"},
                            "tokens": 4096})
    # Rule: what train refuses, validate finds (it said ok).
    assert main(["validate", str(path)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert ("model.vocab_size: 100 is smaller than the tokenizer's 256 tokens (byte), so no run "
            "could embed them") in out, out


def test_train_main_reports_a_missing_data_file(tmp_path, capsys):
    path = write(tmp_path, {"data": {"source": "text", "path": "missing.txt"}})
    assert train_main(str(path)) == 2
    assert str(tmp_path / "missing.txt") in capsys.readouterr().err


def test_train_main_trains_and_resumes(tmp_path, shakespeare, capsys):
    cfg = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "cache")},
        "batch_size": 4, "tokens": 10 * 4 * 16, "progress": False, "num_threads": 1,
        "out_dir": "out",  # relative to the YAML file
    }
    path = write(tmp_path, cfg)
    assert train_main(str(path)) == 0
    out = capsys.readouterr().out
    assert "completed" in out and "val loss" in out and "tokens/s" in out
    assert (tmp_path / "out" / "checkpoint.pt").exists()
    assert train_main(str(path), resume=True) == 0  # already finished: nothing left to train
    events = [json.loads(ln)["event"] for ln in (tmp_path / "out" / "metrics.jsonl").open()]
    assert (events.count("start"), events[-1]) == (1, "end")  # nothing logged for the no-op

    # The same command again, without --resume, would start over: refused, the run kept as it is.
    ckpt = tmp_path / "out" / "checkpoint.pt"
    kept = ckpt.read_bytes()
    capsys.readouterr()
    assert train_main(str(path)) == 2
    err = capsys.readouterr().err
    # Rule: said to be this config's finished run (it said "add --resume to continue that run",
    # and --resume had nothing to train).
    assert (f"out_dir {tmp_path / 'out'} holds this config's run, finished: nothing is left to "
            "train (--resume says so); --overwrite trains it again from scratch and replaces "
            "it, or set another out_dir to keep it") in " ".join(err.split()), err
    assert ckpt.read_bytes() == kept
    # A copy of the file with another lr, the same out_dir: it suggested --overwrite, which
    # would have replaced the first run; it is said to be another config's run.
    variant = tmp_path / "variant.yaml"
    variant.write_text(yaml.safe_dump({**cfg, "optim": {**cfg.get("optim", {}), "lr": 1e-4}}))
    assert train_main(str(variant)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"out_dir {tmp_path / 'out'} holds the checkpoint of a run of another config "
            "(optim.lr: ") in err and "-> 0.0001): set another out_dir for this run (--overwrite " \
        "would replace that run)" in err, err
    assert ckpt.read_bytes() == kept
    # --overwrite trains from scratch and replaces it, with a fresh metrics log; other files stay.
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert train_main(str(path), overwrite=True) == 0
    assert "completed" in capsys.readouterr().out
    events = [json.loads(ln)["event"] for ln in (tmp_path / "out" / "metrics.jsonl").open()]
    assert events.count("start") == 1 and events.count("end") == 1
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("path", SEED_STUDIES, ids=lambda p: p.name)
def test_shipped_seed000_configs_validate(path):
    cfg = load_train_config(path)
    assert Path(cfg.data.path).exists(), cfg.data.path
    assert cfg.model.n_layer == 6 and cfg.model.n_head == 8 and cfg.data.tokenizer == "byte"


def test_both_seed000_configs_are_shipped():
    assert [p.name for p in SEED_STUDIES] == ["seed000_baseline.yaml", "seed000_recommended.yaml"]


def test_trainer_imports_neither_optuna_nor_ray():
    code = ("import sys, scaletune.trainer, scaletune.trainer.checkpoint, scaletune.trainer.cli, "
            "scaletune.trainer.data, scaletune.trainer.distributed, scaletune.trainer.loop, "
            "scaletune.trainer.model, scaletune.trainer.optim, scaletune.trainer.record; "
            "print(sorted(m for m in ('optuna', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_trainer_imports_sharding_and_its_checkpoints_only_when_a_run_needs_them():
    # torch.distributed.tensor and .checkpoint take about a second to import, which every trial
    # (one process, no checkpoint) would pay before its first step.
    code = ("import sys, scaletune.trainer.loop, scaletune.trainer.cli; print(sorted(m for m in "
            "('torch.distributed.tensor', 'torch.distributed.checkpoint', "
            "'torch.distributed.fsdp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_relative_local_paths_resolve_against_the_config_file(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "final.yaml"
    common = {"tokens": 4096, "out_dir": "runs/final"}
    path.write_text(yaml.safe_dump({**common, "data": {
        "source": "hf", "dataset": "json", "data_files": ["a.jsonl", "/abs/b.jsonl",
                                                           "hf://datasets/x/y/c.jsonl"]}}))
    cfg = load_train_config(path)
    # Local files of a local builder are relative to the YAML; absolute paths and URLs stay.
    assert cfg.data.data_files == [str(folder / "a.jsonl"), "/abs/b.jsonl",
                                   "hf://datasets/x/y/c.jsonl"]
    assert cfg.out_dir == str(folder / "runs" / "final")
    # A hub dataset's data_files name files in its repository: left as written.
    path.write_text(yaml.safe_dump({**common, "data": {
        "source": "hf", "dataset": "org/corpus", "data_files": "sample/000.parquet"}}))
    assert load_train_config(path).data.data_files == "sample/000.parquet"
    path.write_text(yaml.safe_dump({**common, "data": {"source": "text", "path": "t.txt"}}))
    assert load_train_config(path).data.path == str(folder / "t.txt")
    # A path under the home folder is the user's, wherever the YAML is.
    path.write_text(yaml.safe_dump({**common, "out_dir": "~/runs/final",
                                    "data": {"source": "text", "path": "~/t.txt"}}))
    home = Path.home()
    cfg = load_train_config(path)
    assert (cfg.data.path, cfg.out_dir) == (str(home / "t.txt"), str(home / "runs" / "final"))


def test_runs_that_cannot_start_as_asked_exit_with_2_and_one_line(tmp_path, shakespeare, capsys,
                                                                 monkeypatch):
    base = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "cache")},
        "batch_size": 4, "tokens": 4 * 4 * 16, "progress": False, "num_threads": 1, "out_dir": "out",
    }
    small_vocab = write(tmp_path, {**base, "model": {**base["model"], "vocab_size": 100}})
    assert train_main(str(small_vocab)) == 2
    assert "model.vocab_size must cover the tokenizer's 256 tokens" in capsys.readouterr().err
    path = write(tmp_path, base)
    assert train_main(str(path)) == 0
    kept = (tmp_path / "out" / "checkpoint.pt").read_bytes()
    changed = write(tmp_path, {**base, "optim": {"lr": 1e-3}})
    capsys.readouterr()
    assert train_main(str(changed), resume=True) == 2
    err = capsys.readouterr().err
    assert ("different config; changed: optim.lr: 0.0003 -> 0.001: undo the change to resume, "
            "or start the run afresh (--overwrite, or another out_dir)") in err, err
    assert "Traceback" not in err
    assert (tmp_path / "out" / "checkpoint.pt").read_bytes() == kept
    # A value the file leaves out is said as the file writes it: null, not Python's None.
    assert train_main(str(write(tmp_path, {**base, "max_loss": 3.0})), resume=True) == 2
    assert "changed: max_loss: null -> 3.0:" in capsys.readouterr().err
    # TensorBoard scalars without the package (an optional extra): a traceback, exit code 1,
    # and under --overwrite the run it was to replace already deleted.
    from scaletune.search.cli import main

    board = write(tmp_path, {**base, "tensorboard": True})
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    for command in (["train", str(board), "--overwrite"], ["validate", str(board)]):
        assert main(command) == 2, command
        err = " ".join(capsys.readouterr().err.split())
        assert ('tensorboard: true needs the tensorboard package, which is not installed: pip '
                'install "scaletune[tensorboard]", or set tensorboard: false') in err, err
    assert (tmp_path / "out" / "checkpoint.pt").read_bytes() == kept


def test_a_resume_takes_moved_validation_text_and_names_a_changed_data_key(tmp_path, shakespeare,
                                                                          capsys):
    from scaletune.trainer.loop import train

    text = shakespeare.read_text()[:120_000]
    for name, part in (("tr.txt", text[:100_000]), ("va.txt", text[100_000:]),
                       ("va-copy.txt", text[100_000:]), ("other.txt", text[20_000:])):
        (tmp_path / name).write_text(part)
    base = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
            "data": {"source": "text", "path": "tr.txt", "val_path": "va.txt",
                     "cache_dir": str(tmp_path / "cache")},
            "batch_size": 4, "tokens": 8 * 4 * 16, "eval_every_tokens": 2 * 4 * 16,
            "progress": False, "num_threads": 1, "out_dir": "out"}
    stopped = train(load_train_config(write(tmp_path, base)), report=lambda *_: "stop")
    assert stopped.status == "stopped" and (tmp_path / "out" / "checkpoint.pt").exists()
    # The validation text moved (the same text): refused as a changed config, where a moved
    # training text resumed.
    moved = write(tmp_path, {**base, "data": {**base["data"], "val_path": "va-copy.txt"}})
    assert train_main(str(moved), resume=True) == 0, capsys.readouterr().err
    capsys.readouterr()
    # Other text: the key that changed is named (it said the data's files had changed).
    (tmp_path / "out" / "checkpoint.pt").unlink()
    train(load_train_config(write(tmp_path, base)), report=lambda *_: "stop", overwrite=True)
    other = write(tmp_path, {**base, "data": {**base["data"], "path": "other.txt"}})
    assert train_main(str(other), resume=True) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"(with data.path: '{tmp_path / 'tr.txt'}' -> '{tmp_path / 'other.txt'}'): undo the "
            "change to resume") in err, err
    # Moved training text with the same text and other validation text: only the one that
    # reads otherwise is named.
    (tmp_path / "tr-copy.txt").write_text(text[:100_000])
    both = write(tmp_path, {**base, "data": {**base["data"], "path": "tr-copy.txt",
                                             "val_path": "other.txt"}})
    assert train_main(str(both), resume=True) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"(with data.val_path: '{tmp_path / 'va.txt'}' -> '{tmp_path / 'other.txt'}'): "
            "undo the change to resume") in err, err


def test_nesterov_without_momentum_is_a_config_error(tmp_path):
    path = write(tmp_path, {"optim": {"name": "sgd", "nesterov": True, "beta1": 0}})
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    assert err.value.errors == ["optim.nesterov needs momentum: set optim.beta1 (the SGD momentum) "
                                "above 0, or optim.nesterov to false"]


def test_parallel_takes_ddp_or_fsdp_and_fsdp_refuses_muon(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_train_config(write(tmp_path, {"parallel": "zero3"}))
    assert err.value.errors == ["parallel: Input should be 'ddp' or 'fsdp' (got 'zero3')"]
    # Muon orthogonalizes whole matrices; a sharded process holds a slice of each.
    with pytest.raises(ConfigError) as err:
        load_train_config(write(tmp_path, {"parallel": "fsdp", "optim": {"name": "muon"}}))
    assert err.value.errors[0].startswith("parallel: fsdp shards every weight matrix")
    assert load_train_config(write(tmp_path, {"parallel": "fsdp"})).parallel == "fsdp"


def test_the_torchrun_command_of_one_machine_and_of_several():
    one = torchrun_command("final.yaml", 4)
    assert one[1:] == ["-m", "scaletune.trainer.torchrun", "--nproc-per-node=4", "--standalone", "-m",
                       "scaletune.trainer.rank", "final.yaml"]
    # Every node runs the same command but for its node rank; they meet at node 0's host:port.
    node = torchrun_command("final.yaml", 8, nnodes=2, node_rank=1, rdzv_endpoint="node0:29500")
    assert node[1:] == ["-m", "scaletune.trainer.torchrun", "--nproc-per-node=8", "--nnodes=2",
                        "--node-rank=1", "--rdzv-endpoint=node0:29500", "-m",
                        "scaletune.trainer.rank", "final.yaml"]


@pytest.mark.parametrize(("options", "error"), [
    ({"nproc": 0}, "--nproc-per-node must be 1 or more, got 0"),
    ({"nnodes": 0}, "--nnodes must be 1 or more, got 0"),
    ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, "--node-rank must be in 0..1"),
    ({"nnodes": 2}, "--rdzv-endpoint is needed with --nnodes above 1"),
    ({"nnodes": 2, "rdzv_endpoint": "node0"}, "--rdzv-endpoint must be host:port"),
    ({"nnodes": 2, "rdzv_endpoint": "node0:99999"}, "--rdzv-endpoint must be host:port"),
    ({"rdzv_endpoint": "node0:29500"}, "--rdzv-endpoint is for runs over several machines"),
])
def test_bad_launch_options_name_the_option(options, error):
    args = {"nproc": 2, "nnodes": 1, "node_rank": 0, "rdzv_endpoint": None, **options}
    errors = check_launch(**args)
    assert len(errors) == 1 and errors[0].startswith(error)


def test_a_bad_launch_exits_with_2_before_starting_torchrun(tmp_path, capsys):
    from scaletune.search.cli import main

    assert main(["train", str(write(tmp_path, {})), "--nnodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "--rdzv-endpoint is needed with --nnodes above 1" in err and "launching" not in err


def test_torchruns_spelling_of_the_launch_options_is_taken_and_unknown_ones_name_the_command(
        tmp_path, capsys):
    from scaletune.search.cli import main

    # torchrun spells them --nproc_per_node etc.: "unrecognized arguments" under the list of
    # every command's usage.
    assert main(["train", str(write(tmp_path, {})), "--nproc_per_node", "2", "--nnodes", "2"]) == 2
    assert "--rdzv-endpoint is needed with --nnodes above 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["train", "final.yaml", "--n-trials", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "usage: scaletune train [-h]" in err and "scaletune train: error: unrecognized " \
        "arguments: --n-trials 2" in err, err
    # The trainer's own module names itself as an installed package runs it (there is no
    # top-level `trainer` module outside the source checkout).
    module = subprocess.run([sys.executable, "-m", "scaletune.trainer.cli", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert module.stdout.startswith("usage: python -m scaletune.trainer.cli "), module.stdout


@pytest.mark.parametrize(("name", "says"), [
    ("quickstart.yaml", "a study file (n_trials, tokens_per_trial, search), not a training "
                        "config: search with `scaletune run {path}`; then `scaletune export {path} "
                        "-o final.yaml` writes the training config of its best trial"),
    ("quickstart-ladder.yaml", "a ladder file (target, rungs), not a training config: search "
                               "with `scaletune ladder {path}`"),
])
@pytest.mark.parametrize("nproc", [1, 2])
def test_a_study_or_ladder_file_given_to_train_says_which_command_takes_it(
        name, says, nproc, capsys):
    from scaletune.search.cli import main

    path = REPO / "studies" / name
    assert main(["train", str(path), "--nproc-per-node", str(nproc)]) == 2
    err = capsys.readouterr().err
    # One error that names the file's kind and the command, not a line per key a run lacks;
    # and on N processes, said once, before torchrun starts ranks that would each say it.
    assert f"1 error(s) in {path}:" in err and says.format(path=path) in err
    assert "unknown key" not in err and "launching" not in err


def test_a_launch_into_a_folder_with_a_checkpoint_is_refused_before_torchrun(tmp_path, capsys):
    from scaletune.search.cli import main

    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"a run's")
    path = write(tmp_path, {"tokens": 4096, "out_dir": str(out)})
    assert main(["train", str(path), "--nproc-per-node", "2"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run's checkpoint; add --resume" in err and "launching" not in err
    assert (out / "checkpoint.pt").read_bytes() == b"a run's"


def test_a_rendezvous_host_that_does_not_resolve_is_refused_before_torchrun(tmp_path, capsys):
    import socket

    from scaletune.search.cli import main

    try:  # a resolver that answers for any name would hand torchrun an address to wait on
        socket.getaddrinfo("no-such-head.invalid", None)
        pytest.skip("this machine's resolver answers for names under .invalid")
    except socket.gaierror:
        pass
    # torchrun retried such a host for its whole rendezvous timeout, printing socket warnings.
    assert main(["train", str(write(tmp_path, {})), "--nnodes", "2", "--node-rank", "1",
                 "--rdzv-endpoint", "no-such-head.invalid:29500"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--rdzv-endpoint: the host no-such-head.invalid is not known on this machine" in err
    assert "launching" not in err


def test_a_rendezvous_port_in_use_is_refused_before_torchrun_on_node_0(tmp_path, capsys):
    # Another node 0 waits there (a second machine started without its --node-rank): torchrun
    # failed on EADDRINUSE in a traceback of 46 lines, exit 1.
    import socket

    from scaletune.search.cli import main

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        endpoint = f"127.0.0.1:{held.getsockname()[1]}"
        assert main(["train", str(write(tmp_path, {})), "--nnodes", "2",
                     "--rdzv-endpoint", endpoint]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert (f"--rdzv-endpoint: port {endpoint.rpartition(':')[2]} is in use on this machine, "
                "where this node 0 listens for the others") in err, err
        assert "launching" not in err


def test_copies_of_one_file_in_other_folders_are_one_config_to_the_nodes(tmp_path):
    # The nodes compare what their files train (test_final_run: nodes that read other configs
    # are refused): the same file copied to another folder on each machine made its data path
    # and out_dir absolute against that folder, and the run was refused.
    from scaletune.trainer.loop import config_digest

    raw = {"data": {"source": "text", "path": "data/input.txt", "tokenizer": "byte"},
           "out_dir": "run", "optim": {"lr": 3e-3}}
    digests = []
    for folder, lr in (("home", 3e-3), ("scratch", 3e-3), ("edited", 1e-3)):
        (tmp_path / folder / "data").mkdir(parents=True)
        (tmp_path / folder / "data" / "input.txt").write_text("to be or not to be " * 200)
        path = tmp_path / folder / "final.yaml"
        path.write_text(yaml.safe_dump({**raw, "optim": {"lr": lr}}))
        digests.append(config_digest(load_train_config(path)))
    assert digests[0] == digests[1] != digests[2]


def test_nodes_that_start_different_numbers_of_processes_are_told_so(monkeypatch):
    # --nproc-per-node 2 on one node, 1 on the other, and a batch of 16: the ranks said
    # batch_size=16 must split into 3 equal parts, and a user would change the batch (such
    # nodes train together where it splits: said where it does not).
    from scaletune.trainer.distributed import uneven_nodes

    for local, world, said in ((2, 3, "3 in all, 2 on this one"), (1, 3, "3 in all, 1 on this one"),
                               (2, 4, None)):
        monkeypatch.setenv("GROUP_WORLD_SIZE", "2")  # torchrun's count of the nodes
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local))
        why = uneven_nodes(world)
        assert (why is None) if said is None else (
            f"the 2 nodes of this run start different numbers of processes ({said}): the same "
            "--nproc-per-node on every node, or a batch_size that splits into 3") == why, why
    monkeypatch.setenv("GROUP_WORLD_SIZE", "1")
    assert uneven_nodes(2) is None  # one node


def test_a_process_without_a_gpu_of_its_own_is_refused(monkeypatch):
    from scaletune.trainer.distributed import device_for
    from scaletune.trainer.errors import SetupError

    # torchrun numbers the processes of a machine by LOCAL_RANK; each takes the GPU of that number.
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, short of GPUs
    with pytest.raises(SetupError, match=r"has no GPU of its own: the machine has \d+; start at "
                                         r"most that many processes per machine"):
        device_for("cuda", world=2)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                    reason="this machine has a GPU")
def test_a_device_this_machine_lacks_is_one_error_that_says_what_to_set(tmp_path, capsys):
    for device, says in [("cuda", "device: cuda, but torch sees no CUDA GPU here (torch "),
                         ("mps", "device: mps, but torch sees no Apple GPU here: set device: "
                                 "auto or cpu")]:
        path = write(tmp_path, {"device": device, "out_dir": str(tmp_path / device)})
        assert train_main(str(path)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{path}: {says}") and "Traceback" not in err
        assert len(err.splitlines()) == 1
        assert not (tmp_path / device).exists()


def test_overwrite_keeps_the_earlier_run_when_the_new_one_cannot_start(tmp_path, shakespeare,
                                                                       capsys):
    base = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "cache")},
        "batch_size": 4, "tokens": 4 * 4 * 16, "progress": False, "num_threads": 1, "out_dir": "out",
    }
    assert train_main(str(write(tmp_path, base))) == 0
    kept = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    assert {"checkpoint.pt", "metrics.jsonl"} <= set(kept)
    capsys.readouterr()
    # Rule: --overwrite replaces the earlier run only once the new one has passed its set-up;
    # a device this machine lacks stops it before, and the earlier run is there, byte for byte.
    cuda = write(tmp_path, {**base, "device": "cuda"})
    assert train_main(str(cuda), overwrite=True) == 2
    assert "torch sees no CUDA GPU here" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()} == kept


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    from scaletune.search.cli import main

    path = write(tmp_path, {"tokens": 4096})
    assert train_main(str(path), resume=True, overwrite=True) == 2
    assert "--resume and --overwrite exclude each other" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["train", str(path), "--resume", "--overwrite"])
    assert done.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_an_out_dir_that_is_a_file_is_one_error(tmp_path, capsys):
    from scaletune.search.cli import main

    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for out_dir in (afile, afile / "sub"):
        path = write(tmp_path, {"tokens": 4096, "out_dir": str(out_dir)})
        for launch in (False, True):
            code = (main(["train", str(path), "--nproc-per-node", "2"]) if launch
                    else train_main(str(path)))
            assert code == 2
            err = capsys.readouterr().err
            # Rule: named before any data is read or torchrun started; the file is untouched.
            assert f"out_dir {out_dir}: {afile} is a file" in err, err
            assert "Traceback" not in err and "launching" not in err
        # Rule: from Python, the same words as a SetupError (a bare FileExistsError before).
        from scaletune.trainer import SetupError, train

        with pytest.raises(SetupError, match=re.escape(f"out_dir {out_dir}: {afile} is a file")):
            train(load_train_config(path))
    assert afile.read_text() == "mine\n"


def test_a_batch_that_does_not_split_over_the_processes_is_refused_before_torchrun(tmp_path,
                                                                                   capsys):
    from scaletune.search.cli import main

    path = write(tmp_path, {"tokens": 4096, "batch_size": 3})
    assert main(["train", str(path), "--nproc-per-node", "2"]) == 2
    err = capsys.readouterr().err
    # micro_batch_size was never given: the message does not send the user to it.
    assert ("batch_size=3 must split into 2 equal parts, one for each process: give a multiple "
            "of 2 (the 2 processes of this launch)") in err
    assert "launching" not in err and len(err.splitlines()) == 1
    # MPS on more than one process: gloo takes no MPS tensors, and every rank failed at DDP's
    # first broadcast.
    path = write(tmp_path, {"tokens": 4096, "batch_size": 4, "device": "mps"})
    assert main(["train", str(path), "--nproc-per-node", "2"]) == 2
    err = capsys.readouterr().err
    assert ("device: mps trains in one process: torch's process groups (gloo, nccl) take no MPS "
            "tensors") in err, err
    assert "launching" not in err
    # A batch that splits, into parts the micro-batch does not divide, names the micro-batch.
    path = write(tmp_path, {"tokens": 4096, "batch_size": 12, "micro_batch_size": 4})
    assert main(["train", str(path), "--nproc-per-node", "2"]) == 2
    assert ("batch_size=12 must split into 2 equal parts that are multiples of "
            "micro_batch_size=4") in capsys.readouterr().err


def test_a_run_whose_validation_file_it_also_trains_on_is_noted_not_refused(tmp_path, capsys):
    # A study refuses it (the validation loss ranks its trials); validate refused a training
    # config's too, which `scaletune train` trained without a word.
    from scaletune.search.cli import main

    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"{name} text to learn from. " * 200)
    path = write(tmp_path, {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(tmp_path / "*.txt"),
                 "val_path": str(tmp_path / "b.txt"), "cache_dir": str(tmp_path / "cache")},
        "batch_size": 4, "tokens": 4 * 4 * 16, "progress": False, "num_threads": 1})
    said = (f"data.val_path: {tmp_path / 'b.txt'} is also among the training files (data.path "
            "matches it): the run's validation loss is measured on text it trains on")
    assert main(["validate", str(path)]) == 0
    assert said in " ".join(capsys.readouterr().out.split())
    assert train_main(str(path)) == 0
    out = capsys.readouterr()
    assert said in " ".join(out.err.split()) and "completed" in out.out
