"""Trainer throughput: tokens/s and model-FLOPs utilization against this machine's matmul peak.

    python -m benchmarks.trainer_throughput [--steps 50] [--threads N] [--compile]

Trains the reference model of DESIGN.md (6 layers, 8 heads, width 256, block 128, batch 32)
with the real trainer, fp32 then bf16 autocast. MFU = model FLOPs per token
(trainer.model.flops_per_token, the nanoGPT/PaLM count) x tokens/s / the matmul peak.

The host is shared and its speed drifts (the fp32 peak moves between ~145 and ~200 GFLOP/s within
minutes), so the peak is measured side by side with the training: the run pauses every
CHUNK_STEPS steps (the trainer's clock stops for evaluation and the report callback), the
callback measures the peak, and each chunk's tokens/s is divided by the higher of the peaks
measured right before and right after it. The first chunk (allocator and kernel warm-up) is left
out; the figure is the median over the others, with their range.

With ``--reference DIR`` (a checkout of nanoGPT, the reference trainer of DESIGN.md) it also times
nanoGPT's model and optimizer against ours on the same batch, in the same process: rounds of two
optimizer steps each, alternating, and the median of the per-round ratios. Both sides run the same
bare step (forward, backward, clip at 1.0, AdamW step, zero grads), fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from trainer import TrainConfig, train
from trainer.model import flops_per_token

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
MODEL = {"n_layer": 6, "n_head": 8, "n_embd": 256, "block_size": 128}
BATCH = 32
CHUNK_STEPS = 5


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


def quick_peak(dtype: torch.dtype) -> float:
    """The peak at one size, in about a third of a second: measured at every pause."""
    return matmul_peak(dtype, sizes=(2048,), repeats=3)


def run(dtype: str, steps: int, compile: bool, cache: str) -> list[tuple[float, float]]:
    """One training run: (tokens/s, peak FLOP/s measured around it) of each chunk after the first.

    The peak is the fp32 peak for an fp32 run and the bf16 peak for a bf16 run.
    """
    data = ({"source": "text", "path": str(SHAKESPEARE)} if SHAKESPEARE.exists()
            else {"source": "builtin"})
    step_tokens = BATCH * MODEL["block_size"]
    cfg = TrainConfig.model_validate({
        "model": MODEL, "data": {**data, "cache_dir": cache, "val_windows": 8},
        "optim": {"name": "adamw", "lr": 3e-4}, "batch_size": BATCH, "tokens": steps * step_tokens,
        "eval_every_tokens": CHUNK_STEPS * step_tokens, "dtype": dtype, "device": "cpu",
        "compile": compile, "progress": False,
    })
    peak_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    marks = []  # (tokens, seconds of training, peak) at each pause

    def report(tokens: int, val: float, metrics: dict) -> None:
        marks.append((tokens, metrics["train_time_s"], quick_peak(peak_dtype)))

    train(cfg, report)
    # A chunk runs between two pauses; the one before the first pause (warm-up) is left out.
    return [((t1 - t0) / (s1 - s0), max(p0, p1))
            for (t0, s0, p0), (t1, s1, p1) in zip(marks, marks[1:], strict=False)]


def reference_ratio(reference: Path, rounds: int) -> tuple[float, float, float]:
    """(our median step s, nanoGPT's median step s, median of per-round speed ratios ours/theirs)."""
    import contextlib
    import importlib.util

    from trainer.loop import _keep_freed_memory, train_step
    from trainer.model import GPT
    from trainer.optim import build_optimizers

    spec = importlib.util.spec_from_file_location("nanogpt_model", reference / "model.py")
    if spec is None or spec.loader is None or not (reference / "model.py").is_file():
        raise SystemExit(f"--reference: no model.py in {reference} (give a nanoGPT checkout)")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    _keep_freed_memory()
    torch.manual_seed(0)
    x = torch.randint(0, 256, (BATCH, MODEL["block_size"]))
    y = torch.randint(0, 256, (BATCH, MODEL["block_size"]))
    cpu = torch.device("cpu")

    cfg = TrainConfig.model_validate({"model": MODEL, "optim": {"name": "adamw", "lr": 3e-4}})
    ours = GPT(cfg.model, 256)
    our_opts = build_optimizers(ours, cfg.optim, cpu)

    def our_step() -> None:
        train_step(ours, our_opts, x, y, BATCH, 1.0, 0.0, contextlib.nullcontext(), cpu)

    theirs = ref.GPT(ref.GPTConfig(block_size=MODEL["block_size"], vocab_size=256, dropout=0.0,
                                   bias=False, n_layer=MODEL["n_layer"], n_head=MODEL["n_head"],
                                   n_embd=MODEL["n_embd"]))
    their_opt = theirs.configure_optimizers(0.1, 3e-4, (0.9, 0.95), "cpu")

    def their_step() -> None:
        _, loss = theirs(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        their_opt.step()
        their_opt.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for _ in range(3):  # warm-up
        our_step()
        their_step()
    for _ in range(rounds):
        for name, step in (("ours", our_step), ("theirs", their_step)):
            t = time.perf_counter()
            step()
            step()
            times[name].append((time.perf_counter() - t) / 2)
    ratio = statistics.median(b / a for a, b in zip(times["ours"], times["theirs"], strict=True))
    return statistics.median(times["ours"]), statistics.median(times["theirs"]), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (fp32)")
    parser.add_argument("--reference", type=Path, metavar="DIR",
                        help="a nanoGPT checkout: time its model side by side with ours (fp32)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds of the --reference timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}")
    fpt = flops_per_token(TrainConfig.model_validate({"model": MODEL}).model, vocab_size=256)
    print(f"model 6L/8H/256d block 128 batch 32, byte vocab: {fpt / 1e6:.2f} MFLOP per token")
    print(f"matmul peak at the start: float32 {matmul_peak(torch.float32) / 1e9:.1f} GFLOP/s, "
          f"bfloat16 {matmul_peak(torch.bfloat16) / 1e9:.1f} GFLOP/s (best of 1024-3072 squares)")
    runs = [("float32", False), ("bfloat16", False)] + ([("float32", True)] if args.compile else [])
    with tempfile.TemporaryDirectory() as cache:
        for dtype, compile in runs:
            chunks = run(dtype, args.steps, compile, cache)
            rates = [r for r, _ in chunks]
            mfus = [r * fpt / p for r, p in chunks]
            peaks = [p / 1e9 for _, p in chunks]
            label = dtype + (" compiled" if compile else "")
            print(f"train {label:17s} {statistics.median(rates):7.0f} tokens/s "
                  f"({min(rates):.0f}-{max(rates):.0f})  MFU {statistics.median(mfus):.1%} of the "
                  f"{dtype} peak ({min(mfus):.1%}-{max(mfus):.1%}; peak {min(peaks):.0f}-"
                  f"{max(peaks):.0f} GFLOP/s; median of {len(chunks)} chunks of {CHUNK_STEPS} steps)")
    if args.reference:
        ours, theirs, ratio = reference_ratio(args.reference, args.rounds)
        print(f"side by side with nanoGPT's model.py ({args.reference}), fp32, {args.rounds} rounds: "
              f"step {ours * 1e3:.0f} ms (ours) vs {theirs * 1e3:.0f} ms (nanoGPT), ours "
              f"{ratio:.3f}x as fast (median of the per-round ratios)")


if __name__ == "__main__":
    main()
