"""The study file: one validated schema for a whole hyperparameter search.

``load_study(path)`` reads YAML safely, validates every section and reports every problem at
once (``ConfigError.errors``), naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from scaletune.search import hparams
from scaletune.trainer.config import (
    TRAINING_ONLY,
    DataConfig,
    ModelConfig,
    Number,
    NumbersNotBools,
    Tokens,
    TokensOrZero,
    TrainConfig,
    Whole,
    as_written,
    every_error,
    file_kind,
    flat_keys,
    format_errors,
    is_tokenizer_file,
    laws_file_error,
    load_yaml,
    parse_number,
    shown_value,
    sqlite_url,
    unknown_key,
)
from scaletune.trainer.errors import ConfigError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner


SEEDS = 2**32
"""Seeds run from 0 to SEEDS - 1: what numpy's generators, and so Optuna's samplers, take."""


class _Strict(NumbersNotBools):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)


# --------------------------------------------------------------------------- search space


class Param(_Strict):
    """How one hyperparameter is searched: a prior, a range, a list of choices, or a fixed value."""

    prior: Literal["auto"] | None = None
    """'auto': the center and range come from the scaling-law priors; a low or high given
    replaces that end of the range, wider or narrower."""
    low: Number | None = None
    """Lower end of the range (inclusive)."""
    high: Number | None = None
    """Upper end of the range (inclusive)."""
    log: bool | None = None
    """Sample the range on a log scale (default: true for lr, weight decay and tau)."""
    choices: list[Any] | None = None
    """A categorical search over these values."""
    value: Any | None = None
    """A fixed value: not searched."""

    @field_validator("prior", mode="before")
    @classmethod
    def _prior_is_auto(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"prior takes auto, the laws' center (got {value:g}): to train "
                             f"{value:g} in every trial write {{value: {value:g}}}; to search "
                             "around it give low and high")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        kinds = [
            self.prior is not None,
            self.choices is not None,
            self.value is not None,
            self.low is not None or self.high is not None,
        ]
        if sum(kinds) == 0:
            raise ValueError("give one of: prior: auto, low/high, choices, value")
        if self.choices is not None and (self.prior or self.value is not None or kinds[3]):
            raise ValueError("choices cannot be combined with prior, low/high or value")
        if self.value is not None and sum(kinds) > 1:
            raise ValueError(f"value (fixed, {self.value!r}) cannot be combined with prior, "
                             "low/high or choices: keep value alone to fix it, or drop it to "
                             "search")
        if self.log is not None and (self.choices is not None or self.value is not None):
            # It was accepted and did nothing.
            raise ValueError(f"log: {str(self.log).lower()} applies to a range (low, high or "
                             f"prior: auto), not to {'choices' if self.choices else 'a value'}: "
                             "drop it")
        if self.choices is not None and len(self.choices) == 0:
            raise ValueError("choices must not be empty")
        if self.choices is not None:
            repeated = [c for i, c in enumerate(self.choices) if c in self.choices[:i]]
            if repeated:
                raise ValueError(f"choices {self.choices!r} name {repeated[0]!r} more than once: "
                                 "give each value once (a repeated choice would be drawn more "
                                 "often, as a weight nobody asked for)")
        if self.prior is None and self.choices is None and self.value is None:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
        if self.low is not None and self.high is not None:
            if nan := [end for end in ("low", "high") if getattr(self, end) != getattr(self, end)]:
                # It said "low must be < high, got low=nan, high=0.1", of a range in order.
                raise ValueError(f"{' and '.join(nan)}: nan is not a number; a range's ends are "
                                 "two numbers, low < high")
            if not self.low < self.high:
                raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError(f"a log range must have low > 0, got low={self.low}")
        return self

    @property
    def searched(self) -> bool:
        return self.value is None


@functools.cache
def form_param(words: tuple[str, ...]) -> type[Param]:
    """The Param of a hyperparameter with other forms: ``as:`` names the form searched, one of
    ``words``, the first by default (weight decay: ``as: tau`` or ``as: lambda``)."""
    return create_model(
        "FormParam", __base__=Param,
        as_=(Literal[tuple(sorted(words))], Field(words[0], alias="as")),
    )


def _as_numbers(given: dict[str, Any]) -> dict[str, Any]:
    """A searched field's ``value`` and ``choices`` read as numbers where written as text, as
    ``low`` and ``high`` are: YAML reads 3e-3 as a string (3.0e-3 is a number). Text that is no
    number stays text (``rmsnorm``)."""
    given = dict(given)
    if "value" in given:
        given["value"] = parse_number(given["value"])
    if isinstance(given.get("choices"), list):
        given["choices"] = [parse_number(c) for c in given["choices"]]
    return given


def _param_errors(key: str, raw: Any, model: type[Param]) -> tuple[Param | None, list[str]]:
    """``raw`` validated as ``model``, or the problems, each line starting with ``key``."""
    try:
        return model.model_validate(raw), []
    except ValidationError as e:
        return None, format_errors(e, model, prefix=key)


def _not_a_search(key: str, given: Any, with_prior: bool) -> str:
    """The error of a hyperparameter written as a bare value or list: the forms a search takes,
    the value given put in the one that fits it."""
    prior = ", {prior: auto}" if with_prior else ""
    # The numbers as numbers (YAML reads 1e-4 as text, which the forms below read as 1e-4).
    given = [parse_number(g) for g in given] if isinstance(given, list) else parse_number(given)
    if (isinstance(given, list) and len(given) == 2 and not any(isinstance(g, bool) for g in given)
            and all(isinstance(g, int | float) for g in given) and given[0] < given[1]):
        # [1e-4, 1e-2]: what an Optuna user writes for a range, more often than two values.
        low, high = given
        return (f"{key}: give {{low: {low}, high: {high}}}{prior} to search that range, or "
                f"{{choices: {shown_value(given)}}} to search the two values, {{value: ..}} to fix "
                "it")
    if isinstance(given, list):
        return (f"{key}: give {{choices: {shown_value(given)}}} to search these values, or "
                f"{{low: .., high: ..}}{prior} to search a range, {{value: ..}} to fix it")
    if with_prior and isinstance(given, str) and given.strip().lower() in ("auto", "prior"):
        # `lr: auto` is a search from the priors written short; {value: auto} is refused.
        return (f"{key}: give {{prior: auto}} to search it around the scaling laws' value, or "
                "{low: .., high: ..}, {choices: [..]} to search it, {value: ..} to fix it")
    value = ".." if given is None else shown_value(given)
    return (f"{key}: give {{value: {value}}} to fix it, or {{low: .., high: ..}}, "
            f"{{choices: [..]}}{prior} to search it")


class SearchSpace(_Strict):
    """The searched hyperparameters (the five of every study, and any other registered in
    search.hparams), plus any other trainer field by dotted key under ``other``.

    In the file each hyperparameter is a key of its own (``search: {lr: {prior: auto}}``); a
    registered one that the file leaves out takes its registered default."""

    params: dict[str, SerializeAsAny[Param]] = Field(default_factory=dict)
    """How each registered hyperparameter is searched, by name (see search.hparams)."""
    other: dict[str, Param] = Field(default_factory=dict)
    """Any other trainer field, by dotted key: {'model.norm': {choices: [layernorm, rmsnorm]}}."""

    @model_validator(mode="wrap")
    @classmethod
    def _by_registry(cls, raw: Any, handler: Any) -> SearchSpace:
        if isinstance(raw, SearchSpace):
            return raw
        if not isinstance(raw, dict):
            raise ValueError("search: expected a mapping of hyperparameters, such as "
                             f"{{lr: {{prior: auto}}}} (got {shown_value(raw)})")
        names = {hp.name: hp for hp in hparams.searchable()}
        errors = [unknown_key("search", k, [*names, "other"]) + (
                      "; tau is weight decay's timescale: search it as weight_decay: {..., as: "
                      "tau}" if k == "tau" else "")
                  for k in raw if k != "other" and k not in names]
        params: dict[str, Param] = {}
        for name, hp in names.items():
            given = raw.get(name)
            if given is None and hp.default is None:
                continue
            if isinstance(given, Param):
                params[name] = given
                errors += _range_errors(f"search.{name}", hp, given)
                continue
            if given is not None and not isinstance(given, dict):
                errors.append(_not_a_search(f"search.{name}", given, hp.prior is not None))
                continue
            given = {"prior": hp.default} if given is None else _as_numbers(given)
            model = form_param(tuple(w for w, _ in hp.forms)) if hp.forms else Param
            param, problems = _param_errors(f"search.{name}", given, model)
            errors += problems
            if param is not None:
                params[name] = param
                # Here, not once the whole study has validated: reported with the file's other
                # errors, all at once.
                errors += _range_errors(f"search.{name}", hp, param)
        other = raw.get("other") or {}
        if isinstance(other, dict):
            searches = (dict, Param)
            errors += [_not_a_search(f"search.other.{k}", v, with_prior=False)
                       for k, v in other.items() if not isinstance(v, searches)]
            other = {k: _as_numbers(v) if isinstance(v, dict) else v
                     for k, v in other.items() if isinstance(v, searches)}
            # The trainer field each key names, here with the file's other errors (it came in a
            # round of its own, once the rest of the study had validated).
            targets = {k: problem for k in other if (problem := check_target(k))}
            errors += [f"search.other.{k}: {problem}" for k, problem in targets.items()]
            # Its search is not read as one where the key names no field to search: a section
            # written as a mapping ({model: {norm: ..}}) also drew "norm: unknown key".
            other = {k: v for k, v in other.items() if k not in targets}
        try:
            space = handler({"params": {}, "other": other})
        except ValidationError as e:  # reported with the others, all at once
            errors += format_errors(e, SearchSpace, prefix="search")
        else:
            with_priors = [hp.name for hp in hparams.searchable() if hp.prior is not None]
            errors += [f"search.other.{k}: prior: auto exists for {', '.join(with_priors[:-1])} "
                       f"and {with_priors[-1]} only: give low/high, choices or value"
                       for k, param in space.other.items()
                       if param.prior == "auto" and not check_target(k)]
        if errors:
            raise ValueError("\n".join(errors))
        space.params.update(params)
        return space

    @model_serializer(mode="wrap")
    def _as_in_the_file(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        return {**out.pop("params"), **out}

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        if name in hparams.HPARAMS:
            return None  # registered, but this study does not search it
        return super().__getattr__(name)


# --------------------------------------------------------------------------- sampler and pruner


class SamplerConfig(_Strict):
    name: Literal["tpe", "random", "gp", "cmaes"] = "tpe"
    """tpe (multivariate, constant liar), random, gp (Gaussian process) or cmaes."""
    n_startup_trials: Whole = Field(8, ge=0)
    """Trials drawn before the model-based sampler takes over (from the priors when seeding: prior)."""
    multivariate: bool = True
    """TPE: model the joint distribution of parameters."""
    constant_liar: bool = True
    """TPE: avoid sampling the same point for trials running in parallel."""
    seed: Whole | None = Field(None, ge=0, le=SEEDS - 1)
    """Seed of the sampler; default the study's seed. Trials train with the study's seed either
    way, so two studies that differ only here search one and the same function."""
    prior_weight: float = Field(10.0, ge=0, allow_inf_nan=False)
    """TPE under seeding: prior: after the start-up trials the priors keep steering, fading as
    trials finish. TPE's acquisition is weighted by the priors' density to the power
    prior_weight / n after n finished trials (piBO, Hvarfner et al. 2022, arXiv 2204.11051; 10 is
    the beta of NePS's piBO). 0: plain TPE after the start-up trials."""
    pruned_trials: Literal["predicted", "ignore"] = "predicted"
    """GP and CMA-ES, which fit complete trials only: predicted, each trial the predicted pruner
    stopped is seen as complete at its predicted final loss, and each that diverged at the worst
    loss of the complete trials; ignore, neither is seen (Optuna's behaviour)."""

    @property
    def fits_complete_only(self) -> bool:
        """Optuna's GP and CMA-ES fit complete trials only: pruned ones teach them through their
        predictions (pruned_trials), and their start-up counts the trials they see complete."""
        return self.name in ("gp", "cmaes")

    @model_validator(mode="after")
    def _options_of_other_samplers(self, info: ValidationInfo) -> SamplerConfig:
        # A study's record holds every field, the defaults too: only a study file says which
        # ones the user gave.
        if info.context and info.context.get(RECORDED):
            return self
        given = self.model_fields_set
        if "prior_weight" in given and self.prior_weight > 0 and self.name != "tpe":
            raise ValueError(f"prior_weight weights TPE's acquisition; sampler {self.name} has "
                             "none: use name: tpe, or leave prior_weight out")
        for key in ("multivariate", "constant_liar"):
            if key in given and self.name != "tpe":
                raise ValueError(f"{key} is an option of TPE; sampler {self.name} has none: use "
                                 f"name: tpe, or leave {key} out")
        if "n_startup_trials" in given and self.name == "random":
            raise ValueError("n_startup_trials: sampler random draws every trial at random, so "
                             "no start-up trials come before another sampler: leave it out")
        if "pruned_trials" in given and not self.fits_complete_only:
            raise ValueError(f"pruned_trials is for gp and cmaes, which fit complete trials "
                             f"only; sampler {self.name} "
                             + ("ranks pruned trials itself" if self.name == "tpe"
                                else "learns from no trial")
                             + ": leave pruned_trials out")
        return self


# Each pruner config builds its own Optuna pruner (``build(study)``). Steps are tokens seen, so
# every count handed to Optuna is in tokens.


class _PrunerBase(_Strict):
    n_startup_trials: Whole = Field(4, ge=0)
    """Trials that finish before any pruning happens."""
    n_warmup_steps: TokensOrZero | None = None
    """Tokens a trial trains before it may be pruned (steps are tokens here); default 25% of a trial."""
    interval_steps: Whole = Field(1, ge=1)
    """Consider pruning at every n-th evaluation (after the first one past the warmup)."""

    def _counts(self, study: StudyConfig) -> dict[str, int]:
        warmup = self.n_warmup_steps
        return {
            "n_startup_trials": self.n_startup_trials,
            "n_warmup_steps": warmup if warmup is not None else study.tokens_per_trial // 4,
            "interval_steps": self.interval_steps * study.eval_interval,  # evaluations -> tokens
        }


class MedianPrunerConfig(_PrunerBase):
    name: Literal["median"]

    def build(self, study: StudyConfig) -> BasePruner:
        import optuna

        return optuna.pruners.MedianPruner(**self._counts(study))


class PercentilePrunerConfig(_PrunerBase):
    name: Literal["percentile"]
    percentile: float = Field(25.0, ge=0, le=100)
    """Keep the best this percent of the trials at the same tokens and prune the rest (Optuna's
    PercentilePruner): for a loss, a trial above the percentile-th lowest loss is stopped, so
    25 (the default) stops about three trials in four; 50 is the median pruner."""

    def build(self, study: StudyConfig) -> BasePruner:
        import optuna

        return optuna.pruners.PercentilePruner(self.percentile, **self._counts(study))


class SuccessiveHalvingPrunerConfig(_Strict):
    name: Literal["successive_halving"]
    min_resource: Tokens | None = None
    """Tokens of the first rung; default one evaluation interval."""
    reduction_factor: Whole = Field(3, ge=2)
    """Each rung keeps about 1 in this many trials and sits this many times further in tokens
    (Optuna's reduction factor)."""
    min_early_stopping_rate: Whole = Field(0, ge=0)
    """Rungs skipped at the start: the first rung sits at min_resource x reduction_factor to
    this power (Optuna's min_early_stopping_rate)."""

    def build(self, study: StudyConfig) -> BasePruner:
        import optuna

        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_resource or study.eval_interval,
            reduction_factor=self.reduction_factor,
            min_early_stopping_rate=self.min_early_stopping_rate,
        )


class HyperbandPrunerConfig(_Strict):
    name: Literal["hyperband"]
    min_resource: Tokens | None = None
    """Tokens of the first rung; default one evaluation interval."""
    reduction_factor: Whole = Field(3, ge=2)
    """Each rung of a bracket keeps about 1 in this many trials; it also sets how many brackets
    run between min_resource and a trial's budget (Optuna's reduction factor)."""

    def build(self, study: StudyConfig) -> BasePruner:
        from scaletune.search.pruners import DriverHyperband

        return DriverHyperband(
            min_resource=self.min_resource or study.eval_interval,
            max_resource=study.tokens_per_trial,
            reduction_factor=self.reduction_factor,
        )


class WilcoxonPrunerConfig(_Strict):
    name: Literal["wilcoxon"]
    p_threshold: float = Field(0.1, gt=0, lt=1)
    """Stop a trial when the Wilcoxon signed-rank test, over the evaluations it shares with the
    best trial, says it is worse at this significance level (Optuna's WilcoxonPruner); smaller
    stops fewer."""
    n_startup_steps: Whole = Field(2, ge=0)
    """Evaluations (not tokens, unlike the other pruners' fields) a trial makes before it may be
    stopped."""

    def build(self, study: StudyConfig) -> BasePruner:
        import optuna

        with _experimental_chosen():
            return optuna.pruners.WilcoxonPruner(
                p_threshold=self.p_threshold, n_startup_steps=self.n_startup_steps
            )


NOISE_FLOOR = 0.01
"""Default noise floor, relative to the k-th best final loss: final losses of one config that
differ by less are not told apart. Source: the one config trained with three training seeds on
the issue-6 task (2L/4H/64d, byte Tiny Shakespeare, 163,840 tokens; benchmarks/results/
v2_train_seed_per_seed, the prior-center trial): final losses 2.4480, 2.4641, 2.4695, a range of
0.88% and a standard deviation of 0.45%; 0.01 is that range, about two standard deviations.
(The seed-000 defaults there, far from the best, spread 1.7%: a floor only has to tell apart
configs near the best.)"""

MARGIN = 1.5
"""Default margin of the first rule's interval (``interval: range``; the default is ``t``, see
CONFIDENCE), in units of the spread of the complete trials' drops. Chosen with PREDICTED_STARTUP on
the suite's random-search studies (python -m benchmarks.pruner_replay, benchmarks/results/pruners,
as of 2a57d90; the replay now keeps margin 0.5, 1 and 1.5), drops regressed on lr: of the grid
n_startup_trials 2 or 4 x margin 0, 0.25, 0.5, 1, 1.5, the point with no false prune on all 18
studies that saves the most is (2, 1): 43.4% saved. Left one task out, that rule picks (2, 1) for
five tasks (no false prune on any of them) and (2, 0) for shakespeare-bpe (four false prunes there:
its high-lr runs fall the most at the end). As before, the default goes one step past the fit, to
1.5, for tasks the suite does not hold: 40.1% saved, no false prune."""

PREDICTED_STARTUP = 2
"""Default n_startup_trials of the predicted pruner: see CONFIDENCE."""

LEADING = 0.0
"""Default ``leading`` of the predicted pruner: no guard. Over the replays' shuffled orders
(benchmarks/results/pruners/pruner_replay.md), 0.25 takes confidence 0.9's false prunes from 47
to 32 for 1.1 points of compute (51.1% -> 50.0%); with confidence 0.8 and ``min_spread`` 4 it
is part of the point the replay's rule picks, which found worse bests in live studies
(MIN_SPREAD), where what decides is the best loss found."""

MIN_SPREAD = 0.0
"""Default ``min_spread`` of the predicted pruner, in noise floors: none, the drops' own spread.

A least spread is meant for the interval drawn from two or three complete curves, whose
deviation is a loose estimate and, where it comes out small, narrower than the noise between
seeds. Replayed over shuffled orders (python -m benchmarks.pruner_replay, benchmarks/results/
pruners/pruner_replay.md; grid n_startup_trials 2, 3 x confidence 0.8 to 0.97 x leading 0,
0.25, 0.5 x min_spread 0 to 4), the replay's rule picks (2, 0.8, 0.25, 4): 51.7% saved with 18
false prunes in 378 replays, against 51.1% and 47 for the default and 35.8% and 19 for the
median pruner; left one task out it saves 41.5-55.5% on each task left out with 15 false
prunes in all (the median pruner 35.0-36.7%, 19). Run as the default in live TPE studies of
the suite (6 tasks x 3 seeds; benchmarks/results/pruner_spread_live/compare.txt), it saved
33.7% of their compute, not 45.0% as 0.9 did, and found a worse best within 8 trial-equivalents
than 0.9 on 3 of 18 seeds and a better one on 1, and a worse mean best than the median pruner
on shakespeare-bpe (4.5558 against 4.5507). TPE draws near the best, and a rule that never
stops a run predicted within a few percent of the best stops few of its trials: the replay, on
random-search studies, overstates what it saves there. So the default stays without it; give
``min_spread: 4, confidence: 0.8, leading: 0.25`` (or ``min_spread`` with a higher confidence)
for a study that would rather lose compute than a near-best run."""

INTERVALS = ("t", "range")
"""How the predicted pruner draws a prediction's interval: ``t``, a regression's prediction
interval (Student's t quantile at ``confidence``, the residuals' spread, the leverage of the
trial's lr); ``range``, the range of the drops the complete trials show, widened by ``margin``
times itself (the first rule, kept to replay studies that ran under it)."""
INTERVAL = "t"

CONFIDENCE = 0.9
"""Default one-sided confidence of the ``t`` interval: were the drops normal around the fitted
line, the probability that a trial ends above its interval's low end. Two measures disagree
on it, and the default follows the one a user gets: the best loss a study finds.

Replayed on the suite's random-search studies, each in the order its trials ran and in 20
shuffled orders (python -m benchmarks.pruner_replay, benchmarks/results/pruners/
pruner_replay.md; 378 replays), 0.9 saves 51.1% of the compute and stops 47 runs that ended
within 1% of their study's best, against the median pruner's 35.8% and 19 (in the order the
trials ran alone, where 0.9 was first chosen: 45.9% and none). The replay's rule, the grid point
that saves the most with no more false prunes than the median pruner, picked on grids before
``min_spread`` (2, 0.97, 0) (41.7% and 18) and then (3, 0.9, 0.5) (43.3% and 19; not run
live), and now (2, 0.8, 0.25, min_spread 4) (51.7% and 18; MIN_SPREAD).

In live TPE studies of the suite (6 tasks x 3 seeds, the same sampler seeds; benchmarks/results/
pruner_t097_live/compare.txt), 0.97 found a worse best than 0.9 within 8 trial-equivalents of
compute on 5 of 18 seeds and a better one on none (at 16: worse on 3, better on 1), and a worse
mean best than the median pruner on shakespeare-bpe (4.5950 against 4.5507; 0.9: 4.4542); it
saved 35.4% of the studies' compute, 0.9 45.0%, the median pruner 45.1%. On these studies a
run stopped near the best cost less than the trials the saved compute bought: TPE found another
near the best. The replay's pick with a least spread did the same in live studies (saved
33.7%; MIN_SPREAD). So 0.9 stays; ``confidence: 0.97`` is for a study that cannot afford to
lose one near-best run (few trials, or a search space with one narrow optimum)."""


class PredictedPrunerConfig(_Strict):
    """Prune on the predicted final loss (search.pruners.PredictedFinalPruner): a trial is
    stopped only when even the optimistic end of its predicted final loss is worse than the
    study's k-th best final loss by more than the noise between training seeds."""

    name: Literal["predicted"]
    n_startup_trials: Whole = Field(PREDICTED_STARTUP, ge=0)
    """Complete trials before any pruning; also the fewest complete curves a prediction uses
    (at least 2)."""
    n_warmup_steps: TokensOrZero = 0
    """Tokens a trial trains before it may be stopped (the prediction's interval already
    widens early, where the curves say less)."""
    rank: Whole = Field(1, ge=1)
    """Compare with the rank-th best final loss of the complete trials (1: the best); a larger
    rank stops fewer trials."""
    noise_floor: float | Literal["auto"] = "auto"
    """Relative difference in final loss within which trials are not told apart: the spread of
    final loss between training seeds of one config. ``auto`` (default): twice the standard
    deviation of final loss between seeds that the study's repeats measure (``scaletune run
    --repeat-best N``, search.noise), never below 0.01, and 0.01 until there are repeats (three
    seeds of one config on the issue-6 task ended 0.88% apart; NOISE_FLOOR says where from).
    A number fixes the floor."""

    @field_validator("noise_floor", mode="before")
    @classmethod
    def _floor(cls, v: Any) -> Any:
        if v == "auto":
            return v
        v = parse_number(v)  # 1e-2, which YAML reads as text, as in every field of fractions
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1:
            raise ValueError(f"must be 'auto' or a number in [0, 1) (got {shown_value(v)})")
        return float(v)
    interval: Literal["t", "range"] = INTERVAL
    """How the prediction's interval is drawn: t (default), the prediction interval of the
    regression of the drops on lr, at ``confidence``: it is wide where few complete curves
    reach back or where the trial's lr lies far from theirs; range, the range of the drops the
    complete trials show, widened by ``margin`` (the first rule)."""
    confidence: float = Field(CONFIDENCE, gt=0.5, lt=1, allow_inf_nan=False)
    """One-sided confidence of the t interval: a trial is stopped only when, at this
    confidence, it ends worse than the k-th best by more than the noise floor (default 0.9;
    CONFIDENCE says how it was chosen). Higher stops fewer trials, later."""
    margin: float = Field(MARGIN, ge=0, allow_inf_nan=False)
    """For ``interval: range``: widening of the interval, in units of the spread of the drops
    the complete trials show from the same point of the schedule to the end (default 1.5;
    MARGIN says how it was chosen)."""
    leading: float = Field(LEADING, ge=0, lt=1, allow_inf_nan=False)
    """A trial whose loss is at or below this quantile of the complete trials' losses at the
    same point of the schedule is never stopped, whatever its prediction (LEADING says how the
    default was chosen); 0: no such guard."""
    min_spread: float = Field(MIN_SPREAD, ge=0, allow_inf_nan=False)
    """For ``interval: t``: the least standard deviation of the drops that the interval is drawn
    with, in noise floors (MIN_SPREAD says how the default was chosen): two or three complete
    curves that happen to agree would otherwise give an interval narrower than the noise
    between training seeds; 0: the drops' own spread, however small."""
    condition_on: Literal["lr", "none"] = "lr"
    """lr: the drops the complete trials show are regressed on their log lr, and a trial's
    prediction is the drop fitted at its own lr (needs 4 complete curves and lr searched;
    otherwise the drops are used as they are); none: never."""
    progress: Literal["lr_area", "tokens"] = "lr_area"
    """Where a trial is in its schedule: lr_area, the fraction of its learning rate's integral
    used (warmup and decay of each trial taken into account); tokens, the fraction of the
    budget seen."""

    @model_validator(mode="before")
    @classmethod
    def _as_recorded_before(cls, data: Any, info: ValidationInfo) -> Any:
        # A record written before leading or min_spread existed ran with neither: replayed (the
        # report's audit), it keeps that rule rather than today's defaults.
        if info.context and info.context.get(RECORDED) and isinstance(data, dict):
            return {"leading": 0.0, "min_spread": 0.0, **data}
        return data

    @model_validator(mode="after")
    def _width_of_its_interval(self, info: ValidationInfo) -> PredictedPrunerConfig:
        # A study's record holds every field: only a study file says which ones the user gave.
        if info.context and info.context.get(RECORDED):
            return self
        given = self.model_fields_set
        if "margin" in given and self.interval == "t":
            raise ValueError("margin widens interval: range; under interval: t (the default) "
                             "confidence sets the interval's width: give interval: range, or "
                             "leave margin out")
        for key in ("confidence", "min_spread"):
            if key in given and self.interval == "range":
                raise ValueError(f"{key} sets the width of interval: t; under interval: range "
                                 f"margin does: leave {key} out, or give interval: t")
        if "min_spread" in given and self.min_spread > 0 and self.noise_floor == 0:
            # min_spread 4 and 1e6 drew the intervals of min_spread 0, without a word
            raise ValueError(f"min_spread: {self.min_spread:g} is counted in noise floors, and "
                             "noise_floor: 0 makes it 0: give a noise_floor above 0 (or auto), "
                             "or leave min_spread out")
        return self

    def build(self, study: StudyConfig) -> BasePruner:
        from scaletune.search.pruners import (
            PredictedFinalPruner,
            budget_fraction,
            lr_area_progress,
        )

        budget = study.tokens_per_trial
        progress = (lr_area_progress(budget, study.trainer.optim) if self.progress == "lr_area"
                    else budget_fraction(budget))
        return PredictedFinalPruner(
            budget, progress, n_startup_trials=self.n_startup_trials,
            n_warmup_steps=self.n_warmup_steps, rank=self.rank,
            noise_floor=None if self.noise_floor == "auto" else self.noise_floor,
            margin=self.margin, study_seed=study.seed,
            condition_on=None if self.condition_on == "none" else self.condition_on,
            interval=self.interval, confidence=self.confidence, leading=self.leading,
            min_spread=self.min_spread,
        )


class NonePrunerConfig(_Strict):
    name: Literal["none"]

    def build(self, study: StudyConfig) -> BasePruner:
        import optuna

        return optuna.pruners.NopPruner()


_Inner = Annotated[
    MedianPrunerConfig | PercentilePrunerConfig | SuccessiveHalvingPrunerConfig | HyperbandPrunerConfig | WilcoxonPrunerConfig,
    Field(discriminator="name"),
]


class PatientPrunerConfig(_Strict):
    name: Literal["patient"]
    patience: Whole = Field(2, ge=0)
    """Evaluations without improvement before the wrapped pruner is asked."""
    min_delta: float = Field(0.0, ge=0)
    """A loss must fall by more than this to count as an improvement (Optuna's
    PatientPruner)."""
    wrapped: _Inner | None = None
    """The pruner to consult once patience runs out (none: prune on patience alone)."""

    def build(self, study: StudyConfig) -> BasePruner:
        import optuna

        inner = self.wrapped.build(study) if self.wrapped is not None else None
        with _experimental_chosen():
            return optuna.pruners.PatientPruner(inner, patience=self.patience,
                                                min_delta=self.min_delta)


PrunerConfig = Annotated[
    MedianPrunerConfig | PercentilePrunerConfig | SuccessiveHalvingPrunerConfig | HyperbandPrunerConfig | WilcoxonPrunerConfig | PatientPrunerConfig | PredictedPrunerConfig | NonePrunerConfig,
    Field(discriminator="name"),
]


@contextlib.contextmanager
def _experimental_chosen() -> Iterator[None]:
    """Optuna marks Wilcoxon and Patient experimental; a study that names one chose it knowingly,
    so their warning is silenced here, where they are built, and nowhere else."""
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        yield


# --------------------------------------------------------------------------- the rest


TRAINER_FIELDS = ("optim", "micro_batch_size", "device", "dtype", "compile", "cpu_matmul",
                  "max_loss")
"""The TrainConfig fields a study's ``trainer:`` section fixes for every trial. The study sets
the others itself (model, data, tokens, batch size, evaluation cadence, seed) or per trial
(threads, progress, where a run writes). A field searched by ``search:`` overrides its value."""

TrainerOptions = create_model(
    "TrainerOptions", __base__=_Strict,
    __doc__="Trainer fields that are the same in every trial: TrainConfig's own fields, with its "
            "types, defaults and help (searched ones are overwritten per trial).",
    **{name: (TrainConfig.model_fields[name].annotation, TrainConfig.model_fields[name])
       for name in TRAINER_FIELDS},
)


def how_many(have: float, each: float) -> int:
    """How many of ``each`` fit in ``have`` (trials of cpus_per_trial on a node's CPUs), rounded
    as Ray counts them: before the floor, as 1 // 0.2 is 4.0 in floating point, where Ray fits
    5 trials."""
    return math.floor(have / each + 1e-9)


class WorkersConfig(_Strict):
    address: str | None = None
    """None or 'local' starts Ray on this machine; 'auto' or 'ray://host:port' joins a cluster;
    'http://host:8265' is a cluster's job server (Ray's dashboard), where `scaletune run
    --detach` hands the driver to the cluster."""
    gpus_per_trial: Annotated[float, BeforeValidator(parse_number)] = Field(0.0, ge=0,
                                                                             strict=True)
    """GPUs each trial asks Ray for, at most 1 (a trial trains on one GPU; fractions allowed: 0.5
    puts two trials on one GPU)."""
    cpus_per_trial: Annotated[float, BeforeValidator(parse_number)] = Field(1.0, gt=0,
                                                                            strict=True)
    """CPU cores each trial asks Ray for; torch uses that many threads."""
    max_concurrent: Whole | None = Field(None, ge=1)
    """Cap on trials running at once; default what the cluster can hold."""

    @property
    def job_server(self) -> str | None:
        """The address when it is a job server's URL (http or https), else None."""
        if self.address and self.address.startswith(("http://", "https://")):
            return self.address
        return None

    @field_validator("address")
    @classmethod
    def _an_address(cls, v: str | None) -> str | None:
        # Ray's own "Invalid address format" came as a traceback from `run`, validate said ok.
        if v is None or v in ("local", "auto"):
            return v
        if v.startswith(("ray://", "http://", "https://")):
            # ray://127.0.0.1:-5 waited 30 s for Ray Client's timeout.
            try:
                url = urlsplit(v)
                if url.hostname and (url.port is None or url.port > 0):
                    return v
            except ValueError:  # a port that is no number, or beyond 65535
                pass
        else:
            host, colon, port = v.rpartition(":")
            if colon and host and port.isdigit() and 0 < int(port) < 65536:
                return v
        raise ValueError(f"not an address Ray takes (got {v!r}): give local (Ray started on "
                         "this machine), auto (the cluster `ray start` started here), HOST:PORT "
                         "(a cluster's head, port 6379 by default), ray://HOST:10001 (Ray "
                         "Client), or http://HOST:8265 (the job server, for run --detach)")

    @model_validator(mode="after")
    def _fractions(self) -> WorkersConfig:
        if self.gpus_per_trial > 1:  # Ray gave it N GPUs, and it trained on the first alone
            raise ValueError(
                f"gpus_per_trial: {self.gpus_per_trial:g}: a trial trains in one process on one "
                "GPU, and the others it held would stay idle: give 1, or a fraction to share "
                "one (0.25: four trials on a GPU); a run on several GPUs is the final run's, "
                "scaletune train --nproc-per-node N")
        # Ray's traceback at the first trial ("cannot go beyond 0.0001"); validate said ok.
        small = [f"{key} must be 0 or at least 0.0001, Ray's smallest share, got {value:g}"
                 for key, value in (("gpus_per_trial", self.gpus_per_trial),
                                    ("cpus_per_trial", self.cpus_per_trial))
                 if 0 < value < 1e-4]
        if small:
            raise ValueError("\n".join(small))
        return self


class PriorsConfig(_Strict):
    laws: Literal["published", "fitted"] = "published"
    """published: the laws of the formula sheet; fitted: laws fitted to your own studies."""
    fitted_file: str | None = None
    """JSON written by `scaletune fit` (required when laws: fitted)."""

    @model_validator(mode="after")
    def _file(self) -> PriorsConfig:
        if self.laws == "fitted" and not self.fitted_file:
            raise ValueError("priors.fitted_file is required when priors.laws is 'fitted'")
        return self


class WandbConfig(_Strict):
    project: str = Field(min_length=1)
    """W&B project; each trial is a W&B run of it, grouped and tagged by the study name."""
    entity: str | None = None
    """W&B user or team that owns the project; default your W&B default entity."""

    @field_validator("project")
    @classmethod
    def _a_name_wandb_takes(cls, project: str, info: ValidationInfo) -> str:
        # W&B's own rule, met at each trial's end: every trial was "not logged" and the study
        # ran on without its log. A study's record that ran so still reads.
        if info.context and info.context.get(RECORDED):
            return project
        if bad := sorted(set(project) & set(WANDB_NOT_IN_NAMES)):
            raise ValueError(f"a W&B project name cannot hold {', '.join(map(repr, bad))} (W&B "
                             f"refuses each of {' '.join(WANDB_NOT_IN_NAMES)})")
        if len(project) > WANDB_NAME_LENGTH:
            raise ValueError(f"a W&B project name has at most {WANDB_NAME_LENGTH} characters, "
                             f"and this one {len(project)}")
        return project


WANDB_NAME_LENGTH = 128
"""The longest project name W&B takes."""

WANDB_NOT_IN_NAMES = "/\\#?%:"
"""Characters W&B refuses in a project's name (wandb.init's UsageError)."""


class MLflowConfig(_Strict):
    tracking_uri: str | None = None
    """Where MLflow writes, as mlflow.set_tracking_uri takes it: a server URL or a database such
    as sqlite:///mlflow.db (MLflow 3 refuses a local folder unless MLFLOW_ALLOW_FILE_STORE=true);
    default MLflow's own (MLFLOW_TRACKING_URI). Keep credentials in MLflow's environment
    variables, not here: the study records its config."""
    experiment: str | None = Field(None, min_length=1)
    """MLflow experiment the trials are runs of; default the study's name."""

    @field_validator("tracking_uri")
    @classmethod
    def _a_uri(cls, uri: str | None, info: ValidationInfo) -> str | None:
        # "": MLflow's file store, which refused every trial (validate had checked MLflow's
        # default database instead). A study's record that ran so still reads.
        if uri == "" and not (info.context and info.context.get(RECORDED)):
            raise ValueError("must not be empty: give a server URL or a database such as "
                             "sqlite:///mlflow.db, or leave tracking_uri out for MLflow's own")
        return uri


class TrackingConfig(_Strict):
    """Where the driver also logs each trial, beside the study's storage. It does not change what
    trials train, so a study resumes with tracking turned on or off."""

    tensorboard: bool = False
    """Write each trial's validation and training loss by tokens seen, and when it ends its
    params, derived values and state (the HPARAMS tab) with its final loss and results, to
    <study folder>/tensorboard/trial-<number>/ (needs the tensorboard package: pip install
    "scaletune[tensorboard]")."""
    wandb: WandbConfig | None = None
    """Log each finished trial's params and final loss to Weights & Biases with Optuna's
    WeightsAndBiasesCallback (pip install "scaletune[wandb]")."""
    mlflow: MLflowConfig | None = None
    """Log each finished trial's params, final loss, state and user attrs to MLflow with Optuna's
    MLflowCallback (pip install "scaletune[mlflow]")."""


FINGERPRINTED = ("model", "data", "trainer", "tokens_per_trial", "eval_every_tokens", "search",
                 "seed", "seeding")
"""The sections of a study file that decide what its trials train: a study resumes only when
they are unchanged (StudyConfig.fingerprint)."""
NOT_FINGERPRINTED = ("trainer.cpu_matmul", "trainer.micro_batch_size", "data.path",
                     "data.data_files", "data.cache_dir", "data.val_path")
"""Keys inside those sections left out of the fingerprint: a kernel choice, whose results agree
up to float32 summation order and whose "auto" picks by the machine a study resumes on; the
micro-batch, which splits each step's batch for gradient accumulation (the same batch and
update, up to summation order and which dropout masks are drawn), and which a trial that ran out
of memory tells the study to lower; and where the data and its token cache lie, since the data's
own fingerprint (its text's hash and the tokenizer, search.plan.record_or_check) says what the
trials trained on: a study moved with its data, or its cache moved, resumes (so does one
moved with its tokenizer file or local dataset: LOCATED)."""
NOT_FINGERPRINTED_BEFORE = (
    ("trainer.cpu_matmul", "data.path", "data.data_files", "data.cache_dir"),
    ("trainer.cpu_matmul",),
)
"""NOT_FINGERPRINTED of studies recorded before, newest first: with the micro-batch in (until
2026-12-03), and with the data's location in too (before that day). They resume as they were
recorded (StudyConfig.fingerprint_matches)."""


LOCATED = {"tokenizer": "a tokenizer file", "dataset": "a local dataset folder"}
"""Keys of data that name a file or a folder or something else (a tiktoken encoding, a hub
dataset), and what the fingerprint hashes for the file or folder (``located``): where it lies
is left out, as data.path is, since the data's own fingerprint holds the hash of its content
(trainer.data.tokenizer_key, the text's hash). A study moved with them resumes; one whose file or
folder changed is refused by what its data reads as. Studies recorded before 2026-12-07 hashed
the path (StudyConfig.fingerprint_matches)."""


def located(data: dict[str, Any], key: str) -> bool:
    """Does ``data`` (a data section as dumped) name a file or folder by ``key`` (LOCATED): a
    tokenizer file, or a local dataset (resolved to an absolute path; a hub id never is)?"""
    value = data.get(key)
    if not isinstance(value, str):
        return False
    if key == "tokenizer":
        return is_tokenizer_file(value)
    return data.get("source") == "hf" and Path(value).is_absolute()


def located_in_both(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The LOCATED keys that name a file or folder in both data sections (as dumped): where
    they lie may differ, what they hold the data's fingerprint compares."""
    return [key for key in LOCATED if located(then, key) and located(now, key)]


UNSET_NOT_FINGERPRINTED = ("data.train_tokens", "data.val_path", "data.val_split")
"""Keys added after studies were first recorded, left out of the fingerprint while unset (None),
so that a study recorded before them still resumes."""


NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""A study's (or ladder's) name: ASCII letters, digits, _ . -, not starting with a dot or a
hyphen."""
MAX_NAME = 100
"""A study's name is a folder's (runs/NAME), at most 255 bytes on most file systems, and a
ladder's stages add to it (NAME-rung-20k-2x64): a 256-character name ended on a traceback."""


MAX_TRIALS = 1_000_000
"""The most trials a study (n_trials, --n-trials) or a launch's repeats (--repeat-best) asks
for: a driver measured at 10,000 finished trials (benchmarks/driver_scale.py) is far below it,
and a count typed with a few digits too many was taken (an ETA of 2.6e16 h; 1e20 repeats, whose
seeds the driver drew until it ran out of memory)."""


class StudyConfig(_Strict):
    """A hyperparameter search: model, data, per-trial budget, search space, sampler, pruner."""

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    """Study name (ASCII letters, digits, _ . -, not starting with a dot, so that '..' cannot put
    the study folder above runs/, nor with a hyphen, which commands read as an option); also the
    default study folder name."""
    description: str = ""
    """Free text for people: the top of the study's note in the dashboard (written when the
    study is created) and kept in the recorded config; it changes no trial."""
    study_dir: str | None = None
    """Folder for the study's reports and TensorBoard runs, and for its default storage
    (study.db) when set; default runs/<name> beside the study file. A relative path resolves
    against the study file's folder, as data paths do, so a study is the same study from
    whichever folder a command runs."""
    storage: str | None = None
    """Optuna storage URL. Default: runs/studies.db beside the study file, which the studies
    there share, so that optuna-dashboard lists and compares them (a study that ran with its own
    runs/<name>/study.db under scaletune 0.1 keeps it); study.db in study_dir for a study that
    sets study_dir. postgresql://... on a cluster."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: TrainerOptions = Field(default_factory=TrainerOptions)
    tokens_per_trial: Tokens
    """Training tokens of every trial."""
    eval_every_tokens: Tokens | None = None
    """Validation cadence in tokens; pruning compares trials at these token counts. Default 1/10."""
    search: SearchSpace = Field(default_factory=SearchSpace)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=lambda: PredictedPrunerConfig(name="predicted"))
    """Default: pruning on the predicted final loss. On the suite's six tasks (3 seeds each,
    benchmarks/results/pruner_t_live/compare.txt) its studies' mean best loss at 8 trial-equivalents is no
    worse than the median pruner's on any task and lower on two (by 2.1% and 1.5%); replayed on
    the suite's unpruned studies in 21 orders each it saves more compute than the median
    pruner (51.1% against 35.8%) and stops more runs that ended near the best (47 against 19;
    CONFIDENCE). ``pruner: {name: median}`` is the pruner that was the default before."""
    seeding: Literal["prior", "none"] = "prior"
    """prior: enqueue the priors' center, draw start-up trials from the priors. none: plain Optuna.
    A random sampler draws uniformly either way: it is the baseline the priors are measured
    against."""
    priors: PriorsConfig = Field(default_factory=PriorsConfig)
    n_trials: Whole = Field(ge=1, le=MAX_TRIALS)
    """Finished trials the study should have: complete, pruned, and failed ones that were not
    queued again (a trial whose worker died is, up to ``max_retries`` times)."""
    max_retries: Whole = Field(2, ge=0)
    """Times a trial whose worker died is re-run with the same parameters."""
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """TensorBoard, Weights & Biases or MLflow logs of every trial, written by the driver."""
    seed: Whole = Field(0, ge=0, le=SEEDS - 1)
    """Seed of the sampler and of every trial's training run."""

    _source: str | None = PrivateAttr(None)
    _folder_by_default: bool = PrivateAttr(False)
    """study_dir is the default folder that load_study filled in, not the file's own."""
    _flags: dict[str, str] = PrivateAttr(default_factory=dict)
    """Key -> the command-line flag that set it (search.manage.with_options)."""

    @property
    def source(self) -> str:
        """The study file this config was read from, for errors to name (set by load_study);
        "study" for a config built in code."""
        return self._source or "study"

    def refusal(self, errors: list[str]) -> ConfigError:
        """A ConfigError of ``errors`` ("key: problem" lines): a key a command-line flag set is
        named by its flag, and where every line is a flag's, the error is the command line's,
        not the study file's, which has no such value."""
        return flags_blamed(errors, self._flags, self.source)

    @property
    def from_file(self) -> bool:
        """Read from a study file (load_study), or from a stored study's record by its name: a
        source the commands take; False for a config built in code (validate_study)."""
        return self._source is not None

    @field_validator("study_dir", "storage")
    @classmethod
    def _not_empty(cls, v: str | None, info: ValidationInfo) -> str | None:
        # `storage: ""` was the default storage for some commands and a path for others
        # (validate: "the folder of runs/studies.db does not exist"). A study's record that
        # ran so still reads.
        if v is not None and not v.strip() and not (info.context and info.context.get(RECORDED)):
            raise ValueError(f"must not be empty (got {v!r}): leave it out for the default")
        return v

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _name_alone(cls, v: Any) -> Any:
        # `pruner: none` or `sampler: random`, as notes and errors name them: the name alone
        # (it was refused as "expected a mapping with name: one of ... 'none'").
        return {"name": v} if isinstance(v, str) else v

    @field_validator("pruner", mode="before")
    @classmethod
    def _default_pruner_name(cls, v: Any) -> Any:
        # Options of the default pruner need no name (it was required; the sampler's is not).
        # Options it does not have keep the question which pruner is meant.
        if (isinstance(v, dict) and v and "name" not in v
                and set(v) <= set(PredictedPrunerConfig.model_fields)):
            return {"name": "predicted", **v}
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> StudyConfig:
        errors = []
        every = self.eval_interval
        if every > self.tokens_per_trial:
            errors.append(
                f"eval_every_tokens must be <= tokens_per_trial, got {self.eval_every_tokens} > "
                f"{self.tokens_per_trial}"
            )
        micro = self.trainer.micro_batch_size
        batch = self.search.batch_size
        if micro is not None:
            sizes = batch.choices or ([batch.value] if batch.value is not None else [])
            bad = [b for b in sizes if not isinstance(b, int) or b % micro]
            if bad:
                errors.append(
                    f"search.batch_size: every batch size must be a multiple of "
                    f"trainer.micro_batch_size={micro}, got {bad}"
                )
        if self.trainer.device == "cuda" and self.workers.gpus_per_trial == 0:
            # Ray gives no GPU to a task that asks for none: such trials would crowd onto the
            # GPUs Ray gave to others.
            errors.append("trainer.device: cuda, but workers.gpus_per_trial is 0, and Ray gives "
                          "no GPU to a trial that asks for none: give workers.gpus_per_trial (1, "
                          "or a fraction to share a GPU), or device: auto")
        if batch.low is not None and batch.high is not None:
            if not batch_sizes_in(batch.low, batch.high, micro):
                errors.append(no_batch_sizes(batch.low, batch.high, micro))
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @model_validator(mode="after")
    def _weights_without_priors(self, info: ValidationInfo) -> StudyConfig:
        if info.context and info.context.get(RECORDED):  # a record holds every field
            return self
        if ("prior_weight" in self.sampler.model_fields_set and self.sampler.prior_weight > 0
                and self.seeding == "none"):
            raise ValueError("sampler.prior_weight: it weights TPE by the priors, which "
                             "seeding: none does not use (plain Optuna): leave prior_weight out, "
                             "or give seeding: prior")
        return self

    @property
    def eval_interval(self) -> int:
        return self.eval_every_tokens or max(1, self.tokens_per_trial // 10)

    @property
    def folder(self) -> Path:
        return Path(self.study_dir or Path("runs") / self.name)

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        shared = self.study_dir is None or self._folder_by_default
        database = default_database(self.folder, self.name, shared).resolve()
        return sqlite_url(_where_it_ran(database, self.name))

    def setting(self, dotted: str) -> tuple[str, Param] | None:
        """The search entry that sets the trainer field ``dotted`` (model.n_layer) and its
        trial parameter's name: search.other's, or that of a hyperparameter registered with that
        target (an n_layer of one's own); None where the file's value holds. (The priors and the
        compute read only search.other, and took a registered n_layer of 4 for the file's 1.)"""
        if (other := self.search.other.get(dotted)) is not None:
            return dotted, other
        for name, param in self.search.params.items():
            hp = hparams.HPARAMS.get(name)
            if param is not None and hp is not None and hp.target == dotted and not hp.is_form:
                return name, param
        return None

    def fixed_field(self, dotted: str) -> Any:
        """The value every trial trains with at the trainer field ``dotted`` (model.n_embd,
        optim.beta2) where no trial draws it: the fixed ``value`` of the entry that sets it
        (``setting``), else the file's."""
        set_by = self.setting(dotted)
        if set_by is not None and set_by[1].value is not None:
            return set_by[1].value
        node: Any = self.model if dotted.startswith("model.") else self.trainer
        for part in dotted.removeprefix("model.").split("."):
            node = getattr(node, part)
        return node

    def largest(self, dotted: str) -> Any:
        """The largest value trials train with at the numeric trainer field ``dotted``: the top of
        what search.other searches there, else ``fixed_field``."""
        set_by = self.setting(dotted)
        if set_by is not None and set_by[1].searched:
            other = set_by[1]
            if other.choices is not None:
                return max(other.choices)
            if other.high is not None:  # (a registered prior's range is the prior's to give)
                return other.high
        return self.fixed_field(dotted)

    @property
    def optimizers(self) -> set[str]:
        """The optimizers the trials train with: trainer.optim.name, or those search.other
        searches."""
        other = self.search.other.get("optim.name")
        return (set(other.choices or [other.value]) if other is not None
                else {self.trainer.optim.name})

    def fingerprint(self, leave_out: tuple[str, ...] = NOT_FINGERPRINTED,
                    canonical: bool = True, paths: bool = False) -> str:
        """Hash of what decides trial results; a resumed study must match it
        (``fingerprint_matches``). ``canonical``: the search space as ``canonical_search``
        writes it (studies recorded before 2026-12-05 hashed it as the file wrote it);
        ``paths``: the paths of a tokenizer file and a local dataset hashed (before 2026-12-07;
        LOCATED)."""
        keep = self.model_dump(
            mode="json",
            include=set(FINGERPRINTED),
            exclude=_nested(leave_out),
        )
        if not paths:
            keep["data"].update({key: what for key, what in LOCATED.items()
                                 if located(keep["data"], key)})
        for section, keys in _nested(UNSET_NOT_FINGERPRINTED).items():
            for key in keys:
                if keep[section].get(key) is None:  # as before the key existed: studies resume
                    keep[section].pop(key, None)
        if canonical:
            keep["search"] = canonical_search(keep["search"])
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    def fingerprint_matches(self, stored: str, recorded: Any = None) -> bool:
        """Is ``stored``, a study's recorded fingerprint, this config's: as fingerprinted now,
        or as a study recorded before was (with the paths of LOCATED in; before that, its
        search space hashed as written; before that, with the data's location or the
        micro-batch in, and with the micro-batch it recorded, nearly always unset, or this
        one)? ``recorded``, the config the study recorded: the paths of its tokenizer file and
        local dataset (LOCATED) stand for this one's in the forms that hashed them (a study moved
        with them resumes)."""
        if stored == self.fingerprint():
            return True
        then = self._recorded_paths(recorded)
        if stored in (then.fingerprint(paths=True),
                      then.fingerprint(canonical=False, paths=True)):
            return True
        trainer = then.trainer.model_copy(update={"micro_batch_size": None})
        unset = then.model_copy(update={"trainer": trainer})
        return any(stored == cfg.fingerprint(leave_out, canonical=False, paths=True)
                   for leave_out in NOT_FINGERPRINTED_BEFORE for cfg in (then, unset))

    def _recorded_paths(self, recorded: Any) -> StudyConfig:
        """This config with the tokenizer file and local dataset of ``recorded`` (a study's
        recorded config) where both name one (LOCATED)."""
        then = recorded.get("data") if isinstance(recorded, dict) else None
        if not isinstance(then, dict):
            return self
        update = {key: then[key]
                  for key in located_in_both(then, self.data.model_dump(mode="json"))}
        return self.model_copy(update={"data": self.data.model_copy(update=update)})


def job_server_problem(cfg: StudyConfig) -> str | None:
    """Why a study whose workers.address is a job server's URL is not run from here (it is for
    `run --detach`), else None."""
    if not cfg.workers.job_server:
        return None
    from scaletune.search.storage import mask_url  # with optuna and SQLAlchemy: loaded here

    return (f"workers.address: {mask_url(cfg.workers.job_server)} is a Ray cluster's job server: "
            "`scaletune run --detach` hands the driver to that cluster; to drive the study from "
            "here, give auto, HOST:6379 (the head's address, as `ray start --address` takes "
            "it) or ray://HOST:10001")


TAU_LIKE_LAMBDA = 1.0
"""A tau range whose top is at most this reads as one meant as AdamW weight decay: named by
``_range_errors`` where it is invalid as tau, and by ``search.space.centers_outside`` where it
lies below the priors' center."""


def _range_errors(key: str, hp: hparams.HParam, p: Param) -> list[str]:
    """Values of ``p`` outside the bounds of ``hp``, or outside those of the form it searches."""
    values = [v for v in (p.low, p.high, p.value) if v is not None] + list(p.choices or [])
    form = hparams.form_for(hp, getattr(p, "as_", None))
    # A value the form searched refuses too is named with the form's bounds, below (tau's
    # low: -1 was told "a weight decay (lambda or tau) >= 0", where tau must be above 0).
    errors = [f"{key}: {v!r} is not allowed, expected {hp.allowed}" for v in values
              if not hp.accepts(v) and (form is hp or form.accepts(v))]
    log = p.log if p.log is not None else hp.log
    if (not errors and form is not hp and "as_" not in p.model_fields_set and form.name == "tau"
            and p.high is not None and p.high <= TAU_LIKE_LAMBDA):
        # The usual AdamW weight decay range, [0, 0.1] say, written under the default as: tau
        # (a range of valid taus, [0.01, 0.1], trained lambda 3 to 30 after a note alone).
        word = next(w for w, name in hp.forms if name == hp.name)
        linear = (", with log: false for a range from 0"
                  if p.low is not None and p.low <= 0 and p.log is not False else "")
        if not all(form.accepts(v) for v in values):
            return errors + [
                f"{key}: a range of [{p.low}, {p.high}] reads as tau = B/(eta*lambda*D), weight "
                f"decay's timescale in runs (as: tau, the default), which is {form.allowed}; if "
                f"these are AdamW weight_decay values, write as: {word}{linear}"]
        return errors + [
            f"{key}: a range of [{p.low}, {p.high}] reads as tau = B/(eta*lambda*D), weight "
            f"decay's timescale in runs (as: tau, the default), at most {TAU_LIKE_LAMBDA:g}: a "
            "decay faster than the run, where the usual taus are above it; if AdamW "
            f"weight_decay is meant, write as: {word}; if tau is, write as: tau"]
    fixed = [p.value] if p.value is not None else list(p.choices or [])
    if (not errors and form is not hp and "as_" not in p.model_fields_set and form.name == "tau"
            and fixed and all(hparams.is_number(v) and 0 < v <= TAU_LIKE_LAMBDA for v in fixed)):
        # value: 0.01, a usual AdamW weight decay, trained as tau = 0.01: lambda 71 in a tiny
        # study, and validate said ok.
        word = next(w for w, name in hp.forms if name == hp.name)
        given = f"a value of {p.value}" if p.value is not None else f"choices of {p.choices}"
        return errors + [
            f"{key}: {given} reads as tau = B/(eta*lambda*D), weight decay's timescale in runs "
            f"(as: tau, the default), at most {TAU_LIKE_LAMBDA:g}: a decay faster than the run, "
            f"where the usual taus are above it; if AdamW weight_decay is meant, write as: {word}; "
            "if tau is, write as: tau"]
    if hp.powers_of_two and p.log is False:
        # Accepted and ignored before: a range searches its powers of two whatever log says.
        errors.append(f"{key}.log: false does not apply: {hp.name.replace('_', ' ')}s are searched "
                      "as the powers of two in the range, evenly in log; for other sizes, list "
                      "them as choices")
    if p.low is not None and log and p.low <= 0:
        why = "" if p.log else f" ({hp.name} is searched on a log scale unless log: false)"
        errors.append(f"{key}.low: a log range must start above 0, got {p.low}{why}")
    if not errors and form is not hp and not all(form.accepts(v) for v in values):
        word = getattr(p, "as_", None)
        itself = next(w for w, name in hp.forms if name == hp.name)
        default = " (the default)" if word == hp.forms[0][0] else ""
        errors.append(f"{key}: with as: {word}{default} its values must be {form.allowed} "
                      f"(for no {hp.name.replace('_', ' ')} write {{value: 0, as: {itself}}})")
    return errors


MAX_BATCH_LOG2 = 40
"""Batch-size ranges search the powers of two up to 2**MAX_BATCH_LOG2 sequences (they stopped at
2**19, and a range above that was refused as holding no power of two)."""


def batch_sizes_in(low: float, high: float, micro: int | None) -> list[int]:
    """The batch sizes a range searches: the powers of two in [low, high] that micro divides."""
    return [2**k for k in range(MAX_BATCH_LOG2 + 1)
            if low <= 2**k <= high and 2**k % (micro or 1) == 0]


def no_batch_sizes(low: float, high: float, micro: int | None) -> str:
    """The error for a batch-size range that batch_sizes_in finds empty."""
    of_micro = f" that is a multiple of trainer.micro_batch_size={micro}" if (micro or 1) > 1 else ""
    low, high = (f"{v:,.0f}" if float(v).is_integer() else f"{v:g}" for v in (low, high))
    return (f"search.batch_size: no power of two{of_micro} in [{low}, {high}], and batch sizes "
            "are searched as powers of two: widen the range, or list the sizes as choices")


CHANGED_UNSAID = "a different model, data, trainer, budget or search space"
"""What ``config_changes`` says where no key tells the change."""


def config_changes(stored: dict[str, Any] | None, cfg: StudyConfig, most: int = 6) -> str:
    """'search.lr.high: 0.03 -> 0.05, tokens_per_trial: 40960 -> 81920': the keys that make up
    the fingerprint in which ``cfg`` differs from the config a study recorded (``stored``); a
    general phrase when the study recorded none."""
    if not isinstance(stored, dict):
        return CHANGED_UNSAID
    keep = cfg.model_dump(mode="json", by_alias=True)
    # The search spaces as the fingerprint compares them: `log: true` on lr, which changes
    # nothing, is not named as a change.
    old, new = ({k: (canonical_search(d[k]) if k == "search" and isinstance(d.get(k), dict)
                     else d.get(k)) for k in FINGERPRINTED} for d in (stored, keep))
    old, new = flat_keys(old), flat_keys(new)
    # Nor is a tokenizer file or a local dataset that lies elsewhere (LOCATED).
    if isinstance(stored.get("data"), dict):
        for key in located_in_both(stored["data"], keep["data"]):
            del old[f"data.{key}"], new[f"data.{key}"]
    changed = [f"{k}: {_short_value(old.get(k), k, old)} -> {_short_value(new.get(k), k, new)}"
               for k in sorted((old.keys() | new.keys()) - set(NOT_FINGERPRINTED))
               if old.get(k) != new.get(k)]
    if not changed:
        return CHANGED_UNSAID
    more = f" and {len(changed) - most} more" if len(changed) > most else ""
    return ", ".join(changed[:most]) + more


def _short_value(value: Any, key: str = "", config: dict[str, Any] | None = None) -> str:
    """``value`` of ``key`` in ``config`` (flat keys) as a change names it."""
    parts = key.split(".")
    if (value is None and len(parts) == 3 and parts[0] == "search" and parts[2] in ("low", "high")
            and (config or {}).get(f"search.{parts[1]}.prior") is not None):
        return "unset (the prior's own)"  # it read 'search.lr.high: 0.1 -> null'
    text = as_written(value)
    return text if len(text) <= 40 else text[:37] + "..."


def canonical_search(search: dict[str, Any]) -> dict[str, Any]:
    """A search section (as dumped) as the fingerprint hashes it: numbers that are whole written
    as integers and a ``log`` that says what its key does without it left out, so that a study
    resumes under ``low: 2.0`` where it ran with ``low: 2``, or under ``lr: {..., log: true}``
    where it ran without (both searched the same values before, and were refused as changes)."""
    out = {}
    for name, spec in search.items():
        if not isinstance(spec, dict):  # a record written otherwise: compared as it is
            out[name] = spec
            continue
        if name == "other":
            out[name] = {key: _canonical_param(param, log=False) for key, param in spec.items()}
            continue
        hp = hparams.get(name)
        if hp is None:
            out[name] = spec
            continue
        # Batch sizes are powers of two, evenly in log, whatever log says (log: false refused).
        form = spec.get("as_", spec.get("as"))  # dumped by name or by alias (a stored record)
        log = None if hp.powers_of_two else hparams.form_for(hp, form).log
        out[name] = _canonical_param(spec, log)
    return out


def _canonical_param(spec: dict[str, Any], log: bool | None) -> dict[str, Any]:
    """One searched key's dumped Param as ``canonical_search`` hashes it; ``log``: what the key
    does without one (None: it ignores it)."""
    def whole(value: Any) -> Any:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    spec = dict(spec)
    for key in ("low", "high", "value"):
        spec[key] = whole(spec.get(key))
    if isinstance(spec.get("choices"), list):
        spec["choices"] = [whole(c) for c in spec["choices"]]
    if log is None or spec.get("log") == log:
        spec["log"] = None
    return spec


def _nested(dotted: tuple[str, ...]) -> dict[str, set[str]]:
    """("trainer.cpu_matmul",) -> {"trainer": {"cpu_matmul"}}, as model_dump's exclude takes it."""
    out: dict[str, set[str]] = {}
    for key in dotted:
        section, _, field = key.partition(".")
        out.setdefault(section, set()).add(field)
    return out


def check_target(dotted: str) -> str | None:
    """None if ``dotted`` names a trainer field that ``search.other`` may search, else why not."""
    problem = hparams.field_problem(dotted)
    if problem:
        return problem
    named = next((name for name, target in hparams.targets().items() if target == dotted), None)
    if named:
        return f"this is search.{named}: set it there (a value fixes it)"
    return None


RECORDED = "recorded"
"""Validation context key: the config writes out every field (a study's record, a dump), unlike
a study file, which holds only the fields the user gave."""


def validate_study(raw: dict[str, Any], source: str = "<study>", *,
                   recorded: bool = False) -> StudyConfig:
    """``raw`` as a StudyConfig, or a ConfigError naming every bad key; its relative paths
    (data, study_dir, a fitted-laws file, an SQLite storage) are made absolute against the
    current folder, as a study file's are against the file's: the study stays the one it is
    after a change of folder (a notebook's ``%cd``), and its workers, which run in the folder
    Ray started in, read the same data. ``recorded``: ``raw`` writes out every field
    (``model_dump``: a study's record of its config, or a config dumped to change some fields),
    where checks of what the user gave (a field given at all) do not apply, and its paths are
    taken as they are."""
    cfg = check_study(raw, source, recorded=recorded)
    return cfg if recorded else _resolved(cfg, Path.cwd())


def check_study(raw: dict[str, Any], source: str = "<study>", *,
                recorded: bool = False) -> StudyConfig:
    """validate_study without resolving the paths: those of a study file's text, which
    resolve against the file's folder (resolve_study)."""
    try:
        context = {RECORDED: True} if recorded else None
        cfg = StudyConfig.model_validate(raw, context=context)
    except ValidationError as e:
        # (No check across fields reads the name or the number of trials.)
        errors = every_error(e, StudyConfig, raw, study_errors, context,
                             stand_ins={"name": "study", "n_trials": 1})
        if not recorded and isinstance(raw, dict) and set(StudyConfig.model_fields) <= set(raw):
            # Every field written out: checks of what a file gives named keys it never wrote.
            errors.append("(this reads as a config written out whole, by model_dump: "
                          "validate_study(d, recorded=True) reads it as such)")
        raise ConfigError(source, errors) from None
    if recorded and cfg.study_dir and not cfg.storage:
        # The folder load_study gave a file that sets none (runs/<name> beside it), whose
        # storage is the shared runs/studies.db: a dump does not say so, and the study went on
        # in a study.db of its own there, a second study of the same name.
        folder = Path(cfg.study_dir)
        cfg._folder_by_default = folder.name == cfg.name and folder.parent.name == "runs"
    return cfg


def flags_blamed(errors: list[str], flags: dict[str, str], source: str) -> ConfigError:
    """A ConfigError of ``errors`` ("key: problem" lines) where each key of ``flags`` (key ->
    the command-line flag that set it) is named by its flag; the command line's error where
    every line is a flag's, else ``source``'s."""
    lines = []
    for line in errors:
        key, colon, rest = line.partition(": ")
        lines.append(f"{flags[key]}: {rest}" if colon and key in flags else line)
    flags_only = all(line.partition(": ")[0] in flags for line in errors)
    return ConfigError("the command line" if flags_only and errors else source, lines)


def revalidated(cfg: StudyConfig) -> StudyConfig:
    """``cfg`` validated again, a config changed by ``model_copy(update=...)`` or in place,
    which pydantic does not validate (a name no file may give stored a study the commands could
    not open; a section given as a dict failed deep in the run; a misspelt key was dropped
    without a word). Its values are checked as a file's are, as a study's record is read: the
    checks of which keys a file gives (margin under interval: t) are the file's own, made when
    it was loaded. Its source and its folder come along; a folder given by default
    (runs/<name>) follows a new name."""
    raw = _as_dumped(cfg)
    if cfg._folder_by_default and cfg.study_dir and Path(cfg.study_dir).name != cfg.name:
        raw["study_dir"] = str(Path(cfg.study_dir).parent / cfg.name)  # renamed in Python
    checked = validate_study(raw, cfg.source, recorded=True)
    checked._source, checked._folder_by_default = cfg._source, cfg._folder_by_default
    checked._flags = dict(cfg._flags)
    _given_as_before(checked, cfg)
    return checked


def _as_dumped(model: BaseModel) -> dict[str, Any]:
    """``model`` as a dict to validate, by alias: each section dumped where it is a config and
    passed on as it is where model_copy set it to something else (a dict: dumped whole, the
    search section's serializer met it and raised a KeyError); and the keys model_copy set that
    are no field (a misspelt one, an alias such as ``as``), at any depth, which the validation
    names or reads."""
    import warnings

    from pydantic_core import PydanticSerializationError

    fields = type(model).model_fields
    out: dict[str, Any] = {}
    for key, value in model.__dict__.items():
        field = fields.get(key)
        name = (field.alias or key) if field is not None else key
        if not isinstance(value, BaseModel):
            out[name] = value
            continue
        try:
            with warnings.catch_warnings():  # pydantic's serializer warns of a dict inside
                warnings.simplefilter("ignore", UserWarning)
                out[name] = value.model_dump(by_alias=True)
        except PydanticSerializationError:  # a dict deeper down, which a serializer met
            out[name] = _as_dumped(value)
        else:
            _extra_keys_into(out[name], value)
    return out


def _extra_keys_into(dumped: dict[str, Any], model: BaseModel) -> None:
    """Add to ``dumped`` (``model``'s dump) the keys model_copy set on it, or on a section of
    it, that are no field: a dump leaves them out."""
    fields = type(model).model_fields
    for key, value in model.__dict__.items():
        if key not in fields:
            dumped[key] = value
        elif isinstance(value, BaseModel) and isinstance(
                section := dumped.get(fields[key].alias or key), dict):
            _extra_keys_into(section, value)
        elif isinstance(value, dict):  # search.other, or the params the search's dump lifts
            held = dumped.get(fields[key].alias or key)
            held = held if isinstance(held, dict) else dumped
            for name, item in value.items():
                if isinstance(item, BaseModel) and isinstance(held.get(name), dict):
                    _extra_keys_into(held[name], item)


def _given_as_before(new: Any, old: Any) -> None:
    """Mark in ``new`` (a config validated from a dump of ``old``, where every field reads as
    given) the fields ``old`` was given, section by section: what the notes of fields a run
    does not read, the dry run's and a ladder's rungs go by (the quickstart's run said of
    rope_theta and muon_lr, which its file does not give, that they were not used)."""
    if isinstance(new, BaseModel):
        given = (old.model_fields_set if isinstance(old, BaseModel)
                 else set(old) if isinstance(old, dict) else None)
        if given is None:
            return
        object.__setattr__(new, "__pydantic_fields_set__", given & set(type(new).model_fields))
        for name in type(new).model_fields:
            before = (getattr(old, name, None) if isinstance(old, BaseModel)
                      else old.get(name) if isinstance(old, dict) else None)
            _given_as_before(getattr(new, name), before)
    elif isinstance(new, dict) and isinstance(old, dict):
        for key, value in new.items():
            _given_as_before(value, old.get(key))


def study_errors(err: ValidationError) -> list[str]:
    """One line per problem, each naming its key as the study file spells it; the checks that
    join several problems by newlines are split again. A searched hyperparameter given under
    ``trainer:`` is told where it goes (the closest trainer key was named: micro_batch_size
    for batch_size)."""
    lines = format_errors(err, StudyConfig)
    searched = {hp.name for hp in hparams.searchable()}
    given = {str(e["loc"][-1]): e.get("input") for e in err.errors()
             if e["type"] == "extra_forbidden" and len(e["loc"]) == 2 and e["loc"][0] == "trainer"}
    for i, line in enumerate(lines):
        name = line.removeprefix("trainer.").partition(":")[0]
        if line.startswith("trainer.") and name in searched and name in given:
            value = given[name] if hparams.is_number(given[name]) else "..."
            as_lambda = ", as: lambda" if name == "weight_decay" else ""
            lines[i] = (f"trainer.{name}: unknown key; a study sets {name} under search: (searched "
                        f"with its prior where search: leaves it out): to train every trial with "
                        f"it, give search.{name}: {{value: {value}{as_lambda}}}")
        elif line.startswith("trainer.") and name in given and name in TOP_LEVEL:
            lines[i] = (f"trainer.{name}: unknown key; a training file's {name} is the study "
                        f"file's {TOP_LEVEL[name]}, at its top level, for every trial")
        elif line.startswith("trainer.") and name in given and name in hparams.RUN_FIELDS:
            lines[i] = (f"trainer.{name}: unknown key; a study sets {name} for each trial "
                        f"itself ({hparams.RUN_FIELDS[name]})")
    return lines


TOP_LEVEL = {"tokens": "tokens_per_trial", "model": "model", "data": "data",
             "eval_every_tokens": "eval_every_tokens"}
"""Training-file fields that a study file gives at its top level, for every trial: what
``trainer.tokens`` (a training file's word) is told to write."""


LADDER_KEYS = {"rungs", "target"}
"""The keys that make a file a ladder file (is_ladder; validate reads it so)."""


def is_ladder(path: str | Path) -> bool:
    """True for a ladder file (it has rungs, or a target: a ladder missing its rungs is told
    so, not that a study file has an unknown key), False for a study file. Here, not in
    search.ladder, so that the end of a run asks it without importing the ladder's fitting."""
    raw = load_yaml(path)
    return isinstance(raw, dict) and bool(LADDER_KEYS & raw.keys())


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file; relative paths resolve against the file's folder. The
    files it names are not looked at here: see check_study_files."""
    raw = load_yaml(path)  # first: it says what it takes in place of a path (a dict)
    path = Path(path)
    kind = file_kind(raw)
    if kind == "laws":
        raise ConfigError(str(path), [laws_file_error(path)])
    if kind == "ladder":
        raise ConfigError(str(path), [
            f"a ladder file (target, rungs), not a study file: run it with `scaletune ladder "
            f"{path}`; `report`, `export`, `show`, `best`, `studies`, `dashboard`, `delete` and "
            "`priors` take it for its target study, and `fit` for its rungs"])
    if kind == "training":
        # As `scaletune export` writes: one line that says so, not every study key it lacks.
        keys = ", ".join(k for k in raw if k in TRAINING_ONLY)
        raise ConfigError(str(path), [
            f"a training config ({keys}; no n_trials or tokens_per_trial), not a study file: "
            f"train it with `scaletune train {path}`; a study file has name, tokens_per_trial, "
            "search and n_trials"])
    return resolve_study(check_study(raw, str(path)), path)


def resolve_study(cfg: StudyConfig, path: Path) -> StudyConfig:
    """``cfg`` as read from the file ``path``: its data, fitted laws and study folder resolved
    against the file's folder, and ``path`` the source its errors name."""
    cfg = _resolved(cfg, path.resolve().parent)
    cfg._source = str(path)
    return cfg


def _resolved(cfg: StudyConfig, base: Path) -> StudyConfig:
    """``cfg`` with its data, fitted laws, study folder and SQLite storage resolved against the
    folder ``base``."""
    updates: dict[str, Any] = {"data": cfg.data.resolved(base)}
    if cfg.priors.fitted_file:  # ~ too, as data.path and study_dir take it
        updates["priors"] = cfg.priors.model_copy(
            update={"fitted_file": str(base / Path(cfg.priors.fitted_file).expanduser())}
        )
    updates["study_dir"] = str(_study_folder(cfg, base))
    # A relative SQLite path in the file is the file's, as its data and folder are: run from
    # another folder, it made a second database there (a study split in two, without a word).
    if cfg.storage:
        updates["storage"] = sqlite_beside(cfg.storage, base, cfg.name)
    mlflow = cfg.tracking.mlflow
    if mlflow is not None and mlflow.tracking_uri:
        updates["tracking"] = cfg.tracking.model_copy(update={"mlflow": mlflow.model_copy(
            update={"tracking_uri": sqlite_beside(mlflow.tracking_uri, base)})})
    by_default = cfg.study_dir is None
    cfg = cfg.model_copy(update=updates)
    cfg._folder_by_default = by_default
    return cfg


def sqlite_beside(url: str, base: Path, name: str | None = None) -> str:
    """``url`` with a relative SQLite path (``sqlite:///runs/x.db``) made absolute against
    ``base``; any other URL (an absolute path, ``sqlite:////...``, in memory, a server) as it
    is. ``name``: the study's, which resumes where it ran before folder names were escaped."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    path, mark, query = url[len(prefix):].partition("?")
    if not path or path == ":memory:" or path.startswith("file:"):
        return url
    # The path as the URL means it (%XX decoded), joined to base and written as a URL again.
    database = (base / Path(unquote(path)).expanduser()).resolve()
    if name is not None:
        database = _where_it_ran(database, name)
    return f"{sqlite_url(database)}{mark}{query}"


SHARED_DATABASE = "studies.db"
"""The default storage: one SQLite file beside the default study folders (runs/studies.db)."""
OWN_DATABASE = "study.db"
"""The SQLite file in a study's own folder: the default storage of a study that sets study_dir,
and of every study under scaletune 0.1."""


def _where_it_ran(database: Path, name: str) -> Path:
    """``database``, or the file that held study ``name`` until scaletune wrote its URL escaped
    (sqlite_url): a folder named proj?a put it in proj, p%41b in pAb. Used where the study is
    there and not in ``database``, so that upgrading never starts it afresh."""
    text = str(database)
    if "%" not in text and "?" not in text:
        return database
    earlier = Path(unquote(text.partition("?")[0]))  # as the URL was read
    if holds_study(earlier, name) and not holds_study(database, name):
        return earlier
    return database


def default_database(folder: Path, name: str, shared: bool) -> Path:
    """The SQLite file of study ``name`` when its file names no storage: study.db in its folder
    (``folder``) where the study file set that folder; else studies.db beside it (``shared``),
    which every study in the default folders runs/<name> shares. A study that ran with its own
    study.db there keeps it, so that it resumes where it ran; a file that cannot be read (empty,
    corrupt) is kept too, for ``scaletune run`` to refuse it."""
    own = folder / OWN_DATABASE
    if not shared:
        return own
    if own.is_file():
        names = stored_study_names(own)
        if names is None or name in names:
            return own
    return folder.parent / SHARED_DATABASE


def stored_study_names(database: Path) -> list[str] | None:
    """The names of the studies in an SQLite storage file, read without writing or creating
    anything; [] for an SQLite database without Optuna's tables, None for a file that cannot be
    read as SQLite (empty, corrupt, locked by a write for over 5 s)."""
    if not database.is_file() or database.stat().st_size == 0:
        return None
    try:
        rows = _read_only(database, "SELECT study_name FROM studies ORDER BY study_name")
    except sqlite3.Error as e:
        return [] if "no such table" in str(e) else None
    return [name for (name,) in rows]


def holds_study(database: Path | None, name: str) -> bool:
    """Does the SQLite storage file ``database`` (None: not an SQLite storage) hold a study
    named ``name``? Read as ``stored_study_names`` reads it."""
    return database is not None and name in (stored_study_names(database) or [])


def _read_only(database: Path, query: str, args: tuple = ()) -> list[tuple]:
    """The rows of ``query`` on an SQLite file opened read-only (nothing written or created;
    a write in progress waited for up to 5 s); sqlite3.Error as sqlite3 raises it."""
    [rows] = _read_only_all(database, [(query, args)])
    return rows


def _read_only_all(database: Path, queries: list[tuple[str, tuple]]) -> list[list[tuple]]:
    """The rows of each (query, args), read as ``_read_only`` reads, in one transaction: one
    state of the file for all of them, where a driver may write between two."""
    con = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
    try:
        con.execute("BEGIN")
        return [con.execute(query, args).fetchall() for query, args in queries]
    finally:
        con.close()


def stored_study_attrs(database: Path, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Study ``name``'s user attrs among ``keys`` in an SQLite storage file, read as
    ``stored_study_names`` reads: without writing or creating anything; {} where the file, the
    study or the attrs are not there or cannot be read."""
    if not database.is_file() or database.stat().st_size == 0:
        return {}
    try:
        rows = _read_only(database, "SELECT a.key, a.value_json FROM study_user_attributes a "
                                    "JOIN studies s ON a.study_id = s.study_id WHERE "
                                    f"s.study_name = ? AND a.key IN ({', '.join('?' * len(keys))})",
                          (name, *keys))
    except sqlite3.Error:
        return {}
    attrs = {}
    for key, value in rows:
        with contextlib.suppress(ValueError):
            attrs[key] = json.loads(value)
    return attrs


def stored_trials(database: Path, name: str,
                  keys: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]] | None:
    """Study ``name``'s trials in an SQLite storage file, in the order they were asked for: each
    its state's name (``COMPLETE``, ``WAITING``...) and its user attrs among ``keys``. Read as
    ``stored_study_names`` reads, in one transaction; None where the file or the study is not
    there or cannot be read."""
    if not database.is_file() or database.stat().st_size == 0:
        return None
    of_study = "JOIN studies s ON t.study_id = s.study_id WHERE s.study_name = ?"
    try:
        study, trials, attrs = _read_only_all(database, [
            ("SELECT 1 FROM studies WHERE study_name = ?", (name,)),
            (f"SELECT t.trial_id, t.state FROM trials t {of_study} ORDER BY t.number", (name,)),
            ("SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a JOIN trials t "
             f"ON a.trial_id = t.trial_id {of_study} AND a.key IN ({', '.join('?' * len(keys))})",
             (name, *keys)),
        ])
    except sqlite3.Error:
        return None
    if not study:
        return None
    found: dict[int, dict[str, Any]] = {trial_id: {} for trial_id, _ in trials}
    for trial_id, key, value in attrs:
        with contextlib.suppress(ValueError):
            found[trial_id][key] = json.loads(value)
    return [(state, found[trial_id]) for trial_id, state in trials]


def _study_folder(cfg: StudyConfig, base: Path) -> Path:
    """Where the study of a file lives: study_dir against the file's folder, by default
    runs/<name> beside the file. Until 0.1 the default was runs/<name> under the current folder:
    a study found only there is used where it is, so that upgrading never starts it afresh.
    Only there: a study beside the file is that file's, whatever folder a command runs in (one of
    the same name under the current folder was shown, and resumed, in its place)."""
    if cfg.study_dir is not None:
        return base / Path(cfg.study_dir).expanduser()
    beside = base / "runs" / cfg.name
    try:
        earlier = (Path("runs") / cfg.name).resolve()
    except FileNotFoundError:  # the current folder was deleted: no earlier study there
        return beside
    if ((earlier / OWN_DATABASE).is_file() and not (beside / OWN_DATABASE).is_file()
            and not holds_study(beside.parent / SHARED_DATABASE, cfg.name)):
        return earlier
    return beside


def check_study_files(cfg: StudyConfig) -> list[str]:
    """The files a study names that are not there, one error each, with the path as resolved:
    the source text (data.path, a file or a glob with matches), the data_files of a local
    `datasets` builder, and priors.fitted_file when the study uses fitted laws. Nothing is read,
    tokenized or downloaded, so `scaletune validate` finds these as `scaletune run` would."""
    errors = cfg.data.file_errors()
    fitted = cfg.priors.fitted_file
    if cfg.priors.laws == "fitted" and fitted and not Path(fitted).is_file():
        errors.append(f"priors.fitted_file: file not found: {fitted!r} (`scaletune fit STUDY... "
                      "-o FILE` writes it)")
    from scaletune.search.tracking import missing_packages  # looks modules up, imports none

    errors += missing_packages(cfg.tracking)
    return errors
