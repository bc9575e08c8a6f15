"""The GPU check runs on GPUs only; here: its message on a machine without CUDA, and that the
files it writes are ones the product accepts."""

from __future__ import annotations

import os
import sys
import time

import pytest
import torch

from benchmarks.gpu_check import _run, all_ok, main, most_at_once, study_file, train_file
from scaletune.search.config import load_study
from scaletune.trainer.config import load_train_config


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_cuda_it_exits_2_and_says_why(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check needs a CUDA GPU, and torch sees none on this machine")
    assert f"torch {torch.__version__}" in err


def test_too_few_steps_to_time_are_refused_before_any_gpu_work(capsys):
    # On a GPU, --steps 5 left no timed chunk: a StatisticsError minutes in.
    with pytest.raises(SystemExit) as e:
        main(["--steps", "5"])
    assert e.value.code == 2
    assert "--steps must be 10 or more (chunks of 5 steps, the first left out as warm-up), got 5" \
        in capsys.readouterr().err


@pytest.mark.parametrize("flags, said", [
    (["-o", "/nonexistent-folder/r.json"], "-o /nonexistent-folder/r.json: cannot write a file "
     "there"),
    (["--micro-batch-size", "0"], "--micro-batch-size must be 1 or more, got 0"),
])
def test_a_bad_output_or_micro_batch_is_refused_before_any_gpu_work(flags, said, capsys):
    # -o of a missing folder failed at the very end, after the minutes on the GPUs.
    with pytest.raises(SystemExit) as e:
        main(flags)
    assert e.value.code == 2 and said in capsys.readouterr().err


def test_the_study_and_the_runs_it_writes_are_valid(tmp_path):
    study = load_study(study_file(tmp_path))
    assert (study.n_trials, study.workers.gpus_per_trial, study.trainer.device) == (4, 0.25, "cuda")
    run = load_train_config(train_file(tmp_path, "fsdp", "fsdp"))
    assert (run.parallel, run.device, run.dtype) == ("fsdp", "cuda", "bfloat16")


def test_most_at_once_counts_overlapping_trials():
    # Four trials, the last starting after the first ended: at most three ran together.
    assert most_at_once([(0, 10), (1, 5), (2, 11), (10.5, 12)]) == 3
    assert most_at_once([]) == 0


def test_the_check_passes_only_when_every_part_did():
    study = {"exit_code": 0, "states": ["COMPLETE"] * 4, "devices": ["cuda"] * 4,
             "gpu_ids": [["0"]] * 4, "most_at_once": 4}
    runs = {name: {"exit_code": 0, "final_val_loss": 3.0} for name in ("one", "ddp", "fsdp")}
    good = {"throughput": [{"tokens_per_s": 1.0}], "study": study, "data_parallel": runs}
    assert all_ok(good)
    # Each rule on its own: trials one after another, a trial on a second GPU, a sharded run
    # 3% off the single GPU's loss, a throughput run that did not fit.
    assert not all_ok({**good, "study": {**study, "most_at_once": 3}})
    assert not all_ok({**good, "study": {**study, "gpu_ids": [["0"]] * 3 + [["1"]]}})
    off = {**runs, "fsdp": {"exit_code": 0, "final_val_loss": 3.09}}
    assert not all_ok({**good, "data_parallel": off})
    assert not all_ok({**good, "throughput": [{"error": "out of memory"}]})


def test_a_command_that_hangs_is_killed_with_what_it_started(tmp_path):
    # A hung NCCL rendezvous held the check for torch's 30-minute timeout, not its five minutes.
    pid_file = tmp_path / "child.pid"
    hang = ("import subprocess, sys, time; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(child.pid)); print('started', flush=True); "
            "time.sleep(60)")
    start = time.monotonic()
    done = _run([sys.executable, "-c", hang], timeout=3)
    assert time.monotonic() - start < 30
    assert done.returncode == 124 and done.stdout == "started\n"
    assert done.stderr.endswith("gpu_check: killed after 3 s (RUN_TIMEOUT_S)\n")
    child = int(pid_file.read_text())
    for _ in range(50):  # killed with its parent's process group
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the hung command's child {child} still runs")
    assert _run([sys.executable, "-c", "print('ok')"]).stdout == "ok\n"
