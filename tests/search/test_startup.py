"""What a study pays before its first trial trains: the driver's imports and the workers' warm-up.

Each check runs in a new Python process, where nothing is imported yet."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna

from scaletune.search.config import validate_study
from tests.search.helpers import REPO, scaletune_run_to_end, tiny_study, write_study


def fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter from the repository root; it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_driver_runs_a_study_without_torch_scipy_stats_or_plotting_libraries(
        tmp_path, shakespeare):
    # Importing torch costs the driver ~1 s and scipy.stats ~0.4 s, before Ray even starts; the
    # driver trains nothing and needs neither. Prior seeding draws from truncated normals. The
    # plotting libraries (matplotlib, pandas, plotly: ~0.8 s) belong to `scaletune report`, not
    # to the start or the end-of-run summary of `scaletune run`.
    study = tiny_study(tmp_path, shakespeare, seeding="prior",
                       search={"lr": {"prior": "auto"}, "weight_decay": {"prior": "auto", "as": "tau"},
                               "dropout": {"prior": "auto"}, "warmup_frac": {"prior": "auto"},
                               "batch_size": {"prior": "auto"}})
    path = write_study(tmp_path, study)
    got = fresh_python(f"""
import json, sys
from rich.console import Console
from scaletune.search.cli import main  # the command line's own imports too
from scaletune.search.config import load_study
from scaletune.search.manage import with_options
from scaletune.search.plan import SearchPlan
from scaletune.search.progress import print_run_summary
from scaletune.search.runner import preflight
from scaletune.search.storage import make_storage
cfg = with_options(load_study({str(path)!r}), n_trials=None, address=None, max_concurrent=None,
                   storage=None)
plan = SearchPlan.build(cfg, preflight(cfg))
study, _ = plan.open_study(make_storage(cfg.storage_url))
runs = [plan.ask(study, 1) for _ in range(3)]
for i, run in enumerate(runs):
    study.tell(run.trial, 3.0 - i)
summary = print_run_summary(Console(quiet=True), study, cfg, {str(path)!r}, 1.0)
print(json.dumps({{"lrs": [r.params["lr"] for r in runs], "best": summary["best"]["value"],
                  "loaded": [m for m in ("torch", "scipy.stats", "matplotlib", "pandas", "plotly")
                             if m in sys.modules]}}))
""")
    assert len(set(got["lrs"])) == 3  # three trials drawn from the priors
    assert got["best"] == 1.0  # the summary read the study
    assert got["loaded"] == []


def test_warm_up_loads_the_trainer_and_a_trial_never_loads_torch_compile(shakespeare):
    # torch._dynamo costs a fresh worker 1.4 s of CPU to import, and torch.optim imports it to
    # build an optimizer and on every step; a trial that does not compile needs none of it.
    got = fresh_python(f"""
import json, sys
before = "torch._dynamo" in sys.modules
from scaletune.search.worker import warm_up
warm_up()
warmed = "scaletune.trainer.loop" in sys.modules
from scaletune.search.trial import train_trial
from scaletune.trainer import TrainConfig
reports = []
cfg = TrainConfig.model_validate({{
    "model": {{"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}},
    "data": {{"source": "text", "path": {str(shakespeare)!r}, "tokenizer": "byte"}},
    "tokens": 8192, "batch_size": 8, "eval_every_tokens": 4096, "device": "cpu"}})
result = train_trial(cfg, lambda tokens, value, metrics: reports.append(value) or "continue")
print(json.dumps({{"before": before, "warmed": warmed, "status": result["status"],
                  "reports": len(reports), "dynamo": "torch._dynamo" in sys.modules}}))
""")
    assert got == {"before": False, "warmed": True, "status": "completed", "reports": 2,
                   "dynamo": False}


def test_a_study_s_first_trials_run_in_the_processes_that_warmed_up(tmp_path, shakespeare):
    # A new study's own cluster (scaletune run in a new process): its warm-ups import torch and
    # the trainer into two worker processes. Launched while the warm-ups ran, the first trials
    # queued behind them, the raylet started more processes for that queue, and in half of the
    # runs one of them took a trial and imported torch again (1.5-2.5 s later than a warm one).
    study = tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"},
                       workers={"cpus_per_trial": 1, "max_concurrent": 2})
    path = write_study(tmp_path, study)
    out = scaletune_run_to_end(path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    cfg = validate_study(study)
    trials = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url).trials
    got = [(t.user_attrs["worker_pid"], t.user_attrs["worker_warm"]) for t in trials]
    assert len({pid for pid, _ in got}) == 2, got  # side by side, each in a process of its own
    assert [warm for _, warm in got] == [True, True], got
    # Each records the code that trained it (a study outlives upgrades): this checkout's.
    from scaletune.trainer.record import code_revision

    assert [t.user_attrs["worker_code"] for t in trials] == [code_revision()] * 2
