"""The training loop: ``train(config, report) -> Result``.

One function in the order things happen: set up (threads, device, data, model, optimizers,
resume), then for each optimizer step: lr from the schedule, a batch in micro-batches, backward,
clip, step; at token checkpoints: evaluate, report, log, checkpoint. The caller's ``report``
callback is the only hook; it may return "stop" (or False) to end the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from scaletune.trainer import kernels
from scaletune.trainer.config import TrainConfig
from scaletune.trainer.data import prepare_data, sample_batch, val_windows
from scaletune.trainer.errors import SetupError
from scaletune.trainer.model import GPT, flops_per_token
from scaletune.trainer.optim import build_optimizers, lr_at, set_lr

Report = Callable[[int, float, dict], object]
"""report(tokens_seen, val_loss, metrics) -> "stop" or False to end the run; anything else goes on."""

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
# Dense bf16 peak FLOP/s of known GPUs (datasheets), for MFU when SCALETUNE_PEAK_FLOPS is not
# set; the first name contained in the device name wins.
CUDA_BF16_PEAK_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}


@dataclass
class Result:
    """What one training run did; as_dict() is JSON-ready."""

    status: str
    """'completed', 'stopped' (the report callback said so) or 'diverged'."""
    reason: str
    """Why the run ended, e.g. 'non-finite training loss at step 37 (tokens 4736)'."""
    final_val_loss: float | None
    """Validation loss at the last evaluation (None when the run diverged)."""
    best_val_loss: float | None
    tokens_seen: int
    steps: int
    wall_time_s: float
    """Everything, from data preparation to the last checkpoint (summed over resumes)."""
    train_time_s: float
    """Optimizer steps only: evaluation, checkpoints and compilation are left out."""
    tokens_per_s: float
    flops_per_s: float
    """Achieved model FLOP/s (model.flops_per_token x tokens_per_s)."""
    mfu: float | None
    """flops_per_s over the peak in $SCALETUNE_PEAK_FLOPS or a known GPU's bf16 peak; else None."""
    grad_norm: dict[str, float]
    """Pre-clip gradient norm: mean, max, std, n_spikes (steps above 3x the running median)."""
    history: list[dict[str, float]]
    """One entry per evaluation: tokens, step, val_loss, train_loss, lr, grad_norm."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GradNormStats:
    """Running statistics of the pre-clip gradient norm, the health signal of seed 002.

    A spike is a norm above 3x the median of the previous ``window`` steps: one now and then is
    normal, repeated spikes are the warning sign that precedes divergence.
    """

    def __init__(self, window: int = 100):
        self.recent: deque[float] = deque(maxlen=window)
        self.n, self.mean, self.m2, self.max, self.n_spikes = 0, 0.0, 0.0, 0.0, 0

    def add(self, x: float) -> None:
        if len(self.recent) >= 10 and x > 3 * statistics.median(self.recent):
            self.n_spikes += 1
        self.recent.append(x)
        self.n += 1
        delta = x - self.mean  # Welford: a numerically stable running variance
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)
        self.max = max(self.max, x)

    def summary(self) -> dict[str, float]:
        std = math.sqrt(self.m2 / self.n) if self.n else math.nan
        return {"mean": self.mean if self.n else math.nan, "max": self.max, "std": std,
                "n_spikes": self.n_spikes}

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "n": self.n, "mean": self.mean, "m2": self.m2,
                "max": self.max, "n_spikes": self.n_spikes}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.recent.extend(d["recent"])
        self.n, self.mean, self.m2, self.max, self.n_spikes = (
            d["n"], d["mean"], d["m2"], d["max"], d["n_spikes"])


@dataclass
class _Progress:
    """The loop's counters; checkpointed as plain types so resume continues exactly."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    train_time_s: float = 0.0
    timed_tokens: int = 0
    wall_time_s: float = 0.0
    loss_sum: float = 0.0  # training losses since the last evaluation
    loss_count: int = 0
    status: str = "running"
    reason: str = ""


def train(config: TrainConfig, report: Report | None = None, resume: bool = False) -> Result:
    """Train a GPT as ``config`` says; ``report`` sees every evaluation and may stop the run.

    With ``resume`` the run continues from ``out_dir``'s checkpoint (when there is one) and ends
    exactly as an uninterrupted run with the same config would. torch.OutOfMemoryError is not
    caught: the caller decides what a run that does not fit means.
    """
    wall_start = time.perf_counter()
    rank, world = _distributed(config.device)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(config.num_threads or max(1, cores // _local_world(world)))
    device = _device(config.device, world)
    dtype = _dtype(config.dtype, device)
    if device.type == "cpu":
        _keep_freed_memory()
    out_dir = Path(config.out_dir) if config.out_dir else None
    lead = rank == 0  # the one process that reports, logs and writes checkpoints
    if resume and out_dir is None:
        raise SetupError("resume needs out_dir: the checkpoint lives there")

    block_size, batch_size = config.model.block_size, config.batch_size
    micro = config.micro_batch_size or batch_size
    local = _local_batch(batch_size, micro, world)
    micro = min(micro, local)
    tokens_per_step = config.tokens_per_step
    total_steps = math.ceil(config.tokens / tokens_per_step)
    eval_every = config.eval_every_tokens or math.ceil(config.tokens / 10)
    ckpt_every = config.checkpoint_every_tokens if out_dir else None
    data = prepare_data(config.data, block_size)
    val = val_windows(data.val, block_size, config.data.val_windows)

    torch.manual_seed(config.seed)  # init, then dropout, draw from here
    model = GPT(config.model, data.vocab_size).to(device)
    cpu_kernels: dict[str, str] = {}  # what the run records of the CPU kernel choices below
    if device.type == "cpu":
        matmul = kernels.resolve(config.cpu_matmul)
        float32_attention = dtype == torch.bfloat16 and kernels.float32_attention()
        model.use_onednn(matmul == "onednn")
        model.use_float32_attention(float32_attention)
        cpu_kernels = ({"matmul": matmul} if dtype == torch.float32 else
                       {"attention": "float32" if float32_attention else "bfloat16"})
    optimizers = build_optimizers(model, config.optim, device)
    data_rng = torch.Generator().manual_seed(config.seed)  # batch offsets only
    max_loss = config.max_loss or 1.5 * math.log(model.vocab_size)
    fpt = flops_per_token(config.model, data.vocab_size)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    progress, grad_stats = _Progress(), GradNormStats()
    ckpt_path = out_dir / CHECKPOINT if out_dir else None
    resumed = resume and ckpt_path.exists()
    if resumed:
        progress = _load_checkpoint(ckpt_path, config, data.fingerprint, model, optimizers,
                                    data_rng, grad_stats)
    if progress.step >= total_steps:  # the checkpoint is of a finished run: nothing to log
        return _result(progress, grad_stats, tokens_per_step, fpt, device, dtype, 0.0)
    if out_dir and lead:
        out_dir.mkdir(parents=True, exist_ok=True)
        _log(out_dir, {"event": "start", "resumed_at_step": progress.step if resumed else None,
                       **run_metadata(config, device, dtype, cpu_kernels),
                       "data": data.fingerprint})
    progress.status, progress.reason = "running", ""  # a stopped run may be resumed

    # Data parallel: every rank draws the same global batch and trains on its own slice of it;
    # DDP averages the gradients, so the step is the single-process step on the whole batch.
    wrapped = DistributedDataParallel(model) if world > 1 else model
    compiled = torch.compile(wrapped) if config.compile else wrapped
    board = None
    if config.tensorboard and out_dir and lead:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency

        board = SummaryWriter(str(out_dir / "tensorboard"))  # x axis: tokens seen
    bar = tqdm(total=total_steps, initial=progress.step, unit="step",
               disable=not (config.progress and lead), dynamic_ncols=True, file=sys.stderr)

    def settle(record: tuple[int, torch.Tensor, torch.Tensor]) -> str | None:
        """Read a finished step's loss and gradient norm: the reason to stop if it diverged."""
        step, loss_t, norm_t = record
        loss, norm = torch.stack([loss_t, norm_t]).tolist()
        reason = _divergence(loss, norm, max_loss)
        if reason:
            return f"{reason} at step {step + 1} (tokens {(step + 1) * tokens_per_step})"
        progress.loss_sum += loss
        progress.loss_count += 1
        grad_stats.add(norm)
        if not bar.disable and step % 10 == 0:
            rate = (bar.format_dict["rate"] or 0) * tokens_per_step
            bar.set_postfix_str(f"loss {loss:.3f} | {rate:,.0f} tok/s", refresh=False)
        return None

    # Reading a loss makes the host wait for the device. The loss of each step is read after
    # the next step has been queued, so a GPU never idles while the host checks it.
    pending = None
    start_step = progress.step
    timed_from, timed_tokens = time.perf_counter(), 0  # steps since the last pause (eval etc.)
    try:
        for step in range(start_step, total_steps):
            lr_mult = lr_at(step, total_steps, config.optim)
            set_lr(optimizers, lr_mult)
            x, y = sample_batch(data.train, batch_size, block_size, data_rng)
            x, y = x[rank * local:(rank + 1) * local], y[rank * local:(rank + 1) * local]
            if device.type == "cuda":  # page-locked, so the non-blocking copies really overlap
                x, y = x.pin_memory(), y.pin_memory()
            loss, norm = train_step(compiled, optimizers, x, y, micro, config.optim.grad_clip,
                                    config.optim.label_smoothing, autocast, device)
            if world > 1:  # the batch's loss is the mean of the ranks' losses
                dist.all_reduce(loss)
                loss = loss / world
            progress.step = step + 1
            tokens = progress.step * tokens_per_step
            timed_tokens += tokens_per_step
            bar.update()
            record, pending = pending, (step, loss, norm)
            reason = settle(record) if record else None
            if config.compile and step == start_step:  # that step compiled the graphs: not timed
                reason, pending = reason or settle(pending), None
                _sync(device)
                timed_from, timed_tokens = time.perf_counter(), 0

            final = progress.step == total_steps
            do_eval = final or _crossed(tokens, tokens_per_step, eval_every)
            do_ckpt = ckpt_path is not None and (
                final or (ckpt_every is not None and _crossed(tokens, tokens_per_step, ckpt_every)))
            if not (reason or do_eval or do_ckpt):
                continue

            # A pause: settle the last step, stop the clock, evaluate, report, checkpoint.
            if reason is None and pending:
                reason, pending = settle(pending), None
            _sync(device)
            progress.train_time_s += time.perf_counter() - timed_from
            progress.timed_tokens += timed_tokens
            if reason:
                progress.status, progress.reason = "diverged", reason
                break
            if do_eval:
                val_loss = evaluate(compiled, val, micro, device, autocast)
                entry = {"tokens": tokens, "step": progress.step, "val_loss": val_loss,
                         "train_loss": progress.loss_sum / max(1, progress.loss_count),
                         "lr": config.optim.lr * lr_mult, "grad_norm": grad_stats.recent[-1]}
                progress.history.append(entry)
                progress.loss_sum, progress.loss_count = 0.0, 0
                metrics = {**entry, "train_time_s": progress.train_time_s,
                           "tokens_per_s": progress.timed_tokens / max(progress.train_time_s, 1e-9),
                           "target_tokens": config.tokens if final else tokens // eval_every * eval_every}
                if out_dir and lead:
                    _log(out_dir, {"event": "eval", **metrics})
                if board is not None:
                    for key in ("val_loss", "train_loss", "lr", "grad_norm", "tokens_per_s"):
                        board.add_scalar(key, metrics[key], tokens)
                    board.flush()
                if not math.isfinite(val_loss):
                    progress.status = "diverged"
                    progress.reason = f"non-finite validation loss at step {progress.step} (tokens {tokens})"
                    break
                progress.best_val_loss = min(val_loss, progress.best_val_loss or math.inf)
                answer = report(tokens, val_loss, metrics) if report and lead else None
                if _agree(answer == "stop" or answer is False, world, device) and not final:
                    progress.status = "stopped"
                    progress.reason = f"stopped by report at step {progress.step} (tokens {tokens})"
                    do_ckpt = ckpt_path is not None  # so that the run can be resumed
            if final and progress.status == "running":
                progress.status, progress.reason = "completed", f"trained {tokens} tokens"
            if do_ckpt and lead:
                _save_checkpoint(ckpt_path, config, data.fingerprint, model, optimizers, data_rng,
                                 grad_stats, progress, wall_start)
            if progress.status != "running":
                break
            timed_from, timed_tokens = time.perf_counter(), 0
    finally:
        bar.close()
        if board is not None:
            board.close()

    result = _result(progress, grad_stats, tokens_per_step, fpt, device, dtype,
                     time.perf_counter() - wall_start)
    if out_dir and lead:
        _log(out_dir, {"event": "end", **{k: v for k, v in result.as_dict().items() if k != "history"}})
    return result


def train_step(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer], x: torch.Tensor,
               y: torch.Tensor, micro: int, grad_clip: float | None, label_smoothing: float,
               autocast: contextlib.AbstractContextManager, device: torch.device,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y), in micro-batches of ``micro`` sequences.

    Returns the batch's mean training loss and the gradient norm before clipping, both still on
    the device (reading them would wait for it).
    """
    n_micro = len(x) // micro
    loss_sum = torch.zeros((), device=device)
    for xm, ym in zip(x.split(micro), y.split(micro), strict=True):
        xm, ym = xm.to(device, non_blocking=True), ym.to(device, non_blocking=True)
        with autocast:
            _, loss = model(xm, ym, label_smoothing=label_smoothing)
        # Each micro-batch loss is the mean over its tokens: dividing by the number of
        # micro-batches makes the accumulated gradient the mean over the whole batch.
        (loss / n_micro).backward()
        loss_sum += loss.detach()
    params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
    if grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    for opt in optimizers:
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    return loss_sum / n_micro, norm


def _divergence(loss: float, grad_norm: float, max_loss: float) -> str | None:
    if not math.isfinite(loss):
        return "non-finite training loss"
    if loss > max_loss:
        return f"training loss {loss:.4g} above max_loss {max_loss:.4g}"
    if not math.isfinite(grad_norm):
        return "non-finite gradient norm"
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: torch.Tensor, micro: int, device: torch.device,
             autocast: contextlib.AbstractContextManager) -> float:
    """Mean next-token cross-entropy over the fixed validation windows (no dropout, no smoothing)."""
    model.eval()
    total = torch.zeros((), device=device)
    for chunk in windows.split(micro):
        chunk = chunk.to(device, non_blocking=True)
        with autocast:
            _, loss = model(chunk[:, :-1], chunk[:, 1:])
        total += loss.float() * len(chunk)  # every window has block_size targets
    model.train()
    return (total / len(windows)).item()


def _crossed(tokens: int, tokens_per_step: int, every: int) -> bool:
    """Did the last step carry the token count past a multiple of ``every``?"""
    return tokens // every > (tokens - tokens_per_step) // every


def _device(name: str, world: int = 1) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world > 1:  # one GPU per process of a torchrun launch
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


# ---- data parallel (torchrun) ------------------------------------------------------------------


def _distributed(device_name: str) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, joining its process group; else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _local_world(world: int) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


def _local_batch(batch_size: int, micro: int, world: int) -> int:
    """Sequences per rank; the global batch must split evenly into micro-batches on every rank."""
    if batch_size % world or (batch_size // world) % min(micro, batch_size // world):
        raise SetupError(
            f"batch_size={batch_size} must split into {world} equal parts that are multiples of "
            f"micro_batch_size={micro}"
        )
    return batch_size // world


def _agree(flag: bool, world: int, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (the report callback runs on rank 0 only).

    The flag travels on the training device: NCCL, the process group of CUDA runs, carries CUDA
    tensors only.
    """
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _keep_freed_memory() -> None:
    """Keep freed activation buffers in the process instead of handing them back to the kernel.

    glibc returns large freed blocks to the OS, so every training step faults the same pages in
    again (measured: ~20k page faults per step of a 6L/256d model at batch 32 x 128, several
    percent of the step). Raising the mmap and trim thresholds keeps them for reuse, as a GPU
    caching allocator does. A no-op where glibc's mallopt is not available.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value on 64-bit
    mallopt(m_trim_threshold, 1 << 30)


def _peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    if os.environ.get("SCALETUNE_PEAK_FLOPS"):
        return float(os.environ["SCALETUNE_PEAK_FLOPS"])
    if device.type == "cuda" and dtype == torch.bfloat16:
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in CUDA_BF16_PEAK_FLOPS.items() if k in name), None)
    return None


def _result(progress: _Progress, grad_stats: GradNormStats, tokens_per_step: int, fpt: int,
            device: torch.device, dtype: torch.dtype, wall_time_s: float) -> Result:
    tokens_per_s = progress.timed_tokens / progress.train_time_s if progress.train_time_s else 0.0
    peak = _peak_flops(device, dtype)
    last = progress.history[-1]["val_loss"] if progress.history else None
    return Result(
        status=progress.status,
        reason=progress.reason,
        final_val_loss=None if progress.status == "diverged" else last,
        best_val_loss=progress.best_val_loss,
        tokens_seen=progress.step * tokens_per_step,
        steps=progress.step,
        wall_time_s=progress.wall_time_s + wall_time_s,
        train_time_s=progress.train_time_s,
        tokens_per_s=tokens_per_s,
        flops_per_s=fpt * tokens_per_s,
        mfu=fpt * tokens_per_s / peak if peak else None,
        grad_norm=grad_stats.summary(),
        history=progress.history,
    )


# ---- run records and checkpoints ---------------------------------------------------------------


def run_metadata(config: TrainConfig, device: torch.device, dtype: torch.dtype,
                 cpu_kernels: dict[str, str]) -> dict[str, Any]:
    """What produced a run: resolved config, code revision, library versions, hardware (with the
    CPU kernels train() chose: ``matmul`` for float32, ``attention`` for bfloat16)."""
    versions = {"python": platform.python_version()}
    for lib in ("torch", "numpy", "tiktoken", "datasets", "pydantic"):
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    hardware = {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(), "cpu": _cpu_name()}
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    hardware.update(cpu_kernels)
    return {"config": config.model_dump(mode="json"), "git": git_revision(),
            "versions": versions, "hardware": hardware}


def git_revision() -> str | None:
    """The commit of the code, with '-dirty' when it has uncommitted changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def _cpu_name() -> str:
    return kernels.cpuinfo_field("model name") or platform.processor()


def _log(out_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, so a killed run leaves whole lines only."""
    with open(out_dir / METRICS, "a") as f:
        f.write(json.dumps({"time": time.time(), **record}) + "\n")


# Keys that may change between a run and its resume without changing what is computed (the data
# itself is compared by fingerprint).
_RUN_OPTIONS = {"progress", "tensorboard", "out_dir", "checkpoint_every_tokens", "eval_every_tokens",
                "num_threads", "compile", "cpu_matmul", "device", "data.cache_dir", "data.path",
                "data.data_files", "provenance"}


def _save_checkpoint(path: Path, config: TrainConfig, fingerprint: str, model: torch.nn.Module,
                     optimizers: list[torch.optim.Optimizer], data_rng: torch.Generator,
                     grad_stats: GradNormStats, progress: _Progress, wall_start: float) -> None:
    """Model, optimizers, counters and every RNG state, written to a temporary file and renamed."""
    state = asdict(progress)
    state["wall_time_s"] += time.perf_counter() - wall_start
    ckpt = {
        "model": model.state_dict(),
        "optimizers": [opt.state_dict() for opt in optimizers],
        "progress": state,
        "grad_stats": grad_stats.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": data_rng.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "config": config.model_dump(mode="json"),
        "fingerprint": fingerprint,
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load_checkpoint(path: Path, config: TrainConfig, fingerprint: str, model: torch.nn.Module,
                     optimizers: list[torch.optim.Optimizer], data_rng: torch.Generator,
                     grad_stats: GradNormStats) -> _Progress:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    old, new = _flat(ckpt["config"]), _flat(config.model_dump(mode="json"))
    changed = sorted(k for k in old.keys() | new.keys()
                     if not {k, k.split(".")[0]} & _RUN_OPTIONS and old.get(k) != new.get(k))
    if changed:
        raise SetupError(f"resume: {path} was written with a different config; changed: {changed}")
    if ckpt["fingerprint"] != fingerprint:
        raise SetupError(f"resume: {path} was trained on data {ckpt['fingerprint']}, not {fingerprint}")
    model.load_state_dict(ckpt["model"])
    for opt, state in zip(optimizers, ckpt["optimizers"], strict=True):
        opt.load_state_dict(state)
    grad_stats.load_state_dict(ckpt["grad_stats"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    data_rng.set_state(ckpt["rng"]["data"])
    if ckpt["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return _Progress(**ckpt["progress"])


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
