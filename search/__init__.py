"""The search: a study file's schema, the driver that runs a study on Ray, and what reads a
study afterwards (show, report, export, the ladder). What `scaletune` does, from Python:

    from scaletune.search import load_study, validate_file, run_study, export_study, make_report

    validate_file("study.yaml")          # ("study", notes), or a ConfigError naming every problem
    cfg = load_study("study.yaml")       # a StudyConfig; its paths resolved against the file
    study = run_study(cfg)               # an optuna.Study, run or resumed to cfg.n_trials
    export_study(cfg, "final.yaml", tokens=2_000_000_000)
    make_report(cfg, "report/")

The public names are loaded on first use (PEP 562), as in ``scaletune.trainer``: the command
line imports this package, and its start-up must not pay for Optuna, Ray or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The errors every function here raises, to catch by kind (light: no torch, no Optuna).
from scaletune.trainer import errors as _errors
from scaletune.trainer.errors import *  # noqa: F403 - errors.__all__, listed there once

if TYPE_CHECKING:
    from scaletune.search.config import StudyConfig, load_study, validate_study
    from scaletune.search.export import export_study
    from scaletune.search.fit import fit_laws
    from scaletune.search.ladder import load_ladder, run_ladder
    from scaletune.search.manage import validate_file
    from scaletune.search.report import make_report
    from scaletune.search.runner import run_study
    from scaletune.search.studies import open_study, pick_trial

_HOME = {
    "StudyConfig": "config",
    "load_study": "config",
    "validate_study": "config",
    "validate_file": "manage",
    "run_study": "runner",
    "open_study": "studies",
    "pick_trial": "studies",
    "export_study": "export",
    "fit_laws": "fit",
    "make_report": "report",
    "load_ladder": "ladder",
    "run_ladder": "ladder",
}
"""Each public name and the module of this package that defines it."""

__all__ = [
    *_errors.__all__,
    "StudyConfig",
    "export_study",
    "fit_laws",
    "load_ladder",
    "load_study",
    "make_report",
    "open_study",
    "pick_trial",
    "run_ladder",
    "run_study",
    "validate_file",
    "validate_study",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
