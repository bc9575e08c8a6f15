"""What runs on a Ray worker: one trial's training run, reporting back to the driver.

Workers never touch the study's storage. They send ``(tokens_seen, val_loss)`` to the driver's
coordinator actor and wait for its answer, which the study's pruner decides.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from typing import Any

import ray


@ray.remote(num_cpus=0)
class Coordinator:
    """Mailbox between trials on workers and the one driver process that writes the storage."""

    def __init__(self) -> None:
        self._inbox: list[tuple] = []
        self._waiting: dict[tuple[int, int], asyncio.Future] = {}
        self._mail: asyncio.Event | None = None  # set while the inbox has something

    def _post(self, message: tuple) -> None:
        self._inbox.append(message)
        if self._mail is not None:
            self._mail.set()

    async def started(self, number: int, info: dict[str, Any]) -> None:
        self._post(("started", number, info))

    async def report(self, number: int, tokens: int, value: float, metrics: dict) -> str:
        """Queue a report and wait until the driver answers 'continue' or 'prune'."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[(number, tokens)] = future
        self._post(("report", number, tokens, value, metrics))
        return await future

    async def wake(self) -> None:
        """Wake the driver's pending ``next`` call: its storage thread has done a job (a trial
        asked for, to launch; a trial told, to count)."""
        self._post(("wake", -1))

    async def drain(self) -> list[tuple]:
        out, self._inbox = self._inbox, []
        return out

    async def next(self, timeout: float) -> list[tuple]:
        """The inbox as soon as it has something, or empty after ``timeout`` seconds.

        The driver keeps one call pending and wakes when it returns, so a trial waiting for its
        pruning decision waits for the driver's storage write, not for its next polling round.
        """
        if not self._inbox:
            self._mail = self._mail or asyncio.Event()
            self._mail.clear()
            try:
                await asyncio.wait_for(self._mail.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return await self.drain()

    async def answer(self, decisions: list[tuple[int, int, str]]) -> None:
        for number, tokens, decision in decisions:
            future = self._waiting.pop((number, tokens), None)
            if future is not None and not future.done():
                future.set_result(decision)


def warm_up() -> None:
    """Import what a trial needs into this worker process, ahead of its first trial: torch and
    the trainer (~1.6 s of CPU on a laptop).

    Ray reuses a job's worker processes, so the trials that follow find them loaded. Never
    raises: a trial that cannot import the trainer fails with that error itself. torch.compile's
    frontend (torch._dynamo, 1.4 s more) is left to a trial that compiles: the trainer's
    optimizers run without it (trainer/optim.py).
    """
    try:
        from scaletune.trainer.threads import quiet_waits

        quiet_waits()  # before torch: a worker of a cluster started apart from the study
        import scaletune.trainer.loop  # noqa: F401
        from scaletune.trainer.record import code_revision

        code_revision()  # found once per process (git), before the first trial asks
    except Exception:  # noqa: BLE001 - the trial reports it, with its own traceback
        pass


GPU_SHARE_HEADROOM = 0.95
"""The part of a trial's share of a GPU that its memory allocator may take at most: the rest is
for what the allocator does not count (each process's CUDA context, the CUDA libraries' own)."""
CONTEXT_BYTES = 512 * 2**20
"""What a process holds on its GPU outside torch's allocator, at least (its CUDA context and the
libraries' kernels: 300-600 MiB): a fixed cost per process, which 5% of a small share does not
cover (eight trials at 0.125 of a 24 GB GPU kept 150 MB each for it)."""


TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                      "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")
"""The variables torchrun gives its ranks, which a trial's process must not read as its own."""


def _own_gpu(gpu_ids: list[str]) -> None:
    """Make the trial's GPU this process's current device where Ray did not narrow the GPUs it
    sees to it (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES): every trial trained on device 0,
    whichever GPU Ray gave it. Ray's ids are then of the GPUs CUDA_VISIBLE_DEVICES names, where
    it is set, else the machine's."""
    if not gpu_ids or not os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"):
        return
    import torch

    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()]
    torch.cuda.set_device(visible.index(gpu_ids[0]) if gpu_ids[0] in visible
                          else int(gpu_ids[0]))


def cap_gpu_memory(share: float) -> float | None:
    """Cap this process's CUDA memory at its ``share`` of the GPU (Ray's fraction of it, 0.25
    for four trials on a GPU), less GPU_SHARE_HEADROOM's part or CONTEXT_BYTES, whichever is
    more; the cap, or None for a whole GPU. Uncapped, a trial's allocator kept its peak for its
    whole run, and whether a trial ran out of memory depended on the trials beside it: its 'oom'
    blamed its own micro-batch for another's peak. Capped, each runs out of its own share alone."""
    if not 0 < share < 1:
        return None
    import torch

    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    cap = max(min(share * GPU_SHARE_HEADROOM, share - CONTEXT_BYTES / total), share / 2)
    torch.cuda.set_per_process_memory_fraction(cap)
    return cap


def run_trial(config: dict[str, Any], number: int, coordinator: Any,
              data_fingerprint: str | None = None) -> dict[str, Any]:
    """Train one trial on this worker (search.trial.train_trial), reporting to the driver; on the
    study's data (``data_fingerprint``) or not at all."""
    warm = "scaletune.trainer.loop" in sys.modules  # loaded by warm_up or an earlier trial
    from scaletune.trainer.threads import quiet_waits

    quiet_waits()
    import torch

    from scaletune.search.trial import train_trial
    from scaletune.trainer import TrainConfig
    from scaletune.trainer.record import code_revision

    cfg = TrainConfig.model_validate(config)
    # A trial is one process: torchrun's variables, inherited where Ray's node was started under
    # torchrun or on a PyTorch job's pod, made every trial wait at init_process_group for peers
    # that never come (trainer.distributed.rank_and_world reads WORLD_SIZE).
    for name in TORCHRUN_VARIABLES:
        os.environ.pop(name, None)
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    if gpu_ids and torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
        cfg = cfg.model_copy(update={"device": "cuda"})
    elif cfg.device == "auto":
        cfg = cfg.model_copy(update={"device": "cpu"})
    share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    if cfg.device == "cuda":
        _own_gpu(gpu_ids)
        cap_gpu_memory(share)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": gpu_ids,
        "gpu_share": share,  # of a GPU: its memory is capped at that share (cap_gpu_memory)
        "device": cfg.device,
        "started_at": time.time(),  # when the worker began, as the driver learns it only later
        "warm": warm,  # False: this trial paid for importing torch and the trainer (~2 s)
        "code": code_revision(),  # the code that trains it (a study outlives upgrades)
    }
    ray.get(coordinator.started.remote(number, info))

    def report(tokens: int, value: float, metrics: dict) -> str:
        plain = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        return ray.get(coordinator.report.remote(number, int(tokens), float(value), plain))

    return {**train_trial(cfg, report, data_fingerprint), "worker": info}
