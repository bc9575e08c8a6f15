"""How often the ladder's intervals hold the truth: the lr law fitted on synthetic rungs.

Each case draws rungs whose optimum lies on a known law (lr = 0.1 * tokens^-0.3), each rung off
it by ``rung_scatter`` dex (what the law does not capture: a rung's own optimum), and five
near-best trials per rung around that optimum by ``trial_noise`` dex (weighted as the ladder
weights them). heuristics.fit.fit_studies fits them as `scaletune ladder` does, and the case
counts how often the exponent's 95% interval holds the true exponent, and how often the
prediction interval at the target (4x past the last rung) holds a new rung's optimum there.
No training: the fitting alone, in about a minute. Run:

    python -m benchmarks.ladder_coverage [--repeats 200] [-o benchmarks/results/ladder_coverage.md]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from benchmarks import refuse_below_one
from scaletune.heuristics.fit import ScalePoint, fit_studies

COEF, EXPONENT = 0.1, -0.3
PER_RUNG = 5
THREE = (1e6, 4e6, 1.6e7)
SIX = (1e6, 2e6, 4e6, 8e6, 1.6e7, 3.2e7)
CASES = [  # (rungs' scales, rung scatter, trial noise), dex
    (THREE, 0.0, 0.05), (THREE, 0.05, 0.05), (THREE, 0.1, 0.02),
    (SIX, 0.0, 0.05), (SIX, 0.05, 0.05), (SIX, 0.1, 0.02),
]


def _points(scales: tuple[float, ...], rung_scatter: float, trial_noise: float,
            rng: np.random.Generator) -> list[ScalePoint]:
    points = []
    for scale in scales:
        optimum = math.log10(COEF) + EXPONENT * math.log10(scale) + rung_scatter * rng.normal()
        for k in range(PER_RUNG):
            lr = 10 ** (optimum + trial_noise * rng.normal())
            points.append(ScalePoint(scale=scale, scale_kind="tokens", lr=lr, tau=None,
                                     batch_size=None, value=3.0 + 0.01 * k,
                                     weight=1.0 - 0.8 * k / PER_RUNG))
    return points


def coverage(scales: tuple[float, ...], rung_scatter: float, trial_noise: float,
             repeats: int) -> tuple[float, float, float]:
    """(exponent interval's coverage, prediction interval's coverage, median exponent width)."""
    target = 4 * scales[-1]
    held_b = held_p = 0
    widths = []
    for r in range(repeats):
        rng = np.random.default_rng(1000 + r)
        fit = fit_studies(_points(scales, rung_scatter, trial_noise, rng), n_boot=200, seed=r).lr
        low, high = fit.exponent_interval
        held_b += low <= EXPONENT <= high
        widths.append(high - low)
        new = math.log10(COEF) + EXPONENT * math.log10(target) + rung_scatter * rng.normal()
        new += trial_noise * rng.normal(size=PER_RUNG).mean()  # the new rung's measured optimum
        p = fit.predict(target)
        held_p += math.log10(p.low) <= new <= math.log10(p.high)
    return held_b / repeats, held_p / repeats, float(np.median(widths))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ladder_coverage",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200,
                        help="simulated ladders per case (default %(default)s)")
    parser.add_argument("-o", "--output", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    refuse_below_one(parser, {"--repeats": args.repeats})  # a ZeroDivisionError, or nan
    if args.output and not args.output.parent.is_dir():  # found after the whole computation
        parser.error(f"--output: the folder of {args.output} does not exist")
    lines = ["| rungs | rung scatter (dex) | trial noise (dex) | exponent's 95% interval holds "
             "it | prediction interval holds the next optimum | median exponent width |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)  # the rows' columns, as the file has them
    for scales, rung_scatter, trial_noise in CASES:
        b, p, width = coverage(scales, rung_scatter, trial_noise, args.repeats)
        lines.append(f"| {len(scales)} | {rung_scatter} | {trial_noise} | {b:.2f} | {p:.2f} | "
                     f"{width:.3f} |")
        print(lines[-1], flush=True)
    if args.output:
        args.output.write_text(
            f"`python -m benchmarks.ladder_coverage --repeats {args.repeats}`: the lr law "
            f"{COEF} * tokens^{EXPONENT}, {PER_RUNG} near-best trials per rung.\n\n"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
