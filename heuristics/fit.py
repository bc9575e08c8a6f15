"""Scaling laws fitted to the user's own finished studies.

Each finished study contributes one ``ScalePoint``: its scale (training tokens, or non-embedding
parameters) and the hyperparameters of its best trial. For each of the optimal peak LR, the
AdamW timescale tau and the batch size we fit a power law y = a * x^b by least squares in
log10 space, with bootstrap confidence intervals (resampling studies with replacement). The
result, ``FittedLaws``, is saved as JSON and can replace the published laws in
``heuristics.priors.priors_for(..., fitted=...)``.

The search package builds the points from Optuna storage; nothing here touches Optuna.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

ScaleKind = Literal["tokens", "params"]
SCALE_KINDS: tuple[str, ...] = ("tokens", "params")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ScalePoint:
    """The best trial of one finished study, at that study's scale."""

    scale: float
    """Training tokens per trial (scale_kind 'tokens') or non-embedding parameters
    12*n_layer*n_embd^2 (scale_kind 'params')."""
    scale_kind: ScaleKind
    """What ``scale`` counts: 'tokens' or 'params'."""
    lr: float
    """Peak learning rate of the best trial."""
    tau: float | None
    """AdamW timescale B/(eta*lambda*D) of the best trial (unitless); None if unknown."""
    batch_size: float | None
    """Batch of the best trial in TOKENS per optimizer step (sequences * block_size), so that
    studies with different block sizes are comparable; None if the study fixed it."""
    value: float
    """Objective (validation loss) of the best trial; recorded for provenance, not fitted."""

    def __post_init__(self) -> None:
        if self.scale_kind not in SCALE_KINDS:
            raise ValueError(f"scale_kind must be one of {SCALE_KINDS}, got {self.scale_kind=}")
        for name in ("scale", "lr", "tau", "batch_size"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"ScalePoint.{name} must be positive and finite, got {name}={v!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"ScalePoint.value must be finite, got value={self.value!r}")


@dataclass(frozen=True)
class Prediction:
    """A fitted law evaluated at one scale: point value and bootstrap interval."""

    value: float
    low: float
    high: float
    level: float
    """Coverage of [low, high], e.g. 0.95."""
    extrapolated: bool
    """True when the scale lies outside the scales the law was fitted on."""


def _pow10(log10: float) -> float:
    """10**log10 computed in log space and clipped to 1e-300..1e300: absurd far from the data
    a law was fitted on, but a number."""
    return 10.0 ** min(max(log10, -300.0), 300.0)


@dataclass(frozen=True)
class PowerLawFit:
    """y = coef * x^exponent, fitted by least squares on (log10 x, log10 y)."""

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
    x_min: float
    x_max: float
    rmse_log10: float
    """Root-mean-square residual of the fit, in log10 units (scatter of the studies)."""
    level: float
    """Coverage of the bootstrap intervals."""
    boot_log10_coef: tuple[float, ...]
    """Bootstrap replicates of log10(coef) (resamples with a single distinct scale dropped)."""
    boot_exponent: tuple[float, ...]
    """Bootstrap replicates of the exponent, paired with ``boot_log10_coef``."""

    def _percentiles(self, samples: np.ndarray) -> tuple[float, float]:
        tail = 50.0 * (1.0 - self.level)
        low, high = np.percentile(samples, [tail, 100.0 - tail])
        return float(low), float(high)

    @property
    def exponent_interval(self) -> tuple[float, float]:
        """Bootstrap interval of the exponent b."""
        return self._percentiles(np.asarray(self.boot_exponent))

    @property
    def coef_interval(self) -> tuple[float, float]:
        """Bootstrap interval of the constant a."""
        low, high = self._percentiles(np.asarray(self.boot_log10_coef))
        return 10.0**low, 10.0**high

    @property
    def coef(self) -> float:
        """The constant a of y = a * x^b (0.0 where it is below the float range)."""
        return 10.0 ** min(self.log10_coef, 308.0)

    def predict(self, scale: float) -> Prediction:
        """The law at ``scale`` (same kind as fitted), with its bootstrap interval."""
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"scale must be positive and finite, got {scale=}")
        log_x = math.log10(scale)
        value = _pow10(self.log10_coef + self.exponent * log_x)
        boot = np.asarray(self.boot_log10_coef) + np.asarray(self.boot_exponent) * log_x
        low, high = self._percentiles(boot)
        # The point fit always lies inside its own interval, even with very few studies.
        low, high = min(_pow10(low), value), max(_pow10(high), value)
        extrapolated = not (self.x_min * (1 - 1e-9) <= scale <= self.x_max * (1 + 1e-9))
        return Prediction(value, low, high, self.level, extrapolated)

    def describe(self) -> str:
        """One line: the law, its exponent interval and what it was fitted on."""
        b_low, b_high = self.exponent_interval
        in_range = -300 < self.log10_coef < 300
        constant = f"{self.coef:.4g}" if in_range else f"10^{self.log10_coef:.2f}"
        return (
            f"{self.target} = {constant} * {self.scale_kind}^{self.exponent:.3f} "
            f"(b {self.level:.0%} CI [{b_low:.3f}, {b_high:.3f}], {self.n_points} studies, "
            f"{self.scale_kind} {self.x_min:.3g}..{self.x_max:.3g})"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "boot_log10_coef": list(self.boot_log10_coef),
                "boot_exponent": list(self.boot_exponent)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PowerLawFit:
        data = dict(data)
        if "log10_coef" not in data:  # files written before the constant was kept in log space
            data["log10_coef"] = math.log10(data.pop("coef"))
        data["boot_log10_coef"] = tuple(float(v) for v in data["boot_log10_coef"])
        data["boot_exponent"] = tuple(float(v) for v in data["boot_exponent"])
        return cls(**data)


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    target: str,
    unit: str,
    scale_kind: ScaleKind,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PowerLawFit:
    """Fit y = a * x^b by least squares in log10 space, with a seeded bootstrap over points.

    Needs at least two distinct x. With only two or three studies the bootstrap interval is
    narrow or degenerate; callers add a floor to any spread they derive from it.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot=}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level=}")
    lx = np.log10(np.asarray(x, dtype=float))
    ly = np.log10(np.asarray(y, dtype=float))
    if lx.shape != ly.shape or lx.ndim != 1:
        raise ValueError(f"x and y must be 1-D and of equal length, got {len(x)} and {len(y)}")
    if not (np.all(np.isfinite(lx)) and np.all(np.isfinite(ly))):
        raise ValueError(f"{target}: x and y must be positive and finite")
    if np.unique(lx).size < 2:
        raise ValueError(f"{target}: need studies at >= 2 distinct scales, got {lx.size} point(s) "
                         f"at {np.unique(lx).size} scale")

    fit = stats.linregress(lx, ly)
    residuals = ly - (fit.intercept + fit.slope * lx)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, lx.size, size=(n_boot, lx.size))
    bx, by = lx[idx], ly[idx]
    mx, my = bx.mean(axis=1, keepdims=True), by.mean(axis=1, keepdims=True)
    sxx = ((bx - mx) ** 2).sum(axis=1)
    ok = sxx > 1e-12  # a resample of a single distinct scale determines no slope
    slopes = ((bx - mx) * (by - my)).sum(axis=1)[ok] / sxx[ok]
    intercepts = my[ok, 0] - slopes * mx[ok, 0]
    if slopes.size == 0:
        slopes, intercepts = np.array([fit.slope]), np.array([fit.intercept])

    return PowerLawFit(
        target=target,
        unit=unit,
        scale_kind=scale_kind,
        log10_coef=float(fit.intercept),
        exponent=float(fit.slope),
        n_points=int(lx.size),
        x_min=float(10.0 ** lx.min()),
        x_max=float(10.0 ** lx.max()),
        rmse_log10=float(np.sqrt(np.mean(residuals**2))),
        level=level,
        boot_log10_coef=tuple(float(v) for v in intercepts),
        boot_exponent=tuple(float(v) for v in slopes),
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
    points: tuple[ScalePoint, ...]
    """The studies' best trials the laws were fitted on (provenance)."""

    def scale_of(self, non_embedding_params: float, tokens: float) -> float:
        """Pick the quantity these laws are a function of: tokens or non-embedding params."""
        return tokens if self.scale_kind == "tokens" else non_embedding_params

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "scale_kind": self.scale_kind,
            "lr": self.lr.to_json(),
            "tau": None if self.tau is None else self.tau.to_json(),
            "batch_size": None if self.batch_size is None else self.batch_size.to_json(),
            "points": [asdict(p) for p in self.points],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FittedLaws:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported fitted-laws format_version, got {version!r}")
        return cls(
            scale_kind=data["scale_kind"],
            lr=PowerLawFit.from_json(data["lr"]),
            tau=None if data["tau"] is None else PowerLawFit.from_json(data["tau"]),
            batch_size=(
                None if data["batch_size"] is None else PowerLawFit.from_json(data["batch_size"])
            ),
            points=tuple(ScalePoint(**p) for p in data["points"]),
        )

    def save(self, path: str | Path) -> None:
        """Write the laws as JSON (atomically: a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> FittedLaws:
        """Read laws written by ``save``."""
        return cls.from_json(json.loads(Path(path).read_text()))


def _fit_optional(
    points: Sequence[ScalePoint], attr: str, unit: str, n_boot: int, seed: int, level: float
) -> PowerLawFit | None:
    have = [p for p in points if getattr(p, attr) is not None]
    if len({p.scale for p in have}) < 2:
        return None
    return fit_power_law(
        [p.scale for p in have], [getattr(p, attr) for p in have], attr, unit,
        points[0].scale_kind, n_boot=n_boot, seed=seed, level=level,
    )


def fit_studies(
    points: Sequence[ScalePoint], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> FittedLaws:
    """Fit lr(scale), tau(scale) and batch_size(scale) to the best trials of finished studies.

    All points must share one scale_kind and span at least two distinct scales. tau and
    batch_size are fitted only from the points that record them (at least two scales).
    """
    points = tuple(points)
    if not points:
        raise ValueError("fit_studies needs at least one ScalePoint, got none")
    kinds = {p.scale_kind for p in points}
    if len(kinds) != 1:
        raise ValueError(f"all points must share one scale_kind, got {sorted(kinds)}")
    kind = points[0].scale_kind
    lr = fit_power_law(
        [p.scale for p in points], [p.lr for p in points], "lr", "peak learning rate",
        kind, n_boot=n_boot, seed=seed, level=level,
    )
    return FittedLaws(
        scale_kind=kind,
        lr=lr,
        tau=_fit_optional(points, "tau", "unitless (B/(eta*lambda*D))", n_boot, seed, level),
        batch_size=_fit_optional(points, "batch_size", "tokens per step", n_boot, seed, level),
        points=points,
    )
