"""Data parallel under torchrun: rank and world size, the device of each process, its share of the
batch, the model that averages gradients (DDP) or shards itself (FSDP2), and the collectives the
loop needs (mean loss, the stop flag).

Everything that touches torch.distributed lives here (and the checkpoint's gather in
trainer/checkpoint.py), so the loop reads the same for one process and for many, and a
single-process run never initialises a process group. torchrun starts the processes, on one
machine or on several (``--nnodes``); nothing here depends on which.

Checked on the CPU with gloo processes (tests/trainer/test_final_run.py): DDP and FSDP2 give the
single-process losses, a run on two processes resumes on one, two torchrun nodes on loopback meet
at their rendezvous endpoint. On GPUs (NCCL, one device per process) the same code runs, but only
the GPU check (benchmarks/gpu_check.py) exercises it, and nothing here measures the memory that
sharding saves.
"""

from __future__ import annotations

import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from scaletune.trainer.errors import SetupError

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
"""How long a rank waits at a collective for the others (checkpoints are written by rank 0
alone, while the others wait)."""


def rank_and_world(device_name: str) -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, joining its process group; else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        # One timeout for both backends, gloo's default: NCCL's is 10 minutes, which a rank
        # waiting at the next step's collective while rank 0 writes a large checkpoint to a slow
        # shared file system can pass, and the watchdog ends the run.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return dist.get_rank(), dist.get_world_size()


def leave(code: int) -> int:
    """``code``, for a process that never joined a process group. One that did leaves the group
    and ends here, with ``code`` and without the interpreter's teardown: after a completed, fully
    written run, a rank sometimes aborted in it ("terminate called without an active exception",
    a C++ thread of the process group still joinable; 2 of ~35 test runs, and fresh-clone CI
    runs since), which failed the whole torchrun. Call it once logs and checkpoints are closed."""
    if not dist.is_initialized():
        return code
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def device_for(name: str, world: int = 1) -> torch.device:
    """The device ``name`` ('auto', 'cuda', 'mps' or 'cpu') means for this process of ``world``.
    A device this machine does not have is a SetupError that says what to set instead."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"device: cuda, but torch sees no CUDA GPU here (torch {torch.__version__}"
                         f", built with CUDA {torch.version.cuda or 'none'}): set device: auto (a "
                         "GPU where there is one, else the CPU) or cpu, or run on a machine with a "
                         "GPU and a CUDA build of torch")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SetupError("device: mps, but torch sees no Apple GPU here: set device: auto or cpu")
    if name == "cuda" and world > 1:  # one GPU per process of a torchrun launch
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise SetupError(f"process {local_rank} of this machine has no GPU of its own: the "
                             f"machine has {torch.cuda.device_count()}; start at most that many "
                             "processes per machine (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def local_world(world: int) -> int:
    """Processes on this machine: they share its cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


def uneven_nodes(world: int) -> str | None:
    """Where the nodes of a run start different numbers of processes (torchrun's environment: a
    node's own, LOCAL_WORLD_SIZE, times the nodes, GROUP_WORLD_SIZE, is not the world), what to
    add to the error of a batch that does not split over them; else None. One node at
    --nproc-per-node 2 beside one at 1 was told its batch must split into 3 equal parts, where
    the user meant 2 or 4. Such nodes train together where the batch splits."""
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    here = local_world(world)
    if nodes > 1 and here * nodes != world:
        return (f"the {nodes} nodes of this run start different numbers of processes ({world} in "
                f"all, {here} on this one): the same --nproc-per-node on every node, or a "
                f"batch_size that splits into {world}")
    return None


def local_batch(batch_size: int, micro: int, world: int) -> int:
    """Sequences per rank; the global batch must split evenly into micro-batches on every rank."""
    if batch_size % world or (batch_size // world) % min(micro, batch_size // world):
        if batch_size % world:  # whatever the micro-batch, the processes cannot share it
            raise SetupError(f"batch_size={batch_size} must split into {world} equal parts, one "
                             f"for each process: give a multiple of {world}")
        raise SetupError(
            f"batch_size={batch_size} must split into {world} equal parts that are multiples of "
            f"micro_batch_size={micro}"
        )
    return batch_size // world


def data_parallel(model: torch.nn.Module, world: int, parallel: str,
                  dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The model to train: it averages its gradients over the ranks (``parallel`` 'ddp') or
    shards its weights, gradients and optimizer state over them ('fsdp'); itself in a single
    process.

    Every rank draws the same global batch and trains on its own slice of it; both average the
    gradients, so the step is the single-process step on the whole batch. Under fsdp the model is
    sharded in place, one FSDP2 unit per block plus the root (embeddings, final norm and the
    head, which tie_weights shares with the embedding): a block's weights are gathered just
    before it runs and freed after, so a process holds only a block or two whole at a time.
    Build the optimizers from ``model`` after this call, so that they hold the shards. Under
    bf16 (``dtype``) the weights of a block's attention and MLP, units of their own, are gathered
    in bf16 (FSDP's mixed precision; the shards, the optimizer and the gradients' mean stay
    float32): gathered in float32 and cast by autocast, the casts were saved for the backward
    pass, and every block's weights stayed whole in bf16 from the forward pass to the backward
    (on 2 ranks of a 4-block model: all four blocks' weights held after the forward pass,
    against none in float32). They take their input as it comes (the residual stream stays
    float32, as in a single process); the norms (whose float32 input a bf16 weight does not
    take on a CPU), the embeddings and the head are gathered in float32 and cast by autocast. The model is built whole
    on each device before it is sharded: its weights (a quarter of what AdamW training keeps per
    parameter, with the gradients and two moments) must fit one device once.
    """
    if world == 1:
        return model
    if parallel == "ddp":
        return DistributedDataParallel(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import (  # here: with DTensor, ~1 s to import
        MixedPrecisionPolicy,
        fully_shard,
    )

    # On the model's device: without a mesh, fully_shard makes one on the machine's accelerator
    # and moves the weights there, a GPU for a run told device: cpu on a machine that has one.
    mesh = init_device_mesh(next(model.parameters()).device.type, (world,))
    for block in model.h:
        if dtype == torch.bfloat16:  # the matmuls' weights apart from the norms' (in float32)
            bf16 = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32,
                                        cast_forward_inputs=False)
            fully_shard(block.attn, mesh=mesh, mp_policy=bf16)
            fully_shard(block.mlp, mesh=mesh, mp_policy=bf16)
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def draw_apart(seed: int, rank: int, step: int = 0) -> None:
    """Give this process its own stream of random draws (dropout's masks) from here on.

    Every process builds the model from the run's seed, so the weights start alike; but the masks
    drawn after that would be the same on every process too, each applied to its own slice of
    the batch (one mask where there should be ``world``). Rank 0 keeps the stream of a
    single-process run. ``step``: a resumed process whose checkpoint holds no state of its rank
    (written by fewer processes) starts a stream of its own there, not the one it began with.
    """
    if rank or step:
        torch.manual_seed(hash((seed, rank, step)) % 2**63)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor of ``t``'s whole value: the gradient norm of a sharded model is a DTensor.

    Asked by its method rather than isinstance, so that a process that shards nothing never
    imports torch.distributed.tensor (about a second, which every trial would pay)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def sum_over_ranks(t: torch.Tensor, world: int) -> torch.Tensor:
    """The sum of ``t`` over the ranks, in place: the validation loss from each rank's share."""
    if world > 1:
        dist.all_reduce(t)
    return t


def mean_over_ranks(t: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of ``t`` over the ranks: the batch's loss from the ranks' losses."""
    return t if world == 1 else sum_over_ranks(t, world) / world


def ranks_without(flag: bool, world: int, device: torch.device) -> int:
    """How many ranks hold ``flag`` False (0 on every rank where all hold it True), the same
    number on every rank: what one rank sees of a shared file that another does not."""
    if world == 1:
        return int(not flag)
    t = torch.tensor([int(not flag)], device=device)
    dist.all_reduce(t)
    return int(t.item())


def as_rank_zero(digest: int, world: int, device: torch.device) -> bool:
    """Whether ``digest`` (a 63-bit number, say a config's hash) is rank 0's, on each rank."""
    if world == 1:
        return True
    t = torch.tensor([digest], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item()) == digest


def agree(flag: bool, world: int, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (the report callback runs on rank 0 only).

    The flag travels on the training device: NCCL, the process group of CUDA runs, carries CUDA
    tensors only.
    """
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
