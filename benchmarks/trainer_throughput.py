"""Trainer throughput: tokens/s and model-FLOPs utilization against this machine's matmul peak.

    python -m benchmarks.trainer_throughput [--steps 50] [--threads N] [--compile]

Measures the fp32 and bf16 matmul peak (best of a few square sizes), then trains the reference
model of DESIGN.md (6 layers, 8 heads, width 256, block 128, batch 32) with the real trainer:
fp32, then bf16 autocast. MFU = model FLOPs per token (trainer.model.flops_per_token, the
nanoGPT/PaLM count) x tokens/s / measured peak. Tokens/s is the trainer's own figure (every step,
evaluation left out); "steady" leaves out the first steps too (allocator and kernel warm-up).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from trainer import TrainConfig, train
from trainer.model import flops_per_token

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
MODEL = {"n_layer": 6, "n_head": 8, "n_embd": 256, "block_size": 128}
BATCH = 32
WARMUP_STEPS = 5


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 5) -> float:
    """Best FLOP/s of an (n x n) @ (n x n) matmul over a few sizes: the peak MFU divides by."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b  # warm-up: thread pool, packing buffers
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def run(dtype: str, steps: int, compile: bool, cache: str) -> tuple[float, float]:
    """(tokens/s over all steps, tokens/s after the first WARMUP_STEPS) of one training run."""
    data = ({"source": "text", "path": str(SHAKESPEARE)} if SHAKESPEARE.exists()
            else {"source": "builtin"})
    step_tokens = BATCH * MODEL["block_size"]
    cfg = TrainConfig.model_validate({
        "model": MODEL, "data": {**data, "cache_dir": cache, "val_windows": 8},
        "optim": {"name": "adamw", "lr": 3e-4}, "batch_size": BATCH, "tokens": steps * step_tokens,
        "eval_every_tokens": WARMUP_STEPS * step_tokens, "dtype": dtype, "device": "cpu",
        "compile": compile, "progress": False,
    })
    marks = []
    result = train(cfg, lambda tokens, val, m: marks.append((tokens, m["train_time_s"])))
    (t0, s0), (t1, s1) = marks[0], marks[-1]  # (tokens, seconds of training) at two evaluations
    return result.tokens_per_s, (t1 - t0) / (s1 - s0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (fp32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(f"torch {torch.__version__}, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}")
    for name, peak in peaks.items():
        print(f"matmul peak {name:8s} {peak / 1e9:7.1f} GFLOP/s")
    fpt = flops_per_token(TrainConfig.model_validate({"model": MODEL}).model, vocab_size=256)
    print(f"model 6L/8H/256d block 128 batch 32, byte vocab: {fpt / 1e6:.2f} MFLOP per token")

    runs = [("float32", False), ("bfloat16", False)] + ([("float32", True)] if args.compile else [])
    with tempfile.TemporaryDirectory() as cache:
        for dtype, compile in runs:
            tps, steady = run(dtype, args.steps, compile, cache)
            label = dtype + (" compiled" if compile else "")
            mfu = ", ".join(f"{tps * fpt / p:.1%} of {n} peak" for n, p in peaks.items()
                            if n == "float32" or dtype == "bfloat16")
            print(f"train {label:17s} {tps:7.0f} tokens/s  {tps * fpt / 1e9:6.1f} GFLOP/s  "
                  f"MFU {mfu}  (steady after {WARMUP_STEPS} steps: {steady:.0f} tokens/s, "
                  f"{steady * fpt / peaks['float32']:.1%} of float32 peak)")


if __name__ == "__main__":
    main()
