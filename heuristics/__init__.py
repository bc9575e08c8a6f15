"""Scaling-law heuristics: formulas (``laws``), priors for a study (``priors``) and laws fitted to
the user's finished studies (``fit``), and the rules that carry a trial's hyperparameters to a
longer run (``transfer``). Typed functions over numpy/scipy; rich only to print a priors table;
no torch, optuna or ray.

The public names are loaded on first use (PEP 562), so that ``scaletune.heuristics.laws`` alone
(pure math) does not pull in scipy and rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaletune.heuristics.fit import FittedLaws, ScalePoint, fit_studies
    from scaletune.heuristics.priors import (
        ModelShape,
        Prior,
        Priors,
        Source,
        print_priors,
        priors_for,
        priors_table,
    )

_HOME = {
    "FittedLaws": "fit",
    "ScalePoint": "fit",
    "fit_studies": "fit",
    "ModelShape": "priors",
    "Prior": "priors",
    "Priors": "priors",
    "Source": "priors",
    "print_priors": "priors",
    "priors_for": "priors",
    "priors_table": "priors",
}
"""Each public name and the module of this package that defines it."""

__all__ = [
    "FittedLaws",
    "ModelShape",
    "Prior",
    "Priors",
    "ScalePoint",
    "Source",
    "fit_studies",
    "print_priors",
    "priors_for",
    "priors_table",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
