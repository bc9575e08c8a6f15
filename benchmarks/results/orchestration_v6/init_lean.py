"""Time a local study's Ray start (search.cluster.init_ray) and its first two tasks, with the
head node's processes of search.cluster.SKIPPED skipped (after) or only the API server (before).
Run alternately: for i in 1 2 3 4; do for m in before after; do python init_lean.py $m; done; done
with the machine's CPU time (/proc/stat) read around each run."""
import os
import sys
import time

import ray
import yaml

import scaletune.search.cluster as cl
from scaletune.search.config import StudyConfig

if sys.argv[1] == "before":
    cl.SKIPPED = ("start_api_server",)
cfg = StudyConfig.model_validate(yaml.safe_load(open("studies/quickstart.yaml")))
start = time.perf_counter()
cl.init_ray(cfg)
up = time.perf_counter()
@ray.remote(num_cpus=1)
def pid(): return os.getpid()
ray.get([pid.remote(), pid.remote()])
done = time.perf_counter()
time.sleep(4)
ray.shutdown()
print(sys.argv[1], f"init_ray {up - start:.2f} s, two tasks at {done - start:.2f} s", flush=True)
