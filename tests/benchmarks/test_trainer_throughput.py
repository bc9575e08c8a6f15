import re
import subprocess
import sys

import pytest
import torch

from benchmarks.trainer_throughput import matmul_peaks
from scaletune.trainer.kernels import onednn_available
from tests.search.helpers import REPO


def test_float32_peaks_cover_both_libraries_and_bf16_one():
    fp32 = matmul_peaks(torch.float32, sizes=(128,), repeats=1)
    assert set(fp32) == ({"torch", "onednn"} if onednn_available() else {"torch"})
    assert all(v > 0 for v in fp32.values())
    assert set(matmul_peaks(torch.bfloat16, sizes=(128,), repeats=1)) == {"torch"}


@pytest.mark.slow
def test_benchmark_prints_mfu_for_every_run_the_side_by_side_ratios_and_the_breakdown():
    # The whole script on a smaller model (1 layer, width 64) with peaks of small matmuls: the
    # plumbing, not the figures (5 s, where 2 layers of 128 and peaks of 512 took 20).
    cmd = [sys.executable, "-m", "benchmarks.trainer_throughput", "--steps", "10", "--rounds", "1",
           "--breakdown", "--breakdown-rounds", "1", "--n-layer", "1", "--n-embd", "64",
           "--peak-size", "256"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^matmul peak at the start: float32 .*\(best of 256 squares\)$", out.stdout,
                     re.M)
    runs = re.findall(r"^train (float32 onednn|float32 torch|bfloat16) .* MFU (\d+\.\d%|n/a)",
                      out.stdout, re.M)
    assert [name for name, _ in runs] == ["float32 onednn", "float32 torch", "bfloat16"]
    # Below 100% where the machine is quiet; a peak measured while other work held the cores
    # can fall below what the training then got (seen at 3-4 tests at a time on 2 cores).
    assert all(0 < float(mfu[:-1]) < 200 for name, mfu in runs if name != "bfloat16"), runs
    # A CPU that emulates bfloat16 gives it no MFU (487% of emulation's peak, printed as a
    # figure); one with bf16 units, a figure.
    from scaletune.trainer.kernels import cpu_bf16_arithmetic

    emulated = cpu_bf16_arithmetic() is False
    assert (runs[2][1] == "n/a") == emulated, runs
    assert emulated or float(runs[2][1][:-1]) > 0, runs
    # The whole output where a line is missing (pytest's message cuts its middle, where they are).
    assert re.search(r"ours, torch .*ours with onednn \d\.\d{3}x as fast", out.stdout), out.stdout
    assert re.search(r"bf16 attention .*float32 attention \d\.\d{3}x as fast", out.stdout), \
        out.stdout
    # A part is the step less the step without it: within the noise of a short run, below 0.
    assert re.search(r"full step \d+ ms = linear layers' matmuls \d+ ms .* attention -?\d+ ms",
                     out.stdout)


def test_too_few_steps_to_time_are_refused_by_name():
    # Five steps are one chunk, the warm-up left out: a StatisticsError traceback before.
    cmd = [sys.executable, "-m", "benchmarks.trainer_throughput", "--steps", "5"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "--steps must be 10 or more (chunks of 5 steps, the first left out as warm-up), got 5" \
        in out.stderr
    assert "Traceback" not in out.stderr


def test_a_run_trains_on_the_threads_the_benchmark_was_given(tmp_path):
    from benchmarks.trainer_throughput import run

    # --threads sets torch's count; train() then set its own from the config (every core).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run("float32", 10, False, str(tmp_path / "cache"), cpu_matmul="torch",
            model={"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}, batch_size=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("flags, said", [
    (["--n-embd", "30"], "--n-embd: must be a multiple of the 8 heads (8, 16, ...), got 30"),
    (["--n-layer", "0"], "--n-layer: must be 1 or more, got 0"),
    # torch's RuntimeError, a StatisticsError once trained, and the slow default measured.
    (["--threads", "0"], "--threads: must be 1 or more, got 0"),
    (["--rounds", "0"], "--rounds: must be 1 or more, got 0"),
    (["--peak-size", "0"], "--peak-size: must be 1 or more, got 0"),
    # Found after every other run (~6 minutes of them by default).
    (["--reference", "/nonexistent"], "--reference: no model.py in /nonexistent"),
])
def test_a_model_the_fixed_heads_cannot_split_is_refused_by_name(capsys, flags, said):
    from benchmarks.trainer_throughput import MODEL, main

    # A pydantic traceback before ("n_head must divide n_embd"): the 8 heads are fixed.
    before = dict(MODEL)
    with pytest.raises(SystemExit) as e:
        main(flags)
    assert e.value.code == 2
    assert said in capsys.readouterr().err
    assert MODEL == before
