"""Checkpoints: everything a run needs to continue exactly (model, optimizers, the loop's counters,
every RNG state), and the rule for which config changes a resume accepts.

It is separate from the loop because a checkpoint is a file format with its own promises: it is
written atomically, so a killed run never leaves half a checkpoint, and read with
``weights_only=True``, so a checkpoint from someone else cannot run code.

One file holds the whole state, whatever the number of processes that wrote it: a sharded
(fsdp) run gathers its model and optimizer state to rank 0 to save (torch.distributed.checkpoint's
full state dicts), and each process takes its shard back on load. So a run resumes on any number
of processes, with ddp or fsdp. The price is that rank 0's CPU memory must hold the whole model
and optimizer state once, and that every process of a resumed run reads the file: on several
machines, out_dir must be a folder they all see (a shared file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from scaletune.trainer.config import DROPOUT_SITES, TrainConfig, changes_said, flat_keys
from scaletune.trainer.distributed import draw_apart
from scaletune.trainer.errors import SetupError
from scaletune.trainer.record import METRICS

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = {"model", "optimizers", "progress", "grad_stats", "rng", "config", "fingerprint"}
"""What save_checkpoint writes, all of which load_checkpoint reads."""

# Keys that may change between a run and its resume without changing what is computed (the data
# itself is compared by fingerprint, which holds the tokenizer's name or its file's hash, so a
# tokenizer file may move too; ddp and fsdp take the same steps; the micro-batch splits each
# step's batch for gradient accumulation, the same update up to summation order, and is what a
# run resumed on fewer processes lowers to fit the memory the others gave it).
RUN_OPTIONS = {"progress", "tensorboard", "out_dir", "checkpoint_every_tokens", "eval_every_tokens",
               "num_threads", "compile", "cpu_matmul", "device", "parallel", "micro_batch_size",
               "data.cache_dir", "data.path", "data.val_path", "data.data_files", "data.tokenizer",
               "provenance"}


def other_masks(saved: dict[str, Any], config: TrainConfig) -> str | None:
    """Why a run resumed under dropout with another micro-batch or compile setting than its
    checkpoint's goes on with other dropout masks (each micro-batch draws its own; a compiled
    model draws torch's), so not bit for bit as the run would have: None where it does not."""
    if not any(config.model.rate(site) for site in DROPOUT_SITES):
        return None
    changed = [f"{key} {saved.get(key)} -> {value}" for key, value in
               (("micro_batch_size", config.micro_batch_size), ("compile", config.compile))
               if saved.get(key) != value]
    if not changed:
        return None
    return (f"resumed with {', '.join(changed)} under dropout: the masks are drawn per "
            "micro-batch, and by torch's own kernel when compiled, so the run goes on with other "
            "masks than it would have without the change (the same run in law, not bit for bit)")


def run_in_the_way(out_dir: str | None, resume: bool, overwrite: bool,
                   flags: tuple[str, str] = ("resume=True", "overwrite=True"),
                   config: dict[str, Any] | None = None) -> str | None:
    """Why a run may not start in ``out_dir``, or None: a checkpoint there that neither
    ``resume`` (continue it) nor ``overwrite`` (train from scratch and replace it) says what to
    do with, or both asked at once. ``flags`` name the two as the caller's user writes them.
    With ``config`` (this run's, dumped), a checkpoint of a run of another config is said to be
    another run's, whose out_dir this one should not share."""
    if resume and overwrite:
        return (f"{flags[0]} and {flags[1]} exclude each other: {flags[0]} continues the run "
                f"in out_dir, {flags[1]} starts it again")
    if out_dir and (Path(out_dir) / CHECKPOINT).exists() and not (resume or overwrite):
        shown = os.path.normpath(out_dir)
        was, completed = _last_run(Path(out_dir)) if config is not None else (None, False)
        if changed := (config_changes(was, config) if was is not None else []):
            # A copy of a config edited to try a variant: --overwrite would lose the other run.
            old, new = flat_keys(was), flat_keys(config)
            diff = changes_said(old, new, changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            return (f"out_dir {shown} holds the checkpoint of a run of another config ({diff}"
                    f"{more}): set another out_dir for this run ({flags[1]} would replace that "
                    "run)")
        if completed:
            return (f"out_dir {shown} holds this config's run, finished: nothing is left to "
                    f"train ({flags[0]} says so); {flags[1]} trains it again from scratch and "
                    "replaces it, or set another out_dir to keep it")
        return (f"out_dir {shown} already holds a run's checkpoint; add "
                f"{flags[0]} to continue that run, or {flags[1]} to train from scratch and "
                "replace it (or set another out_dir)")
    return None


def _last_run(out_dir: Path) -> tuple[dict[str, Any] | None, bool]:
    """The config of the last run started in ``out_dir`` (None where the log is missing or
    unreadable), and whether that run ended completed (an end event of status 'completed'
    after its start), from one read of its metrics log."""
    config, completed = None, False
    try:
        with open(out_dir / METRICS, encoding="utf-8") as f:
            for line in f:
                if '"event": "start"' in line:
                    completed = False
                    with contextlib.suppress(ValueError):
                        config = json.loads(line).get("config", config)
                elif '"event": "end"' in line:
                    with contextlib.suppress(ValueError, AttributeError):
                        completed = json.loads(line).get("status") == "completed"
    except OSError:
        return None, False
    return (config if isinstance(config, dict) else None), completed


def save_checkpoint(path: Path, config: TrainConfig, fingerprint: str, model: torch.nn.Module,
                    optimizers: list[torch.optim.Optimizer], data_rng: torch.Generator,
                    progress: dict[str, Any], grad_stats: dict[str, Any], lead: bool = True,
                    ) -> None:
    """Model, optimizers, the loop's counters (``progress``, ``grad_stats``: plain types) and
    every RNG state, written by the ``lead`` process to a temporary file and renamed.

    Every process calls it: gathering a sharded model's state is a collective. Optimizer state
    is keyed by parameter name, not position, so the file does not depend on how the parameters
    were split over processes or optimizers.
    """
    # Imported here: torch.distributed.checkpoint takes about a second to import, which a trial
    # (no out_dir, no checkpoint) would pay before its first step.
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    # The whole state, gathered onto rank 0's CPU (other ranks get nothing); as it is in one process.
    on_rank_0 = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=on_rank_0)
    optim_state = get_optimizer_state_dict(model, optimizers, options=on_rank_0)
    ranks = _rng_of_ranks()
    if not lead:
        return
    ckpt = {
        "model": model_state,
        "optimizers": optim_state,
        "progress": progress,
        "grad_stats": grad_stats,
        "rng": {**_own_rng(), "data": data_rng.get_state(), "ranks": ranks},
        "config": config.model_dump(mode="json"),
        "fingerprint": fingerprint,
    }
    ckpt[CRC_KEY] = tensors_crc32(ckpt)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's writer says a full disk as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0][:200]
        kept = (f"the last checkpoint, {path}, is kept: run again with --resume to continue from "
                "it" if path.exists() else "no checkpoint was written before")
        raise SetupError(f"out_dir: writing the checkpoint {path} failed ({reason}; a full disk "
                         f"or a folder that became read-only?); {kept}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


KERNEL_OPTIONS = ("fused", "foreach")
"""Param-group options that choose how an optimizer steps, not what it computes."""


def load_checkpoint(path: Path, config: TrainConfig, fingerprint: str, model: torch.nn.Module,
                    optimizers: list[torch.optim.Optimizer], data_rng: torch.Generator,
                    notes: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore model, optimizers and RNG states from ``path``; the loop's counters come back as
    saved: (progress, grad_stats). ``notes`` gets what the user should know of the resume.

    Refuses a checkpoint of another config (but for ``RUN_OPTIONS``) or of other data.
    """
    notes = [] if notes is None else notes
    ckpt = read_checkpoint(path)
    now = config.model_dump(mode="json")
    changed = config_changes(ckpt["config"], now)
    notes.extend(n for n in [other_masks(ckpt["config"], config)] if n)
    if changed:
        was, is_ = flat_keys(ckpt["config"]), flat_keys(now)
        shown = changes_said(was, is_, changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise SetupError(f"resume: {path} was written with a different config; changed: "
                         f"{shown}{more}: undo the change to resume, or start the run afresh "
                         "(--overwrite, or another out_dir)")
    if ckpt["fingerprint"] != fingerprint:
        # A data key that changed, of the half of the data that reads otherwise (training text,
        # validation text: "train+val"; a file moved with the same text is no change), or,
        # none, the files themselves.
        was, is_ = flat_keys(ckpt["config"]), flat_keys(now)
        halves = list(zip(str(ckpt["fingerprint"]).split("+"), str(fingerprint).split("+"),
                          strict=False))
        changed_halves = {i for i, (a, b) in enumerate(halves) if a != b}
        of_half = {"data.path": 0, "data.data_files": 0, "data.val_path": 1}
        keys = [k for k in sorted(RUN_OPTIONS) if k.startswith("data.") and was.get(k) != is_.get(k)
                and k != "data.cache_dir"
                and (len(halves) < 2 or of_half.get(k) is None or of_half[k] in changed_halves)]
        why = (("with " + changes_said(was, is_, keys),
                "undo the change") if keys else ("its files changed since", "restore the data"))
        raise SetupError(f"resume: {path} was trained on data {ckpt['fingerprint']}, and the "
                         f"data reads as {fingerprint} now ({why[0]}): {why[1]} to resume, or "
                         "start the run afresh (--overwrite, or another out_dir)")
    from torch.distributed.checkpoint.state_dict import (  # see save_checkpoint
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    whole = StateDictOptions(full_state_dict=True)  # a sharded model keeps its shard of it
    set_model_state_dict(model, ckpt["model"], options=whole)
    # The kernel each param group steps with is this run's choice (optim.build_optimizers), not
    # the checkpoint's: loading restores the groups' options whole, and SGD's fused kernel,
    # chosen by a run on one process, failed the first step of its resume under fsdp.
    kernels = [[{k: g.get(k) for k in KERNEL_OPTIONS} for g in opt.param_groups]
               for opt in optimizers]
    if isinstance(ckpt["optimizers"], list):  # written before sharding came: one per optimizer
        for opt, state in zip(optimizers, ckpt["optimizers"], strict=True):
            opt.load_state_dict(state)
    else:
        set_optimizer_state_dict(model, optimizers, ckpt["optimizers"], options=whole)
    for opt, chosen in zip(optimizers, kernels, strict=True):
        for group, options in zip(opt.param_groups, chosen, strict=True):
            group.update(options)
    data_rng.set_state(ckpt["rng"]["data"])
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    ranks = ckpt["rng"].get("ranks") or [ckpt["rng"]]  # one process wrote it (or an older one)
    if rank < len(ranks):
        torch.set_rng_state(ranks[rank]["torch"])
        if ranks[rank]["cuda"] and torch.cuda.is_available():
            _set_cuda_rng(ranks[rank]["cuda"])
        if ranks[rank].get("mps") is not None and torch.backends.mps.is_available():
            torch.mps.set_rng_state(ranks[rank]["mps"])
    else:  # written by fewer processes than resume it
        draw_apart(config.seed, rank, ckpt["progress"]["step"])
    return ckpt["progress"], ckpt["grad_stats"]


def _own_rng() -> dict[str, Any]:
    """This process's RNG states: dropout's masks draw from them. CUDA's: its own device's
    alone, a list of one (every visible GPU's were saved, and a run resumed where fewer are
    visible, a smaller node or a one-GPU allocation, failed with IndexError)."""
    cuda = ([torch.cuda.get_rng_state(torch.cuda.current_device())]
            if torch.cuda.is_available() and torch.cuda.is_initialized() else [])
    own = {"torch": torch.get_rng_state(), "cuda": cuda}
    if torch.backends.mps.is_available():  # an MPS run's dropout draws from the MPS generator
        own["mps"] = torch.mps.get_rng_state()
    return own


def _set_cuda_rng(states: list[torch.Tensor]) -> None:
    """Restore the state of this process's device: the one saved by this version, or of a
    checkpoint that saved every visible GPU's, the one at this device's index where it has one."""
    device = torch.cuda.current_device()
    state = states[0] if len(states) == 1 else states[device] if device < len(states) else None
    if state is not None:
        torch.cuda.set_rng_state(state, device)


def _rng_of_ranks() -> list[dict[str, Any]]:
    """Every process's RNG states, on rank 0 (a collective; each draws its own dropout masks,
    distributed.draw_apart); empty in a single process and on the other ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return []
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(_own_rng(), gathered, dst=0)
    return gathered or []


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as saved, or a SetupError of one line that says what is wrong
    with the file and what to do."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # Random bytes read as torch's legacy pickle format, or a changed byte in the pickle
        # ("Unsupported operand 89"): damaged, not a file of Python objects.
        if not zipfile.is_zipfile(path) or "global" not in str(e).lower():
            raise SetupError(_damaged(path)) from None
        # weights_only refused a Python object that save_checkpoint never writes. torch's own
        # message suggests loading it anyway, which would run whatever code the file holds.
        raise SetupError(f"resume: {path} is not a scaletune checkpoint: it holds Python objects "
                         "other than tensors and plain values, and must not be loaded (loading "
                         "them could run code); move it away, or start again with --overwrite"
                         ) from None
    except PermissionError as e:
        raise SetupError(f"resume: cannot read {path}: {e.strerror}") from None
    except Exception:  # torch.load reports a malformed file as RuntimeError (its zip reader),
        # OSError (an empty file), EOFError, KeyError (the legacy format) and more
        raise SetupError(_damaged(path)) from None
    if not isinstance(ckpt, dict) or CHECKPOINT_KEYS - ckpt.keys():
        raise SetupError(f"resume: {path} is not a scaletune checkpoint (it lacks a run's config, "
                         "model or optimizer state); move it away, or start again with --overwrite")
    if CRC_KEY in ckpt and tensors_crc32(ckpt) != ckpt[CRC_KEY]:  # checkpoints before it: none
        raise SetupError(f"resume: {path} is damaged: what it holds is not what was written (a "
                         "changed bit in its weights, optimizer state or counters: a failing disk "
                         "or memory, a bad copy), and training on would go on from it unseen; "
                         "restore it from a copy, or add --overwrite to start the run again from "
                         "scratch")
    return ckpt


CRC_KEY = "crc32"
"""The checkpoint's key for the CRC-32 of its tensors (tensors_crc32)."""


def tensors_crc32(ckpt: dict[str, Any]) -> int:
    """The CRC-32 of the whole checkpoint but itself, in a fixed order: every tensor's bytes
    (model, optimizers, RNG states) and every other value's repr with its key (the loop's
    counters, the config, the data's fingerprint). torch.load reads a changed byte inside a
    tensor as a weight, and one in a counter as a count, so a checkpoint read back must give
    the value written with it. About 3 GB/s on one core."""
    crc = 0
    stack: list[Any] = [{k: v for k, v in ckpt.items() if k != CRC_KEY}]
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            flat = obj.detach().reshape(-1)
            if flat.numel():
                crc = zlib.crc32(flat.contiguous().view(torch.uint8).numpy(), crc)
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str, reverse=True):
                stack += [obj[key], f"{key!r}:"]
        elif isinstance(obj, (list, tuple)):
            stack += list(reversed(obj))
        else:
            crc = zlib.crc32(repr(obj).encode(), crc)
    return crc


def _damaged(path: Path) -> str:
    return (f"resume: {path} is damaged (cut short or overwritten) and cannot be read; add "
            "--overwrite to start the run again from scratch")


def remove_leftover_writes(out_dir: Path) -> None:
    """Remove the temporary files of checkpoint writes that were killed before their rename.

    Called once as a run starts or resumes in ``out_dir``, before it writes a checkpoint: any
    such file is then left over, whether its process is dead or its pid now belongs to another
    process (a restarted container hands out the same pids again). One run uses an out_dir at a
    time (it holds the folder's lock, trainer.runlock), so none is being written.
    """
    for tmp in out_dir.glob(f"{CHECKPOINT}.*.tmp"):
        if tmp.name.removeprefix(f"{CHECKPOINT}.").removesuffix(".tmp").isdigit() and \
                not tmp.is_dir():  # a folder of that name is none of ours: the write says so
            tmp.unlink(missing_ok=True)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two dumped configs, ``RUN_OPTIONS`` aside."""
    old, new = flat_keys(old), flat_keys(new)
    return sorted(k for k in old.keys() | new.keys()
                  if not {k, k.split(".")[0]} & RUN_OPTIONS and old.get(k) != new.get(k))
