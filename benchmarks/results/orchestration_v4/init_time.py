"""Time one local study's Ray start (search.cluster.init_ray) and its first two tasks."""
import os
import time

import ray
import yaml

from scaletune.search.cluster import init_ray
from scaletune.search.config import StudyConfig

cfg = StudyConfig.model_validate(yaml.safe_load(open("studies/quickstart.yaml")))
start = time.perf_counter()
init_ray(cfg)
up = time.perf_counter()


@ray.remote(num_cpus=1)
def pid() -> int:
    return os.getpid()


ray.get([pid.remote(), pid.remote()])
done = time.perf_counter()
ray.shutdown()
print(f"init_ray {up - start:.2f} s, first two tasks done at {done - start:.2f} s", flush=True)
