"""Optuna's own contract tests for third-party samplers (``optuna.testing.pytest_samplers``), run
on every sampler a study can get, as ``make_sampler`` builds it for the study: with ``seeding:
prior`` (PriorSampler around each base the schema offers, TPE's prior weighting) and with
``seeding: none``. Then a short study per sampler name past
its start-up trials, so that a sampler whose package is missing fails here and not in a study."""

from __future__ import annotations

import typing

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)
from optuna.trial import TrialState

from scaletune.heuristics.priors import Prior
from scaletune.search.config import SamplerConfig
from scaletune.search.samplers import SearchedAs, make_sampler
from scaletune.search.space import build_space, suggest
from tests.search.test_space import PRIORS, study_cfg

SAMPLER_NAMES = typing.get_args(SamplerConfig.model_fields["name"].annotation)


def _priors(log: bool) -> dict[str, Prior]:
    """Priors on the parameter names the suites use.

    'x' and 'y' are given every kind of distribution (negative, stepped, log, integer, numeric
    and non-numeric categorical), 'z' a float in [-1, 1], 'category' the choices ('x', 'y') and
    'a'..'f' single-value ranges at 1. A natural-unit prior centered at 0.5 lies inside most of
    them; a log prior (log=True) takes the uniform fallback wherever a range reaches 0 or below.
    """
    if log:
        xy = {"center": 1e-2, "low": 1e-7, "high": 10.0, "log": True, "sigma": 1.0}
    else:
        xy = {"center": 0.5, "low": -10.0, "high": 10.0, "log": False, "sigma": 2.0}
    priors = {n: Prior(n, **xy) for n in ("x", "y")}
    priors["z"] = Prior("z", center=0.2, low=-1.0, high=1.0, log=False, sigma=0.3)
    priors["category"] = Prior("category", center=0.5, low=0.0, high=1.0, log=False, sigma=0.3)
    for n in "abcdef":
        priors[n] = Prior(n, center=1.0, low=0.5, high=2.0, log=log, sigma=0.3)
    return priors


def _sampler(name: str, n_startup: int) -> dict:
    """The sampler section: random has no start-up trials to give (the schema refuses them)."""
    return {"name": name, **({} if name == "random" else {"n_startup_trials": n_startup})}


def _build(name: str, wrapped: str | None, n_startup: int) -> optuna.samplers.BaseSampler:
    """The sampler ``make_sampler`` builds for a study of sampler ``name``, as the study gets it:
    with ``seeding: prior`` and natural or log priors ("pibo-natural", "pibo-log": tpe with its
    prior weighting, as by default; "natural", "log" on tpe: ``prior_weight: 0``, PriorSampler
    around Optuna's TPE; on gp and cmaes: PriorSampler counting complete trials, around the base
    that pruned trials' predictions teach), or bare for ``seeding: none`` (``wrapped=None``)."""
    section = _sampler(name, n_startup)
    if wrapped == "widened":
        # What a study whose ranges widened gets (search.plan.SearchPlan.open_study), here
        # with no range of its own to see trials in: every call passes through its view.
        return SearchedAs(_build(name, "pibo-natural", n_startup), {})
    if wrapped is None:
        return make_sampler(study_cfg(seeding="none", sampler=section), {})
    if name == "tpe" and not wrapped.startswith("pibo-"):
        section["prior_weight"] = 0
    return make_sampler(study_cfg(seeding="prior", sampler=section),
                        _priors(log=wrapped.endswith("log")))


def _cases(names: tuple[str, ...]) -> list:
    # A random study takes the priors' center as its first trial and no prior after: its
    # sampler is the bare one.
    cases = [pytest.param((n, "natural"), id=f"prior-{n}") for n in names if n != "random"]
    if "tpe" in names:
        cases += [pytest.param(("tpe", "log"), id="prior-tpe-log"),
                  pytest.param(("tpe", "pibo-natural"), id="pibo-tpe"),
                  pytest.param(("tpe", "pibo-log"), id="pibo-tpe-log"),
                  pytest.param(("tpe", "widened"), id="widened-pibo-tpe")]
    return cases + [pytest.param((n, None), id=f"bare-{n}") for n in names]


class TestBasicContract(BasicSamplerTestCase):
    # Two prior draws, then the base: the objective tests see both; the direct
    # sample_independent tests finish no trial, so they see only the prior draws.
    @pytest.fixture(params=_cases(SAMPLER_NAMES))
    def sampler(self, request):
        name, wrapped = request.param
        return lambda: _build(name, wrapped, n_startup=2)


class TestRelativeContract(RelativeSamplerTestCase):
    # These tests finish one trial (its parameters drawn from the prior), then ask the base for
    # relative samples.
    @pytest.fixture(params=_cases(("tpe", "cmaes")))
    def sampler(self, request):
        name, wrapped = request.param
        return lambda: _build(name, wrapped, n_startup=1)


class TestRelativeContractGP(RelativeSamplerTestCase):
    """GP's relative samples take about a second each on a CPU core: the wrapped GP only, and of
    the 36 numerical pairs those with a stepped float (which GP's discrete search asserts lies
    on its grid), a log integer and a stepped integer. The bare GP is Optuna's own to test."""

    @pytest.fixture
    def sampler(self):
        return lambda: _build("gp", "natural", n_startup=1)

    @pytest.mark.parametrize("x_distribution", [
        FloatDistribution(-10, 10, step=0.5),
        IntDistribution(1, 100, log=True),
        IntDistribution(3, 9, step=2),
    ])
    @pytest.mark.parametrize("y_distribution", [FloatDistribution(-1.0, 1.0)])
    def test_sample_relative_numerical(self, sampler, x_distribution, y_distribution):
        super().test_sample_relative_numerical(sampler, x_distribution, y_distribution)


class TestMultiObjectiveContract(MultiObjectiveSamplerTestCase):
    @pytest.fixture(params=_cases(("tpe", "random", "gp")))
    def sampler(self, request):
        name, wrapped = request.param
        return lambda: _build(name, wrapped, n_startup=2)


class TestSingleOnlyContract(SingleOnlySamplerTestCase):
    @pytest.fixture(params=[pytest.param(("cmaes", None), id="bare-cmaes")])
    def sampler(self, request):
        name, wrapped = request.param
        return lambda: _build(name, wrapped, n_startup=2)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_the_schema_offers_runs_past_its_startup_trials(name):
    n_startup = 3
    cfg = study_cfg(sampler=_sampler(name, n_startup))
    dims, _ = build_space(cfg, PRIORS)
    priors = {d.name: d.prior for d in dims if d.prior is not None}
    study = optuna.create_study(sampler=make_sampler(cfg, priors))

    def objective(trial):
        params = suggest(trial, dims)
        return (params["lr"] - 3e-3) ** 2 + params["dropout"] + params["batch_size"] / 64

    # catch=() re-raises: a sampler whose package is missing fails at its first model-based trial.
    study.optimize(objective, n_trials=n_startup + 3, catch=())
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {d.name for d in dims} == set(study.trials[-1].params)


def test_gp_optimizes_its_acquisition_from_many_starts_at_once():
    # Optuna's GP batches its L-BFGS-B starts with greenlet where it is installed (a dependency
    # of the project); without it, it runs them one by one and warns on the first suggestion.
    from optuna._gp import batched_lbfgsb

    assert batched_lbfgsb._greenlet_imports.is_successful()
