"""Search space, trial configs and the prior-seeded sampler, through Optuna's public API."""

from __future__ import annotations

import math
import re

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from scaletune.heuristics.priors import Prior, Priors
from scaletune.search.config import validate_study
from scaletune.search.pruners import PredictedFinalPruner
from scaletune.search.samplers import (
    PriorSampler,
    PriorWeightedTPESampler,
    draw_from_prior,
    make_sampler,
)
from scaletune.search.space import (
    build_space,
    centers_outside,
    prior_center_params,
    snap,
    space_problems,
    suggest,
    trial_config,
)
from scaletune.trainer.errors import ConfigError
from scaletune.trainer.optim import lr_at

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _prior(name, center, low, high, log=True, sigma=0.3):
    return Prior(name=name, center=center, low=low, high=high, log=log, sigma=sigma)


PRIORS = Priors(
    lr=_prior("lr", 3e-3, 3e-4, 3e-2),
    weight_decay=_prior("weight_decay", 0.1, 0.01, 1.0),
    tau=_prior("tau", 0.5, 0.05, 5.0),
    dropout=_prior("dropout", 0.05, 0.0, 0.2, log=False, sigma=0.05),
    warmup_frac=_prior("warmup_frac", 0.1, 0.02, 0.3, log=False, sigma=0.05),
    batch_size=Prior(name="batch_size", center=24, low=8, high=64, log=True, sigma=0.3,
                     integer=True),
)


def study_cfg(**overrides):
    raw = {
        "name": "s",
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "tokens_per_trial": 100_000,
        "n_trials": 4,
    }
    raw.update(overrides)
    return validate_study(raw)


def test_auto_space_uses_prior_ranges_and_powers_of_two():
    dims, fixed = build_space(study_cfg(), PRIORS)
    by_name = {d.name: d.distribution for d in dims}
    # Weight decay is searched as tau by default, so the space holds tau and not lambda.
    assert set(by_name) == {"lr", "tau", "dropout", "warmup_frac", "batch_size"}
    assert fixed == {}
    assert by_name["lr"] == FloatDistribution(3e-4, 3e-2, log=True)
    assert by_name["batch_size"] == CategoricalDistribution([8, 16, 32, 64])


def test_batch_sizes_respect_the_micro_batch():
    cfg = study_cfg(trainer={"micro_batch_size": 16})
    dims, _ = build_space(cfg, PRIORS)
    batch = next(d for d in dims if d.name == "batch_size").distribution
    # Only multiples of the micro-batch are offered.
    assert batch.choices == (16, 32, 64)


def test_a_batch_range_past_half_a_million_sequences_searches_its_powers_of_two():
    # Ranges stopped at 2**19: [1,048,576, 4,194,304] was refused as holding no power of two,
    # written as [1.04858e+06, 4.1943e+06].
    from scaletune.search.config import batch_sizes_in, no_batch_sizes

    assert batch_sizes_in(2**20, 2**22, None) == [2**20, 2**21, 2**22]
    assert "no power of two in [1,500,000, 2,000,000]," in no_batch_sizes(1.5e6, 2e6, None)
    assert "no power of two in [40.5, 60]," in no_batch_sizes(40.5, 60, None)


def test_one_value_searched_away_from_the_center_is_said_to_be_one_value():
    # choices: [64] was told that its start-up draws "crowd that end" of [64, 64].
    cfg = study_cfg(search={"lr": {"prior": "auto"}, "batch_size": {"choices": [64]}})
    notes = centers_outside(build_space(cfg, PRIORS)[0])
    assert notes == ["search.batch_size: one value is searched, batch_size = 64, and every trial "
                     "trains it, where the priors' center is 24: write {value: 64} to fix it, "
                     "or search more values toward the center"]


def test_a_prior_center_outside_the_range_is_said_not_silently_snapped():
    cfg = study_cfg(search={
        "weight_decay": {"prior": "auto", "as": "tau", "low": 2.0, "high": 100.0},
        "lr": {"prior": "auto"},
        "batch_size": {"choices": [64, 128]},
    })
    dims, _ = build_space(cfg, PRIORS)
    notes = centers_outside(dims)
    # tau's center 0.5 lies below [2, 100]; batch 16 lies below the choices [64, 128]; lr's
    # center lies in its own prior range.
    assert len(notes) == 2, notes
    tau, batch = sorted(notes, key=lambda n: "batch" in n)
    assert tau.startswith("search.weight_decay: the priors' center tau = 0.5") and "below" in tau
    assert "first trial starts at 2" in tau
    assert batch.startswith("search.batch_size: ") and "starts at 64" in batch
    assert "start-up draws crowd that end" in tau
    # A random sampler draws nothing from the priors: only the first trial is said.
    [tau, _] = sorted(centers_outside(dims, draws=False), key=lambda n: "batch" in n)
    assert "first trial starts at 2; widen the range" in tau and "start-up" not in tau
    inside = study_cfg(search={"weight_decay": {"prior": "auto", "as": "tau", "low": 0.1,
                                                "high": 3.0}})
    assert centers_outside(build_space(inside, PRIORS)[0]) == []


def test_prior_center_snaps_into_the_space():
    dims, _ = build_space(study_cfg(), PRIORS)
    center = prior_center_params(dims)
    assert center["lr"] == pytest.approx(3e-3)
    # 24 lies between 16 and 32; in log space it is closer to 32.
    assert center["batch_size"] == 32
    assert snap(CategoricalDistribution([0.0, 0.1]), 0.0) == 0.0


def test_tau_becomes_lambda_with_b_over_eta_tau_d():
    cfg = study_cfg()
    params = {"lr": 1e-3, "tau": 0.5, "dropout": 0.1, "warmup_frac": 0.1, "batch_size": 16}
    train_cfg, derived = trial_config(cfg, params, {}, num_threads=1)
    b_tokens = 16 * 32
    # lambda = B / (eta * tau * D), with B and D in tokens.
    assert train_cfg.optim.weight_decay == pytest.approx(b_tokens / (1e-3 * 0.5 * 100_000))
    assert derived["weight_decay"] == train_cfg.optim.weight_decay
    assert derived["steps"] == math.ceil(100_000 / b_tokens)
    # 10% of 196 steps: the trainer's lr reaches its peak on step 20 (19.6 rounded), not 19.
    warm = derived["warmup_steps"]
    assert warm == 20
    lrs = [lr_at(step, derived["steps"], train_cfg.optim) for step in range(warm + 1)]
    assert lrs[warm - 2] < 1.0 and lrs[warm - 1] == lrs[warm] == 1.0
    assert train_cfg.model.dropout == 0.1 and train_cfg.batch_size == 16
    assert train_cfg.num_threads == 1 and train_cfg.progress is False


def test_doubling_tokens_at_fixed_tau_halves_lambda():
    params = {"lr": 1e-3, "tau": 0.5, "batch_size": 16, "dropout": 0.0, "warmup_frac": 0.1}
    short, _ = trial_config(study_cfg(), params, {}, 1)
    long, _ = trial_config(study_cfg(tokens_per_trial=200_000), params, {}, 1)
    assert long.optim.weight_decay == pytest.approx(short.optim.weight_decay / 2)


def test_values_and_choices_written_as_3e_3_are_numbers_as_ranges_are(tmp_path):
    from scaletune.trainer.config import load_yaml

    # YAML reads 3e-3 as text (3.0e-3 is a number): in low/high it was read as a number, in
    # value and choices it was refused as "'3e-3' is not allowed".
    path = tmp_path / "study.yaml"
    path.write_text("search:\n  lr: {value: 3e-3}\n  weight_decay: {value: 1e-5, as: lambda}\n"
                    "  dropout: {choices: [0, 1e-1]}\n  batch_size: {choices: [8, 1.6e1]}\n")
    search = load_yaml(path)["search"]
    assert search["lr"] == {"value": "3e-3"}  # as PyYAML reads it
    cfg = study_cfg(search=search)
    dims, fixed = build_space(cfg, PRIORS)
    assert fixed == {"lr": 0.003, "weight_decay": 1e-5}
    choices = {d.name: d.distribution.choices for d in dims
               if d.name in ("dropout", "batch_size")}
    assert choices == {"dropout": (0, 0.1), "batch_size": (8, 16)}
    assert isinstance(choices["batch_size"][1], int)
    # So are another trainer field's; text that is no number stays text.
    cfg = study_cfg(search={"other": {"model.n_layer": {"choices": [1, "2e0"]},
                                      "model.norm": {"value": "rmsnorm"}}})
    dims, fixed = build_space(cfg, PRIORS)
    assert {d.name: d for d in dims}["model.n_layer"].distribution.choices == (1, 2)
    assert fixed["model.norm"] == "rmsnorm"
    # Text that is not a number is still refused, naming what is allowed.
    with pytest.raises(ConfigError, match=r"search.lr: 'fast' is not allowed, expected a learning "
                                          r"rate in \(0, 10\]"):
        study_cfg(search={"lr": {"value": "fast"}})


def test_other_trainer_fields_can_be_fixed_or_searched():
    cfg = study_cfg(search={
        "other": {"model.norm": {"choices": ["layernorm", "rmsnorm"]},
                  "optim.qkv_lr_mult": {"value": 2.0}},
    })
    dims, fixed = build_space(cfg, PRIORS)
    assert "model.norm" in {d.name for d in dims}
    assert fixed == {"optim.qkv_lr_mult": 2.0}
    train_cfg, _ = trial_config(
        cfg, {"lr": 1e-3, "tau": 1.0, "dropout": 0.0, "warmup_frac": 0.1, "batch_size": 8,
              "model.norm": "rmsnorm"}, fixed, 1)
    assert train_cfg.model.norm == "rmsnorm" and train_cfg.optim.qkv_lr_mult == 2.0


def test_prior_draws_concentrate_where_the_prior_says():
    rng = np.random.default_rng(0)
    prior = _prior("lr", 1e-3, 1e-5, 1e-1, sigma=0.25)
    dist = FloatDistribution(1e-5, 1e-1, log=True)
    draws = np.array([draw_from_prior(prior, dist, rng) for _ in range(2000)])
    logs = np.log10(draws)
    # Every draw is inside the range; the log10 mean and spread follow the prior.
    assert draws.min() >= 1e-5 and draws.max() <= 1e-1
    assert abs(logs.mean() - (-3)) < 0.03
    assert abs(logs.std() - 0.25) < 0.03
    # Uniform sampling would put a quarter of the draws below 1e-4; the prior almost none.
    assert (draws < 1e-4).mean() < 0.001


def test_prior_draws_land_on_the_grid_and_keep_the_prior_spread():
    rng = np.random.default_rng(0)
    prior = _prior("warmup_frac", 0.2, 0.0, 0.5, log=False, sigma=0.05)
    dist = FloatDistribution(0.0, 0.5, step=0.05)
    draws = np.array([draw_from_prior(prior, dist, rng) for _ in range(2000)])
    k = draws / 0.05
    # Every draw is low + k*step within the range ...
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert draws.min() >= 0.0 and draws.max() <= 0.5
    # ... and the prior's center and spread survive the snapping (rounding adds step^2 / 12).
    assert abs(draws.mean() - 0.2) < 0.005
    assert abs(draws.std() - math.hypot(0.05, 0.05 / math.sqrt(12))) < 0.005
    ints = [draw_from_prior(prior, IntDistribution(-10, 10, step=2), rng) for _ in range(200)]
    assert all(type(v) is int and v % 2 == 0 and -10 <= v <= 10 for v in ints)


@pytest.mark.parametrize("dist", [
    FloatDistribution(1.0, 1.0), FloatDistribution(1.0, 1.0, log=True),
    FloatDistribution(1.0, 1.0, step=1.0), IntDistribution(1, 1), IntDistribution(1, 1, log=True),
])
def test_prior_draw_of_a_single_value_range_is_that_value(dist):
    prior = _prior("x", 3.0, 0.5, 10.0)
    value = draw_from_prior(prior, dist, np.random.default_rng(0))
    # Nothing to draw (a zero-width truncated normal is undefined): the one value, of its type.
    assert value == 1 and type(value) is type(dist.low)


def test_log_prior_draws_uniformly_where_a_range_reaches_zero():
    rng = np.random.default_rng(0)
    prior = _prior("x", 1e-2, 1e-7, 10.0, sigma=1.0)
    # A log-normal has no density at or below 0: draws are uniform, on the grid, of its type.
    ints = [draw_from_prior(prior, IntDistribution(-10, 10, step=2), rng) for _ in range(600)]
    assert all(type(v) is int for v in ints)
    assert set(ints) == set(range(-10, 11, 2))
    steps = [draw_from_prior(prior, FloatDistribution(-1.0, 1.0, step=0.5), rng)
             for _ in range(200)]
    assert set(steps) == {-1.0, -0.5, 0.0, 0.5, 1.0}
    # Choices that are not all numbers are drawn uniformly too.
    mixed = [draw_from_prior(prior, CategoricalDistribution([1, "a"]), rng) for _ in range(200)]
    assert set(mixed) == {1, "a"}


def test_prior_sampler_hands_over_after_startup():
    priors = {"x": _prior("x", 1e-3, 1e-6, 1.0, sigma=0.1)}
    base = optuna.samplers.RandomSampler(seed=1)
    sampler = PriorSampler(base, priors, n_startup_trials=5, seed=0)
    study = optuna.create_study(sampler=sampler)
    xs = []
    for _ in range(60):
        trial = study.ask()
        x = trial.suggest_float("x", 1e-6, 1.0, log=True)
        study.tell(trial, (math.log10(x) + 3) ** 2)
        xs.append(x)
    startup, later = np.log10(xs[:5]), np.log10(xs[5:])
    # The first five trials come from the prior (within 0.5 decades of 1e-3) ...
    assert np.all(np.abs(startup + 3) < 0.5)
    # ... and the base sampler explores the whole range afterwards.
    assert later.min() < -5 and later.max() > -1


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_gp_and_cmaes_take_over_from_the_prior_without_a_uniform_start_up_between(name):
    # The prior's start-up counted pruned trials as finished, GP and CMA-ES count complete ones:
    # each pruned trial without a prediction (a median pruner's) left them a start-up of their
    # own, drawn uniformly over the range, after the prior's.
    priors = {"x": _prior("x", 1e-3, 1e-6, 1.0, sigma=0.1)}
    cfg = study_cfg(sampler={"name": name, "n_startup_trials": 3, "seed": 0})
    sampler = make_sampler(cfg, priors)
    model = sampler._base._base  # under PredictionsTeachSampler
    uniform = []
    independent = model._independent_sampler
    original = independent.sample_independent
    independent.sample_independent = lambda *a, **k: uniform.append(1) or original(*a, **k)
    study = optuna.create_study(sampler=sampler)
    for i in range(10):
        trial = study.ask()
        x = trial.suggest_float("x", 1e-6, 1.0, log=True)
        if 1 <= i <= 4:  # stopped, with no predicted final loss
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, (math.log10(x) + 3) ** 2)
    assert uniform == []


def _spread_after_startup(beta: float) -> float:
    """Median distance (decades) from the prior's center of trials 6-40 of a TPE study on a flat
    objective, whose acquisition the prior weights with ``beta``."""
    priors = {"x": _prior("x", 1e-3, 1e-6, 1.0, sigma=0.2)}
    base = PriorWeightedTPESampler(priors, beta, n_startup_trials=5, seed=3)
    study = optuna.create_study(sampler=PriorSampler(base, priors, n_startup_trials=5, seed=0))
    xs = []
    for _ in range(40):
        trial = study.ask()
        xs.append(trial.suggest_float("x", 1e-6, 1.0, log=True))
        study.tell(trial, 1.0 + 1e-3 * trial.number % 7)  # flat: nothing to learn from
    return float(np.median(np.abs(np.log10(xs[5:]) + 3)))


def test_prior_weighted_tpe_keeps_steering_after_startup():
    # With nothing to learn, plain TPE wanders over its good-trial density; the prior-weighted
    # one keeps proposing near the prior's center.
    plain, weighted = _spread_after_startup(0.0), _spread_after_startup(10.0)
    assert weighted < 0.5 * plain, (weighted, plain)


def test_prior_weight_fades_as_trials_finish():
    priors = {"x": _prior("x", 1e-3, 1e-6, 1.0, sigma=0.2)}
    sampler = PriorWeightedTPESampler(priors, 10.0, seed=0)
    sampler._space = {"x": FloatDistribution(1e-6, 1.0, log=True)}
    samples = {"x": np.array([1e-3, 1e-1])}
    # Two decades from the center: log prior -0.5 * (2 / 0.2)^2 = -50; at the center 0.
    assert sampler.log_prior(samples).tolist() == pytest.approx([0.0, -50.0])
    below = above = type("Flat", (), {"log_pdf": staticmethod(lambda s: np.zeros(2))})()
    sampler._n_finished = 10
    early = sampler._compute_acquisition_func(samples, below, above)
    sampler._n_finished = 1000
    late = sampler._compute_acquisition_func(samples, below, above)
    assert early.tolist() == pytest.approx([0.0, -50.0])  # weight 10 / 10
    assert late.tolist() == pytest.approx([0.0, -0.5])  # weight 10 / 1000


def test_prior_weight_zero_or_seeding_none_is_plain_tpe():
    weighted = make_sampler(study_cfg(), {"lr": PRIORS.lr})
    assert isinstance(weighted._base, PriorWeightedTPESampler)
    off = make_sampler(study_cfg(sampler={"prior_weight": 0}), {"lr": PRIORS.lr})
    assert type(off._base) is optuna.samplers.TPESampler
    # Without seeding, no prior weighs TPE either (PriorWeightedTPESampler is a TPESampler).
    unseeded = make_sampler(study_cfg(seeding="none"), {"lr": PRIORS.lr})
    assert type(unseeded) is optuna.samplers.TPESampler


def test_prior_weight_is_refused_for_samplers_without_an_acquisition():
    with pytest.raises(ValueError, match="prior_weight weights TPE's acquisition; sampler gp"):
        study_cfg(sampler={"name": "gp", "prior_weight": 5})
    assert study_cfg(sampler={"name": "gp", "prior_weight": 0}).sampler.prior_weight == 0


@pytest.mark.parametrize(("given", "expected"), [
    ({"sampler": {"name": "gp", "multivariate": False}},
     "multivariate is an option of TPE; sampler gp has none"),
    ({"sampler": {"name": "cmaes", "constant_liar": False}},
     "constant_liar is an option of TPE; sampler cmaes has none"),
    ({"sampler": {"name": "random", "n_startup_trials": 3}},
     "n_startup_trials: sampler random draws every trial at random"),
    ({"sampler": {"prior_weight": 5}, "seeding": "none"},
     "sampler.prior_weight: it weights TPE by the priors, which seeding: none does not use"),
    ({"pruner": {"name": "predicted", "margin": 3}},
     "margin widens interval: range; under interval: t (the default)"),
    ({"pruner": {"name": "predicted", "interval": "range", "confidence": 0.6}},
     "confidence sets the width of interval: t; under interval: range margin does"),
], ids=["gp multivariate", "cmaes constant_liar", "random start-up", "prior_weight unseeded",
        "margin under t", "confidence under range"])
def test_an_option_the_study_would_ignore_is_refused(given, expected):
    # Each was accepted and did nothing (the dry run dropped it from its line).
    with pytest.raises(ValueError, match=re.escape(expected)):
        study_cfg(**given)
    # What a study's record holds (every field, defaults too) reads back.
    cfg = study_cfg(sampler={"name": "gp"}, pruner={"name": "predicted"}, seeding="none")
    validate_study(cfg.model_dump(mode="json", by_alias=True), recorded=True)


@pytest.mark.parametrize(("name", "why"), [("tpe", "ranks pruned trials itself"),
                                           ("random", "learns from no trial")])
def test_pruned_trials_is_refused_for_samplers_that_do_not_fit_complete_trials_only(name, why):
    with pytest.raises(ValueError) as e:
        study_cfg(sampler={"name": name, "pruned_trials": "ignore"})
    assert (f"pruned_trials is for gp and cmaes, which fit complete trials only; sampler {name} "
            f"{why}: leave pruned_trials out") in str(e.value)
    # Left out, it is the default, which means nothing to them.
    assert study_cfg(sampler={"name": name}).sampler.pruned_trials == "predicted"


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_pruned_trials_ignore_gives_optunas_own_sampler(name):
    from scaletune.search.samplers import PredictionsTeachSampler, StartFromTheBestCmaEs

    # CMA-ES is Optuna's, its first generation centred on the best trial seen (samplers.py).
    kind = {"gp": optuna.samplers.GPSampler, "cmaes": StartFromTheBestCmaEs}[name]
    plain = make_sampler(study_cfg(sampler={"name": name, "pruned_trials": "ignore"}), {})
    assert type(plain._base) is kind
    taught = make_sampler(study_cfg(sampler={"name": name}), {})
    assert isinstance(taught._base, PredictionsTeachSampler) and type(taught._base._base) is kind


def test_seeding_none_is_plain_optuna():
    cfg = study_cfg(seeding="none")
    assert type(make_sampler(cfg, {})) is optuna.samplers.TPESampler
    assert isinstance(make_sampler(study_cfg(), {}), PriorSampler)


@pytest.mark.parametrize(
    "pruner, cls, settings",
    [
        ({"name": "median"}, optuna.pruners.MedianPruner, {"_percentile": 50.0}),
        ({"name": "percentile", "percentile": 40}, optuna.pruners.PercentilePruner,
         {"_percentile": 40.0}),
        # Resources in tokens: one evaluation is the least a rung trains.
        ({"name": "successive_halving"}, optuna.pruners.SuccessiveHalvingPruner,
         {"_min_resource": 10_000, "_reduction_factor": 3}),
        ({"name": "hyperband"}, optuna.pruners.HyperbandPruner,
         {"_min_resource": 10_000, "_max_resource": 100_000}),
        ({"name": "wilcoxon"}, optuna.pruners.WilcoxonPruner, {}),
        ({"name": "patient", "patience": 2, "wrapped": {"name": "median"}},
         optuna.pruners.PatientPruner, {"_patience": 2}),
        ({"name": "predicted"}, PredictedFinalPruner, {}),
        ({"name": "none"}, optuna.pruners.NopPruner, {}),
    ],
)
def test_every_pruner_is_built(pruner, cls, settings):
    built = study_cfg(pruner=pruner).pruner.build(study_cfg(pruner=pruner))
    assert isinstance(built, cls)
    # With the values the study gives (Optuna keeps them in private fields).
    assert {key: getattr(built, key) for key in settings} == settings
    if cls is optuna.pruners.PatientPruner:
        assert type(built._wrapped_pruner) is optuna.pruners.MedianPruner


def test_median_pruner_compares_at_equal_tokens():
    cfg = study_cfg(pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    study = optuna.create_study(pruner=cfg.pruner.build(cfg))
    good = study.ask()
    for tokens, loss in ((10_000, 3.0), (20_000, 2.0)):
        good.report(loss, tokens)
    study.tell(good, 2.0)
    bad = study.ask()
    bad.report(3.5, 10_000)
    # Worse than the finished trial at the same token count: pruned.
    assert bad.should_prune()
    ok = study.ask()
    ok.report(2.9, 10_000)
    assert not ok.should_prune()


def test_pruner_interval_counts_evaluations():
    cfg = study_cfg(eval_every_tokens=1000, tokens_per_trial=10_000, pruner={
        "name": "median", "n_startup_trials": 1, "n_warmup_steps": 0, "interval_steps": 2})
    study = optuna.create_study(pruner=cfg.pruner.build(cfg))
    good = study.ask()
    for tokens in range(1000, 10_001, 1000):
        good.report(1.0, tokens)
    study.tell(good, 1.0)
    bad, pruned_at = study.ask(), []
    for tokens in range(1000, 10_001, 1000):
        bad.report(10.0, tokens)
        if bad.should_prune():
            pruned_at.append(tokens)
    # The first evaluation after the warmup, then every 2nd one (before: every evaluation).
    assert pruned_at == [1000, 2000, 4000, 6000, 8000, 10_000]


def test_suggest_uses_every_distribution_kind():
    dims, _ = build_space(study_cfg(search={"other": {"model.n_layer": {"low": 1, "high": 3}}}),
                          PRIORS)
    study = optuna.create_study()
    params = suggest(study.ask(), dims)
    assert isinstance(params["model.n_layer"], int) and 1 <= params["model.n_layer"] <= 3
    assert params["batch_size"] in (8, 16, 32, 64)


def test_other_fields_are_searched_as_whole_numbers_where_the_trainer_holds_them():
    # The rule: the trainer field's type decides, not how the ends are written. min_lr_ratio
    # from 0 to 1 is a float range (not the choice of 0 or 1); n_layer from 1 to 3 an integer
    # one, and a fractional end of it is refused, naming the key.
    dims, _ = build_space(study_cfg(search={"other": {
        "optim.min_lr_ratio": {"low": 0, "high": 1}, "model.n_layer": {"low": 1, "high": 3}}}),
        PRIORS)
    by_name = {d.name: d.distribution for d in dims}
    assert by_name["optim.min_lr_ratio"] == FloatDistribution(0.0, 1.0)
    assert by_name["model.n_layer"] == IntDistribution(1, 3)
    with pytest.raises(ConfigError, match=r"search.other.model.n_layer: low=1.5, high=3: this "
                                          r"field holds whole numbers"):
        build_space(study_cfg(search={"other": {"model.n_layer": {"low": 1.5, "high": 3}}}),
                    PRIORS)
    # A range of a field of true or false drew 0.65 for model.bias, and the trial failed.
    with pytest.raises(ConfigError, match=r"search.other.model.bias: low=0, high=1: a range of "
                                          r"a field that holds no numbers; give its values as "
                                          r"choices"):
        build_space(study_cfg(search={"other": {"model.bias": {"low": 0, "high": 1}}}), PRIORS)


def test_values_of_a_long_integer_range_that_cannot_train_are_found_before_a_trial():
    # n_embd from 16 to 200 with n_head 2: its ends are even, and only they were tried; the
    # study stopped at its first trial (n_embd=117).
    cfg = study_cfg(search={"other": {"model.n_embd": {"low": 16, "high": 200}}})
    dims, fixed = build_space(cfg, PRIORS)
    [problem] = space_problems(cfg, dims, fixed)
    assert problem.startswith("search.other: 32 of the 60 combinations of values tried make a "
                              "trial config no run can train: model.n_embd=17 (model: n_head "
                              "must divide n_embd")
    # 16 to 142: 64 values spread over it were all even, and validate said ok.
    cfg = study_cfg(search={"other": {"model.n_embd": {"low": 16, "high": 142}}})
    assert space_problems(cfg, *build_space(cfg, PRIORS))[0].startswith(
        "search.other: 28 of the 58 combinations of values tried make a trial config no run can "
        "train: model.n_embd=17")
    cfg = study_cfg(search={"other": {"model.n_layer": {"low": 1, "high": 200}}})
    assert space_problems(cfg, *build_space(cfg, PRIORS)) == []


def test_a_resumed_study_of_the_top_seed_keeps_to_numpys_seeds():
    # seed 2**32 - 1 ran its first launch, and its resume raised "Seed must be between 0 and
    # 2**32 - 1" from Optuna's sampler.
    cfg = study_cfg(seed=2**32 - 1)
    for n_existing in (0, 5):
        study = optuna.create_study(sampler=make_sampler(cfg, {}, n_existing=n_existing))
        study.ask()


def test_a_resumed_study_does_not_draw_its_first_trials_again():
    cfg = study_cfg(seeding="none", sampler={"name": "random"})

    def first_lr(n_existing):
        study = optuna.create_study(sampler=make_sampler(cfg, {}, n_existing=n_existing))
        return study.ask().suggest_float("lr", 1e-5, 1e-1, log=True)

    # The same storage state gives the same draw; more trials in it give a new seed.
    assert first_lr(0) == first_lr(0)
    assert first_lr(3) != first_lr(0)


def test_prior_draws_depend_on_the_trial_alone_resumed_or_in_another_rung():
    # A ladder rung resumed with more trials drew its start-up trials from a shifted seed, so
    # its trial k no longer matched the other rungs' (common random numbers), and the fit read
    # that luck as a trend (tau's exponent +7 on a three-rung ladder).
    cfg = study_cfg(sampler={"name": "tpe", "n_startup_trials": 6})
    dims, _ = build_space(cfg, PRIORS)
    priors = {d.name: d.prior for d in dims if d.prior is not None}

    def trials(launches, priors=priors):
        """The params of each trial, over launches of these many trials each."""
        study, params = optuna.create_study(), []
        study.enqueue_trial(prior_center_params(dims))  # trial 0, as a new study's plan does
        for n in launches:
            study.sampler = make_sampler(cfg, priors, n_existing=len(study.trials))
            for _ in range(n):
                trial = study.ask()
                params.append(suggest(trial, dims))
                study.tell(trial, 1.0)
        return params

    straight = trials([5])
    # Rule: a study stopped after 2 trials and resumed draws trial k as one run straight
    # through; it draws nothing twice.
    assert trials([2, 3]) == straight
    assert len({p["lr"] for p in straight}) == 5
    # Rule: a rung whose lr prior is another (another scale) draws its other parameters as
    # the first rung does: each parameter's draw is its own.
    other = trials([5], priors={**priors, "lr": _prior("lr", 1e-2, 1e-3, 1e-1)})
    assert [p["dropout"] for p in other] == [p["dropout"] for p in straight]
    assert [p["warmup_frac"] for p in other] == [p["warmup_frac"] for p in straight]
    assert [p["lr"] for p in other][1:] != [p["lr"] for p in straight][1:]
    # Rule: where no center was queued, trial 0 draws too, and not trial 1's values (it did).
    study = optuna.create_study(sampler=make_sampler(cfg, priors, n_existing=0))
    drawn = [suggest(study.ask(), dims) for _ in range(2)]
    assert drawn[0]["lr"] != drawn[1]["lr"] and drawn[1] == straight[1]


def test_study_file_resolves_local_data_files_but_not_hub_files(tmp_path, shakespeare):
    from scaletune.search.config import load_study
    from tests.search.helpers import tiny_study, write_study

    local = {"source": "hf", "dataset": "text", "data_files": ["corpus/a.txt", "/abs/b.txt"]}
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, data=local))
    assert load_study(path).data.data_files == [str(tmp_path / "corpus" / "a.txt"), "/abs/b.txt"]
    hub = {"source": "hf", "dataset": "org/corpus", "data_files": "sample/000.parquet"}
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, data=hub))
    assert load_study(path).data.data_files == "sample/000.parquet"


def test_fit_point_takes_a_fixed_lr_from_the_search_space():
    from scaletune.search.fit import scale_points

    cfg = study_cfg(search={"lr": {"value": 0.02}})
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("tau", 0.1, 1.0)
    study.tell(trial, 2.5)
    # The trials trained with search.lr's value, not the trainer's default lr.
    assert [p.lr for p in scale_points(cfg, study, "tokens")] == [0.02]


def test_fit_point_carries_warmup_only_where_the_study_searched_it():
    import optuna.trial as ot

    from scaletune.search.fit import scale_points

    cfg = study_cfg(search={"lr": {"prior": "auto"}, "warmup_frac": {"low": 0.0, "high": 0.3}})
    study = optuna.create_study()
    for lr, warmup, loss in ((1e-3, 0.25, 2.5), (2e-3, 0.1, 2.52), (3e-3, 0.2, 3.0)):
        study.add_trial(ot.create_trial(
            params={"lr": lr, "warmup_frac": warmup}, value=loss,
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                           "warmup_frac": optuna.distributions.FloatDistribution(0.0, 0.3)}))
    # Rule: the near-best trials (within 3% of the best) carry the warmup they trained with.
    assert [p.warmup_frac for p in scale_points(cfg, study, "tokens")] == [0.25, 0.1]
    fixed = optuna.create_study()
    fixed.add_trial(ot.create_trial(
        params={"lr": 1e-3}, value=2.5,
        distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}))
    # A warmup the study fixed says nothing about where its optimum lies.
    assert [p.warmup_frac for p in scale_points(study_cfg(), fixed, "tokens")] == [None]


def test_fit_takes_tau_only_where_weight_decay_was_searched_and_refuses_a_fixed_lr():
    import optuna.trial as ot

    from scaletune.search.fit import fit_from_studies, scale_points
    from scaletune.trainer.errors import ConfigError

    lr = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    study = optuna.create_study()
    study.add_trial(ot.create_trial(params={"lr": 1e-3}, value=2.5, distributions=lr,
                                    user_attrs={"tau": 0.01}))
    fixed = study_cfg(search={"lr": {"prior": "auto"}, "weight_decay": {"value": 0.01,
                                                                        "as": "tau"}})
    # A tau the study fixed (here 0.01 in every trial) is no optimum: it was fitted as a law.
    assert [p.tau for p in scale_points(fixed, study, "tokens")] == [None]
    searched = optuna.create_study()
    searched.add_trial(ot.create_trial(
        params={"lr": 1e-3, "weight_decay": 0.1}, value=2.5, user_attrs={"tau": 7.0},
        distributions={**lr, "weight_decay": optuna.distributions.FloatDistribution(0.01, 1)}))
    # Searched as lambda, tau is derived per trial: it enters the fit.
    assert [p.tau for p in scale_points(study_cfg(), searched, "tokens")] == [7.0]
    # A fixed lr: every trial trained one lr, and the law drew a trend through it.
    with pytest.raises(ConfigError) as e:
        fit_from_studies([study_cfg(search={"lr": {"value": 0.003}})])
    assert ("fixes lr (search.lr: {value: 0.003}): its trials have no optimum lr for a law to "
            "follow; fit studies that search lr") in e.value.errors[0]


def test_a_log_scale_over_a_prior_range_that_starts_at_zero_is_an_error_of_the_key():
    # dropout's prior range starts at 0: Optuna's ValueError ("low > 0 must hold") as a traceback.
    cfg = study_cfg(search={"dropout": {"prior": "auto", "log": True}})
    with pytest.raises(ConfigError, match=r"search.dropout: log: true, and the range starts at 0"):
        build_space(cfg, PRIORS)
    given = study_cfg(search={"dropout": {"prior": "auto", "log": True, "low": 0.01}})
    (dropout,) = [d for d in build_space(given, PRIORS)[0] if d.name == "dropout"]
    assert dropout.distribution.log and dropout.distribution.low == 0.01


def test_a_study_gets_the_lr_of_the_batches_it_trains():
    from scaletune.heuristics.priors import priors_for
    from scaletune.search.space import model_shape, study_priors, trained_batches

    free = priors_for(model_shape(study_cfg(), 256), 100_000)
    center = free.batch_size.center
    above = study_cfg(search={"lr": {"prior": "auto"},
                              "batch_size": {"choices": [center * 4, center * 8]}})
    assert trained_batches(above) == (center * 4, center * 8)
    # The first trial trains batch center*4 at the lr of that batch, not of the laws' center.
    priors = study_priors(above, 256, None)
    assert priors.lr.center == pytest.approx(free.lr.center * 2)
    dims, _ = build_space(above, priors)
    assert prior_center_params(dims)["batch_size"] == center * 4
    assert prior_center_params(dims)["lr"] == pytest.approx(free.lr.center * 2)
    # A fixed batch, a range, and the prior's own range (nothing to carry).
    fixed = study_cfg(search={"batch_size": {"value": 64}})
    assert trained_batches(fixed) == (64.0, 64.0)
    ranged = study_cfg(search={"batch_size": {"prior": "auto", "low": 16, "high": 128}})
    assert trained_batches(ranged) == (16.0, 128.0)
    # A range trains its powers of two: [12, 100] trains 16 to 64, not 12 (the priors were taken
    # at 12, and the first trial trained 16 at the lr of a batch never trained).
    odd = study_cfg(search={"batch_size": {"prior": "auto", "low": 12, "high": 100}})
    assert trained_batches(odd) == (16.0, 64.0)
    assert trained_batches(study_cfg(search={"batch_size": {"prior": "auto", "low": 12,
                                                            "high": 100}},
                                     trainer={"micro_batch_size": 32})) == (32.0, 64.0)
    # One end given, the other the prior's: the end given bounds the batch the lr is taken at
    # (center * 4 and more trains center * 4, not the center, which it never trains).
    for one_end, at in (({"low": center * 4}, center * 4), ({"high": center / 4}, center / 4)):
        one = study_cfg(search={"lr": {"prior": "auto"},
                                "batch_size": {"prior": "auto", **one_end}})
        assert dict(study_priors(one, 256, None).context)["batch_of_lr"] == at
    assert trained_batches(study_cfg()) is None
    assert study_priors(study_cfg(), 256, None) == free


def test_the_warmup_prior_of_sgd_trials_leaves_out_adams_rule():
    # Ma & Yarats' 2/(1-beta2) is Adam's second moment: under SGD it moved the warmup prior (and
    # the first trial) with a beta2 the dry run itself called unused.
    from scaletune.search.space import study_priors

    def warmup(optim, **more):
        cfg = study_cfg(trainer={"optim": optim}, **more)
        return study_priors(cfg, 256, None).warmup_frac

    sgd = warmup({"name": "sgd", "lr": 0.1})
    assert [s.law for s in sgd.sources] == ["Porian warmup ~ N tokens", "practice 5-15% of steps"]
    assert warmup({"name": "sgd", "lr": 0.1, "beta2": 0.999}) == sgd
    assert warmup({"name": "adamw", "beta2": 0.999}).sources[0].law == "Ma & Yarats 2/(1-beta2)"
    # Trials that may train with Adam keep it.
    mixed = warmup({"name": "sgd", "lr": 0.1},
                   search={"other": {"optim.name": {"choices": ["sgd", "adamw"]}}})
    assert mixed.sources[0].law == "Ma & Yarats 2/(1-beta2)"


def test_fields_search_other_fixes_or_searches_count_in_the_priors_and_the_budget():
    # model.n_embd fixed at 64 under search.other: every trial trained at 64, and the priors,
    # the report's N and FLOPs and the warmup's beta2 were the file's (32): 4x too few FLOPs.
    from types import SimpleNamespace

    from scaletune.heuristics import laws
    from scaletune.search.manage import _budget
    from scaletune.search.space import model_shape, study_priors
    from scaletune.search.summary import non_embedding_params

    fixed = study_cfg(search={"other": {"model.n_embd": {"value": 64},
                                        "optim.beta2": {"value": 0.5}}})
    assert model_shape(fixed, 256).n_embd == 64
    assert study_priors(fixed, 256, None) == study_priors(
        study_cfg(model={"n_layer": 1, "n_head": 2, "n_embd": 64, "block_size": 32},
                  trainer={"optim": {"beta2": 0.5}}), 256, None)
    trial = SimpleNamespace(params={})
    assert non_embedding_params(trial, fixed) == laws.non_embedding_params(1, 64)
    # Searched: the plan's "at most" is the largest model's (it was the file's, and a run
    # trained twice that).
    searched = study_cfg(search={"other": {"model.n_layer": {"low": 1, "high": 2},
                                           "model.n_embd": {"choices": [32, 64]}}})
    said = _budget(searched, study_priors(searched, 256, None))
    assert f"N = {laws.non_embedding_params(2, 64):,} non-embedding params, the largest model " \
           "searched) at most" in said, said


def test_a_micro_batch_searched_is_tried_with_every_batch_size_searched():
    # Tried at the batch of the priors' center alone: validate said ok, and the run stopped at
    # the first trial that drew batch 6 with micro-batch 4.
    cfg = study_cfg(search={"batch_size": {"choices": [4, 6]},
                            "other": {"micro_batch_size": {"choices": [4]}}})
    [problem] = space_problems(cfg, *build_space(cfg, PRIORS))
    assert "micro_batch_size=4, batch_size=6 (batch_size must be a multiple of micro_batch_size" \
        in problem, problem
    ok = study_cfg(search={"batch_size": {"choices": [4, 8]},
                           "other": {"micro_batch_size": {"choices": [2, 4]}}})
    assert space_problems(ok, *build_space(ok, PRIORS)) == []


def test_the_plan_says_when_a_study_ends_inside_its_samplers_start_up():
    from scaletune.search.manage import describe_sampler, plan_notes

    # Start-up trials are asked for while fewer than n_startup_trials have finished: a study of
    # no more trials than that never reaches its sampler. A note of the plan, which validate
    # gives too (it was in the dry run's sampler line alone).
    for name, seeding in (("tpe", "prior"), ("gp", "none"), ("cmaes", "prior")):
        short = plan_notes(study_cfg(sampler={"name": name, "n_startup_trials": 8},
                                     seeding=seeding, n_trials=8))
        assert (f"sampler.n_startup_trials: n_trials 8 <= n_startup_trials 8: every trial is a "
                f"start-up trial and {name} proposes none; lower sampler.n_startup_trials or "
                "raise n_trials") in short, short
        longer = plan_notes(study_cfg(sampler={"name": name, "n_startup_trials": 8},
                                      seeding=seeding, n_trials=9))
        assert not [n for n in longer if "start-up trial and" in n]
    # CMA-ES draws the choices at random: said, with the dimensions it is about.
    notes = plan_notes(study_cfg(sampler={"name": "cmaes"}, n_trials=20))
    assert [n for n in notes if n.startswith("sampler: cmaes searches numbers in a range only: "
                                             "batch_size (its choices) is drawn at random")]
    assert not [n for n in plan_notes(study_cfg(n_trials=20)) if n.startswith("sampler: cmaes")]
    # Start-up is counted in finished trials, the priors' center among them.
    assert describe_sampler(study_cfg(sampler={"name": "tpe", "n_startup_trials": 8},
                                      n_trials=20)).startswith(
        "tpe (multivariate, constant liar), seed 0: the priors' center, then draws from the "
        "priors until 8 trials have finished (the center among them), then tpe weighted")
    # One start-up trial is one ("until 1 trials have finished" read wrong).
    assert "priors until 1 trial has finished (the center" in describe_sampler(
        study_cfg(sampler={"name": "tpe", "n_startup_trials": 1}, n_trials=20))
    assert ": 1 start-up trial at random, then gp" in describe_sampler(
        study_cfg(sampler={"name": "gp", "n_startup_trials": 1}, seeding="none", n_trials=20))
    # Random search has no start-up to end.
    assert "but" not in describe_sampler(study_cfg(sampler={"name": "random"}, n_trials=2))
