"""Time a local study's Ray start (search.cluster.init_ray) and its first two tasks, with the
dashboard agent minimal (search.cluster.MINIMAL_AGENT, as a study starts it) or full (``full``:
Ray's check for the dashboard's libraries answered as Ray answers it). Run alternately, with the
machine's CPU time (/proc/stat) read around each run: bash run.sh. Any other argument only
labels the line: ab.sh runs it so with search/cluster.py before and after the change."""
import os
import sys
import time

t0 = time.perf_counter()
import ray  # noqa: E402
import yaml  # noqa: E402

import scaletune.search.cluster as cl  # noqa: E402
from scaletune.search.config import StudyConfig  # noqa: E402

if sys.argv[1] == "full":
    cl.MINIMAL_AGENT = None  # the check answers None: the libraries are there
here = os.path.dirname(os.path.abspath(__file__))
cfg = StudyConfig.model_validate(
    yaml.safe_load(open(os.path.join(here, "..", "..", "..", "studies", "quickstart.yaml"))))
start = time.perf_counter()
cl.init_ray(cfg)
up = time.perf_counter()


@ray.remote(num_cpus=1)
def pid():
    return os.getpid()


ray.get([pid.remote(), pid.remote()])
done = time.perf_counter()
print(f"{sys.argv[1]:7s} imports {start - t0:.2f} s, init_ray {up - start:.2f} s, two tasks at "
      f"{done - start:.2f} s; the driver imported the dashboard's libraries: "
      f"{'ray.dashboard.optional_deps' in sys.modules}", flush=True)
time.sleep(2)
ray.shutdown()
