"""GPT model, data, optimizers, schedules and the training loop (no optuna, no ray)."""

from trainer.config import TrainConfig
from trainer.data import prepare_data
from trainer.loop import Result, train

__all__ = ["Result", "TrainConfig", "prepare_data", "train"]
