"""init_ray of the quickstart study and its first two tasks, timed (ab.sh runs it with
search/cluster.py before and after the change). The argument labels the line; "minimal" also
answers Ray's check for the dashboard's libraries with an error itself (what the change does)."""
import os
import sys
import time

t0 = time.perf_counter()
import ray  # noqa: E402
import ray._private.utils as ru  # noqa: E402
import yaml  # noqa: E402

import scaletune.search.cluster as cl  # noqa: E402
from scaletune.search.config import StudyConfig  # noqa: E402

if sys.argv[1] == "minimal":
    ru.get_dashboard_dependency_error = lambda: ImportError("minimal")
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
print(sys.argv[1], f"imports {start - t0:.2f} s, init_ray {up - start:.2f} s, two tasks at "
      f"{done - start:.2f} s", "optional_deps", "ray.dashboard.optional_deps" in sys.modules,
      flush=True)
time.sleep(3)
ray.shutdown()
