"""Where the driver's threads spent the profiled run (profile.txt.gz, py-spy's collapsed stacks,
--idle: waiting counted): samples per thread, the main thread's time by the call under _drive,
and the storage thread's busiest stacks. python summarize.py > profile_summary.txt"""

import collections
import gzip
from pathlib import Path

lines = gzip.open(Path(__file__).with_name("profile.txt.gz"), "rt").read().splitlines()
threads, main, storage = collections.Counter(), collections.Counter(), collections.Counter()
for line in lines:
    stack, n = line.rsplit(" ", 1)
    frames, n = stack.split(";"), int(n)
    names = [f.split(" (")[0] for f in frames[1:]]
    threads[frames[0]] += n
    if "MainThread" in frames[0]:
        i = names.index("_drive") if "_drive" in names else None
        main["outside _drive" if i is None else " > ".join(names[i + 1:i + 3]) or "_drive"] += n
    elif "storage_0" in frames[0]:
        storage[" > ".join(names[-2:])] += n
print("samples per thread (200 a second):")
for t, n in threads.most_common():
    print(f"  {n:6d}  {t}")
for title, counts in (("main thread, by the call under _drive", main),
                      ("storage thread (asks, starts, ends), by its last two frames", storage)):
    total = sum(counts.values())
    print(f"{title}:")
    for k, n in counts.most_common(15):
        print(f"  {n / total:6.1%}  {k}")
