"""Tiny study files for the search tests: a model that trains in about a second on a CPU core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_study(tmp: Path, text: Path, **overrides: Any) -> dict[str, Any]:
    """A study dict on the first 200 kB of ``text``; overrides replace top-level keys."""
    data_file = tmp / "corpus.txt"
    if not data_file.exists():
        data_file.write_bytes(text.read_bytes()[:200_000])
    study: dict[str, Any] = {
        "name": "tiny",
        "study_dir": str(tmp / "study"),
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "data": {"source": "text", "path": str(data_file), "tokenizer": "byte", "val_windows": 16},
        "tokens_per_trial": 40_960,
        "eval_every_tokens": 8_192,
        "search": {
            "lr": {"low": 1e-4, "high": 3e-2, "log": True},
            "weight_decay": {"prior": "auto", "as": "tau"},
            "dropout": {"value": 0.0},
            "warmup_frac": {"low": 0.0, "high": 0.2},
            "batch_size": {"choices": [8, 16]},
        },
        "sampler": {"name": "tpe", "n_startup_trials": 3},
        "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 8_192},
        "n_trials": 4,
        "workers": {"cpus_per_trial": 1, "max_concurrent": 1},
        "seed": 0,
    }
    study.update(overrides)
    return study


def write_study(tmp: Path, study: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path
