"""What a study pays before its first trial trains: the driver's imports and the workers' warm-up.

Each check runs in a new Python process, where nothing is imported yet."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.search.helpers import REPO, tiny_study, write_study


def fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter from the repository root; it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_driver_plans_opens_and_draws_prior_seeded_trials_without_torch_or_scipy_stats(
        tmp_path, shakespeare):
    # Importing torch costs the driver ~1 s and scipy.stats ~0.4 s, before Ray even starts; the
    # driver trains nothing and needs neither. Prior seeding draws from truncated normals.
    study = tiny_study(tmp_path, shakespeare, seeding="prior",
                       search={"lr": {"prior": "auto"}, "weight_decay": {"prior": "auto", "as": "tau"},
                               "dropout": {"prior": "auto"}, "warmup_frac": {"prior": "auto"},
                               "batch_size": {"prior": "auto"}})
    path = write_study(tmp_path, study)
    got = fresh_python(f"""
import json, sys
from scaletune.search.cli import main  # the command line's own imports too
from scaletune.search.config import load_study
from scaletune.search.plan import SearchPlan
from scaletune.search.runner import preflight
from scaletune.search.storage import make_storage
cfg = load_study({str(path)!r})
plan = SearchPlan.build(cfg, preflight(cfg))
study, _ = plan.open_study(make_storage(cfg.storage_url))
runs = [plan.ask(study, 1) for _ in range(3)]
print(json.dumps({{"lrs": [r.params["lr"] for r in runs],
                  "torch": "torch" in sys.modules, "scipy.stats": "scipy.stats" in sys.modules}}))
""")
    assert len(set(got["lrs"])) == 3  # three trials drawn from the priors
    assert got["torch"] is False
    assert got["scipy.stats"] is False


def test_warm_up_leaves_the_trainer_and_what_its_optimizer_imports_loaded():
    got = fresh_python("""
import json, sys
before = "torch._dynamo" in sys.modules
from scaletune.search.worker import warm_up
warm_up()
print(json.dumps({"before": before, "dynamo": "torch._dynamo" in sys.modules,
                  "trainer": "scaletune.trainer.loop" in sys.modules}))
""")
    assert got == {"before": False, "dynamo": True, "trainer": True}
