"""The GPU check runs on GPUs only; here: its message on a machine without CUDA, and that the
files it writes are ones the product accepts."""

from __future__ import annotations

import pytest
import torch

from benchmarks.gpu_check import main, most_at_once, study_file, train_file
from scaletune.search.config import load_study
from scaletune.trainer.config import load_train_config


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_cuda_it_exits_2_and_says_why(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_check needs a CUDA GPU, and torch sees none on this machine")
    assert f"torch {torch.__version__}" in err


def test_the_study_and_the_runs_it_writes_are_valid(tmp_path):
    study = load_study(study_file(tmp_path))
    assert (study.n_trials, study.workers.gpus_per_trial, study.trainer.device) == (4, 0.25, "cuda")
    run = load_train_config(train_file(tmp_path, "fsdp", "fsdp"))
    assert (run.parallel, run.device, run.dtype) == ("fsdp", "cuda", "bfloat16")


def test_most_at_once_counts_overlapping_trials():
    # Four trials, the last starting after the first ended: at most three ran together.
    assert most_at_once([(0, 10), (1, 5), (2, 11), (10.5, 12)]) == 3
    assert most_at_once([]) == 0
