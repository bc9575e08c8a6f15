"""One trial's training, in this process: what a Ray worker runs and what a benchmark runs.

Kept apart from search.plan so that a worker imports the trainer alone (torch), not Optuna and
the study's schema: that import costs each new worker process about a second.
"""

from __future__ import annotations

import time
from typing import Any

from scaletune.trainer.config import TrainConfig


def train_trial(config: TrainConfig, report: Any,
                data_fingerprint: str | None = None) -> dict[str, Any]:
    """Train one trial in this process; the trainer's Result as a dict (status 'oom' when the
    device ran out of memory). ``report(tokens, loss, metrics)`` answers "continue" or "prune".
    ``data_fingerprint``: the study's data, which the trial refuses to train on other data than
    (a DataError)."""
    import torch

    from scaletune.trainer import train

    def trainer_report(tokens: int, value: float, metrics: dict) -> str | None:
        return "stop" if report(tokens, value, metrics) == "prune" else None

    try:
        result = train(config, trainer_report, data_fingerprint=data_fingerprint)
    except torch.OutOfMemoryError as e:
        micro = config.micro_batch_size or config.batch_size
        return {
            "status": "oom",
            "reason": (
                f"out of memory with batch_size={config.batch_size}, micro_batch_size={micro} on "
                f"{config.device}: set trainer.micro_batch_size to {max(1, micro // 2)} or less "
                f"(gradient accumulation keeps the batch size) ({str(e).splitlines()[0][:200]})"
            ),
            "ended_at": time.time(),
        }
    out = result.as_dict()
    out["ended_at"] = time.time()
    return out
