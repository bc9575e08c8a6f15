"""Optimizers, the per-parameter policy, and learning-rate schedules.

Which parameters get which learning rate, weight decay and optimizer is decided in one place,
the POLICY table below; the rest of this file only applies it.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from scaletune.trainer.config import OptimConfig

if TYPE_CHECKING:  # the schedule (lr_at, warmup_steps) is plain math: the search driver imports
    import torch  # it without torch
    import torch.nn as nn

# group        lr multiplier   weight decay         optimizer when optim.name == 'muon'
# A string names the OptimConfig field that holds the value. Under adamw and sgd every group uses
# that optimizer. Biases and norm gains never decay: they are one number per channel, and pulling
# them to zero takes away the model's ability to shift and scale features (seed 004).
POLICY: dict[str, tuple[float | str, bool | str, str]] = {
    "embedding": (1.0, "decay_embeddings", "adamw"),  # wte (also the head when tied), wpe
    "head": (1.0, True, "adamw"),  # untied lm_head: Muon is for hidden matrices only
    "qkv": ("qkv_lr_mult", True, "muon"),  # seed 003: Q/K/V tolerate a higher lr
    "qkv_bias": ("qkv_lr_mult", False, "adamw"),
    "hidden": (1.0, True, "muon"),  # the other 2-D matrices of the blocks
    "bias": (1.0, False, "adamw"),
    "norm": (1.0, False, "adamw"),  # LayerNorm / RMSNorm gains
}


def group_of(name: str, param: torch.Tensor) -> str:
    """The POLICY row of a parameter, from its name in GPT.named_parameters()."""
    if name.startswith(("wte.", "wpe.")):
        return "embedding"
    if name.startswith("lm_head."):
        return "head"
    if ".ln_" in name or name.startswith("ln_f."):
        return "norm"
    if name.endswith("c_attn.weight"):
        return "qkv"
    if name.endswith("c_attn.bias"):
        return "qkv_bias"
    if name.endswith(".bias"):
        return "bias"
    if param.ndim == 2:
        return "hidden"
    raise ValueError(f"no optimizer policy for parameter {name!r} of shape {tuple(param.shape)}")


def build_optimizers(model: nn.Module, cfg: OptimConfig, device: torch.device,
                     sharded: bool = False) -> list[torch.optim.Optimizer]:
    """The optimizers for ``model`` (two under muon: Muon and AdamW), one param group per policy row.

    Every param group carries 'base_lr' (the peak lr times its multiplier) and 'group' (the
    POLICY row); set_lr scales base_lr by the schedule. ``sharded``: the parameters are FSDP
    shards (trainer.distributed.data_parallel), which SGD's fused kernel cannot step.
    """
    import torch

    by_group: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():  # each shared (tied) tensor once
        by_group.setdefault(group_of(name, p), []).append(p)

    param_groups: dict[str, list[dict]] = {"adamw": [], "sgd": [], "muon": []}
    for group, params in by_group.items():
        lr_mult, decay, under_muon = POLICY[group]
        lr_mult, decay = _field(lr_mult, cfg), _field(decay, cfg)
        opt = under_muon if cfg.name == "muon" else cfg.name
        lr = (cfg.muon_lr if opt == "muon" else cfg.lr) * lr_mult
        param_groups[opt].append(
            {"params": params, "lr": lr, "base_lr": lr, "group": group,
             "weight_decay": cfg.weight_decay if decay else 0.0}
        )

    # Fused kernels (one pass over all parameters) exist for CPU and CUDA; foreach elsewhere.
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    optimizers: list[torch.optim.Optimizer] = []
    with _dynamo_left_unloaded():
        if param_groups["muon"]:
            optimizers.append(torch.optim.Muon(param_groups["muon"], momentum=cfg.muon_momentum))
        if param_groups["adamw"]:
            optimizers.append(torch.optim.AdamW(param_groups["adamw"], betas=(cfg.beta1, cfg.beta2),
                                                eps=cfg.eps, **fast))
        if param_groups["sgd"]:
            # torch's SGD decay is L2 (added to the gradient before momentum), not decoupled.
            # Its fused kernel has no rule for FSDP's sharded tensors (AdamW's has): it failed
            # at the first step of every `parallel: fsdp` run over several processes.
            optimizers.append(torch.optim.SGD(param_groups["sgd"], momentum=cfg.beta1,
                                              nesterov=cfg.nesterov,
                                              **({"foreach": True} if sharded else fast)))
    return optimizers


# torch.compile's frontend, torch._dynamo, costs 1.4 s of CPU to import (torch itself 1.6 s), and
# torch.optim imports it on first use even where nothing is compiled: to build an optimizer
# (Optimizer.add_param_group is wrapped in torch._disable_dynamo, which imports it to make the
# disabled copy) and at every step (the step wrapper imports it to mark graph breaks). Each trial
# on a fresh worker process paid for it. While torch._dynamo is not loaded, nothing is being
# compiled, and the plain methods run the same code: build_optimizers and step_optimizer use them
# then, and torch.optim's own path once anything has loaded it (torch.compile, a checkpoint).


@contextlib.contextmanager
def _dynamo_left_unloaded() -> Iterator[None]:
    """Build optimizers without importing torch._dynamo when it is not loaded: inside the block,
    torch._disable_dynamo's wrapper of Optimizer.add_param_group finds its disabled copy already
    made, as the plain method (the wrapper caches it on the function as ``__dynamo_disable``)."""
    import torch

    plain = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
    if "torch._dynamo" in sys.modules or plain is None or hasattr(plain, "__dynamo_disable"):
        yield
        return
    setattr(plain, "__dynamo_disable", plain)
    try:
        yield
    finally:
        if getattr(plain, "__dynamo_disable", None) is plain:
            delattr(plain, "__dynamo_disable")


def step_optimizer(opt: torch.optim.Optimizer) -> None:
    """``opt.step()``; while torch._dynamo is not loaded (see above), the step itself under
    no_grad, as torch's wrapper runs it outside compilation, when no step hook is registered."""
    import torch
    from torch.optim import optimizer as torch_optimizer

    # Hooks run only through opt.step(); where this torch keeps them elsewhere, take that path.
    hooked = any(getattr(owner, name, True) for owner, name in (
        (opt, "_optimizer_step_pre_hooks"), (opt, "_optimizer_step_post_hooks"),
        (torch_optimizer, "_global_optimizer_pre_hooks"),
        (torch_optimizer, "_global_optimizer_post_hooks")))
    if "torch._dynamo" in sys.modules or hooked or opt.defaults.get("differentiable"):
        opt.step()
        return
    with torch.no_grad():
        inspect.unwrap(type(opt).step)(opt)


def _field(value: float | bool | str, cfg: OptimConfig) -> float | bool:
    return getattr(cfg, value) if isinstance(value, str) else value


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * multiplier


def warmup_steps(warmup_frac: float, total_steps: int) -> int:
    """Optimizer steps of linear warmup: warmup_frac of all steps, rounded."""
    return round(warmup_frac * total_steps)


def lr_at(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """Learning-rate multiplier (of the peak) for optimizer step ``step`` in [0, total_steps).

    Linear warmup over warmup_frac of the steps, reaching 1 on its last step; then
    cosine: half a cosine from 1 down to min_lr_ratio at total_steps;
    linear: straight down to 0 at total_steps;
    wsd: 1 (stable) until the final decay_frac of the steps (two at least), then straight down
    to 0;
    constant: 1.
    """
    warmup = warmup_steps(cfg.warmup_frac, total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        # The decay's first step is at the peak: it takes two to lower the lr at all, and a run
        # too short for decay_frac to round to two steps trained as `constant` did.
        decay_start = max(warmup, total_steps - max(2, round(cfg.decay_frac * total_steps)))
        if step < decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - decay_start) / max(1, total_steps - decay_start))
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))  # 0 -> 1 after warmup
    if cfg.schedule == "linear":
        return 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
