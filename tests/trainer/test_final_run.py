"""What a long final run needs: data parallel (torchrun, gloo on the CPU) that matches one
process, and TensorBoard scalars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, text: Path, name: str) -> Path:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_bytes(text.read_bytes()[:100_000])
    cfg = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.0},
        "data": {"source": "text", "path": str(corpus), "tokenizer": "byte", "val_windows": 16,
                 "cache_dir": str(tmp_path / "cache")},
        "optim": {"lr": 3e-3, "warmup_frac": 0.1},
        "tokens": 8 * 32 * 12,
        "batch_size": 8,
        "micro_batch_size": 4,
        "eval_every_tokens": 8 * 32 * 4,
        "num_threads": 1,
        "progress": False,
        "out_dir": str(tmp_path / name),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _evals(out_dir: Path) -> list[float]:
    lines = [json.loads(ln) for ln in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in lines if r["event"] == "eval"]


def test_two_process_data_parallel_matches_one_process(tmp_path, shakespeare):
    single = _config(tmp_path, shakespeare, "single")
    ddp = _config(tmp_path, shakespeare, "ddp")
    one = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "train", str(single)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "scaletune.search.cli", "train", str(ddp), "--nproc-per-node", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stdout + two.stderr
    a, b = _evals(tmp_path / "single"), _evals(tmp_path / "ddp")
    # Same evaluations, and the same losses up to float reduction order: two ranks with 4
    # sequences each, gradients averaged by DDP, take the step one process takes on all 8.
    assert len(a) == len(b) == 3
    assert a[-1] < a[0]
    assert b == pytest.approx(a, abs=2e-4)
    # One process (rank 0) writes the run folder's log: one start and one end record.
    events = [json.loads(ln)["event"] for ln in (tmp_path / "ddp" / "metrics.jsonl").read_text()
              .splitlines()]
    assert events.count("start") == 1 and events.count("end") == 1


def test_tensorboard_scalars_are_written_per_evaluation(tmp_path, shakespeare):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from scaletune.trainer.config import load_train_config
    from scaletune.trainer.loop import train

    path = _config(tmp_path, shakespeare, "board")
    cfg = load_train_config(path).model_copy(update={"tensorboard": True})
    train(cfg)
    acc = EventAccumulator(str(tmp_path / "board" / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("val_loss")]
    # One val_loss point per evaluation, keyed by tokens seen.
    assert steps == [1024, 2048, 3072]
