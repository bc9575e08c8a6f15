"""GPT model, data, optimizers, schedules and the training loop (no optuna, no ray)."""

from scaletune.trainer.config import TrainConfig
from scaletune.trainer.data import prepare_data
from scaletune.trainer.loop import Result, train

__all__ = ["Result", "TrainConfig", "prepare_data", "train"]
