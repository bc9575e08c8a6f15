"""The training loop: ``train(config, report) -> Result``.

``train`` reads in the order things happen: set up (threads, device, data, model, optimizers,
resume), then for each optimizer step: lr from the schedule, a batch in micro-batches, backward,
clip, step; at token checkpoints: evaluate, report, log, checkpoint. The caller's ``report``
callback is the only hook; it may return "stop" (or False) to end the run. Checkpoint files, the
run record and torch.distributed each live in a module of their own, so this one is the loop only.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from scaletune.trainer import kernels
from scaletune.trainer.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    remove_leftover_writes,
    run_in_the_way,
    save_checkpoint,
)
from scaletune.trainer.config import TrainConfig, revalidated, tensorboard_missing, usable_cores
from scaletune.trainer.data import (
    TokenData,
    another_python,
    prepare_data,
    reads_otherwise,
    sample_batch,
    val_windows,
    validation_note,
    where,
)
from scaletune.trainer.distributed import (
    agree,
    as_rank_zero,
    data_parallel,
    device_for,
    draw_apart,
    full_tensor,
    local_batch,
    local_world,
    mean_over_ranks,
    rank_and_world,
    ranks_without,
    sum_over_ranks,
    uneven_nodes,
)
from scaletune.trainer.errors import DataError, SetupError
from scaletune.trainer.interrupt import DeferredInterrupt, PromptInterrupt
from scaletune.trainer.model import GPT, flops_per_token
from scaletune.trainer.optim import build_optimizers, lr_at, set_lr, step_optimizer
from scaletune.trainer.record import (
    METRICS,
    drop_evals_after,
    fmt_duration,
    fmt_eta,
    log_event,
    run_metadata,
    set_aside,
    set_aside_log,
)
from scaletune.trainer.runlock import run_lock

Report = Callable[[int, float, dict], object]
"""report(tokens_seen, val_loss, metrics) -> "stop" or False to end the run; anything else goes on."""

# Dense bf16 peak FLOP/s of known GPUs (NVIDIA's datasheets; a GeForce card's with FP32
# accumulation, as torch runs it), for MFU when SCALETUNE_PEAK_FLOPS is not set; the first name
# contained in the device name wins, so a variant comes before its family (an H100 NVL was read
# as an SXM H100, and its MFU 15% low; an L40 as an L4).
CUDA_BF16_PEAK_FLOPS = {
    "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
    "H800 PCIe": 756e12, "H800": 989e12, "H200 NVL": 835e12, "H200": 989e12, "GH200": 989e12,
    "GB200": 2500e12, "B200": 2250e12,
    "A100": 312e12, "A800": 312e12,
    "L40S": 362e12, "L40": 181e12, "L4": 121e12, "RTX 4090": 165e12,
}


def cuda_peak(name: str) -> float | None:
    """The bf16 datasheet peak of the GPU that torch names ``name``: the first entry of
    CUDA_BF16_PEAK_FLOPS found in it as whole words (a substring took an "RTX A1000" for an
    A100); None for a laptop's GPU (its peak is not the desktop card's) or one not listed."""
    if "laptop" in name.lower():
        return None
    return next((v for k, v in CUDA_BF16_PEAK_FLOPS.items()
                 if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", name)), None)


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
        return {"mean": self.mean if self.n else math.nan, "max": self.max if self.n else math.nan,
                "std": std, "n_spikes": self.n_spikes}

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
    above_max_loss: float | None = None  # the last step's loss, where it was above max_loss
    status: str = "running"
    reason: str = ""


@dataclass
class _Run:
    """What a run fixes before its first step: where it runs, its sizes, data, model, optimizers."""

    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype
    out_dir: Path | None
    lead: bool
    """The one process that reports, logs and writes checkpoints."""
    local: int
    """Sequences of the global batch that this rank trains on."""
    micro: int
    tokens_per_step: int
    total_steps: int
    eval_every: int
    ckpt_every: int | None
    ckpt_path: Path | None
    data: TokenData
    val: torch.Tensor
    model: GPT
    """The model whose state is checkpointed (sharded in place under fsdp)."""
    trained: torch.nn.Module
    """The model the steps run: ``model``, or ``model`` in DDP."""
    cpu_kernels: dict[str, str]
    """What the run records of the CPU kernel choices (empty on a GPU)."""
    optimizers: list[torch.optim.Optimizer]
    data_rng: torch.Generator
    max_loss: float
    fpt: int
    autocast: torch.autocast


def train(config: TrainConfig, report: Report | None = None, resume: bool = False,
          interrupt: DeferredInterrupt | None = None, overwrite: bool = False,
          data_fingerprint: str | None = None) -> Result:
    """Train a GPT as ``config`` says; ``report`` sees every evaluation and may stop the run.

    With ``resume`` the run continues from ``out_dir``'s checkpoint (when there is one) and ends
    exactly as an uninterrupted run with the same config would; with ``overwrite`` it trains
    from scratch and replaces that run once its set-up has passed. A checkpoint in ``out_dir``
    with neither is a SetupError, as with ``scaletune train``: a repeated call loses no run. torch.OutOfMemoryError is not
    caught: the caller decides what a run that does not fit means. With ``interrupt``, a signal
    that arrives in the set-up raises its Interrupted once the set-up is done, before anything
    is written (or cleared: ``overwrite``); during the steps, between two steps, never in the
    middle of a checkpoint or a log line (for one process; a PromptInterrupt, torchrun's ranks',
    at once). With ``data_fingerprint`` (a study's trial: the data its trials train on), data that
    reads otherwise now is a DataError before any step.
    """
    wall_start = time.perf_counter()
    if not isinstance(config, TrainConfig):  # a path: "'str' object has no attribute 'out_dir'"
        raise TypeError(f"train takes a TrainConfig, not a {type(config).__name__}: "
                        "train(load_train_config(path)), or validate_train_config(d) for a dict")
    if report is not None and not callable(report):  # it failed at the first evaluation
        raise TypeError(f"train: report takes a function report(tokens, val_loss, metrics) "
                        f"that may answer 'stop', not a {type(report).__name__}")
    config = revalidated(config)  # one changed by model_copy(update=...) is checked as a file's
    if why := run_in_the_way(config.out_dir, resume, overwrite,  # a repeated call loses no run
                             config=config.model_dump(mode="json")):
        raise SetupError(why)
    if config.compile and (why := compiler_missing()):
        raise SetupError(why)
    if why := tensorboard_missing(config):
        raise SetupError(why)
    # The caller's random numbers come back as they were: the run seeds torch's (its init and
    # dropout draw from them), which left a notebook's next draws on the run's seed. CUDA's
    # where it had started (saving them would start it on a machine training on its CPU).
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    # A signal in the set-up waits for its end (interrupt.check() below), but in the data's
    # preparation (_set_up): a KeyboardInterrupt raised inside an import or a collective left
    # the process half set up.
    with interrupt or contextlib.nullcontext(), torch.random.fork_rng(devices=cuda):
        run = _set_up(config, resume, data_fingerprint, interrupt)
        # One run at a time in out_dir (trainer.runlock): a second is refused before it writes.
        with run_lock(run.out_dir if run.lead else None):
            # A study's driver says it once for all its trials; a run of its own says it here.
            if (run.lead and data_fingerprint is None
                    and (small := validation_note(config.data, config.model.block_size,
                                                  run.data.n_val_tokens, study=False))):
                print(f"note: {small}", file=sys.stderr, flush=True)
            if run.lead and (other := _other_data(config, run.data.fingerprint)):
                print(f"note: {other}", file=sys.stderr, flush=True)
            return _train(config, run, report, resume, interrupt, overwrite, wall_start)


def _other_data(config: TrainConfig, fingerprint: str) -> str | None:
    """A config exported from a study (``provenance``) whose trial trained on other data than
    this run reads (``fingerprint``): the run trains on the data as it is now, said once."""
    provenance = config.provenance or {}
    ran_on = provenance.get("data_fingerprint")
    if not isinstance(ran_on, str) or ran_on == fingerprint:
        return None
    said = reads_otherwise(config.data, ran_on, fingerprint,
                           "the trial this config was exported from")
    study = provenance.get("study_provenance")  # a mapping, unless the file was edited
    began = study.get("python") if isinstance(study, dict) else None
    why = another_python(config.data, ran_on, fingerprint, began, "its study ran")
    return f"{said}: this run trains on the data as it is now" + (f" ({why})" if why else "")


PER_NODE = frozenset({"num_threads", "progress", "out_dir"})
"""Training-config fields a node may set for itself, or that name a place on it (out_dir, a
shared folder, may be mounted elsewhere on each): left out of ``config_digest``."""


def config_digest(config: TrainConfig) -> int:
    """A 63-bit hash of what ``config`` trains (its fields but PER_NODE), the same on every
    node that read the same file, wherever its copy lies: the data's local paths, made absolute
    against each copy's folder as the file was read, count by their last part."""
    fields = {k: v for k, v in config.model_dump(mode="json").items() if k not in PER_NODE}

    def placeless(value: Any) -> Any:
        if isinstance(value, list):
            return [placeless(v) for v in value]
        return os.path.basename(value) if isinstance(value, str) and os.path.isabs(value) \
            else value

    fields["data"] = {k: placeless(v) for k, v in fields["data"].items()}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _train(config: TrainConfig, run: _Run, report: Report | None, resume: bool,
           interrupt: DeferredInterrupt | None, overwrite: bool, wall_start: float) -> Result:
    """``train`` once its set-up is done and out_dir is this run's."""
    if interrupt is not None:  # stopped in the set-up: before anything is written or cleared
        interrupt.check()
    if run.world > 1 and (apart := ranks_without(
            as_rank_zero(config_digest(config), run.world, run.device), run.world, run.device)):
        # Each node reads its own copy of the file: one edited, or stale, trained beside the
        # others with its own values (lr 0.001 on one node, 0.0149 on the other), and the run
        # recorded rank 0's config alone.
        raise SetupError(
            f"{apart} of the {run.world} processes of this run read a training config other "
            "than the first process's (each node reads its own copy of the file): give every "
            "node the same file, copied to each or on a file system they share")
    if run.out_dir and run.lead:
        if overwrite and not resume:  # only now: a run that failed its set-up loses nothing
            clear_run(run.out_dir)
        remove_leftover_writes(run.out_dir)
    progress, grad_stats = _Progress(), GradNormStats()
    resumed = resume and run.ckpt_path.exists()
    if resume and run.world > 1 and 0 < (blind := ranks_without(resumed, run.world, run.device)) \
            < run.world:
        # Decided rank by rank, a node that did not see the checkpoint started afresh beside
        # the resumed ones: they trained other weights, and hung at the end (or at FSDP's load).
        raise SetupError(
            f"--resume: {blind} of the {run.world} processes find no {CHECKPOINT} in out_dir "
            f"{run.out_dir}, which the others resume from: out_dir must be a folder every node "
            "shares (the same path on a shared file system)")
    if resume and not resumed and run.out_dir and run.lead and config.progress:
        # A typo in out_dir must not look like a resumed run.
        print(f"--resume: no checkpoint in {run.out_dir} (no {CHECKPOINT} there): starting a "
              "new run", file=sys.stderr, flush=True)
    notes: list[str] = []
    if resumed:
        saved_progress, saved_grad_stats = load_checkpoint(
            run.ckpt_path, config, run.data.fingerprint, run.model, run.optimizers, run.data_rng,
            notes)
        progress = _Progress(**saved_progress)
        grad_stats.load_state_dict(saved_grad_stats)
    if progress.step >= run.total_steps:  # the checkpoint is of a finished run: nothing to log
        if config.progress and run.lead:  # its summary, reprinted, read as a new run's
            print(f"--resume: the run in {run.out_dir} had finished ({progress.step:,} of "
                  f"{run.total_steps:,} steps): nothing to train; its result is the one it "
                  "ended with",
                  file=sys.stderr, flush=True)
        return _result(progress, grad_stats, run, 0.0)
    if resumed and config.progress and run.lead:
        print(f"resuming at step {progress.step:,} of {run.total_steps:,} "
              f"({progress.step * config.tokens_per_step:,} tokens) from {run.ckpt_path}",
              file=sys.stderr, flush=True)
        for note in notes:
            print(f"note: {note}", file=sys.stderr, flush=True)
    if run.out_dir and run.lead:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        if resumed:  # the evaluations logged after the checkpoint are done again from it
            drop_evals_after(run.out_dir, progress.step)
        else:
            # A run stopped before its first checkpoint left its log: this run's would follow it
            # in one file, two starts and two sets of evaluations (and its TensorBoard scalars,
            # two curves over the same tokens).
            kept = set_aside_log(run.out_dir)
            board_kept = set_aside(run.out_dir / "tensorboard") if config.tensorboard else None
            if kept and config.progress:
                print(f"the metrics log of an earlier run here, which left no checkpoint, is "
                      f"kept as {kept}" + (f" (its TensorBoard scalars as {board_kept})"
                                           if board_kept else ""), file=sys.stderr, flush=True)
            elif board_kept and config.progress:
                print(f"the TensorBoard scalars of an earlier run here, which left no "
                      f"checkpoint, are kept as {board_kept}", file=sys.stderr, flush=True)
        log_event(run.out_dir, {"event": "start",
                                "resumed_at_step": progress.step if resumed else None,
                                "processes": run.world,  # torchrun's, on all machines
                                **run_metadata(config, run.device, run.dtype, run.cpu_kernels),
                                "data": run.data.fingerprint})
    progress.status, progress.reason = "running", ""  # a stopped run may be resumed

    compiled = torch.compile(run.trained) if config.compile else run.trained
    # Resumed: the scalars logged after the checkpoint are logged again from it, and TensorBoard
    # hides the earlier ones past it (each point was drawn twice).
    board = _tensorboard(config, run, progress.step * run.tokens_per_step + 1 if resumed else None)
    # On a terminal, a bar; written to a file or a pipe (a cluster's job log), where a bar's
    # redraws would pile up, one line per evaluation instead.
    shown = config.progress and run.lead
    lines = shown and not _on_terminal(sys.stderr)
    if lines:  # the first evaluation may be minutes away: say what comes, and when
        every, threads = math.ceil(run.eval_every / run.tokens_per_step), torch.get_num_threads()
        into = f" into {run.out_dir}" if run.out_dir else ""
        when = (f"every {every:,} step{'' if every == 1 else 's'}" if every < run.total_steps
                else "at the end")
        print(f"training {run.total_steps - progress.step:,} steps of {run.tokens_per_step:,} "
              f"tokens on {run.device.type}, {threads} thread{'' if threads == 1 else 's'}{into}; "
              f"a line at each evaluation, {when}", file=sys.stderr, flush=True)
    # tqdm's bar without its steps per second: the postfix says tokens per second, and on an
    # 80-column terminal the two left a bar one character wide and cut the postfix short.
    bar = tqdm(total=run.total_steps, initial=progress.step, unit="step",
               disable=not shown or lines, dynamic_ncols=True, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    if isinstance(interrupt, PromptInterrupt):
        interrupt.prompt()
    try:
        _run_steps(config, report, run, compiled, progress, grad_stats, bar, board, wall_start,
                   lines, interrupt)
    finally:
        bar.close()
        if board is not None:
            board.close()

    result = _result(progress, grad_stats, run, time.perf_counter() - wall_start)
    if run.out_dir and run.lead:
        log_event(run.out_dir,
                  {"event": "end", **{k: v for k, v in result.as_dict().items() if k != "history"}})
    return result


def clear_run(out_dir: Path) -> None:
    """Remove what a run wrote into out_dir (checkpoint, metrics log, TensorBoard scalars), so the
    run that replaces it starts a fresh log instead of appending to the old one. Other files stay."""
    for name in (CHECKPOINT, METRICS):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)


def compiler_missing() -> str | None:
    """Why ``compile: true`` cannot work on this machine, or None. torch.compile builds its
    kernels with the machine's C++ compiler (C++ kernels on CPU, Triton's launchers on GPUs);
    without one it fails at the first step with a long traceback."""
    try:
        from torch._inductor import config as inductor
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without inductor: torch.compile says what it lacks
        return None
    try:
        get_cpp_compiler()
    except Exception:  # noqa: BLE001 - InvalidCxxCompiler, or whatever the search met
        tried = ", ".join(c for c in inductor.cpp.cxx if c) or "g++"
        install = "xcode-select --install" if sys.platform == "darwin" else "apt install g++"
        return ("compile: true needs a C++ compiler, which torch.compile builds its kernels "
                f"with, and none works here (tried {tried}); install one ({install}), set "
                "CXX to one, or set compile: false")
    return None


def _set_up(config: TrainConfig, resume: bool, data_fingerprint: str | None = None,
            interrupt: DeferredInterrupt | None = None) -> _Run:
    """Threads, device and dtype, the data, a freshly initialised model and its optimizers.
    ``interrupt`` (noting the signals of the set-up) lets one stop the data's preparation at
    once: a corpus may take minutes to tokenize, and reading it writes nothing of the run's."""
    rank, world = rank_and_world(config.device)
    cores = usable_cores()
    torch.set_num_threads(config.num_threads or max(1, cores // local_world(world)))
    device = device_for(config.device, world)
    dtype = _dtype(config.dtype, device)
    if device.type == "cpu":
        keep_freed_memory()
    elif device.type == "cuda":
        # float32 matmuls (a float32 run's, and autocast's float32 ops) on TF32 tensor cores,
        # as nanoGPT and litgpt do: torch's default keeps them full float32 on an A100 or H100,
        # several times slower, for precision pretraining does not need.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(config.out_dir) if config.out_dir else None
    if resume and out_dir is None:
        raise SetupError("resume needs out_dir: the checkpoint lives there")

    block_size, batch_size = config.model.block_size, config.batch_size
    micro = config.micro_batch_size or batch_size
    try:
        local = local_batch(batch_size, micro, world)
    except SetupError as e:
        if why := uneven_nodes(world):  # the batch is not what the user would change
            raise SetupError(f"{e}; {why}") from None
        raise
    with interrupt.at_once() if interrupt is not None else contextlib.nullcontext():
        data = prepare_data(config.data, block_size)
    if data_fingerprint is not None and data.fingerprint != data_fingerprint:
        raise DataError(
            f"{where(config.data)}: the data changed while the study ran: it reads as "
            f"{data.fingerprint} ({data.n_train_tokens:,} training tokens) now, where the "
            f"study's trials trained on {data_fingerprint}; one study must not mix trials on "
            "different data: restore the data to resume the study, or start a new one")
    val = val_windows(data.val, block_size, config.data.val_windows)

    torch.manual_seed(config.seed)  # init, then dropout, draw from here
    model = GPT(config.model, data.vocab_size).to(device)
    cpu_kernels: dict[str, str] = {}
    if device.type == "cpu":
        matmul = kernels.resolve(config.cpu_matmul)
        float32_attention = dtype == torch.bfloat16 and kernels.float32_attention()
        model.use_onednn(matmul == "onednn")
        model.use_float32_attention(float32_attention)
        cpu_kernels = ({"matmul": matmul} if dtype == torch.float32 else
                       {"attention": "float32" if float32_attention else "bfloat16"})
        # Masks of kernels.dropout outside compile: other masks than torch's, so other losses.
        cpu_kernels["dropout"] = "torch" if config.compile else "16-bit masks"
    trained = data_parallel(model, world, config.parallel, dtype)  # before the optimizers
    draw_apart(config.seed, rank)
    optimizers = build_optimizers(model, config.optim, device,
                                  sharded=config.parallel == "fsdp" and world > 1)
    return _Run(
        rank=rank, world=world, device=device, dtype=dtype, out_dir=out_dir, lead=rank == 0,
        local=local, micro=min(micro, local), tokens_per_step=config.tokens_per_step,
        total_steps=config.steps,
        eval_every=config.eval_every_tokens or math.ceil(config.tokens / 10),
        ckpt_every=config.checkpoint_every_tokens if out_dir else None,
        ckpt_path=out_dir / CHECKPOINT if out_dir else None,
        data=data, val=val, model=model, trained=trained, cpu_kernels=cpu_kernels,
        optimizers=optimizers,
        data_rng=torch.Generator().manual_seed(config.seed),  # batch offsets only
        max_loss=config.max_loss or 1.5 * math.log(model.vocab_size),
        fpt=flops_per_token(config.model, data.vocab_size),
        autocast=torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=dtype == torch.bfloat16),
    )


def _tensorboard(config: TrainConfig, run: _Run, purge_from: int | None = None) -> Any:
    """A SummaryWriter in the run's folder when asked for (x axis: tokens seen), else None;
    ``purge_from``: the tokens from which earlier events are hidden (SummaryWriter's
    ``purge_step``)."""
    if not (config.tensorboard and run.out_dir and run.lead):
        return None
    from torch.utils.tensorboard import SummaryWriter  # optional dependency

    return SummaryWriter(str(run.out_dir / "tensorboard"), purge_step=purge_from)


def _run_steps(config: TrainConfig, report: Report | None, run: _Run, model: torch.nn.Module,
               progress: _Progress, grad_stats: GradNormStats, bar: tqdm, board: Any,
               wall_start: float, lines: bool = False,
               interrupt: DeferredInterrupt | None = None) -> None:
    """Optimizer steps until the last one, a divergence or the report's stop. At token
    checkpoints the clock pauses to evaluate, report, log and checkpoint; with ``lines``, each
    evaluation is also printed as one line (``progress`` off a terminal)."""
    # Reading a loss makes the host wait for the device. The loss of each step is read after
    # the next step has been queued, so a GPU never idles while the host checks it.
    pending = None
    start_step = progress.step
    # The ETA's clock and the step it starts at: the set-up before the steps is not theirs, nor
    # is a first step that compiled the graphs.
    steps_from, paced_from = time.perf_counter(), start_step
    evaluated = False
    timed_from, timed_tokens = time.perf_counter(), 0  # steps since the last pause (eval etc.)
    for step in range(start_step, run.total_steps):
        if interrupt is not None:
            interrupt.check()
        lr_mult = lr_at(step, run.total_steps, config.optim)
        loss, norm = _step(config, run, model, step, lr_mult)
        progress.step = step + 1
        tokens = progress.step * run.tokens_per_step
        timed_tokens += run.tokens_per_step
        bar.update()
        record, pending = pending, (step, loss, norm)
        reason = _settle(record, run, progress, grad_stats, bar) if record else None
        if config.compile and step == start_step:  # that step compiled the graphs: not timed
            reason, pending = reason or _settle(pending, run, progress, grad_stats, bar), None
            _sync(run.device)
            timed_from, timed_tokens = time.perf_counter(), 0
            steps_from, paced_from = timed_from, progress.step

        final = progress.step == run.total_steps
        do_eval = final or _crossed(tokens, run.tokens_per_step, run.eval_every)
        do_ckpt = run.ckpt_path is not None and (final or (
            run.ckpt_every is not None and _crossed(tokens, run.tokens_per_step, run.ckpt_every)))
        if not (reason or do_eval or do_ckpt):
            continue

        # A pause: settle the last step, stop the clock, evaluate, report, checkpoint.
        if reason is None and pending:
            reason, pending = _settle(pending, run, progress, grad_stats, bar), None
        _sync(run.device)
        progress.train_time_s += time.perf_counter() - timed_from
        progress.timed_tokens += timed_tokens
        if reason:
            progress.status, progress.reason = "diverged", reason
            return
        if do_eval:
            evaluated_from = time.perf_counter()
            _evaluate_and_report(config, report, run, model, progress, grad_stats, board,
                                 lr_mult, final)
            if config.compile and not evaluated:  # this process's first: it compiled it too
                steps_from += time.perf_counter() - evaluated_from
            evaluated = True
            if lines:
                print(_progress_line(progress, run, paced_from, wall_start, steps_from),
                      file=sys.stderr, flush=True)
            # The bar shows this evaluation at once: it showed the one before until the next
            # tenth step, and at the end of the run for good.
            _postfix(bar, run, progress, progress.history[-1]["train_loss"])
            if progress.status == "diverged":
                return
            if progress.status == "stopped":
                do_ckpt = run.ckpt_path is not None  # so that the run can be resumed
        if final and progress.status == "running":
            progress.status, progress.reason = "completed", f"trained {tokens:,} tokens"
        if do_ckpt:  # every rank: a sharded model's state is gathered
            _save(config, run, progress, grad_stats, wall_start)
        if progress.status != "running":
            return
        timed_from, timed_tokens = time.perf_counter(), 0


def _on_terminal(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _progress_line(progress: _Progress, run: _Run, paced_from: int, wall_start: float,
                   steps_from: float) -> str:
    """An evaluation as one line: ``step 593/5,860 (10%)  tokens 303,616  val loss 2.2800  train
    loss 2.3971  25,297 tok/s  12 s elapsed, ETA ~2 min``. The ETA is the steps' own pace since
    ``steps_from``, when the run was at step ``paced_from`` (evaluations included), not this
    process's set-up before them nor a step that compiled."""
    last = progress.history[-1]
    elapsed = time.perf_counter() - wall_start  # this process's, since a resume
    done = progress.step - paced_from
    left = run.total_steps - progress.step
    pace = (time.perf_counter() - steps_from) / done if done else 0.0
    eta = f", {fmt_eta(pace * left)}" if done and left else ""
    rate = progress.timed_tokens / max(progress.train_time_s, 1e-9)
    return (f"step {progress.step:,}/{run.total_steps:,} ({progress.step / run.total_steps:.0%})"
            f"  tokens {last['tokens']:,}  val loss {last['val_loss']:.4f}"
            f"  train loss {last['train_loss']:.4f}  {rate:,.0f} tok/s"
            f"  {fmt_duration(elapsed)} elapsed{eta}")


def _step(config: TrainConfig, run: _Run, model: torch.nn.Module, step: int,
          lr_mult: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimizer step ``step`` on this rank's slice of the global batch: (loss, grad norm)."""
    set_lr(run.optimizers, lr_mult)
    x, y = sample_batch(run.data.train, config.batch_size, config.model.block_size, run.data_rng)
    mine = slice(run.rank * run.local, (run.rank + 1) * run.local)
    x, y = x[mine], y[mine]
    if run.device.type == "cuda":  # page-locked, so the non-blocking copies really overlap
        x, y = x.pin_memory(), y.pin_memory()
    loss, norm = train_step(model, run.optimizers, x, y, run.micro, config.optim.grad_clip,
                            config.optim.label_smoothing, run.autocast, run.device)
    return mean_over_ranks(loss, run.world), norm


def _settle(record: tuple[int, torch.Tensor, torch.Tensor], run: _Run, progress: _Progress,
            grad_stats: GradNormStats, bar: tqdm) -> str | None:
    """Read a finished step's loss and gradient norm: the reason to stop if it diverged."""
    step, loss_t, norm_t = record
    loss, norm = torch.stack([loss_t, norm_t]).tolist()
    reason = _divergence(loss, norm, run.max_loss, progress.above_max_loss)
    if reason:
        progress.step = step + 1  # the run ends here: the step queued after it is not counted
        return f"{reason} at step {step + 1} (tokens {(step + 1) * run.tokens_per_step})"
    progress.above_max_loss = loss if loss > run.max_loss else None
    progress.loss_sum += loss
    progress.loss_count += 1
    grad_stats.add(norm)
    if step % 10 == 0:
        _postfix(bar, run, progress, loss)
    return None


def _postfix(bar: tqdm, run: _Run, progress: _Progress, loss: float) -> None:
    """The bar's ``loss 2.413 | val 2.398 | 25,297 tok/s``: a step's training loss, the latest
    evaluation's, and the tokens per second of the steps (as the summary counts them: the
    pauses to evaluate and checkpoint left out), tqdm's pace of steps before the first pause.
    tqdm's pace takes the pauses in, and at the end of a run said 5,300 where it had trained
    11,285 tokens a second."""
    if bar.disable:
        return
    rate = (progress.timed_tokens / progress.train_time_s if progress.train_time_s
            else (bar.format_dict["rate"] or 0) * run.tokens_per_step)
    val = f" | val {progress.history[-1]['val_loss']:.3f}" if progress.history else ""
    bar.set_postfix_str(f"loss {loss:.3f}{val} | {rate:,.0f} tok/s", refresh=False)


def _evaluate_and_report(config: TrainConfig, report: Report | None, run: _Run,
                         model: torch.nn.Module, progress: _Progress, grad_stats: GradNormStats,
                         board: Any, lr_mult: float, final: bool) -> None:
    """Evaluate, log, and ask ``report``; sets ``progress.status`` to 'diverged' (non-finite
    validation loss) or 'stopped' (the report said so, before the last step)."""
    tokens = progress.step * run.tokens_per_step
    val_loss = evaluate(model, run.val, run.micro, run.device, run.autocast, run.rank, run.world)
    entry = {"tokens": tokens, "step": progress.step, "val_loss": val_loss,
             "train_loss": progress.loss_sum / max(1, progress.loss_count),
             "lr": config.optim.lr * lr_mult, "grad_norm": grad_stats.recent[-1]}
    progress.history.append(entry)
    progress.loss_sum, progress.loss_count = 0.0, 0
    metrics = {**entry, "train_time_s": progress.train_time_s,
               "tokens_per_s": progress.timed_tokens / max(progress.train_time_s, 1e-9),
               "target_tokens": config.tokens if final else tokens // run.eval_every * run.eval_every}
    if run.out_dir and run.lead:
        log_event(run.out_dir, {"event": "eval", **metrics})
    if board is not None:
        for key in ("val_loss", "train_loss", "lr", "grad_norm", "tokens_per_s"):
            board.add_scalar(key, metrics[key], tokens)
        board.flush()
    if not math.isfinite(val_loss):
        progress.status = "diverged"
        progress.reason = f"non-finite validation loss at step {progress.step} (tokens {tokens})"
        return
    progress.best_val_loss = min(val_loss, progress.best_val_loss or math.inf)
    answer = report(tokens, val_loss, metrics) if report and run.lead else None
    if agree(answer == "stop" or answer is False, run.world, run.device) and not final:
        progress.status = "stopped"
        progress.reason = f"stopped by report at step {progress.step} (tokens {tokens})"


def _save(config: TrainConfig, run: _Run, progress: _Progress, grad_stats: GradNormStats,
          wall_start: float) -> None:
    """Checkpoint the run, with the wall time so far added to that of earlier resumes."""
    state = asdict(progress)
    state["wall_time_s"] += time.perf_counter() - wall_start
    save_checkpoint(run.ckpt_path, config, run.data.fingerprint, run.model, run.optimizers,
                    run.data_rng, state, grad_stats.state_dict(), lead=run.lead)
    if run.out_dir and run.lead:  # where a stopped run resumes from, said without loading it
        log_event(run.out_dir, {"event": "checkpoint", "step": progress.step,
                                "steps": run.total_steps,
                                "tokens": progress.step * run.tokens_per_step})


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
    for i, (xm, ym) in enumerate(zip(x.split(micro), y.split(micro), strict=True)):
        xm, ym = xm.to(device, non_blocking=True), ym.to(device, non_blocking=True)
        # DDP averages the gradients over the ranks once per step, in the last micro-batch's
        # backward, not in each one. (FSDP2 reduce-scatters in every micro-batch's backward:
        # it keeps each rank's gradients sharded, which is what it is chosen for.)
        unsynced = hasattr(model, "no_sync") and i < n_micro - 1
        with model.no_sync() if unsynced else contextlib.nullcontext():
            with autocast:
                _, loss = model(xm, ym, label_smoothing=label_smoothing)
            # Each micro-batch loss is the mean over its tokens: dividing by the number of
            # micro-batches makes the accumulated gradient the mean over the whole batch.
            (loss / n_micro).backward()
        loss_sum += loss.detach()
    params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
    if grad_clip is not None:
        # foreach on CPU and CUDA; MPS has no foreach kernels, where foreach=True is a
        # RuntimeError at the first step (None: torch's per-tensor loop there).
        norm = torch.nn.utils.clip_grad_norm_(
            params, grad_clip, foreach=None if params[0].device.type == "mps" else True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    for opt in optimizers:
        step_optimizer(opt)
    for p in params:  # opt.zero_grad(set_to_none=True), which imports torch._dynamo (optim.py)
        p.grad = None
    return loss_sum / n_micro, full_tensor(norm)


def _divergence(loss: float, grad_norm: float, max_loss: float,
                above_before: float | None) -> str | None:
    """Why the run diverged at a step of ``loss`` and ``grad_norm``, or None. A loss above
    max_loss diverges where the step before was above it too (``above_before``, its loss): one
    step alone can be that far off in a run that goes on well (in a quickstart trial, 8.64 at
    step 30 with a gradient norm of 94, on ordinary text, against 3.2-3.3 at the steps around
    it; 2.06 at the end), and a run that has blown up stays up."""
    if not math.isfinite(loss):
        return "non-finite training loss"
    if loss > max_loss and above_before is not None:
        return (f"training loss above max_loss {max_loss:.4g} two steps in a row "
                f"({above_before:.4g}, {loss:.4g})")
    if not math.isfinite(grad_norm):
        return "non-finite gradient norm"
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, windows: torch.Tensor, micro: int, device: torch.device,
             autocast: contextlib.AbstractContextManager, rank: int = 0,
             world: int = 1) -> float:
    """Mean next-token cross-entropy over the fixed validation windows (no dropout, no smoothing).

    With ``world`` processes each evaluates its own share of the windows (``eval_chunks``) and
    the sums meet in one all-reduce: every process evaluated all of them, ``world`` times the
    work for the same number."""
    model.eval()
    total, count = torch.zeros((), device=device), 0
    for chunk, counts in eval_chunks(windows, micro, rank, world):
        chunk = chunk.to(device, non_blocking=True)
        with autocast:
            _, loss = model(chunk[:, :-1], chunk[:, 1:])
        if counts:  # every window has block_size targets
            total += loss.float() * len(chunk)
            count += len(chunk)
    model.train()
    both = sum_over_ranks(torch.stack([total, torch.tensor(float(count), device=device)]), world)
    return (both[0] / both[1]).item()


def eval_chunks(windows: torch.Tensor, micro: int, rank: int,
                world: int) -> list[tuple[torch.Tensor, bool]]:
    """The micro-batches of validation windows that process ``rank`` of ``world`` evaluates,
    each with whether it counts: a contiguous share of ceil(n / world) windows (the last
    processes' shares shorter or empty), in as many micro-batches on every process, since a
    sharded model's forward pass gathers its weights from all of them. A process whose share
    has run out evaluates the first window again, not counted."""
    share = -(-len(windows) // world)
    mine = windows[rank * share:(rank + 1) * share]
    return [(chunk, True) if len(chunk := mine[i:i + micro]) else (windows[:1], False)
            for i in range(0, share, micro)]


def _crossed(tokens: int, tokens_per_step: int, every: int) -> bool:
    """Did the last step carry the token count past a multiple of ``every``?"""
    return tokens // every > (tokens - tokens_per_step) // every


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # Hardware bf16 only (Ampere on): torch's default also counts a GPU that emulates it
        # (V100, T4), where bf16 runs far slower than float32.
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if bf16 else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a time taken after it counts it (on Apple's
    GPU, tokens/s was timed without)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def keep_freed_memory() -> None:
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


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """One device's FLOP/s, which MFU divides by once per process: $SCALETUNE_PEAK_FLOPS (per
    device), else a known GPU's bf16 datasheet peak (bf16 runs on CUDA), else None."""
    if os.environ.get("SCALETUNE_PEAK_FLOPS"):
        return float(os.environ["SCALETUNE_PEAK_FLOPS"])
    if device.type == "cuda" and dtype == torch.bfloat16:
        name = torch.cuda.get_device_name(device)
        if " MIG " in f"{name} ":  # a slice of the GPU named: its share of the peak is unknown
            return None
        return cuda_peak(name)
    return None


def _result(progress: _Progress, grad_stats: GradNormStats, run: _Run,
            wall_time_s: float) -> Result:
    tokens_per_s = progress.timed_tokens / progress.train_time_s if progress.train_time_s else 0.0
    # The tokens are every process's (the global batch), the peak one device's: the run's peak
    # is theirs summed (MFU read 2x too high on 2 processes, 8x on 8 GPUs).
    peak = (one := peak_flops(run.device, run.dtype)) and one * run.world
    last = progress.history[-1]["val_loss"] if progress.history else None
    return Result(
        status=progress.status,
        reason=progress.reason,
        final_val_loss=None if progress.status == "diverged" else last,
        best_val_loss=progress.best_val_loss,
        tokens_seen=progress.step * run.tokens_per_step,
        steps=progress.step,
        wall_time_s=progress.wall_time_s + wall_time_s,
        train_time_s=progress.train_time_s,
        tokens_per_s=tokens_per_s,
        flops_per_s=run.fpt * tokens_per_s,
        mfu=run.fpt * tokens_per_s / peak if peak else None,
        grad_norm=grad_stats.summary(),
        history=progress.history,
    )
