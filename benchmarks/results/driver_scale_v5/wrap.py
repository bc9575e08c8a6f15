"""benchmarks.driver_scale, with the driver's storage-thread jobs timed: each ask
(SearchPlan.ask) and each trial's end (runner._finish), wall and thread CPU, printed at the end."""

import sys
import time

import scaletune.search.plan as plan
import scaletune.search.runner as runner
from benchmarks.driver_scale import main

timed: dict[str, list[tuple[float, float]]] = {"ask": [], "finish": []}


def timing(name, f):
    def g(*a, **k):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return f(*a, **k)
        finally:
            timed[name].append((time.perf_counter() - t, time.thread_time() - c))
    return g


plan.SearchPlan.ask = timing("ask", plan.SearchPlan.ask)
runner._finish = timing("finish", runner._finish)
try:
    main(sys.argv[1:])
finally:
    for name, xs in timed.items():
        if xs:
            w, c = sorted(x[0] for x in xs), sorted(x[1] for x in xs)
            print(f"{name}: n={len(xs)} wall median {1e3 * w[len(w) // 2]:.1f} ms, p90 "
                  f"{1e3 * w[int(0.9 * len(w))]:.1f} ms; CPU median {1e3 * c[len(c) // 2]:.1f} ms, "
                  f"p90 {1e3 * c[int(0.9 * len(c))]:.1f} ms, total {sum(c):.1f} s", flush=True)
