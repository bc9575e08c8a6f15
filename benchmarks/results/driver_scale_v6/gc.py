"""benchmarks.driver_scale, with Python's full garbage collections (generation 2) timed while
the driver's loop runs (runner._drive): how many, and how long they stopped the process."""

import gc
import sys
import time

import scaletune.search.runner as runner
from benchmarks.driver_scale import main

pauses: list[tuple[float, float]] = []  # (began, seconds)
loop: dict[str, float] = {}
began: dict[str, float] = {}


def timing(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        began["t"] = time.perf_counter()
    elif "t" in began:
        pauses.append((began["t"], time.perf_counter() - began["t"]))


def drive(*a, _drive=runner._drive, **k):
    loop["start"] = time.perf_counter()
    try:
        return _drive(*a, **k)
    finally:
        loop["end"] = time.perf_counter()


gc.callbacks.append(timing)
runner._drive = drive
try:
    main(sys.argv[1:])
finally:
    inside = sorted(s for t, s in pauses if loop.get("start", 1e18) <= t <= loop.get("end", 1e18))
    if inside:
        print(f"full collections in the loop: {len(inside)}, median {1e3 * inside[len(inside) // 2]:.0f}"
              f" ms, max {1e3 * inside[-1]:.0f} ms, over 50 ms: {sum(s > 0.05 for s in inside)}, "
              f"total {sum(inside):.2f} s", flush=True)
