"""GPT model, data, optimizers, schedules and the training loop (no optuna, no ray).

The public names are loaded on first use (PEP 562): importing a light module of the package,
such as ``scaletune.trainer.config`` for the study file's schema, must not import torch, which
``loop`` and ``data`` need. ``from scaletune.trainer import train, TrainConfig`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The errors every function here raises, to catch by kind (light: no torch, no Optuna).
from scaletune.trainer import errors as _errors
from scaletune.trainer.errors import *  # noqa: F403 - errors.__all__, listed there once

if TYPE_CHECKING:
    from scaletune.trainer.config import TrainConfig, validate_train_config
    from scaletune.trainer.data import prepare_data
    from scaletune.trainer.loop import Result, train

_HOME = {
    "Result": "loop",
    "TrainConfig": "config",
    "prepare_data": "data",
    "train": "loop",
    "validate_train_config": "config",
}
"""Each public name and the module of this package that defines it."""

__all__ = [
    *_errors.__all__,
    "Result",
    "TrainConfig",
    "prepare_data",
    "train",
    "validate_train_config",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
