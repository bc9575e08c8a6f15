"""Bad study, training and checkpoint files: each gives one line that names the file and says what
is wrong, never a traceback, a hang or a blow-up of memory.

Study files go through ``scaletune validate`` (search.cli.main, which prints to stdout); training
files and checkpoints through ``train_main`` (which prints to stderr), as the command line does.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from scaletune.search.cli import main
from scaletune.trainer.checkpoint import CHECKPOINT
from scaletune.trainer.cli import train_main
from scaletune.trainer.config import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_VALUES,
    SHOWN_CHARS,
    load_train_config,
    load_yaml,
)
from scaletune.trainer.errors import ConfigError
from scaletune.trainer.record import METRICS
from tests.search.helpers import as_foreground_job

REPO = Path(__file__).resolve().parents[2]
STUDY = "name: s\ntokens_per_trial: 1e5\nn_trials: 2\n"


def validate(path: Path, capsys) -> tuple[int, list[str]]:
    """`scaletune validate PATH`: the exit code and the error lines (the header line aside)."""
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    header, *lines = captured.err.splitlines()
    assert header == f"{len(lines)} error(s) in {path}:"
    return code, [line.strip() for line in lines]


def train_errors(path: Path, capsys, **flags) -> list[str]:
    """`scaletune train PATH`: its stderr lines, after checking it exited with 2."""
    assert train_main(str(path), **flags) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()


def billion_laughs(levels: int = 9) -> str:
    """Nine aliases of nine aliases ... of nine values: 9**levels values once expanded."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nn_trials: *l{levels - 1}\n"


def test_an_alias_bomb_is_refused_at_its_alias_in_a_second(tmp_path, capsys):
    import scaletune.search.manage  # noqa: F401 - what validate imports first is not measured

    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    tracemalloc.start()
    start = time.perf_counter()
    code, lines = validate(path, capsys)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # The rule: the file is refused where an alias takes it past the bound, before anything
    # walks the expanded value; one line that says what is allowed.
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("line 5, column 10: alias *l3") and f"{MAX_VALUES:,}" in lines[0]
    assert seconds < 2 and peak < 20e6


def test_aliases_that_repeat_a_value_are_fine(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("defaults: &d {lr: 1.0e-3, warmup_frac: 0.0}\n"
                    "optim:\n  <<: *d\n  lr: 2.0e-3\n"
                    "sizes: &s [1, 2, 3]\nagain: *s\n")
    # A merge key's values are meant to be overridden: not a duplicate key.
    assert load_yaml(path) == {"defaults": {"lr": 1e-3, "warmup_frac": 0.0},
                               "optim": {"lr": 2e-3, "warmup_frac": 0.0},
                               "sizes": [1, 2, 3], "again": [1, 2, 3]}


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path, capsys):
    path = tmp_path / "loop.yaml"
    path.write_text(STUDY + "seed: &a [1, *a]\n")
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("line 4, column 14: alias *a is inside its own anchor &a")


def test_an_error_shows_at_most_a_line_of_a_value(tmp_path, capsys):
    # A value that passes the loader's bounds but not the schema: a long text and a long list.
    path = tmp_path / "long.yaml"
    path.write_text(STUDY + f"seed: '{'x' * 100_000}'\nworkers: [{', '.join(['1'] * 5000)}]\n")
    code, lines = validate(path, capsys)
    assert code == 2
    for key in ("seed", "workers"):
        line = next(ln for ln in lines if ln.startswith(f"{key}:"))
        shown = line[line.index("(got ") + 5:-1]
        assert len(shown) <= SHOWN_CHARS and "..." in shown, line
    # The same in a training file, and for a key: an unknown key is cut too.
    path = tmp_path / "run.yaml"
    path.write_text(f"tokens: '{'9x' * 1000}'\n? {'k' * 5000}\n: 1\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    value, key = err.value.errors
    assert len(value[value.index("(got ") + 5:-1]) <= SHOWN_CHARS
    assert len(key[:key.index(": unknown key")]) <= SHOWN_CHARS


def test_bytes_that_are_not_utf8_name_their_offset(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_bytes(STUDY.encode() + b"description: caf\xe9\n")
    code, lines = validate(study, capsys)
    offset = len(STUDY) + len("description: caf")
    assert code == 2 and lines == [f"not UTF-8 text: byte 0xe9 at offset {offset} (line 4); "
                                   "save the file as UTF-8"]
    run = tmp_path / "run.yaml"
    run.write_bytes(b"tokens: 1000\nseed: \xff\xfe\n")
    err = train_errors(run, capsys)
    assert err == [f"1 error(s) in {run}:", "  not UTF-8 text: byte 0xff at offset 19 (line 2); "
                                         "save the file as UTF-8"]


def test_a_list_nested_5000_deep_is_one_error(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text(STUDY + "seed: " + "[" * 5000 + "]" * 5000 + "\n")
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"line 4, column {6 + MAX_DEPTH}: the file goes deeper than "
                               f"{MAX_DEPTH} levels")
    # An alias cannot nest deeper than the bound either.
    half = MAX_DEPTH // 2
    path.write_text(STUDY + f"a: &a {'[' * half}{']' * half}\nseed: {'[' * half}*a{']' * half}\n")
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"line 5, column {7 + half}: alias *a takes the file deeper than")


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text(STUDY + "n_trials: 1000\n"
                    "model:\n  n_layer: 2\n  'n_layer': 3\n"
                    "search:\n  lr: {prior: auto}\n  other:\n    - {a: 1, a: 2}\n")
    code, lines = validate(path, capsys)
    # Every duplicate at once, each with its dotted key: PyYAML alone would keep the last.
    assert code == 2 and lines == [
        "n_trials: key given twice, on line 3 and line 4; a key may appear once in a mapping",
        "model.n_layer: key given twice, on line 6 and line 7; a key may appear once in a mapping",
        "search.other[0].a: key given twice, on line 11, columns 8 and 14; a key may appear once "
        "in a mapping",
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "---\n"],
                         ids=["zero-length", "blank", "comments", "document-marker"])
def test_an_empty_file_says_it_is_empty(tmp_path, capsys, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("the file is empty")
    assert train_errors(path, capsys)[1].startswith("  the file is empty")


@pytest.mark.parametrize("text, message", [
    ("seed: !!python/object/apply:os.system ['echo hi']\n",
     "not valid YAML at line 4, column 7: the tag !!python/object/apply:os.system is not "
     "allowed"),
    ("? [a, b]\n: 1\n", "line 4, column 3: a key must be text or a number"),
    ("seed: *nowhere\n", "not valid YAML at line 4, column 7: found undefined alias 'nowhere'"),
    ("seed: 1\x00\n", "line 4: the character #x0000 may not appear in a YAML file"),
    ("---\nseed: 1\n", "not valid YAML at line 4, column 1: expected a single document in the "
                       "stream, but found another document"),
    ("seed: [" + ", ".join(["1"] * MAX_VALUES) + "]\n", "line 4, column "),
])
def test_other_files_a_config_cannot_be_are_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "odd.yaml"
    path.write_text(STUDY + text)
    code, lines = validate(path, capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), lines


def test_files_too_large_or_unreadable_are_one_line(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text(STUDY + f"description: '{'x' * MAX_FILE_BYTES}'\n")
    code, lines = validate(path, capsys)
    assert code == 2 and lines == [f"the file is larger than {MAX_FILE_BYTES // 1024} KB; a config "
                                   "file is a few KB (is it the right file?)"]
    # A device that never ends is read no further than the bound.
    with pytest.raises(ConfigError, match="larger than"):
        load_yaml("/dev/zero")
    with pytest.raises(ConfigError, match="cannot read the file: Is a directory"):
        load_yaml(tmp_path)


def test_every_shipped_study_still_loads():
    for path in sorted((REPO / "studies").glob("*.yaml")):
        assert isinstance(load_yaml(path), dict), path


# Checkpoints -------------------------------------------------------------------------------------


class NotACheckpoint:
    """Any Python object: what a pickle may hold and a scaletune checkpoint never does."""


@pytest.fixture
def run_file(tmp_path, shakespeare):
    """A training file of a tiny model that checkpoints into tmp_path/out."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "cache"),
                 "val_windows": 4},
        "batch_size": 4, "tokens": 10 * 4 * 16, "progress": False, "num_threads": 1,
        "out_dir": "out",
    }))
    return path


def test_a_checkpoint_holding_a_pickle_is_refused_without_loading_it(run_file, capsys):
    ckpt = run_file.parent / "out" / CHECKPOINT
    ckpt.parent.mkdir()
    torch.save({"model": NotACheckpoint()}, ckpt)
    err = train_errors(run_file, capsys, resume=True)
    assert len(err) == 1 and f"{ckpt} is not a scaletune checkpoint" in err[0]
    assert "must not be loaded" in err[0] and "weights_only" not in err[0]
    # A plain file of other keys is refused too, not a KeyError.
    torch.save({"a": 1}, ckpt)
    err = train_errors(run_file, capsys, resume=True)
    assert len(err) == 1 and f"{ckpt} is not a scaletune checkpoint" in err[0]


def test_a_truncated_checkpoint_says_it_is_damaged_and_how_to_start_again(run_file, capsys):
    assert train_main(str(run_file)) == 0
    ckpt = run_file.parent / "out" / CHECKPOINT
    whole = ckpt.read_bytes()
    # Cut short, empty, or overwritten with noise (which torch reads as its legacy pickle format,
    # and which was said to hold Python objects that could run code).
    for damaged in (whole[:len(whole) // 2], b"", random.Random(0).randbytes(len(whole))):
        ckpt.write_bytes(damaged)
        capsys.readouterr()
        err = train_errors(run_file, capsys, resume=True)
        assert len(err) == 1 and f"{ckpt} is damaged" in err[0] and "--overwrite" in err[0]
    # What the line says to do works.
    assert train_main(str(run_file), overwrite=True) == 0


def test_a_changed_bit_in_a_checkpoints_weights_is_refused_not_trained_on(run_file, capsys):
    import zipfile

    assert train_main(str(run_file)) == 0
    ckpt = run_file.parent / "out" / CHECKPOINT
    whole = bytearray(ckpt.read_bytes())
    with zipfile.ZipFile(ckpt) as zf:  # the largest tensor's bytes, stored as they are
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    with open(ckpt, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    start = info.header_offset + 30 + name_len + extra_len
    whole[start + info.file_size // 2] ^= 0x10  # one bit of one weight
    ckpt.write_bytes(bytes(whole))
    # Rule: a resume refuses it, saying what it is and what to do (torch.load read the changed
    # weight as a weight, and the run went on from it).
    err = train_errors(run_file, capsys, resume=True)
    assert len(err) == 1 and f"{ckpt} is damaged: what it holds is not what was written" \
        in err[0] and "--overwrite" in err[0], err
    # A changed byte in the pickle of the plain values, read as an opcode it does not know: it
    # was said to hold Python objects that could run code.
    assert train_main(str(run_file), overwrite=True) == 0
    whole = bytearray(ckpt.read_bytes())
    with zipfile.ZipFile(ckpt) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    with open(ckpt, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
    whole[info.header_offset + 30 + name_len + extra_len + 2] = ord("Y")  # no pickle opcode
    ckpt.write_bytes(bytes(whole))
    err = train_errors(run_file, capsys, resume=True)
    assert len(err) == 1 and f"{ckpt} is damaged (cut short or overwritten)" in err[0], err
    # A count changed as one bit would change it (step 10 read as 14): the run skipped 4 steps.
    assert train_main(str(run_file), overwrite=True) == 0
    saved = torch.load(ckpt, weights_only=True)
    saved["progress"]["step"] += 4
    torch.save(saved, ckpt)
    err = train_errors(run_file, capsys, resume=True)
    assert len(err) == 1 and f"{ckpt} is damaged" in err[0], err


def test_a_killed_checkpoint_write_is_cleaned_up_when_the_run_resumes(run_file):
    assert train_main(str(run_file)) == 0
    out = run_file.parent / "out"
    # What a write killed mid-way leaves: part of a checkpoint under the name of a process now
    # gone (a restarted container may hand its pid to another process: it is left over all the
    # same).
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leftover = out / f"{CHECKPOINT}.{gone.pid}.tmp"
    leftover.write_bytes((out / CHECKPOINT).read_bytes()[:1000])
    other = out / f"{CHECKPOINT}.notes.tmp"  # not a name save_checkpoint writes: kept
    other.write_text("mine")
    assert train_main(str(run_file), resume=True) == 0
    assert not leftover.exists() and other.exists()


@pytest.mark.slow
def test_ctrl_c_on_train_prints_where_to_resume_and_exits_130(run_file, tmp_path):
    cfg = yaml.safe_load(run_file.read_text())
    cfg.update(tokens=10**9, eval_every_tokens=640, checkpoint_every_tokens=640)
    run_file.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scaletune.search.cli", "train", str(run_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=as_foreground_job)
    deadline = time.monotonic() + 120
    while not ((out / METRICS).exists() and (out / CHECKPOINT).exists()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    # The rule: one line that says where the last checkpoint is and how to continue; exit 130.
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    (line,) = stderr.splitlines()
    # ... with the step it holds (the metrics log's record of it: no checkpoint is loaded).
    step = torch.load(out / CHECKPOINT, weights_only=True)["progress"]["step"]
    assert re.fullmatch(rf"{re.escape(str(run_file))}: interrupted; the last checkpoint is "
                        rf"{re.escape(str(out / CHECKPOINT))} \(step {step:,} of [\d,]+, "
                        rf"{step * 64:,} tokens\); run the command again with --resume "
                        "to continue from it", line), line


def test_sigterm_on_train_stops_between_steps_names_the_checkpoint_and_exits_143(
        run_file, tmp_path, capsys):
    # What Slurm or Kubernetes sends before it kills a job; here from a thread of this process
    # once the run has written a checkpoint, in the middle of the steps that follow it.
    assert threading.current_thread() is threading.main_thread()  # where signals are received
    cfg = yaml.safe_load(run_file.read_text())
    cfg.update(tokens=10**9, eval_every_tokens=640, checkpoint_every_tokens=640)
    run_file.write_text(yaml.safe_dump(cfg))
    ckpt = tmp_path / "out" / CHECKPOINT

    def signal_when_checkpointed() -> None:
        while not ckpt.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Thread(target=signal_when_checkpointed, daemon=True)
    sender.start()
    assert train_main(str(run_file)) == 143
    sender.join()
    assert signal.getsignal(signal.SIGTERM) is before
    step = torch.load(ckpt, weights_only=True)["progress"]["step"]
    assert step > 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{run_file}: stopped by SIGTERM; the last checkpoint is {ckpt} (step "
                           f"{step:,} of "), line
    assert line.endswith("tokens); run the command again with --resume to continue from it")


def test_compile_without_a_cpp_compiler_is_one_error_before_anything_runs(run_file, tmp_path,
                                                                         capsys, monkeypatch):
    from torch._inductor import config as inductor

    cfg = yaml.safe_load(run_file.read_text())
    cfg["compile"] = True
    run_file.write_text(yaml.safe_dump(cfg))
    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++")}):  # as on a bare laptop
        errors = train_errors(run_file, capsys)
    assert errors == [
        f"{run_file}: compile: true needs a C++ compiler, which torch.compile builds its kernels "
        "with, and none works here (tried /nonexistent/g++); install one (apt install g++), set "
        "CXX to one, or set compile: false"]
    assert not (tmp_path / "out").exists()  # nothing was prepared or written
    from scaletune.search.manage import validate_file

    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++")}):
        assert validate_file(str(run_file))[1][-1] == (
            "compile: true needs a C++ compiler, which torch.compile builds its kernels with, "
            "and none works here (tried /nonexistent/g++); install one (apt install g++), set "
            "CXX to one, or set compile: false (`scaletune train` refuses it on this machine)")
    # On a Mac, the compiler comes with Apple's command line tools.
    from scaletune.trainer.loop import compiler_missing

    monkeypatch.setattr(sys, "platform", "darwin")
    with inductor.patch({"cpp.cxx": (None, "/nonexistent/g++")}):
        assert "install one (xcode-select --install), set CXX to one" in compiler_missing()


def test_a_checkpoint_that_cannot_be_written_is_one_line_not_a_traceback(run_file, capsys):
    # A full disk gave 40 lines of torch's traceback ("unexpected pos 196608 vs 196500"). Here
    # the write fails for real: a folder stands where the temporary checkpoint file goes.
    out = run_file.parent / "out"
    (out / f"{CHECKPOINT}.{os.getpid()}.tmp").mkdir(parents=True)
    err = train_errors(run_file, capsys)
    assert len(err) == 1, err
    assert err[0].startswith(f"{run_file}: out_dir: writing the checkpoint {out / CHECKPOINT} "
                             "failed (") and err[0].endswith(
        "a full disk or a folder that became read-only?); no checkpoint was written before")


def test_a_file_outside_out_dir_that_fails_is_not_called_out_dir_s(run_file, capsys):
    # A folder where the token cache's file goes: "out_dir: writing ... failed (Is a directory;
    # a full disk or a folder that became read-only?)", of a file that is no out_dir's.
    assert train_main(str(run_file)) == 0
    (tokens,) = (run_file.parent / "cache").glob("*.bin")
    tokens.unlink()
    tokens.mkdir()
    err = train_errors(run_file, capsys, overwrite=True)
    assert len(err) == 1 and err[0].startswith(f"{run_file}: {tokens}: Is a directory; "), err


def test_a_run_without_out_dir_says_it_keeps_nothing(run_file, capsys):
    # It trained to the end and kept nothing, checkpoint_every_tokens set or not, without a word.
    raw = yaml.safe_load(run_file.read_text())
    del raw["out_dir"]
    raw["checkpoint_every_tokens"] = 128
    run_file.write_text(yaml.safe_dump(raw))
    note = ("note: out_dir is not set: the run saves nothing, no checkpoint and no metrics log "
            "(checkpoint_every_tokens ignored) and `--resume` has nothing to continue; set "
            "out_dir to keep the trained model")
    assert train_main(str(run_file)) == 0
    assert note in capsys.readouterr().err
    assert main(["validate", str(run_file)]) == 0
    assert note in " ".join(capsys.readouterr().out.split())


def test_an_evaluation_interval_of_the_whole_run_says_it_evaluates_once(run_file, capsys):
    # validate said ok, and train "a line at each evaluation, every 7,812,500 steps" of a
    # run of 40.
    raw = yaml.safe_load(run_file.read_text())
    raw["eval_every_tokens"], raw["progress"] = "1e9", True
    run_file.write_text(yaml.safe_dump(raw))
    steps = -(-raw["tokens"] // (raw["batch_size"] * raw["model"]["block_size"]))
    trained = steps * raw["batch_size"] * raw["model"]["block_size"]
    note = (f"note: eval_every_tokens: 1,000,000,000 is the whole run or more ({trained:,} "
            "tokens): it is evaluated once, at its end")
    assert main(["validate", str(run_file)]) == 0
    assert note in " ".join(capsys.readouterr().out.split())
    assert train_main(str(run_file)) == 0
    err = capsys.readouterr().err
    assert note in err and "a line at each evaluation, at the end" in err, err
    assert "every 7," not in err


def test_a_budget_far_from_whole_steps_says_what_the_run_trains(run_file, capsys):
    # 100,000 tokens at 32,768 a step trained 131,072 (+31%), without a word.
    raw = yaml.safe_load(run_file.read_text())
    raw["tokens"] = 10 * 4 * 16 + 16  # 10.25 steps of 64 tokens: 11 steps, 704 tokens
    run_file.write_text(yaml.safe_dump(raw))
    note = ("note: tokens: 656 is 10.25 steps of 64 tokens (batch_size 4 x block_size 16): the "
            "run trains whole steps, 11, which is 704 tokens (7% more); give tokens: 704, or "
            "640, to train what it says")
    assert main(["validate", str(run_file)]) == 0
    assert note in " ".join(capsys.readouterr().out.split())
    assert train_main(str(run_file)) == 0
    assert note in capsys.readouterr().err
    # A budget within 5% of whole steps (an exported run's rounding) is not worth a word.
    raw["tokens"] = 700  # 11 steps train 704
    run_file.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(run_file)]) == 0
    assert "whole steps" not in capsys.readouterr().out


@pytest.mark.parametrize(("data", "message"), [
    ({"source": "text", "path": "empty.txt"}, "the data holds no text (0 tokens)"),
    ({"source": "text", "path": "latin1.txt"}, "is not UTF-8 text"),
    ({"source": "hf", "dataset": "json", "data_files": "d.jsonl"},
     "data.text_column: 'text' is not a column of '{dir}/d.jsonl' (data.data_files, read as "
     "json), which has ['body']"),
])
def test_validate_of_a_training_file_reads_its_data_as_train_would(run_file, capsys, data,
                                                                   message):
    # validate said ok, and train refused the data once it read it.
    folder = run_file.parent
    (folder / "empty.txt").write_text("")
    (folder / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 200)
    (folder / "d.jsonl").write_text('{"body": "to be or not to be"}\n' * 50)
    raw = yaml.safe_load(run_file.read_text())
    raw["data"] = {**data, "cache_dir": str(folder / "cache")}
    run_file.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(run_file)]) == 2
    message = message.format(dir=folder)
    out = " ".join(capsys.readouterr().err.split())
    assert "1 error(s)" in out and message in out, out
    assert train_main(str(run_file)) == 2
    assert message in " ".join(capsys.readouterr().err.split())


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only while the block runs: by its mode, or for root (whom modes do not
    stop) by a read-only bind mount of it."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    try:
        subprocess.run(["mount", "--bind", folder, folder], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("root without a way to make a folder read-only (no bind mounts here)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True,
                       capture_output=True)
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[None]:
    """``folder`` on a disk with no space left while the block runs: a small tmpfs mounted on
    it and filled (root only; files can still be created, writes into them fail)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs mount, which only root may make")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", folder], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("root without a way to mount a tmpfs here")
    try:
        with contextlib.suppress(OSError), open(folder / ".filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


def test_a_token_cache_on_a_full_disk_names_itself(run_file, capsys):
    # "data: [Errno 28] No space left on device": a write into the open file names no file.
    cache = run_file.parent / "cache"  # the file's data.cache_dir
    cache.mkdir()
    with full_disk(cache):
        assert train_main(str(run_file)) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert f"data.cache_dir '{cache}': cannot write this data's tokens there (No space left " \
               "on device)" in out, out
        assert sorted(p.name for p in cache.iterdir()) == [".filler"]  # nothing half-written


def test_a_run_whose_out_dir_is_on_a_full_disk_says_so_and_its_log_keeps_whole_lines(
        run_file, tmp_path, capsys):
    from scaletune.trainer.record import drop_evals_after, log_event

    out = tmp_path / "out"  # the file's out_dir
    out.mkdir()
    with full_disk(out):
        # The run lock's write into its open file was a traceback (exit 1).
        assert train_main(str(run_file)) == 2
        said = " ".join(capsys.readouterr().err.split())
        assert (f"out_dir {out}: cannot write its run lock .run.lock (No space left on device): "
                "free space there, or give another out_dir") in said, said
        # A record the disk refuses is taken back whole (a log cut at 4,096 bytes mid-line).
        log = out / METRICS
        with pytest.raises(OSError, match="No space left") as refused:
            log_event(out, {"event": "eval", "step": 1, "note": "x" * 100_000})
        assert refused.value.filename == str(log)
        assert log.read_bytes() == b""
    # A log already cut short (by a version before) loses its cut line when the run resumes:
    # the next record was appended to it, and both were lost to JSON readers.
    log.write_text('{"event": "eval", "step": 1}\n{"event": "eval", "ste')
    drop_evals_after(out, step=5)
    log_event(out, {"event": "eval", "step": 6})
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 6]


def test_a_read_only_token_cache_serves_its_tokens_and_names_itself_when_it_cannot(
        run_file, capsys):
    # validate said ok; run failed with "data: [Errno 30] Read-only file system: '...tmp'"; and
    # a cache that held the tokens failed once the data file was touched (its record rewritten).
    raw = yaml.safe_load(run_file.read_text())
    data = run_file.parent / "corpus.txt"  # a copy: the shared file's time is not this test's
    data.write_bytes(Path(raw["data"]["path"]).read_bytes()[:200_000])
    raw["data"]["path"] = str(data)
    run_file.write_text(yaml.safe_dump(raw))
    cache = run_file.parent / "cache"
    cache.mkdir()
    said = f"data.cache_dir '{cache}': cannot write this data's tokens there ("
    with read_only(cache):
        assert main(["validate", str(run_file)]) == 2
        assert said in " ".join(capsys.readouterr().err.split())
        assert train_main(str(run_file)) == 2
        assert said in " ".join(capsys.readouterr().err.split())
    assert train_main(str(run_file), overwrite=True) == 0  # fills the cache
    os.utime(data, ns=(data.stat().st_atime_ns, data.stat().st_mtime_ns + 10**9))  # the same text, touched: the cache's record no longer names it
    with read_only(cache):
        assert main(["validate", str(run_file)]) == 0
        assert train_main(str(run_file), overwrite=True) == 0
    capsys.readouterr()


def test_the_readmes_way_to_load_a_trained_model_works(run_file, capsys):
    # The README's snippet, run as it is written on a real run's checkpoint.
    assert train_main(str(run_file)) == 0
    readme = (REPO / "README.md").read_text()
    start = readme.index("**What a run leaves in `out_dir`**")
    code = readme[readme.index("```python\n", start) + 10:readme.index("```\n", start + 1)]
    ckpt = run_file.parent / "out" / CHECKPOINT
    scope: dict = {}
    exec(code.replace("final-run/checkpoint.pt", str(ckpt)), scope)  # noqa: S102
    assert scope["logits"].shape == (1, 6, 256)
    assert torch.isfinite(scope["logits"]).all()


def test_validate_notes_an_out_dir_that_train_refuses(run_file, capsys):
    # validate said ok of a file whose out_dir train refused: a file there, or a finished run.
    out = run_file.parent / "out"
    out.write_text("not a folder")
    assert main(["validate", str(run_file)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (f"note: out_dir {out}: {out} is a file, and a run writes its checkpoint and logs "
            "into a folder") in said and "(`scaletune train` as it is refuses it)" in said, said
    out.unlink()
    assert train_main(str(run_file)) == 0
    capsys.readouterr()
    assert main(["validate", str(run_file)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (f"note: out_dir {out} holds this config's run, finished: nothing is left to train "
            "(--resume says so)") in said, said
