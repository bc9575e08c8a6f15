"""How long a Python process that imported torch, Ray and optuna takes to exit, with and without
gc.freeze() before it (search.cli.entry freezes). Alternating rounds; each figure is the time
from the process's last line to its end, seen by the parent."""

import statistics
import subprocess
import sys
import time

CODE = """
import gc, sys, time
import optuna, ray, torch
{freeze}
print(time.time(), flush=True)
"""

times = {"as it was": [], "gc.freeze()": []}
for _ in range(5):
    for name, freeze in (("as it was", ""), ("gc.freeze()", "gc.freeze()")):
        p = subprocess.Popen([sys.executable, "-c", CODE.format(freeze=freeze)],
                             stdout=subprocess.PIPE, text=True)
        last = float(p.stdout.readline())
        p.wait()
        times[name].append(time.time() - last)
for name, ts in times.items():
    print(f"{name:12s} exit {statistics.median(ts):.2f} s (median of {len(ts)}; "
          f"{min(ts):.2f}-{max(ts):.2f})")
