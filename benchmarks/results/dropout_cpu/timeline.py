"""The quickstart as a user runs it (a new folder and process), then each trial's start and end
from the study's storage, in seconds from the command's start: where a run's wall goes that is
not training. Prints one line per trial and a summary line."""

import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

QUICKSTART = Path(__file__).resolve().parents[3] / "studies" / "quickstart.yaml"

with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
    shutil.copy(QUICKSTART, Path(tmp) / "quickstart.yaml")
    start = dt.datetime.now()
    out = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "run", "quickstart.yaml"],
                         cwd=tmp, capture_output=True, text=True, check=True).stdout
    wall = (dt.datetime.now() - start).total_seconds()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="quickstart",
                              storage=f"sqlite:///{tmp}/runs/studies.db")
    trials = study.trials
    for t in trials:
        begin = (t.datetime_start - start).total_seconds()
        end = (t.datetime_complete - start).total_seconds()
        print(f"trial {t.number:2d} {t.state.name:8s} {begin:6.2f} -> {end:6.2f} s "
              f"({end - begin:5.2f} s) dropout {t.params['dropout']:.4f}")
    ends = sorted((t.datetime_complete - start).total_seconds() for t in trials)
    print(f"first trial started at {min((t.datetime_start - start).total_seconds() for t in trials):.2f} s; "
          f"last two trials ended at {ends[-2]:.2f} and {ends[-1]:.2f} s; command ended at {wall:.2f} s")
    print(next(line for line in out.splitlines() if line.startswith("best trial")))
    print(next(line for line in out.splitlines() if line.strip().startswith("time")))
