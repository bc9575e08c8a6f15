"""Scaling laws fitted to the user's own finished studies (the rungs of a scale ladder).

Each finished study is a rung at one scale (training tokens, or non-embedding parameters). Every
near-optimal trial of a rung is a ``ScalePoint``: its loss within ``NEAR_BEST`` of the rung's
best, weighted by how close (``near_best_weights``). For each of the optimal peak LR, the AdamW
timescale tau and the batch size we fit a power law y = a * x^b by weighted least squares in
log10 space over all those trials, with a seeded bootstrap that resamples rungs and, within each,
its trials. A fit says what it does not know: fewer than three rungs, an interval of zero width
and an exponent of the opposite sign to the published law each give a warning in plain words,
and ``heuristics.priors`` widens a prior built on such a fit toward the published laws. Where
every published lr law is extrapolated (small models), the lr law's exponent in tokens is
combined with a prior fitted on the suite's ladders (``SHORT_RUN_LR_EXPONENT``): three rungs
measure it with standard errors of 0.07 to 1.1, and a wrong one is carried 4x past them.

The warmup fraction gets no law: the rungs' near-best warmups are carried to the target as their
weighted mean (``fit_carried``). The published rules put warmup at a number of steps or tokens, so
a longer run would take a smaller fraction; on the suite's small models the best trials took
0.17-0.28 at every length, and the rungs' mean, carried, put the ladder's first target trial within
1% of the best on 12 of 18 ladders against 10 with the published prior
(benchmarks/results/ladder_warmup).

The result, ``FittedLaws``, is saved as a small JSON summary (coefficients, their covariance,
intervals, each rung's optimum, warnings; no bootstrap samples) and can replace the published
laws in ``heuristics.priors.priors_for(..., fitted=...)``.

The search package builds the points from Optuna storage; nothing here touches Optuna.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from scaletune.heuristics import laws

ScaleKind = Literal["tokens", "params"]
SCALE_KINDS: tuple[str, ...] = ("tokens", "params")
FORMAT_VERSION = 2
"""2: summaries (covariance of the coefficients, rung optima, warnings); 1: bootstrap samples
and one best trial per study, still read (``FittedLaws.from_json``)."""
EARLIER_ENTRIES = ("warmup_frac", "fitted_on")
"""Entries of a laws file that scaletune wrote from 2026-12-02 (warmup_frac) and 2026-12-04
(fitted_on) on, under the same format_version: one that lacks them is an earlier fit."""
NEAR_BEST = 0.03
"""A trial is near-optimal when its loss is within this fraction of its rung's best loss."""
MIN_RUNGS = 3
"""Fewer rungs than this leave a law untested: two points always lie on a line."""
DEGENERATE_WIDTH = 1e-3
"""An exponent interval narrower than this is taken as degenerate (nothing was resampled)."""

SHORT_RUN_LR_EXPONENT = -0.12
"""Prior mean of the lr law's exponent in tokens where every published lr law is extrapolated
(models far below 1e8 parameters, as on a laptop). Suite fit (benchmarks/results/ladder_v3_warmup,
shrink.py): the 18 ladders' exponents (rungs at 1/16-1/4 of the target's tokens) pooled by their
bootstrap precision give -0.116, -0.108 to -0.130 fitted on five tasks; their spread between tasks
is no larger than each one's own noise (DerSimonian-Laird between-task sd 0), so a single ladder's
exponent is mostly noise (standard errors 0.07-1.1). Read with ``EXPONENT_PRIOR_SD``, leave one
task out, the law's lr at the target comes within 0.15 dex of the best trial's on 15 of 18
ladders (12 as fitted), the mean gap 0.12 dex (0.18). Shallower than the horizon rule's -0.32
(Bjorck et al.), which was fitted on models of 1e8 parameters and more."""
EXPONENT_PRIOR_SD = 0.1
"""sd of that prior. On the suite, 0.03 to 0.1 give the same 15 of 18 (0.15: 14); the widest of
them, so that a ladder whose rungs pin the exponent down (standard error 0.07) keeps 70% of its
own."""

PUBLISHED_EXPONENTS: dict[tuple[str, str], tuple[float, str]] = {
    ("tokens", "lr"): (laws.HORIZON_LR_EXPONENT,
                       "the horizon rule eta ~ D^-0.32 (Bjorck et al., arXiv 2409.19913)"),
    ("tokens", "tau"): (-0.527, "Power Lines' tau ~ TPP^-0.527 at fixed N (arXiv 2505.13738)"),
    ("tokens", "batch_size"): (0.383, "Power Lines' B ~ D^0.383 (arXiv 2505.13738)"),
    ("params", "lr"): (-0.713, "Step Law's eta ~ N^-0.713 at fixed D (arXiv 2503.04715)"),
    ("params", "tau"): (0.527, "Power Lines' tau ~ TPP^-0.527 = N^0.527 at fixed D "
                               "(arXiv 2505.13738)"),
}
"""The exponent each published law gives along a scale, with where it comes from: a fitted
exponent of the opposite sign is warned about. Power Lines' batch size does not depend on N, so
a law in parameters has no sign to check."""


@dataclass(frozen=True)
class ScalePoint:
    """One near-optimal trial of a finished study (a rung), at that study's scale."""

    scale: float
    """Training tokens per trial (scale_kind 'tokens') or non-embedding parameters
    12*n_layer*n_embd^2 (scale_kind 'params'). Trials at one scale form one rung."""
    scale_kind: ScaleKind
    """What ``scale`` counts: 'tokens' or 'params'."""
    lr: float
    """Peak learning rate of the trial."""
    tau: float | None
    """AdamW timescale B/(eta*lambda*D) of the trial (unitless); None if unknown."""
    batch_size: float | None
    """Batch of the trial in TOKENS per optimizer step (sequences * block_size), so that
    studies with different block sizes are comparable; None if the study fixed it."""
    value: float
    """Objective (validation loss) of the trial; recorded for provenance, not fitted."""
    weight: float = 1.0
    """How much the trial counts, in (0, 1]: 1 for the rung's best (``near_best_weights``)."""
    warmup_frac: float | None = None
    """Warmup fraction of the trial; None if the study did not search it."""

    def __post_init__(self) -> None:
        if self.scale_kind not in SCALE_KINDS:
            raise ValueError(f"scale_kind must be one of {SCALE_KINDS}, got {self.scale_kind!r}")
        for name in ("scale", "lr", "tau", "batch_size"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"ScalePoint.{name} must be positive and finite, got {name}={v!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"ScalePoint.value must be finite, got value={self.value!r}")
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"ScalePoint.weight must be in (0, 1], got weight={self.weight!r}")
        w = self.warmup_frac
        if w is not None and not (0.0 <= w < 1.0):
            raise ValueError(f"ScalePoint.warmup_frac must be in [0, 1), got warmup_frac={w!r}")


def near_best_weights(losses: Sequence[float], near: float = NEAR_BEST) -> list[float]:
    """The weight of each trial of one rung: 1 - gap/near, where gap is its loss above the best
    as a fraction of the best; 0 (left out) from a gap of ``near`` on. The best trial weighs 1."""
    if not near > 0:
        raise ValueError(f"near must be > 0, got {near=}")
    best = min(losses)
    return [max(0.0, 1.0 - (v - best) / (abs(best) or 1.0) / near) for v in losses]


@dataclass(frozen=True)
class Prediction:
    """A fitted law evaluated at one scale: point value and prediction interval."""

    value: float
    low: float
    high: float
    level: float
    """Coverage of [low, high], e.g. 0.95."""
    extrapolated: bool
    """True when the scale lies outside the scales the law was fitted on."""


@dataclass(frozen=True)
class RungOptimum:
    """Where one rung's near-optimal trials put the optimum: their weighted geometric mean, and
    the weighted spread of log10 y among them (how flat the optimum is) as an interval."""

    scale: float
    value: float
    low: float
    high: float
    n_trials: int
    """Near-optimal trials of the rung that the fit used."""


def _pow10(log10: float) -> float:
    """10**log10 computed in log space and clipped to 1e-300..1e300: absurd far from the data
    a law was fitted on, but a number."""
    return 10.0 ** min(max(log10, -300.0), 300.0)


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


@dataclass(frozen=True)
class PowerLawFit:
    """y = coef * x^exponent, fitted by weighted least squares on (log10 x, log10 y)."""

    target: str
    """What y is: 'lr', 'tau' or 'batch_size'."""
    unit: str
    """Unit of y."""
    scale_kind: ScaleKind
    log10_coef: float
    """log10 of the constant: kept in log space, where a steep law's constant (say 1e-421 from
    two studies at nearby scales) neither underflows nor overflows."""
    exponent: float
    n_points: int
    """Near-optimal trials fitted, over all rungs."""
    n_rungs: int
    """Distinct scales (rungs) fitted."""
    x_min: float
    x_max: float
    rmse_log10: float
    """Root-mean-square residual of the rungs' optima around the law, in log10 units."""
    level: float
    """Coverage of the intervals."""
    cov: tuple[float, float, float]
    """Bootstrap covariance of (log10 coef, exponent): var, covariance, var."""
    scatter_log10: float
    """Spread (log10) of a new rung's optimum around the law: the rungs' residual standard
    error with three rungs or more, 0 with two (unknown; the fit warns instead)."""
    rungs: tuple[RungOptimum, ...]
    warnings: tuple[str, ...] = ()
    """What the fit does not know, in plain words; empty for a fit that can be trusted."""
    exponent_fitted: float | None = None
    """The exponent the rungs alone give, where a prior on the exponent moved it (``exponent``
    is then the two combined); None without a prior."""
    exponent_prior: tuple[float, float] | None = None
    """(mean, sd) of the prior on the exponent the fit was combined with; None without one."""

    @property
    def weak(self) -> bool:
        """True when a warning applies: priors built on this fit are widened."""
        return bool(self.warnings)

    @property
    def data_exponent(self) -> float:
        """The exponent the rungs alone give (before any prior)."""
        return self.exponent if self.exponent_fitted is None else self.exponent_fitted

    @property
    def exponent_interval(self) -> tuple[float, float]:
        """Interval of the exponent b (bootstrap standard error, normal)."""
        half = _z(self.level) * math.sqrt(max(self.cov[2], 0.0))
        return self.exponent - half, self.exponent + half

    @property
    def coef_interval(self) -> tuple[float, float]:
        """Interval of the constant a."""
        half = _z(self.level) * math.sqrt(max(self.cov[0], 0.0))
        return _pow10(self.log10_coef - half), _pow10(self.log10_coef + half)

    @property
    def coef(self) -> float:
        """The constant a of y = a * x^b (0.0 where it is below the float range)."""
        return 10.0 ** min(self.log10_coef, 308.0)

    def predict(self, scale: float) -> Prediction:
        """The law at ``scale`` (same kind as fitted), with a prediction interval: where the
        optimum of a study at that scale lies (the law's own uncertainty plus the rungs'
        scatter around it)."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale=}")
        lx = math.log10(scale)
        mean = self.log10_coef + self.exponent * lx
        var_a, cov_ab, var_b = self.cov
        var = max(var_a + 2.0 * lx * cov_ab + lx * lx * var_b, 0.0) + self.scatter_log10**2
        half = _z(self.level) * math.sqrt(var)
        extrapolated = not (self.x_min * (1 - 1e-9) <= scale <= self.x_max * (1 + 1e-9))
        return Prediction(_pow10(mean), _pow10(mean - half), _pow10(mean + half), self.level,
                          extrapolated)

    def describe(self) -> str:
        """One line: the law, its exponent interval and what it was fitted on."""
        b_low, b_high = self.exponent_interval
        in_range = -300 < self.log10_coef < 300
        constant = f"{self.coef:.4g}" if in_range else f"10^{self.log10_coef:.2f}"
        # A batch is fitted in tokens per step, where a study file counts sequences.
        name = f"{self.target} ({self.unit})" if self.target == "batch_size" else self.target
        prior = ("" if self.exponent_prior is None else
                 f"; the rungs alone {_shown(self.data_exponent, '+.3f')}, drawn toward the prior "
                 f"{self.exponent_prior[0]:+.2f} +- {self.exponent_prior[1]:.2f}")
        return (
            f"{name} = {constant} * {self.scale_kind}^{_shown(self.exponent, '.3f')} "
            f"(b {self.level:.0%} CI [{_shown(b_low, '.3f')}, {_shown(b_high, '.3f')}]{prior}, "
            f"{self.n_rungs} rungs, "
            f"{self.n_points} near-best trials, {self.scale_kind} {self.x_min:.3g}..{self.x_max:.3g})"
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["exponent_interval"] = list(self.exponent_interval)
        out["rungs"] = [asdict(r) for r in self.rungs]
        out["cov"], out["warnings"] = list(self.cov), list(self.warnings)
        if self.exponent_prior is not None:
            out["exponent_prior"] = list(self.exponent_prior)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PowerLawFit:
        data = {k: v for k, v in data.items() if k != "exponent_interval"}
        data["cov"] = tuple(float(v) for v in data["cov"])
        data["rungs"] = tuple(RungOptimum(**r) for r in data["rungs"])
        data["warnings"] = tuple(data.get("warnings", ()))
        if data.get("exponent_prior") is not None:
            data["exponent_prior"] = tuple(float(v) for v in data["exponent_prior"])
        return cls(**data)

    @classmethod
    def from_version_1(cls, data: dict[str, Any], points: list[dict[str, Any]]) -> PowerLawFit:
        """A fit of a version-1 file: its bootstrap samples become their covariance, its
        studies' best trials the rungs; the warnings are worked out as for a new fit."""
        data = dict(data)
        log10_coef = data.get("log10_coef")
        if log10_coef is None:  # files written before the constant was kept in log space
            log10_coef = math.log10(data["coef"])
        boot = np.array([data["boot_log10_coef"], data["boot_exponent"]], dtype=float)
        c = np.cov(boot) if boot.shape[1] > 1 else np.zeros((2, 2))
        target = data["target"]
        rungs = tuple(RungOptimum(p["scale"], p[target], p[target], p[target], 1)
                      for p in points if p.get(target) is not None)
        fit = cls(
            target=target, unit=data["unit"], scale_kind=data["scale_kind"],
            log10_coef=float(log10_coef), exponent=float(data["exponent"]),
            n_points=int(data["n_points"]), n_rungs=len({r.scale for r in rungs}),
            x_min=float(data["x_min"]), x_max=float(data["x_max"]),
            rmse_log10=float(data["rmse_log10"]), level=float(data["level"]),
            cov=(float(c[0, 0]), float(c[0, 1]), float(c[1, 1])), scatter_log10=0.0, rungs=rungs,
        )
        return _with_warnings(fit)


def _wls(lx: np.ndarray, ly: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of ly on lx: (intercept, slope)."""
    mx, my = np.average(lx, weights=w), np.average(ly, weights=w)
    sxx = float(np.sum(w * (lx - mx) ** 2))
    slope = float(np.sum(w * (lx - mx) * (ly - my)) / sxx)
    return float(my - slope * mx), slope


def _weighted_mean_sd(v: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean of ``v`` and the weighted spread around it."""
    mean = float(np.average(v, weights=w))
    return mean, float(np.sqrt(np.average((v - mean) ** 2, weights=w)))


def _resample(rng: np.random.Generator, groups: list[np.ndarray], min_rungs: int
              ) -> np.ndarray | None:
    """The indices of one bootstrap draw: the rungs (``groups``) with replacement, drawn again up
    to 20 times until ``min_rungs`` distinct ones are in, then each chosen rung's trials with
    replacement; None when no draw had that many."""
    for _attempt in range(20):
        chosen = rng.integers(0, len(groups), size=len(groups))
        if np.unique(chosen).size >= min_rungs:
            break
    else:
        return None
    return np.concatenate([groups[k][rng.integers(0, groups[k].size, size=groups[k].size)]
                           for k in chosen])


BLENDED = ("the prior blends this fit half and half with the published laws, no narrower than "
           "the fit's own interval")
"""What a prior does with a law that warns (heuristics.priors._blend), said in its warnings."""


def _with_warnings(fit: PowerLawFit) -> PowerLawFit:
    """``fit`` with the warnings its numbers call for, each a sentence that says what to do."""
    said = []
    what = f"{fit.target} law"
    if fit.n_rungs < MIN_RUNGS:
        said.append(
            f"{what}: fitted on {fit.n_rungs} rungs; a line always passes through two points, so "
            "nothing tests the law and its interval reflects only the spread within each rung: "
            f"add a third rung; until then {BLENDED}")
    low, high = fit.exponent_interval
    if high - low < DEGENERATE_WIDTH:
        why, do = (("one near-best trial per rung", "run more trials per rung")
                   if fit.n_points == fit.n_rungs else
                   ("the near-best trials of each rung share one value",
                    "search more values (more choices, a wider range) or run more trials per rung"))
        said.append(
            f"{what}: the {fit.level:.0%} interval of the rungs' own exponent "
            f"[{_shown(low, '.3f')}, {_shown(high, '.3f')}] (before any prior draws it) has zero "
            f"width because the bootstrap had nothing to vary ({why}), not because the exponent "
            f"is known: {do}; {BLENDED}")
    published = PUBLISHED_EXPONENTS.get((fit.scale_kind, fit.target))
    # An exponent that rounds to zero (rungs that all found one value) has no sign to oppose:
    # it was "-0.000 has the opposite sign".
    if (published is not None and fit.data_exponent * published[0] < 0
            and abs(fit.data_exponent) >= 5e-4):
        said.append(
            f"{what}: the fitted exponent {fit.data_exponent:+.3f} has the opposite sign to "
            f"{published[1]} ({published[0]:+.3f}); check the rungs (a best value at the edge of "
            f"its range, too few trials) before trusting it; {BLENDED}")
    return replace(fit, warnings=tuple(said))


def _shown(x: float, spec: str) -> str:
    """``x`` formatted by ``spec``, without the sign of a value that rounds to zero ("-0.000")."""
    text = format(x, spec)
    return format(0.0, spec) if text.lstrip("+-").strip("0.") == "" else text


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    target: str,
    unit: str,
    scale_kind: ScaleKind,
    weights: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    exponent_prior: tuple[float, float] | None = None,
) -> PowerLawFit:
    """Fit y = a * x^b by weighted least squares in log10 space over trials at several scales.

    Trials at one x form a rung. The seeded bootstrap resamples rungs with replacement and,
    within each, its trials (a resample with a single distinct scale is drawn again), so the
    interval grows with the scatter of the trials and of the rungs. Needs two distinct x.
    exponent_prior: (mean, sd) of a normal prior on b, combined with the fit's bootstrap
    estimate by their precisions (``SHORT_RUN_LR_EXPONENT`` for lr in tokens on small models).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot=}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level=}")
    lx = np.log10(np.asarray(x, dtype=float))
    ly = np.log10(np.asarray(y, dtype=float))
    w = np.ones_like(lx) if weights is None else np.asarray(weights, dtype=float)
    if lx.shape != ly.shape or lx.shape != w.shape or lx.ndim != 1:
        raise ValueError(f"x, y and weights must be 1-D and of equal length, got {len(x)}, "
                         f"{len(y)} and {w.size}")
    if not (np.all(np.isfinite(lx)) and np.all(np.isfinite(ly))):
        raise ValueError(f"{target}: x and y must be positive and finite")
    if not np.all((w > 0) & np.isfinite(w)):
        raise ValueError(f"{target}: weights must be > 0 and finite")
    scales = np.unique(lx)
    if scales.size < 2:
        raise ValueError(f"{target}: need studies at >= 2 distinct scales, got {lx.size} point(s) "
                         f"at {scales.size} scale")

    intercept, slope = _wls(lx, ly, w)
    groups = [np.flatnonzero(lx == s) for s in scales]
    rungs, residuals = [], []
    for s, g in zip(scales, groups, strict=True):
        mean, sd = _weighted_mean_sd(ly[g], w[g])
        # The scale back from log10, without the float's noise (20000.000000000004).
        rungs.append(RungOptimum(float(f"{10.0**s:.12g}"), _pow10(mean), _pow10(mean - sd),
                                 _pow10(mean + sd), int(g.size)))
        residuals.append(mean - (intercept + slope * s))
    residuals_a = np.asarray(residuals)

    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = _resample(rng, groups, min_rungs=2)  # one scale determines no slope
        if idx is not None:
            boot.append(_wls(lx[idx], ly[idx], w[idx]))
    samples = np.asarray(boot or [(intercept, slope)]).T
    c = np.cov(samples) if samples.shape[1] > 1 else np.zeros((2, 2))
    dof = len(groups) - 2
    scatter = float(np.sqrt(np.sum(residuals_a**2) / dof)) if dof > 0 else 0.0

    fit = _with_warnings(PowerLawFit(
        target=target, unit=unit, scale_kind=scale_kind, log10_coef=intercept, exponent=slope,
        n_points=int(lx.size), n_rungs=len(groups),
        x_min=float(10.0 ** scales.min()), x_max=float(10.0 ** scales.max()),
        rmse_log10=float(np.sqrt(np.mean(residuals_a**2))), level=level,
        cov=(float(c[0, 0]), float(c[0, 1]), float(c[1, 1])), scatter_log10=scatter,
        rungs=tuple(rungs),
    ))
    if exponent_prior is None:
        return fit
    return _with_exponent_prior(fit, float(np.average(lx, weights=w)), exponent_prior)


def _with_exponent_prior(fit: PowerLawFit, pivot: float, prior: tuple[float, float]
                         ) -> PowerLawFit:
    """``fit`` with its exponent combined with a normal prior (mean, sd) by their precisions,
    the line turned about ``pivot`` (log10 x where the weighted data center, which the fit goes
    through). A bootstrap that had nothing to vary (zero width, warned) counts as the prior's own
    precision. The prior moves the line, not its uncertainty: the covariance stays the rungs'
    own, about the new line, since on the suite the moved law still missed the best lr by up to
    0.42 dex (shakespeare-bpe), where the combined precision would have claimed +-0.2; and a
    narrower interval narrows the target's prior, whose search then found less (ladder_v4_prior).
    The warnings stay those of the rungs' data."""
    mean, sd = prior
    if not (math.isfinite(mean) and sd > 0):
        raise ValueError(f"exponent_prior must be (finite mean, sd > 0), got {prior!r}")
    var_a, cov_ab, var_b = fit.cov
    at_pivot = max(var_a + 2.0 * pivot * cov_ab + pivot * pivot * var_b, 0.0)
    low, high = fit.exponent_interval  # degenerate as _with_warnings says it: by the interval
    var_data = var_b if high - low >= DEGENERATE_WIDTH else sd**2
    var_post = 1.0 / (1.0 / var_data + 1.0 / sd**2)
    exponent = var_post * (fit.exponent / var_data + mean / sd**2)
    center = fit.log10_coef + fit.exponent * pivot
    intercept = center - exponent * pivot
    residuals = np.array([math.log10(r.value) - (intercept + exponent * math.log10(r.scale))
                          for r in fit.rungs])
    dof = len(residuals) - 2
    return replace(
        fit, log10_coef=intercept, exponent=exponent,
        cov=(at_pivot + pivot * pivot * var_b, -pivot * var_b, var_b),
        rmse_log10=float(np.sqrt(np.mean(residuals**2))),
        scatter_log10=float(np.sqrt(np.sum(residuals**2) / dof)) if dof > 0 else 0.0,
        exponent_fitted=fit.exponent, exponent_prior=(float(mean), float(sd)),
    )


@dataclass(frozen=True)
class CarriedFit:
    """A hyperparameter taken from the rungs unchanged at every scale: the weighted mean of their
    near-best trials, with the interval where a new study's optimum would lie. No trend is fitted:
    used for the warmup fraction, whose near-best values on the suite's ladders show no trend
    across rungs 4x apart in tokens (benchmarks/results/ladder_warmup)."""

    target: str
    unit: str
    scale_kind: ScaleKind
    value: float
    """Weighted mean over every rung's near-best trials (``near_best_weights``)."""
    se: float
    """Bootstrap standard error of ``value`` (rungs resampled, then the trials of each)."""
    scatter: float
    """Spread of the rungs' means around ``value`` (n_rungs - 1 degrees of freedom; 0 with one)."""
    n_points: int
    n_rungs: int
    x_min: float
    x_max: float
    level: float
    rungs: tuple[RungOptimum, ...]
    """Each rung's weighted mean, +- the weighted spread of its near-best trials."""
    warnings: tuple[str, ...] = ()

    @property
    def weak(self) -> bool:
        """True when a warning applies: a prior built on this value is blended with the
        published one."""
        return bool(self.warnings)

    @property
    def sigma(self) -> float:
        """Standard deviation of a new study's optimum around ``value``."""
        return math.sqrt(self.se**2 + self.scatter**2)

    def predict(self, scale: float) -> Prediction:
        """The value at ``scale`` (the same at every scale), with its interval."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale=}")
        half = _z(self.level) * self.sigma
        extrapolated = not (self.x_min * (1 - 1e-9) <= scale <= self.x_max * (1 + 1e-9))
        # A fraction (the warmup's): its interval stays within [0, 1].
        return Prediction(self.value, max(0.0, self.value - half), min(1.0, self.value + half),
                          self.level, extrapolated)

    def describe(self) -> str:
        pred = self.predict(self.x_max)
        low, high = pred.low, pred.high
        return (f"{self.target} = {self.value:.3g} at every scale (the rungs' weighted mean, no "
                f"trend fitted; {self.level:.0%} interval of a study's optimum [{low:.3g}, "
                f"{high:.3g}], {self.n_rungs} rungs, {self.n_points} near-best trials, "
                f"{self.scale_kind} {self.x_min:.3g}..{self.x_max:.3g})")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rungs"] = [asdict(r) for r in self.rungs]
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CarriedFit:
        data = dict(data)
        data["rungs"] = tuple(RungOptimum(**r) for r in data["rungs"])
        data["warnings"] = tuple(data.get("warnings", ()))
        return cls(**data)


def fit_carried(
    x: Sequence[float],
    y: Sequence[float],
    target: str,
    unit: str,
    scale_kind: ScaleKind,
    weights: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> CarriedFit:
    """The weighted mean of y over trials at one or more scales (rungs), with a seeded bootstrap
    that resamples rungs and, within each, its trials, as ``fit_power_law`` does. It warns with
    fewer than three rungs and where nothing varied (every near-best trial at one value)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    w = np.ones_like(xs) if weights is None else np.asarray(weights, dtype=float)
    if xs.shape != ys.shape or xs.shape != w.shape or xs.ndim != 1 or xs.size == 0:
        raise ValueError(f"x, y and weights must be 1-D, non-empty and of equal length, got "
                         f"{len(x)}, {len(y)} and {w.size}")
    if not (np.all(np.isfinite(ys)) and np.all((w > 0) & np.isfinite(w))
            and np.all((xs > 0) & np.isfinite(xs))):
        raise ValueError(f"{target}: x must be positive and finite, y finite and weights > 0 and "
                         "finite")
    scales = np.unique(xs)
    groups = [np.flatnonzero(xs == s) for s in scales]
    value = float(np.average(ys, weights=w))
    rungs, means = [], []
    for s, g in zip(scales, groups, strict=True):
        mean, sd = _weighted_mean_sd(ys[g], w[g])
        rungs.append(RungOptimum(float(s), mean, mean - sd, mean + sd, int(g.size)))
        means.append(mean)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = _resample(rng, groups, min_rungs=1)  # the first draw always has one
        boot.append(float(np.average(ys[idx], weights=w[idx])))
    se = float(np.std(boot, ddof=1)) if len(boot) > 1 else 0.0
    dof = len(groups) - 1
    scatter = (float(np.sqrt(np.sum((np.asarray(means) - value) ** 2) / dof)) if dof > 0
               else 0.0)
    said = []
    if len(groups) < MIN_RUNGS:
        said.append(
            f"{target}: carried from {len(groups)} rung{'s' * (len(groups) != 1)}; with fewer "
            f"than {MIN_RUNGS} nothing "
            "shows whether the rungs agree: add a rung; until then the prior is blended half and "
            "half with the published one")
    if math.sqrt(se**2 + scatter**2) < DEGENERATE_WIDTH:
        said.append(
            f"{target}: every near-best trial of the rungs has {target} {value:.3g}, so nothing "
            "measured how much it matters: run more trials per rung; the prior is blended with "
            "the published one")
    return CarriedFit(
        target=target, unit=unit, scale_kind=scale_kind, value=value, se=se, scatter=scatter,
        n_points=int(xs.size), n_rungs=len(groups), x_min=float(scales.min()),
        x_max=float(scales.max()), level=level, rungs=tuple(rungs), warnings=tuple(said),
    )


@dataclass(frozen=True)
class FittedLaws:
    """Power laws for optimal lr, tau and batch size fitted to the user's studies."""

    scale_kind: ScaleKind
    lr: PowerLawFit
    tau: PowerLawFit | None
    """None when fewer than two distinct scales recorded a tau."""
    batch_size: PowerLawFit | None
    """Batch in tokens per step; None when fewer than two distinct scales recorded one."""
    warmup_frac: CarriedFit | None = None
    """The rungs' warmup fraction, carried unchanged; None when fewer than two distinct scales
    searched it (and in files written before it was fitted)."""
    study_warnings: tuple[str, ...] = ()
    """What is wrong with the studies as a set, not with one law (rungs that vary the quantity
    the laws are not a function of); listed before the laws' own warnings."""
    fitted_on: tuple[dict[str, Any], ...] = ()
    """The studies fitted, one record each: ``study`` (its name), ``n_layer``, ``n_embd``,
    ``tokens_per_trial`` and ``data`` (the fingerprint of the data its trials trained on, None
    where it recorded none); empty in files written before it was recorded. A study that
    starts from the laws is told where it differs (search.fit.laws_fit_note)."""
    unrecorded: tuple[str, ...] = ()
    """The entries of EARLIER_ENTRIES that the file lacks: an earlier scaletune wrote it (format 2
    did not change with them), which neither fitted a warmup law nor recorded its studies."""

    def scale_of(self, non_embedding_params: float, tokens: float) -> float:
        """Pick the quantity these laws are a function of: tokens or non-embedding params."""
        return tokens if self.scale_kind == "tokens" else non_embedding_params

    def fits(self) -> tuple[PowerLawFit, ...]:
        """The laws that were fitted, in the order lr, tau, batch size."""
        return tuple(f for f in (self.lr, self.tau, self.batch_size) if f is not None)

    def all_fits(self) -> tuple[PowerLawFit | CarriedFit, ...]:
        """The power laws, then the carried values (warmup): what a person reads."""
        return self.fits() + ((self.warmup_frac,) if self.warmup_frac is not None else ())

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.study_warnings + tuple(w for f in self.all_fits() for w in f.warnings)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "scale_kind": self.scale_kind,
            "laws": [f.describe() for f in self.all_fits()],
            "warnings": list(self.warnings),
            "study_warnings": list(self.study_warnings),
            "lr": self.lr.to_json(),
            "tau": None if self.tau is None else self.tau.to_json(),
            "batch_size": None if self.batch_size is None else self.batch_size.to_json(),
            "warmup_frac": None if self.warmup_frac is None else self.warmup_frac.to_json(),
            "fitted_on": list(self.fitted_on),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FittedLaws:
        version = data.get("format_version")
        if version == 1:
            points = data.get("points", [])

            def read(d: dict[str, Any]) -> PowerLawFit:
                return PowerLawFit.from_version_1(d, points)
        elif version == FORMAT_VERSION:
            read = PowerLawFit.from_json
        else:
            raise ValueError(f"unsupported fitted-laws format_version {version!r}: this scaletune "
                             f"reads 1 and {FORMAT_VERSION}; fit the studies again with "
                             "`scaletune fit` (or `scaletune ladder`)")
        return cls(
            scale_kind=data["scale_kind"],
            lr=read(data["lr"]),
            tau=None if data["tau"] is None else read(data["tau"]),
            batch_size=None if data["batch_size"] is None else read(data["batch_size"]),
            warmup_frac=(None if data.get("warmup_frac") is None
                         else CarriedFit.from_json(data["warmup_frac"])),
            study_warnings=tuple(data.get("study_warnings", ())),  # files before it: none
            fitted_on=tuple(r for r in data.get("fitted_on") or () if isinstance(r, dict)),
            unrecorded=tuple(k for k in EARLIER_ENTRIES if k not in data),
        )

    def save(self, path: str | Path, predict_at: dict[str, float] | None = None) -> None:
        """Write the laws as JSON (atomically: a temporary file, then a rename), with each law's
        prediction at the scales of ``predict_at`` by name (a ladder's target) for people to
        read; loading recomputes them."""
        out = self.to_json()
        if predict_at:
            out["predictions"] = {
                name: {"scale": scale, **{f.target: asdict(f.predict(scale))
                                         for f in self.all_fits()}}
                for name, scale in predict_at.items()}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> FittedLaws:
        """Read laws written by ``save`` (this version's or version 1's), refusing a file whose
        values no fit writes (an edited one: a law of another scale, an exponent that is no
        finite number, a warmup fraction or an interval's level out of range, a negative
        variance, a scale range the wrong way round), naming the entry."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object is expected, not a {type(data).__name__}")
            laws = cls.from_json(data)
            laws.check()
            return laws
        except KeyError as e:
            raise ValueError(f"{path}: not a fitted-laws file this scaletune reads: it has no "
                             f"{e.args[0]!r} entry") from None
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: not a fitted-laws file this scaletune reads: {e}") from None

    def check(self) -> None:
        """Raise ValueError naming the first entry no fit writes."""
        if self.scale_kind not in ("tokens", "params"):
            raise ValueError(f"scale_kind is {self.scale_kind!r}, where a fit writes tokens or "
                             "params")
        for key, fit in (("lr", self.lr), ("tau", self.tau), ("batch_size", self.batch_size),
                         ("warmup_frac", self.warmup_frac)):
            if fit is None:
                continue
            if fit.target != key:
                raise ValueError(f"{key}.target is {fit.target!r}, where a fit writes {key}")
            if fit.scale_kind != self.scale_kind:
                raise _unwritten(fit, "scale_kind", f"the file's, {self.scale_kind}")
            for field in ("x_min", "x_max"):
                if not (_finite(getattr(fit, field)) and getattr(fit, field) > 0):
                    raise _unwritten(fit, field, "a positive number")
            if fit.x_min > fit.x_max:
                raise _unwritten(fit, "x_min", f"at most x_max ({fit.x_max!r})")
            if not (_finite(fit.level) and 0 < fit.level < 1):  # a StatisticsError at each use
                raise _unwritten(fit, "level", "the intervals' coverage, a fraction in (0, 1) "
                                 "such as 0.95")
            if isinstance(fit, PowerLawFit):
                for field in ("log10_coef", "exponent"):
                    if not _finite(getattr(fit, field)):
                        raise _unwritten(fit, field, "a finite number")
                if not (_finite(fit.scatter_log10) and fit.scatter_log10 >= 0):
                    raise _unwritten(fit, "scatter_log10", "a number >= 0")
                if not (len(fit.cov) == 3 and all(map(_finite, fit.cov))
                        and fit.cov[0] >= 0 and fit.cov[2] >= 0):
                    raise _unwritten(fit, "cov", "three finite numbers, two variances >= 0 "
                                     "around a covariance")
            else:
                for field in ("value", "se", "scatter"):
                    if not (_finite(getattr(fit, field)) and getattr(fit, field) >= 0):
                        raise _unwritten(fit, field, "a number >= 0")
                if fit.target == "warmup_frac" and not fit.value < 1:
                    raise _unwritten(fit, "value", "a fraction of a run, below 1")


def _unwritten(fit: PowerLawFit | CarriedFit, field: str, allowed: str) -> ValueError:
    """The error of an entry of a laws file that no fit writes."""
    return ValueError(f"{fit.target}.{field} is {getattr(fit, field)!r}, where a fit writes "
                      f"{allowed}")


def _finite(value: Any) -> bool:
    """A number (not a bool) that is finite."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def missing_laws(fitted: FittedLaws) -> list[str]:
    """A line for each law the fit left out (fewer than two scales give its value), which
    `scaletune fit` passed over without a word; or that the file is older than the law."""
    why = {name: ("not in this file, which an earlier scaletune wrote before it fitted one: fit "
                  "the studies again (`scaletune fit`, or `scaletune ladder`) to fit it")
           if name in fitted.unrecorded else
           (f"not fitted: the near-best trials of fewer than two scales give a {name} (a study "
            "that fixes it says nothing of its optimum)")
           for name in ("tau", "batch_size", "warmup_frac")}
    return [f"{name} law: {why[name]}; priors from these laws take {name} from the published "
            "laws" for name in why if getattr(fitted, name) is None]


def _fit_optional(
    points: Sequence[ScalePoint], attr: str, unit: str, n_boot: int, seed: int, level: float
) -> PowerLawFit | None:
    have = [p for p in points if getattr(p, attr) is not None]
    if len({p.scale for p in have}) < 2:
        return None
    return fit_power_law(
        [p.scale for p in have], [getattr(p, attr) for p in have], attr, unit,
        points[0].scale_kind, weights=[p.weight for p in have], n_boot=n_boot, seed=seed,
        level=level,
    )


def fit_studies(
    points: Sequence[ScalePoint], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
    lr_exponent_prior: tuple[float, float] | None = None,
) -> FittedLaws:
    """Fit lr(scale), tau(scale) and batch_size(scale) to the near-optimal trials of finished
    studies (rungs), and carry their warmup fraction (``fit_carried``).

    All points must share one scale_kind and span at least two distinct scales. tau and
    batch_size are fitted only from the points that record them (at least two scales).
    lr_exponent_prior: (mean, sd) of a prior on the lr law's exponent (``fit_power_law``).
    """
    points = tuple(points)
    if not points:
        raise ValueError("fit_studies needs at least one ScalePoint, got none")
    if others := [p for p in points if not isinstance(p, ScalePoint)]:  # {} is falsy
        raise TypeError(f"fit_studies takes ScalePoints, not a {type(others[0]).__name__} (of "
                        "studies: scaletune.search.fit_laws)")
    kinds = {p.scale_kind for p in points}
    if len(kinds) != 1:
        raise ValueError(f"all points must share one scale_kind, got {sorted(kinds)}")
    kind = points[0].scale_kind
    lr = fit_power_law(
        [p.scale for p in points], [p.lr for p in points], "lr", "peak learning rate",
        kind, weights=[p.weight for p in points], n_boot=n_boot, seed=seed, level=level,
        exponent_prior=lr_exponent_prior,
    )
    warm = [p for p in points if p.warmup_frac is not None]
    return FittedLaws(
        scale_kind=kind,
        lr=lr,
        tau=_fit_optional(points, "tau", "unitless (B/(eta*lambda*D))", n_boot, seed, level),
        batch_size=_fit_optional(points, "batch_size", "tokens per step", n_boot, seed, level),
        warmup_frac=None if len({p.scale for p in warm}) < 2 else fit_carried(
            [p.scale for p in warm], [p.warmup_frac for p in warm], "warmup_frac",
            "fraction of steps", kind, weights=[p.weight for p in warm], n_boot=n_boot,
            seed=seed, level=level),
    )
