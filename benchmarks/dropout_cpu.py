"""Dropout on CPU: torch's against the trainer's (trainer.kernels.dropout), forward and backward.

    python -m benchmarks.dropout_cpu [--rounds 30] [--threads 1] [--rate 0.054]

Times, side by side in one process and taking turns, at the quickstart's shapes (batch 4 x 64
tokens, 4 heads of 16) and at the throughput benchmark's reference model's (batch 32 x 128, 8
heads of 32):

- dropout of a (B, T, 4C) activation: F.dropout against kernels.dropout;
- causal attention with dropout on its weights: SDPA with dropout_p against
  kernels.causal_attention (what CausalSelfAttention runs on CPU);
- ours against attention without dropout (SDPA's fused kernel): what dropout on the weights
  still costs.

Each figure is the median over rounds of microseconds per forward + backward; the ratio is the
median of the per-round ratios, so a drift of the shared machine's speed cancels. About a
minute on 2 cores. Not part of CI.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks import refuse_below_one
from scaletune.trainer import kernels

SHAPES = {
    "quickstart": {"B": 4, "T": 64, "nh": 4, "hs": 16},
    "reference": {"B": 32, "T": 128, "nh": 8, "hs": 32},
}


def time_us(step: Callable[[], torch.Tensor], repeats: int) -> float:
    """Microseconds per call of step() and the backward of its sum."""
    step().sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step().sum().backward()
    return (time.perf_counter() - start) / repeats * 1e6


def compare(name: str, ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor],
            rounds: int, repeats: int, their_name: str = "torch") -> None:
    """Print both medians and how many times as fast ours ran (median of per-round ratios)."""
    t_theirs, t_ours, ratios = [], [], []
    for _ in range(rounds):
        t_theirs.append(time_us(theirs, repeats))
        t_ours.append(time_us(ours, repeats))
        ratios.append(t_theirs[-1] / t_ours[-1])
    print(f"  {name:<36} {their_name} {statistics.median(t_theirs):7.0f} us   "
          f"scaletune {statistics.median(t_ours):7.0f} us   "
          f"{statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dropout_cpu",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30,
                        help="turns per comparison (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default %(default)s, a trial's)")
    parser.add_argument("--rate", type=float, default=0.054,
                        help="dropout rate, in (0, 1) (default %(default)s, the quickstart's "
                             "best trial's)")
    args = parser.parse_args(argv)
    # A StatisticsError or torch's RuntimeError.
    refuse_below_one(parser, {"--rounds": args.rounds, "--threads": args.threads})
    if not 0 < args.rate < 1:  # nan too; 0 and 1 draw no mask to time
        parser.error(f"--rate: must be a dropout rate in (0, 1), got {args.rate}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = args.rate
    print(f"dropout {p} on CPU, {args.threads} thread(s), fp32; median of {args.rounds} rounds")
    for shape_name, shape in SHAPES.items():
        bench_shape(shape_name, **shape, p=p, rounds=args.rounds)


def bench_shape(name: str, B: int, T: int, nh: int, hs: int, p: float, rounds: int) -> None:
    C = nh * hs
    repeats = max(3, 2_000_000 // (B * nh * T * T))
    print(f"{name}: batch {B} x {T} tokens, {nh} heads of {hs}")
    h = torch.randn(B, T, 4 * C, requires_grad=True)
    compare(f"dropout of ({B}, {T}, {4 * C})", lambda: kernels.dropout(h, p),
            lambda: F.dropout(h, p, True), rounds, repeats)
    q, k, v = (torch.randn(B, nh, T, hs, requires_grad=True) for _ in range(3))
    compare("attention, dropout on its weights", lambda: kernels.causal_attention(q, k, v, p),
            lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True),
            rounds, repeats)
    compare("attention, dropout against none", lambda: kernels.causal_attention(q, k, v, p),
            lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
            rounds, repeats, their_name="fused, no dropout")

if __name__ == "__main__":
    main()
