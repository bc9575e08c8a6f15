"""Scaling-law heuristics: formulas (``laws``), priors for a study (``priors``) and laws fitted to
the user's finished studies (``fit``), and the rules that carry a trial's hyperparameters to a
longer run (``transfer``). Typed functions over numpy/scipy; rich only to print a priors table;
no torch, optuna or ray."""

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
