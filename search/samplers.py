"""The sampler of a study, and the sampler that seeds a search with the priors.

Seeding scheme (see the README): the study enqueues the prior's center as its first trial
(``search.plan``; in a plain Optuna study, ``study.enqueue_trial`` does it); the next
``n_startup_trials`` trials are drawn from the prior distributions (a normal in log10 space for
lr, tau, weight decay and batch size, in natural units for dropout and warmup, truncated to the
search range); after that the model-based sampler (TPE by default) takes over with everything
the start-up trials taught it. The start-up budget, which plain Optuna spends uniformly at random,
goes where the laws say the optimum is; after it, TPE's acquisition stays weighted by the priors
with a weight that fades as trials finish (``PriorWeightedTPESampler``, piBO; ``sampler.
prior_weight: 0`` turns it off).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Container, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from scaletune.heuristics.priors import Prior
from scaletune.search import hparams
from scaletune.search.config import (
    SEEDS,
    StudyConfig,
)
from scaletune.search.pruners import PREDICTION_ATTRS
from scaletune.search.summary import diverged, holds


class PriorSampler(BaseSampler):
    """Draws start-up trials from the scaling-law priors, then hands over to ``base``.

    Args:
        base: The model-based sampler that takes over (TPE, GP, CMA-ES, random).
        priors: Prior per parameter name; parameters without one are left to ``base``.
        n_startup_trials: Finished (complete or pruned) trials before ``base`` takes over.
        seed: Seed of the prior draws. A parameter's draw in trial k depends on the seed, k and
            the parameter's place among the priors alone: a resumed study draws trial k as a
            study run straight through does, and a ladder's rungs draw alike (common random
            numbers).
        complete_only: Count complete trials only, as GP and CMA-ES count their own start-up (a
            pruned trial that ``base`` sees complete, through PredictionsTeachSampler, counts):
            counted as finished, every pruned trial left them a start-up of their own, drawn
            uniformly, after the prior's.
    """

    def __init__(
        self,
        base: BaseSampler,
        priors: dict[str, Prior],
        n_startup_trials: int,
        seed: int | None = None,
        complete_only: bool = False,
    ) -> None:
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials=}")
        self._base = base
        self._priors = priors
        self._n_startup_trials = n_startup_trials
        self._seed = _seed_or_random(seed)
        self._place = {name: j for j, name in enumerate(priors)}
        self._startup_of: tuple[tuple[Any, ...] | None, bool] = (None, True)
        self._complete_only = complete_only

    def _in_startup(self, study: Study, trial: FrozenTrial) -> bool:
        """Fewer than n_startup_trials finished when ``trial`` was asked (counted once per trial:
        before_trial, then every parameter of the trial, read the same count)."""
        # The start time tells apart two studies of one name in two storages.
        key = (study.study_name, trial.number, trial.datetime_start)
        if self._startup_of[0] != key:
            if self._complete_only:
                seen = (_PredictionsAsFinal(study)
                        if isinstance(self._base, PredictionsTeachSampler) else study)
                finished = seen.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            else:
                finished = study.get_trials(deepcopy=False,
                                            states=(TrialState.COMPLETE, TrialState.PRUNED))
            self._startup_of = (key, len(finished) < self._n_startup_trials)
        return self._startup_of[1]

    def reseed_rng(self) -> None:
        self._seed = _seed_or_random(None)
        self._base.reseed_rng()

    def _rng(self, trial: FrozenTrial, param_name: str) -> np.random.Generator:
        """The generator of ``param_name``'s draw in ``trial``: the seed's stream
        (np.random.default_rng(seed)) at the draw a study takes there when it draws trial 1, 2,
        ... one after another (trial 0 is the priors' center, which a study's plan queues), one
        64-bit draw per parameter, as draw_from_prior takes. A trial 0 that draws (a study that
        queued no center) draws from the stream jumped ahead, where no later trial draws."""
        bits = np.random.PCG64(self._seed)
        if trial.number == 0:
            bits = bits.jumped()
        bits.advance(max(trial.number - 1, 0) * len(self._place) + self._place[param_name])
        return np.random.Generator(bits)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._in_startup(study, trial):
            return {}
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        prior = self._priors.get(param_name)
        if prior is not None and self._in_startup(study, trial):
            return draw_from_prior(prior, param_distribution, self._rng(trial, param_name))
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._in_startup(study, trial)
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)


class _StudyView:
    """A study as a sampler sees it: its trials as ``_get_trials`` gives them; anything else
    is the study's own (attribute access is passed through)."""

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        return self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)

    def get_trials(self, deepcopy: bool = True,
                   states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class _PredictionsAsFinal(_StudyView):
    """A study as a sampler that learns only from complete trials should see it: every pruned
    trial with a predicted final loss is a complete trial at that loss, and every trial that
    diverged a complete trial at the worst loss of those."""

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        asked = None if states is None else tuple(states)
        fetch = asked
        if asked is not None and TrialState.COMPLETE in asked:
            fetch = (*asked, TrialState.PRUNED)
        trials = self._study._get_trials(deepcopy=deepcopy, states=fetch, use_cache=use_cache)
        if len(self._study.directions) == 1:
            trials = _seen_complete(trials)
        return [t for t in trials if asked is None or t.state in asked]


def _as_complete(trial: FrozenTrial, value: float) -> FrozenTrial:
    seen = copy.copy(trial)  # the stored trial stays PRUNED; only this view changes
    seen.state, seen.value = TrialState.COMPLETE, value
    return seen


DIVERGED_ABOVE_BEST = 0.05
"""A diverged trial is seen at least this fraction above the best loss (where the worst seen is
closer to it: with one trial complete, the worst was that trial's loss, the best, and each
diverged trial looked as good as it)."""


def _seen_complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` with each pruned trial that has a predicted final loss complete at that loss,
    then each that diverged (prune_reason "diverged: ...") complete at the worst loss among
    those complete (at least DIVERGED_ABOVE_BEST above the best): a sampler that never sees a
    diverged trial learns nothing from it and proposes the same again (GP, in the suite's
    pydoc-byte study: lr 0.05, the top of its range, with batch 4 and warmup 0.3, for 273 trials
    in a row, every one diverging at once; benchmarks/results/gp_taught)."""
    out = []
    for t in trials:
        predicted = t.user_attrs.get(PREDICTION_ATTRS[0])
        if t.state == TrialState.PRUNED and _finite_number(predicted):
            t = _as_complete(t, float(predicted))
        out.append(t)
    seen = [t.value for t in out if t.state == TrialState.COMPLETE and _finite_number(t.value)]
    if not seen:
        return out
    worst = max(max(seen), min(seen) + DIVERGED_ABOVE_BEST * abs(min(seen)))
    return [_as_complete(t, worst) if diverged(t) else t for t in out]


class _SeenThrough(BaseSampler):
    """``base`` seeing every study through ``_view`` (a study view: a ``_StudyView``)."""

    def __init__(self, base: BaseSampler) -> None:
        self._base = base

    def _view(self, study: Study) -> Any:
        raise NotImplementedError

    def reseed_rng(self) -> None:
        self._base.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(self._view(study), trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._base.sample_independent(self._view(study), trial, param_name,
                                             param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(self._view(study), trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(self._view(study), trial, state, values)


class PredictionsTeachSampler(_SeenThrough):
    """``base`` learning from pruned trials at their predicted final loss.

    GP and CMA-ES fit only complete trials (Optuna 5: ``GPSampler`` reads complete and running
    ones; ``CmaEsSampler`` complete ones, or with ``consider_pruned_trials`` a pruned trial at its
    last reported loss, which early in a decaying schedule is far above where it would have
    ended). A study whose pruner stops most trials would leave them fitting a handful of points
    and proposing again where stopped trials already were: pruning would blind them. The
    predicted pruner records each trial it stops at its predicted final loss (user attr
    ``predicted_final_loss``), the loss it would have ended at as far as the study can tell, so
    ``base`` sees such a trial as complete at that loss. A trial that diverged (stopped by the
    trainer's guard on its training loss) is seen as complete at the worst loss of the trials
    seen as complete (pruned ones at their predicted loss among them). A trial stopped by another pruner records no prediction and stays pruned. The storage
    is not changed. TPE is not wrapped: it ranks pruned trials after complete ones itself, those
    that diverged before any evaluation last (search/pruners.py's docstring).
    """

    def _view(self, study: Study) -> Any:
        return _PredictionsAsFinal(study)


class SearchedAs(_SeenThrough):
    """``base`` seeing each trial as drawn from ``space`` (the study's search space now) where
    that holds the range the trial was drawn from.

    A study whose ranges were widened (search.plan.search_widening) holds trials drawn from two
    ranges of a hyperparameter. Optuna's model-based samplers search jointly only the
    parameters that every trial drew from one distribution (``IntersectionSearchSpace``): a
    widened hyperparameter left that space, and multivariate TPE and GP drew it alone, without
    regard to the others, for the rest of the study (CMA-ES: ``_Searched``). The storage is not
    changed."""

    def __init__(self, base: BaseSampler, space: dict[str, BaseDistribution]) -> None:
        super().__init__(base)
        self._space = space
        self._seen: dict[int, tuple[FrozenTrial, FrozenTrial]] = {}

    def _view(self, study: Study) -> Any:
        return _Searched(study, self._space, self._seen)


class _Searched(_StudyView):
    """A study whose trials are seen with ``space``'s distribution for each parameter whose
    range ``space`` holds (``SearchedAs``), and without the state a sampler kept in such a
    trial's system attrs: CMA-ES keeps its search distribution there, in each range's 0-1
    span, and read against the wider ranges its mean and step moved to where the study never
    searched; it starts a new generation instead. ``seen``: the view of each finished trial
    (which no longer changes) by trial id, with the trial it was made of."""

    def __init__(self, study: Study, space: dict[str, BaseDistribution],
                 seen: dict[int, tuple[FrozenTrial, FrozenTrial]]) -> None:
        super().__init__(study)
        self._space, self._kept = space, seen

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        return [self._seen(t) for t in super()._get_trials(deepcopy, states, use_cache)]

    def _seen(self, trial: FrozenTrial) -> FrozenTrial:
        kept = self._kept.get(trial._trial_id)
        if kept is not None and kept[0] is trial:
            return kept[1]
        wider = {name: self._space[name] for name, dist in trial.distributions.items()
                 if name in self._space and self._space[name] != dist
                 and holds(self._space[name], dist)}
        seen = trial
        if wider:
            seen = copy.copy(trial)  # the stored trial keeps its own; only this view changes
            seen.distributions = {**trial.distributions, **wider}
            seen.system_attrs = {k: v for k, v in trial.system_attrs.items()
                                 if not k.startswith(SAMPLER_STATE)}
        if trial.state.is_finished():
            self._kept[trial._trial_id] = (trial, seen)
        return seen


SAMPLER_STATE = ("cma:", "cmawm:", "sepcma:")
"""The prefixes of the trial system attrs in which Optuna's CMA-ES (5.x; with margin,
separable) keeps its search state."""


class PriorWeightedTPESampler(optuna.samplers.TPESampler):
    """TPE whose acquisition the priors keep weighting after the start-up trials (piBO).

    piBO (Hvarfner et al. 2022, arXiv 2204.11051) multiplies an acquisition function by the
    prior's density to the power beta / n after n evaluations: at first the prior steers the
    search, and its pull fades as the data accumulate, so a misplaced prior slows the search
    down instead of trapping it. TPE picks, among candidates drawn from its good-trial density
    l(x), the one with the largest log l(x) - log g(x); here that log ratio gains
    (beta / n) * log prior(x), with log prior(x) = -z^2 / 2 summed over the parameters that have
    a prior (z: distance from the prior's center in sigmas, in log10 units for a log prior).

    The weighting overrides ``TPESampler._compute_acquisition_func``, a private hook of Optuna
    (4.x and 5.0); tests/search/test_space.py fails if a release renames or bypasses it.

    Args:
        priors: Prior per parameter name; parameters without one are not weighted.
        beta: The weight; 0 is plain TPE.
        **kwargs: TPESampler's arguments.
    """

    def __init__(self, priors: dict[str, Prior], beta: float, **kwargs: Any) -> None:
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"beta must be finite and >= 0, got {beta=}")
        super().__init__(**kwargs)
        self._priors = priors
        self._beta = beta
        self._space: dict[str, BaseDistribution] = {}
        self._n_finished = 0

    def _prepare(self, study: Study, space: dict[str, BaseDistribution]) -> None:
        self._space = space
        self._n_finished = len(study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._prepare(study, search_space)
        return super().sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._prepare(study, {param_name: param_distribution})
        return super().sample_independent(study, trial, param_name, param_distribution)

    def _compute_acquisition_func(
        self, samples: dict[str, np.ndarray], mpe_below: Any, mpe_above: Any
    ) -> np.ndarray:
        acq = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        if self._beta == 0 or self._n_finished == 0:
            return acq
        return acq + self._beta / self._n_finished * self.log_prior(samples)

    def log_prior(self, samples: dict[str, np.ndarray]) -> np.ndarray:
        """sum over parameters of -z^2 / 2 for candidates in Optuna's internal representation
        (a float's value, a categorical's index)."""
        total = np.zeros(next(iter(samples.values())).shape, dtype=float)
        for name, internal in samples.items():
            prior, dist = self._priors.get(name), self._space.get(name)
            if prior is None or dist is None:
                continue
            values = _external_numbers(dist, internal)
            if values is None or (prior.log and (values <= 0).any()):
                continue
            to = np.log10 if prior.log else np.asarray
            center = math.log10(prior.center) if prior.log else prior.center
            z = (to(values) - center) / max(prior.sigma, 1e-9)
            total -= 0.5 * z**2
        return total


def _external_numbers(dist: BaseDistribution, internal: np.ndarray) -> np.ndarray | None:
    """Candidates as the numbers they stand for: a categorical's indices mapped to its choices;
    None when the choices are not all finite numbers."""
    if not isinstance(dist, CategoricalDistribution):
        return np.asarray(internal, dtype=float)
    choices = dist.choices
    if not all(_finite_number(c) for c in choices):
        return None
    return np.asarray([float(c) for c in choices])[np.asarray(internal, dtype=int)]


def _finite_number(value: Any) -> bool:
    return hparams.is_number(value) and math.isfinite(value)


def draw_from_prior(prior: Prior, dist: BaseDistribution, rng: np.random.Generator) -> Any:
    """One value of ``dist`` drawn from ``prior``: truncated to the distribution's range, snapped
    to its grid (``step``, integers) and of its type, as every sampler must return.

    A log prior over a range that reaches 0 or below says nothing about where to look there, nor
    does any prior over choices that are not all numbers: such a draw is uniform.
    """
    if isinstance(dist, CategoricalDistribution):
        return _draw_choice(prior, dist.choices, rng)
    if not isinstance(dist, (FloatDistribution, IntDistribution)):
        raise TypeError(f"cannot draw {dist!r} from a prior")
    n_points = _grid_points(dist)
    if dist.low == dist.high:
        value = dist.low
    elif prior.log and dist.low <= 0 and n_points is None:
        value = rng.uniform(dist.low, dist.high)
    elif prior.log and dist.low <= 0:
        value = dist.low + int(rng.integers(n_points)) * dist.step
    else:
        value = _truncated_normal(prior, dist.low, dist.high, rng)
    return _on_grid(dist, value, n_points)


def _draw_choice(prior: Prior, choices: Sequence[Any], rng: np.random.Generator) -> Any:
    """A choice weighted by the prior's density at it; uniform unless every choice is a finite
    number (positive, for a log prior)."""
    numeric = [c for c in choices if _finite_number(c)]
    if len(numeric) != len(choices) or (prior.log and min(numeric) <= 0):
        return choices[rng.integers(len(choices))]
    to = math.log10 if prior.log else float
    z = (np.array([to(c) for c in numeric]) - to(prior.center)) / max(prior.sigma, 1e-9)
    weights = np.exp(-0.5 * z**2) + 1e-12
    return choices[rng.choice(len(numeric), p=weights / weights.sum())]


def _truncated_normal(prior: Prior, low: float, high: float, rng: np.random.Generator) -> float:
    """The prior's normal (in log10 units for a log prior) truncated to [low, high], low < high;
    a center outside the range is moved to its nearer end first."""
    to = math.log10 if prior.log else float
    lo, hi = to(low), to(high)
    sigma = max(prior.sigma, 1e-9)
    mean = min(max(to(prior.center), lo), hi)
    a, b = (lo - mean) / sigma, (hi - mean) / sigma
    # Inverse-CDF sampling, as scipy.stats.truncnorm.rvs does with the same generator (one
    # uniform per draw; equal to 1e-12), without importing scipy.stats in the driver (0.4 s).
    # The center lies in [lo, hi], so a <= 0 <= b and the two CDF values never cancel.
    unit = NormalDist()
    cdf_a, cdf_b = unit.cdf(a), unit.cdf(b)
    p = cdf_a + float(rng.uniform()) * (cdf_b - cdf_a)
    x = mean + sigma * unit.inv_cdf(min(max(p, 1e-300), 1.0 - 2.0**-53))
    x = min(max(x, lo), hi)
    return 10**x if prior.log else x


def _grid_points(dist: FloatDistribution | IntDistribution) -> int | None:
    """How many values low + k*step lie in [low, high]; None for a float without a step."""
    if dist.step is None:
        return None
    # Optuna moves high onto the grid already; the tolerance only absorbs float error.
    return int(math.floor((dist.high - dist.low) / dist.step + 1e-8)) + 1


def _on_grid(dist: FloatDistribution | IntDistribution, value: float, n_points: int | None) -> Any:
    """The point of ``dist`` nearest to ``value``: low + k*step with k in [0, n_points), within
    [low, high], as an int or a float."""
    if n_points is not None:
        k = min(max(round((value - dist.low) / dist.step), 0), n_points - 1)
        value = dist.low + k * dist.step
    value = min(max(value, dist.low), dist.high)
    return int(value) if isinstance(dist, IntDistribution) else float(value)


def _seed_or_random(seed: int | None) -> int:
    return int(np.random.SeedSequence().entropy % SEEDS) if seed is None else seed


def resumed_seed(seed: int, n_existing: int) -> int:
    """The model-based sampler's seed in a study that already stores ``n_existing`` trials:
    shifted, so that a resumed study does not draw its first trials again; within numpy's seeds
    (SEEDS), where a seed near their top went past them. (The prior draws need no shift: each
    depends on its trial's number, PriorSampler.)"""
    return (seed + 1000 * n_existing) % SEEDS


class StartFromTheBestCmaEs(optuna.samplers.CmaEsSampler):
    """Optuna's CMA-ES, its first generation centred on the best trial it sees complete (the
    start-up's, drawn around the priors' center) instead of the middle of the ranges, where it
    threw away what the start-up found (losses 10-100x worse at the hand-over on a synthetic
    study whose best lay at a range's end). The spread is Optuna's (a sixth of the narrowest
    range); later generations are CMA-ES's own, restored from the trials."""

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.value is not None and all(name in t.params for name in search_space)]
        if complete:  # read only where no generation is stored yet (CmaEsSampler's x0)
            best = min(complete, key=lambda t: t.value)
            self._x0 = {name: best.params[name] for name in search_space}
        return super().sample_relative(study, trial, search_space)


def make_sampler(cfg: StudyConfig, priors: dict[str, Prior], n_existing: int = 0) -> BaseSampler:
    """The study's sampler, wrapped by PriorSampler unless ``seeding: none`` or ``sampler.name:
    random`` (a random sampler draws uniformly either way). The model-based
    sampler's seed is ``sampler.seed`` (default ``cfg.seed``) shifted by resumed_seed for the
    ``n_existing`` trials already stored; the prior draws' is not shifted."""
    s = cfg.sampler
    n = s.n_startup_trials
    study_seed = cfg.seed if s.seed is None else s.seed
    seed = resumed_seed(study_seed, n_existing)
    weighted = s.name == "tpe" and cfg.seeding != "none" and s.prior_weight > 0
    if weighted:
        base: BaseSampler = PriorWeightedTPESampler(
            priors, s.prior_weight, n_startup_trials=n, multivariate=s.multivariate,
            constant_liar=s.constant_liar, seed=seed,
        )
    elif s.name == "tpe":
        base = optuna.samplers.TPESampler(
            n_startup_trials=n,
            multivariate=s.multivariate,
            constant_liar=s.constant_liar,
            seed=seed,
        )
    elif s.name == "random":
        base = optuna.samplers.RandomSampler(seed=seed)
    elif s.name == "gp":
        base = optuna.samplers.GPSampler(n_startup_trials=n, seed=seed)
    else:
        # CMA-ES has no categorical: batch sizes are drawn independently, which is expected here
        # and need not be warned about on every trial.
        base = StartFromTheBestCmaEs(n_startup_trials=n, seed=seed,
                                     warn_independent_sampling=False)
    if s.fits_complete_only and s.pruned_trials == "predicted":
        base = PredictionsTeachSampler(base)
    if cfg.seeding == "none" or s.name == "random":
        return base
    return PriorSampler(base, priors, n_startup_trials=n, seed=(study_seed + 1) % SEEDS,
                        complete_only=s.fits_complete_only)
