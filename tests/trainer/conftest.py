"""Shared helpers: the reference text beside the repo, and a tiny model config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaletune.trainer.config import TrainConfig

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"


def deep_update(base: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in updates.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def shakespeare() -> Path:
    if not SHAKESPEARE.exists():
        pytest.skip(f"reference text not found at {SHAKESPEARE}")
    return SHAKESPEARE


@pytest.fixture
def tiny(tmp_path: Path, shakespeare: Path):
    """tiny(**overrides) -> a TrainConfig of a 2-layer, 32-wide model on Tiny Shakespeare bytes."""

    def make(steps: int = 20, **overrides: Any) -> TrainConfig:
        base = {
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
            "data": {"source": "text", "path": str(shakespeare), "cache_dir": str(tmp_path / "cache"),
                     "val_windows": 16},
            "optim": {"lr": 3e-3, "warmup_frac": 0.0},
            "batch_size": 8,
            "num_threads": 1,
            "progress": False,
        }
        cfg = deep_update(base, overrides)
        # ``steps`` optimizer steps of the batch the run trains (whole steps, as a run counts).
        cfg.setdefault("tokens", steps * cfg["batch_size"] * cfg["model"]["block_size"])
        return TrainConfig.model_validate(cfg)

    return make
