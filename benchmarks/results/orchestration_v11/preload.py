"""When two Ray workers have the trainer imported: with a warm-up task (``base``), or with Ray's
``preload_python_modules`` (``pre``). Seconds from this process's start (NOTES.md)."""

import os
import sys
import time

T0 = time.time()  # before Ray's import, which the driver pays too

import ray  # noqa: E402

mode = sys.argv[1]
kw = dict(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
          configure_logging=False, object_store_memory=256 * 1024**2)
if mode == "pre":
    kw["_system_config"] = {"preload_python_modules": ["scaletune.trainer.loop"]}
ray.init(**kw)
T1 = time.time()


@ray.remote(num_cpus=1)
def warm():
    t = time.time()
    import scaletune.trainer.loop  # noqa: F401
    fields = open(f"/proc/{os.getpid()}/stat").read().rpartition(")")[2].split()
    boot = next(float(line.split()[1]) for line in open("/proc/stat")
                if line.startswith("btime "))
    born = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return born, t, time.time()


r = ray.get([warm.remote(), warm.remote()])
T2 = time.time()
print(f"{mode:4s} init {T1-T0:.2f}  "
      f"workers born {', '.join(f'{b-T0:.2f}' for b, _, _ in r)}  "
      f"task start {', '.join(f'{s-T0:.2f}' for _, s, _ in r)}  "
      f"ready(imported) {', '.join(f'{e-T0:.2f}' for _, _, e in r)}  all {T2-T0:.2f}")
ray.shutdown()
