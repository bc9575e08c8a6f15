"""Laws fitted to the user's own finished studies: the Optuna side of ``heuristics.fit``."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from scaletune.heuristics import laws
from scaletune.heuristics.fit import FittedLaws, ScalePoint, fit_studies
from scaletune.search.config import StudyConfig
from scaletune.search.space import fixed_values
from scaletune.search.studies import open_study
from scaletune.trainer.errors import ConfigError


def scale_point(cfg: StudyConfig, study: optuna.Study, scale_kind: str) -> ScalePoint:
    """The best complete trial of ``study`` as one point of a law (batch in tokens per step)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(cfg.name, [f"study {cfg.name!r} has no complete trial to fit on"])
    best = min(complete, key=lambda t: t.value)
    m = cfg.model
    scale = (cfg.tokens_per_trial if scale_kind == "tokens"
             else laws.non_embedding_params(m.n_layer, m.n_embd))
    tokens_per_step = best.user_attrs.get("tokens_per_step")
    batch_searched = "batch_size" in best.params
    values = {**fixed_values(cfg), **best.params}  # keyed by registered name or form
    return ScalePoint(
        scale=float(scale),
        scale_kind=scale_kind,
        lr=float(values.get("lr", cfg.trainer.optim.lr)),
        tau=best.params.get("tau", best.user_attrs.get("tau")),
        batch_size=float(tokens_per_step) if batch_searched and tokens_per_step else None,
        value=float(best.value),
    )


def fit_from_studies(
    cfgs: list[StudyConfig], scale_kind: str = "tokens", n_boot: int = 1000
) -> FittedLaws:
    """Fit lr, tau and batch-size laws to the best trials of finished studies at several scales."""
    points = []
    for cfg in cfgs:
        study, ran_with, _ = open_study(cfg, cfg.source)  # names a missing storage or study
        points.append(scale_point(ran_with, study, scale_kind))
    if len({p.scale for p in points}) < 2:
        raise ConfigError(
            "fit", [f"the studies must span at least two {scale_kind} scales, got "
                    f"{sorted({p.scale for p in points})}"]
        )
    return fit_studies(points, n_boot=n_boot)
