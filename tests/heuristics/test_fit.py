"""Laws fitted to synthetic finished studies with a known true law recover that law."""

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest

from scaletune.heuristics import laws as published_laws
from scaletune.heuristics.fit import (
    DEGENERATE_WIDTH,
    EXPONENT_PRIOR_SD,
    SHORT_RUN_LR_EXPONENT,
    FittedLaws,
    ScalePoint,
    fit_carried,
    fit_power_law,
    fit_studies,
    missing_laws,
    near_best_weights,
)
from scaletune.heuristics.priors import ModelShape, priors_for

# True laws of the synthetic studies (scale = training tokens).
LR_TRUE = (0.5, -0.25)
TAU_TRUE = (20.0, -0.3)
BATCH_TRUE = (0.8, 0.5)  # tokens per step


def _law(a_b, x):
    a, b = a_b
    return a * x**b


def synthetic_points(noise_log10=0.05, seed=1, n=8, per_rung=4):
    """Near-best trials of n rungs at 1e5..1e8 tokens, ``per_rung`` each, each off the true law
    by log-normal noise, weighted 1, 0.8, 0.6, ... as near_best_weights would."""
    rng = np.random.default_rng(seed)
    points = []
    for x in np.logspace(5, 8, n):
        for k in range(per_rung):
            jitter = 10.0 ** rng.normal(0.0, noise_log10, size=3)
            points.append(
                ScalePoint(
                    scale=float(x), scale_kind="tokens",
                    lr=_law(LR_TRUE, x) * jitter[0],
                    tau=_law(TAU_TRUE, x) * jitter[1],
                    batch_size=_law(BATCH_TRUE, x) * jitter[2],
                    value=3.0 - 0.1 * math.log10(x) + 0.01 * k,
                    weight=1.0 - 0.2 * k,
                )
            )
    return points


@pytest.fixture(scope="module")
def fitted():
    return fit_studies(synthetic_points(), n_boot=400, seed=0)


@pytest.mark.parametrize(
    "target,truth", [("lr", LR_TRUE), ("tau", TAU_TRUE), ("batch_size", BATCH_TRUE)]
)
def test_fit_recovers_the_true_law(fitted, target, truth):
    fit = getattr(fitted, target)
    a, b = truth
    # The exponent is recovered within 0.06 and the constant within a factor of 2 (it sits
    # five decades below the data, so it inherits the slope's uncertainty).
    assert fit.exponent == pytest.approx(b, abs=0.06)
    assert 0.5 < fit.coef / a < 2.0
    # The bootstrap intervals cover the truth.
    lo, hi = fit.exponent_interval
    assert lo <= b <= hi
    lo, hi = fit.coef_interval
    assert lo <= a <= hi
    # Inside the fitted scales, the prediction is within 10% and its interval covers the truth.
    pred = fit.predict(1e6)
    assert pred.value == pytest.approx(_law(truth, 1e6), rel=0.10)
    assert pred.low <= _law(truth, 1e6) <= pred.high
    assert not pred.extrapolated


def test_prediction_outside_the_fitted_scales_is_extrapolated(fitted):
    # Scales beyond the studies' range are flagged, and the interval widens away from the data.
    far, near = fitted.lr.predict(1e10), fitted.lr.predict(3e6)
    assert far.extrapolated
    assert far.high / far.low > near.high / near.low


def test_bootstrap_is_seeded():
    # The same seed gives the same intervals; the point fit does not depend on the seed.
    pts = synthetic_points()
    a, b = fit_studies(pts, n_boot=200, seed=3), fit_studies(pts, n_boot=200, seed=3)
    c = fit_studies(pts, n_boot=200, seed=4)
    assert a == b
    assert c.lr.exponent == a.lr.exponent and c.lr.cov != a.lr.cov


def test_save_load_roundtrip(fitted, tmp_path):
    path = tmp_path / "laws.json"
    fitted.save(path)
    # What is loaded equals what was saved.
    assert FittedLaws.load(path) == fitted
    # The file is a summary a person can read: no bootstrap samples, a few kB for 8 rungs.
    text = path.read_text()
    assert "boot_" not in text and len(text) < 12_000
    data = json.loads(text)
    assert data["laws"][0].startswith("lr = ") and data["warnings"] == []
    # A batch law says its unit: tokens per step, where a study file counts sequences.
    assert [law.split(" = ")[0] for law in data["laws"]] == [
        "lr", "tau", "batch_size (tokens per step)"]
    assert len(data["lr"]["rungs"]) == 8 and data["lr"]["n_points"] == 32


@pytest.mark.parametrize("edit, says", [
    (lambda d: [], "a JSON object is expected, not a list"),
    (lambda d: {**d, "scale_kind": "width"}, "scale_kind is 'width', where a fit writes tokens "
     "or params"),
    (lambda d: {**d, "lr": {**d["lr"], "exponent": float("inf")}},
     "lr.exponent is inf, where a fit writes a finite number"),
    (lambda d: {**d, "lr": {**d["lr"], "exponent": "abc"}}, "lr.exponent is 'abc'"),
    (lambda d: {**d, "lr": {**d["lr"], "cov": [1]}}, "lr.cov is (1.0,), where a fit writes "
     "three finite numbers"),
    (lambda d: {**d, "tau": {**d["tau"], "cov": [-1, 0, -1]}}, "tau.cov is (-1.0, 0.0, -1.0)"),
    (lambda d: {**d, "tau": {**d["tau"], "target": "lr"}},
     "tau.target is 'lr', where a fit writes tau"),
    (lambda d: {**d, "lr": None}, "not a fitted-laws file this scaletune reads"),
    # 95 for 95%: a StatisticsError from priors, validate and run (0: a ZeroDivisionError).
    (lambda d: {**d, "lr": {**d["lr"], "level": 95}}, "lr.level is 95, where a fit writes the "
     "intervals' coverage, a fraction in (0, 1) such as 0.95"),
    (lambda d: {**d, "tau": {**d["tau"], "level": 0}}, "tau.level is 0"),
    (lambda d: {**d, "lr": {**d["lr"], "x_min": 1e12}}, "lr.x_min is 1000000000000.0, where a "
     "fit writes at most x_max"),
], ids=["a list", "another scale", "an infinite exponent", "an exponent of text", "a short cov",
        "a negative variance", "a law under another's name", "no lr law", "a level in percent",
        "a level of 0", "a reversed scale range"])
def test_a_laws_file_no_fit_writes_is_refused_naming_its_entry(fitted, tmp_path, edit, says):
    # Edited files loaded and gave priors (lr 1e+300; laws of tokens read at the parameter
    # count), or stopped the commands that read them with a traceback.
    path = tmp_path / "laws.json"
    fitted.save(path)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(ValueError, match=re.escape(says)):
        FittedLaws.load(path)


def test_warnings_about_the_studies_come_first_and_survive_the_file(fitted, tmp_path):
    said = "the studies are models of 2 sizes (2x64, 4x128, layers x width)"
    laws = replace(fitted, study_warnings=(said,))
    assert laws.warnings[0] == said
    path = tmp_path / "laws.json"
    laws.save(path)
    assert FittedLaws.load(path) == laws
    assert json.loads(path.read_text())["warnings"][0] == said
    # A file written before study warnings existed loads with none.
    data = json.loads(path.read_text())
    del data["study_warnings"]
    assert FittedLaws.from_json(data).study_warnings == ()


def test_missing_tau_and_batch_are_not_fitted():
    pts = [
        ScalePoint(scale=p.scale, scale_kind="tokens", lr=p.lr, tau=None, batch_size=None,
                   value=p.value)
        for p in synthetic_points()
    ]
    laws = fit_studies(pts, n_boot=50)
    # Studies that fixed tau or batch size contribute only to the lr law.
    assert laws.tau is None and laws.batch_size is None
    # Rule: each law left out is said, with where the priors take it from (`fit` passed over
    # them without a word).
    notes = missing_laws(laws)
    assert [n.split(":")[0] for n in notes] == ["tau law", "batch_size law", "warmup_frac law"]
    assert notes[0].endswith("priors from these laws take tau from the published laws")
    full = missing_laws(fit_studies(synthetic_points(), n_boot=50))  # warmup: none recorded
    assert [n.split(":")[0] for n in full] == ["warmup_frac law"]


def test_fit_rejects_unfittable_input():
    one_scale = [
        ScalePoint(scale=1e6, scale_kind="tokens", lr=1e-3, tau=None, batch_size=None, value=3.0)
    ] * 3
    # One distinct scale determines no exponent.
    with pytest.raises(ValueError, match="distinct scales"):
        fit_studies(one_scale)
    # Studies measured in different scale kinds cannot share a law.
    mixed = [one_scale[0], ScalePoint(2e6, "params", 1e-3, None, None, 3.0)]
    with pytest.raises(ValueError, match="scale_kind"):
        fit_studies(mixed)
    with pytest.raises(ValueError, match="scale_kind"):
        ScalePoint(1e6, "steps", 1e-3, None, None, 3.0)
    with pytest.raises(ValueError, match="lr=-0.001"):
        ScalePoint(1e6, "tokens", -1e-3, None, None, 3.0)
    # Called directly: an infinite weight gave an exponent of NaN without a warning, a scale of
    # NaN a ZeroDivisionError, and negative or infinite scales were taken.
    x, y = [1e6, 2e6, 4e6], [1e-3, 9e-4, 8e-4]
    with pytest.raises(ValueError, match="weights must be > 0 and finite"):
        fit_power_law(x, y, "lr", "peak LR", "tokens", weights=[1.0, math.inf, 1.0])
    for scale in (math.nan, math.inf, -4e6):
        with pytest.raises(ValueError, match="x must be positive and finite"):
            fit_carried([1e6, 2e6, scale], [0.1, 0.2, 0.3], "warmup_frac", "f", "tokens")


def test_exact_power_law_is_exact():
    x = [1e3, 1e4, 1e5]
    fit = fit_power_law(x, [2.0 * v**-0.5 for v in x], "lr", "peak LR", "tokens", n_boot=20)
    # Noise-free data: least squares in log space returns the law itself.
    assert fit.coef == pytest.approx(2.0) and fit.exponent == pytest.approx(-0.5)
    assert fit.rmse_log10 == pytest.approx(0.0, abs=1e-12)


def test_each_rungs_scale_is_the_studies_own():
    # Back from log10, a scale of 20,000 tokens read 20000.000000000004 in laws.json.
    x = [20_000, 40_000, 80_000, 160_000]
    fit = fit_power_law(x, [2.0 * v**-0.5 for v in x], "lr", "peak LR", "tokens", n_boot=20)
    assert [r.scale for r in fit.rungs] == x


def test_priors_for_uses_fitted_laws(fitted):
    model = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
    tokens = 2e6
    p = priors_for(model, tokens, unique_tokens=1.1e6, fitted=fitted)
    # lr and tau centers are the fitted laws at this budget; batch is converted to sequences.
    assert p.lr.center == pytest.approx(fitted.lr.predict(tokens).value)
    assert p.tau.center == pytest.approx(fitted.tau.predict(tokens).value)
    b_seqs = fitted.batch_size.predict(tokens).value / model.block_size
    assert p.batch_size.center == 2 ** round(math.log2(b_seqs))
    # Their provenance says so, and the budget lies inside the studies' scales.
    for prior in (p.lr, p.tau, p.batch_size):
        assert len(prior.sources) == 1
        assert prior.sources[0].citation.startswith("fitted from your studies:")
        assert not prior.extrapolated
        assert prior.low < prior.center < prior.high
    # The weight decay follows from the fitted tau at the fitted lr and batch.
    steps = tokens / (p.batch_size.center * model.block_size)
    assert p.weight_decay.center == pytest.approx(1 / (steps * p.lr.center * p.tau.center))


def test_params_scale_kind_uses_non_embedding_params():
    model = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
    pts = [
        ScalePoint(scale=n, scale_kind="params", lr=3e-3 * (n / 1e5) ** -0.5 * jitter, tau=None,
                   batch_size=None, value=3.0)
        for n in (5e4, 1e5, 2e5, 4e5) for jitter in (0.9, 1 / 0.9)
    ]
    laws = fit_studies(pts, n_boot=50)
    p = priors_for(model, 2e6, fitted=laws)
    # A 'params' law is evaluated at N = 12 * n_layer * n_embd^2 = 98,304.
    assert laws.warnings == ()
    assert p.lr.center == pytest.approx(3e-3 * (98_304 / 1e5) ** -0.5)
    # tau was not fitted, so it falls back to the published Power Lines law.
    assert p.tau.sources[0].law == "Power Lines tau_opt(TPP)"


def test_steep_law_from_nearby_scales_keeps_its_constant():
    # Two studies at nearly the same scale: exponent ~70, constant 10^-421, below any float.
    points = [ScalePoint(1e6, "tokens", 1e-3, None, None, 3.0),
              ScalePoint(1.01e6, "tokens", 2e-3, None, None, 3.0)]
    laws = fit_studies(points)
    assert laws.lr.log10_coef == pytest.approx(-420.96, abs=0.01)
    assert laws.lr.predict(1e6).value == pytest.approx(1e-3, rel=1e-6)  # its own data point
    far = laws.lr.predict(1e7)  # absurd far away, and flagged, but a number
    assert far.extrapolated and math.isfinite(far.value)
    model = ModelShape(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=256)
    assert math.isfinite(priors_for(model, 1e6, fitted=laws).lr.center)
    # Far out, the center is held at the edge of the sane bounds, and the table says so (the
    # center shown was the bound, with nothing to tell it from the blend the caption named).
    from rich.console import Console

    from scaletune.heuristics.priors import priors_table

    p = priors_for(model, 1e7, fitted=laws)
    assert p.lr.clipped_from is not None and p.lr.clipped_from > 1e10 * p.lr.center
    console = Console(record=True, width=400)
    console.print(priors_table(p))
    said = " ".join(console.export_text().split())
    assert (f"lr: the laws put the center at {p.lr.clipped_from:.3g}, beyond a factor 2 inside "
            f"what scaletune takes as sane; it is held at {p.lr.center:.3g}") in said, said
    assert priors_for(model, 1e6, fitted=laws).lr.clipped_from is None


def test_a_batch_center_held_below_the_laws_is_captioned():
    # 300k tokens of 64-token sequences: a batch of 32 leaves a trial 146 steps, 64 only 73, so
    # the laws' 32.4 sequences are held at 16 (half of 32), and the table said nothing of it.
    from rich.console import Console

    from scaletune.heuristics.priors import priors_table

    model = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
    p = priors_for(model, 300_000)
    assert p.batch_size.center == 16 and p.batch_size.high == 32
    assert p.batch_size.clipped_from == pytest.approx(32.4, abs=0.1)
    console = Console(record=True, width=400)
    console.print(priors_table(p))
    said = " ".join(console.export_text().split())
    assert ("batch_size: the laws put the center at 32.4; it is held at 16, half of 32, the "
            "largest batch that leaves a trial 100 optimizer steps") in said, said
    # With ten times the tokens the largest batch is 256, and the laws' center is kept.
    assert priors_for(model, 3_000_000).batch_size.clipped_from is None
    # The range never ends below 4: at 10,000 tokens a trial trains 39 steps at batch 4, and the
    # caption said 4 left it 100.
    few = priors_for(model, 10_000)
    assert few.batch_size.center == 2 and few.batch_size.high == 4
    console = Console(record=True, width=400)
    console.print(priors_table(few))
    said = " ".join(console.export_text().split())
    assert ("it is held at 2, half of 4, the least top of a range (a trial trains 39 optimizer "
            "steps at it, fewer than the 100 the range keeps where it can)") in said, said


def version_1_file(tmp_path, coef_key="log10_coef"):
    """A laws.json as scaletune wrote it before format 2: bootstrap samples, one best trial per
    study (lr = 0.01 * tokens^-0.3 at three scales)."""
    boot_b = [-0.31, -0.29, -0.30, -0.32, -0.28]
    lr = {"target": "lr", "unit": "peak learning rate", "scale_kind": "tokens",
          coef_key: -2.0 if coef_key == "log10_coef" else 0.01, "exponent": -0.3, "n_points": 3,
          "x_min": 1e5, "x_max": 1e7, "rmse_log10": 0.0, "level": 0.95,
          "boot_log10_coef": [-2.0 - 5 * (b + 0.3) for b in boot_b], "boot_exponent": boot_b}
    points = [{"scale": x, "scale_kind": "tokens", "lr": 0.01 * x**-0.3, "tau": None,
               "batch_size": None, "value": 3.0} for x in (1e5, 1e6, 1e7)]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format_version": 1, "scale_kind": "tokens", "lr": lr,
                                "tau": None, "batch_size": None, "points": points}))
    return path


@pytest.mark.parametrize("coef_key", ["log10_coef", "coef"])
def test_old_laws_files_still_load(tmp_path, coef_key):
    laws = FittedLaws.load(version_1_file(tmp_path, coef_key))
    # The law is the one written; its studies' best trials become the rungs.
    assert laws.lr.predict(1e6).value == pytest.approx(0.01 * 1e6**-0.3, rel=1e-9)
    assert laws.lr.n_rungs == 3 and [r.scale for r in laws.lr.rungs] == [1e5, 1e6, 1e7]
    # The samples' spread becomes the exponent's interval.
    low, high = laws.lr.exponent_interval
    assert low < -0.3 < high and high - low > 0.01


def test_an_unknown_format_is_a_clear_error(tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99: this scaletune reads 1 and 2"):
        FittedLaws.load(path)


def test_one_scale_error_counts_points_and_scales():
    same = [ScalePoint(1e6, "tokens", 1e-3 * k, None, None, 3.0) for k in (1, 2, 3)]
    with pytest.raises(ValueError, match=r"got 3 point\(s\) at 1 scale"):
        fit_studies(same)


def test_intervals_widen_with_noise():
    # Rule: the noisier the trials, the wider the exponent's interval and the prediction's.
    quiet = fit_studies(synthetic_points(noise_log10=0.02), n_boot=300)
    noisy = fit_studies(synthetic_points(noise_log10=0.2), n_boot=300)
    width = lambda f: f.lr.exponent_interval[1] - f.lr.exponent_interval[0]  # noqa: E731
    assert width(noisy) > 3 * width(quiet)
    far = 1e10
    assert (noisy.lr.predict(far).high / noisy.lr.predict(far).low
            > quiet.lr.predict(far).high / quiet.lr.predict(far).low)
    # A trustworthy fit (8 rungs, exponents of the published signs) warns of nothing.
    assert quiet.warnings == () and noisy.lr.warnings == ()


def test_two_rungs_warn_in_plain_words():
    pts = [p for p in synthetic_points(n=2)]
    laws = fit_studies(pts, n_boot=200)
    # Rule: two rungs always fit a line; every law says so and names the fix.
    for fit in laws.fits():
        assert fit.n_rungs == 2 and fit.weak
        assert any("fitted on 2 rungs" in w and "add a third rung" in w for w in fit.warnings)


def test_one_trial_per_rung_gives_a_zero_width_interval_and_says_so():
    # The case of the issue: two studies, their best trials only; lr rising with tokens.
    points = [ScalePoint(1e5, "tokens", 0.0047, None, None, 3.0),
              ScalePoint(4e5, "tokens", 0.0066, None, None, 2.8)]
    fit = fit_studies(points, n_boot=200).lr
    low, high = fit.exponent_interval
    assert high - low < 1e-6
    said = " ".join(fit.warnings)
    # Rule: each of the three problems is named: too few rungs, a degenerate interval, and an
    # exponent of the opposite sign to the horizon rule that `export` applies.
    assert "fitted on 2 rungs" in said
    assert "has zero width" in said and "(one near-best trial per rung)" in said
    assert "opposite sign to the horizon rule" in said and "+0.245" in said


def test_rungs_whose_near_best_trials_share_one_value_say_so_not_one_trial_per_rung():
    # A batch size searched over choices whose smallest wins on every rung: several near-best
    # trials per rung, one value among them, nothing for the bootstrap to vary.
    x = [1e5] * 3 + [2e5] * 3 + [4e5] * 3
    fit = fit_power_law(x, [512.0] * 9, "batch_size", "tokens per step", "tokens", n_boot=100)
    said = " ".join(fit.warnings)
    assert "has zero width" in said
    assert "(the near-best trials of each rung share one value)" in said
    assert "search more values (more choices, a wider range)" in said
    assert "one near-best trial per rung" not in said
    # A flat law has no sign: not "-0.000 has the opposite sign to Power Lines' (+0.383)".
    flat_law = fit_power_law(x, [512.0 * v**-1e-5 for v in x], "batch_size", "tokens per step",
                             "tokens", n_boot=100)
    assert not any("opposite sign" in w for w in flat_law.warnings), flat_law.warnings
    assert "tokens^0.000" in flat_law.describe() and "-0.000" not in flat_law.describe()


def test_a_law_of_the_published_sign_is_not_warned_about():
    x = [1e5, 1e6, 1e7]
    rising = fit_power_law(x * 2, [1e-3 * v**0.2 * (1.1 if k else 0.9) for k in (0, 1) for v in x],
                           "lr", "peak LR", "tokens", n_boot=100)
    falling = fit_power_law(x * 2, [1e-1 * v**-0.2 * (1.1 if k else 0.9) for k in (0, 1) for v in x],
                            "lr", "peak LR", "tokens", n_boot=100)
    assert any("opposite sign" in w for w in rising.warnings)
    assert not falling.warnings


def test_near_best_weights_fall_with_the_gap():
    w = near_best_weights([3.0, 3.03, 3.045, 3.2], near=0.03)
    # The best weighs 1; 1% above weighs 2/3, 1.5% above 1/2; 3% or more above is left out.
    assert w == pytest.approx([1.0, 2 / 3, 0.5, 0.0])


def test_a_weak_fit_widens_the_prior_toward_the_published_laws():
    model = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
    tokens = 3e5
    strong = fit_studies(synthetic_points(n=4), n_boot=200)
    weak = fit_studies(synthetic_points(n=2), n_boot=200)
    published = priors_for(model, tokens)
    from_strong = priors_for(model, tokens, fitted=strong)
    from_weak = priors_for(model, tokens, fitted=weak)
    # Rule: a fit that warns does not stand alone: the published laws' sources join its prior,
    # its center lies between the fit's prediction and the published center, and its spread is
    # at least that of the fit's own prediction interval.
    assert [s.law for s in from_strong.lr.sources] == ["fitted lr"]
    assert [s.law for s in from_weak.lr.sources][0] == "fitted lr"
    assert {s.law for s in published.lr.sources} <= {s.law for s in from_weak.lr.sources}
    fit_value = weak.lr.predict(tokens).value
    low, high = sorted((fit_value, published.lr.center))
    assert low < from_weak.lr.center < high
    z = 1.959964
    assert from_weak.lr.sigma >= math.log10(weak.lr.predict(tokens).high
                                            / weak.lr.predict(tokens).low) / (2 * z) - 1e-12
    # The priors record which laws they used and what the fit warned of.
    record = from_weak.to_json()["laws"]
    assert record["kind"] == "fitted" and len(record["fits"]) == 3
    assert any("fitted on 2 rungs" in w for w in record["warnings"])
    assert published.to_json()["laws"] == {"kind": "published", "fits": [], "warnings": []}
    # The table says why the center is neither the fit's nor the published laws' (only --json
    # said it).
    from rich.console import Console

    from scaletune.heuristics.priors import priors_table

    console = Console(record=True, width=300)
    console.print(priors_table(from_weak))
    said = " ".join(console.export_text().split())
    blended = next(src.note for src in from_weak.lr.sources if src.law == "fitted lr")
    assert (f"lr: the fit warns ({len(weak.lr.warnings)} warning(s)), so the prior blends it "
            f"half and half with the published laws' ") in said
    assert said.count(blended.partition("the fit warns")[2]) == 1
    console.print(priors_table(from_strong))  # a fit that does not warn is not blended
    assert "the fit warns" not in console.export_text()


def with_warmup(points, per_rung=(0.3, 0.2, 0.25, 0.15), rung_shift=None):
    """``points`` with a warmup fraction per trial: the k-th trial of a rung gets per_rung[k],
    plus the rung's shift (by rung order) where given."""
    scales = sorted({p.scale for p in points})
    out, seen = [], {}
    for p in points:
        k = seen.get(p.scale, 0)
        seen[p.scale] = k + 1
        shift = 0.0 if rung_shift is None else rung_shift[scales.index(p.scale)]
        out.append(ScalePoint(p.scale, p.scale_kind, p.lr, p.tau, p.batch_size, p.value,
                              weight=p.weight, warmup_frac=per_rung[k] + shift))
    return out


def test_warmup_is_carried_as_the_rungs_weighted_mean(tmp_path):
    points = with_warmup(synthetic_points(n=4))
    laws = fit_studies(points, n_boot=300)
    carried = laws.warmup_frac
    # Rule: the value is the weighted mean of every near-best trial, the same at every scale;
    # beyond the rungs it is extrapolated, and its interval holds the value.
    w = [p.weight for p in points]
    mean = sum(p.warmup_frac * x for p, x in zip(points, w, strict=True)) / sum(w)
    assert carried.value == pytest.approx(mean)
    near, far = carried.predict(1e6), carried.predict(1e10)
    assert near.value == far.value == pytest.approx(mean)
    assert not near.extrapolated and far.extrapolated
    assert far.low < mean < far.high
    # Rungs that agree (every rung the same trials) leave only the bootstrap's spread.
    assert carried.scatter == pytest.approx(0.0, abs=1e-12) and carried.se > 0
    assert carried.n_rungs == 4 and not carried.warnings
    # Rungs that disagree widen the interval of a study's optimum.
    apart = fit_studies(with_warmup(synthetic_points(n=4), rung_shift=(0.1, -0.1, 0.1, -0.1)),
                        n_boot=300).warmup_frac
    assert apart.value == pytest.approx(mean) and apart.sigma > 2 * carried.sigma
    # It is written and read back with the laws, and listed among them.
    path = tmp_path / "laws.json"
    laws.save(path, predict_at={"target": 1e9})
    data = json.loads(path.read_text())
    assert FittedLaws.load(path) == laws
    assert data["laws"][-1].startswith(f"warmup_frac = {mean:.3g} at every scale")
    assert data["predictions"]["target"]["warmup_frac"]["value"] == pytest.approx(mean)
    # A laws file written before warmup was carried loads without it.
    del data["warmup_frac"]
    path.write_text(json.dumps(data))
    assert FittedLaws.load(path).warmup_frac is None


def test_the_carried_warmup_becomes_the_prior():
    model = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
    tokens = 4e8
    published = priors_for(model, tokens).warmup_frac
    strong = fit_studies(with_warmup(synthetic_points(n=4)), n_boot=200)
    weak = fit_studies(with_warmup(synthetic_points(n=2)), n_boot=200)
    from_strong = priors_for(model, tokens, fitted=strong).warmup_frac
    from_weak = priors_for(model, tokens, fitted=weak).warmup_frac
    # Rule: three rungs or more: the prior is the rungs' value, its one source the fit.
    assert from_strong.center == pytest.approx(strong.warmup_frac.value)
    assert [s.law for s in from_strong.sources] == ["fitted warmup_frac"]
    assert from_strong.sources[0].citation.startswith("fitted from your studies: warmup_frac")
    assert from_strong.center != pytest.approx(published.center, abs=0.01)
    # Two rungs warn; the prior lies halfway to the published rules and keeps their sources.
    assert any("carried from 2 rungs" in w for w in weak.warnings)
    rules = [s.value for s in from_weak.sources[1:]]  # the published rules at this batch
    assert from_weak.center == pytest.approx((weak.warmup_frac.value + sum(rules) / 3) / 2)
    assert {s.law for s in published.sources} < {s.law for s in from_weak.sources}
    assert from_weak.sigma >= max(published.sigma, weak.warmup_frac.sigma)


def test_identical_warmups_say_nothing_was_measured():
    carried = fit_carried([1e5, 1e5, 2e5, 4e5], [0.1] * 4, "warmup_frac", "fraction of steps",
                          "tokens", n_boot=50)
    assert carried.value == pytest.approx(0.1)
    assert any("nothing measured how much it matters" in w for w in carried.warnings)


def test_a_carried_warmup_s_interval_stays_a_fraction():
    # Rungs whose near-best warmups disagree: the interval reached 1.13, a warmup past the run.
    carried = fit_carried([1e6, 1e6, 2e6, 2e6, 4e6, 4e6], [0.15, 0.3, 0.7, 0.8, 0.5, 0.85],
                          "warmup_frac", "fraction of steps", "tokens",
                          weights=[1.0, 0.5] * 3, n_boot=200)
    pred = carried.predict(8e6)
    assert carried.value + 1.96 * carried.sigma > 1  # the interval as it was computed
    assert 0.0 <= pred.low <= pred.value <= pred.high == 1.0


def test_a_zero_width_exponent_is_written_without_a_minus_zero():
    # Every near-best trial at one batch: the bootstrap's interval is +-1e-29, and the warning
    # wrote it [-0.000, 0.000] where the law's own line says [0.000, 0.000].
    fit = fit_power_law([40_960, 40_960, 81_920, 81_920, 163_840, 163_840], [512.0] * 6,
                        "batch_size", "tokens per step", "tokens", weights=[1, 0.6, 1, 0.7, 1, 0.8])
    zero = next(w for w in fit.warnings if "zero width" in w)
    assert "exponent [0.000, 0.000]" in zero and "-0.000" not in " ".join(fit.warnings)


def test_a_prior_on_the_exponent_draws_a_noisy_fit_toward_it(tmp_path):
    prior = (SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD)
    noisy_points = synthetic_points(noise_log10=0.3, n=3, seed=3)
    alone = fit_studies(noisy_points, n_boot=300).lr
    drawn = fit_studies(noisy_points, n_boot=300, lr_exponent_prior=prior).lr
    se = math.sqrt(alone.cov[2])
    assert se > EXPONENT_PRIOR_SD  # the rungs alone know the exponent less well than the prior
    # Rule: the exponent lies between the rungs' own and the prior's mean, weighted by their
    # precisions, and the rungs' own is kept beside it.
    w = (1 / se**2) / (1 / se**2 + 1 / EXPONENT_PRIOR_SD**2)
    assert drawn.exponent == pytest.approx(w * alone.exponent + (1 - w) * prior[0])
    assert drawn.exponent_fitted == alone.exponent and drawn.data_exponent == alone.exponent
    # The line turns about the rungs' center: the lr it gives there is the fit's own.
    lx = np.log10([p.scale for p in noisy_points])
    center = 10 ** float(np.average(lx, weights=[p.weight for p in noisy_points]))
    assert drawn.predict(center).value == pytest.approx(alone.predict(center).value)
    # The prior moves the line, not its uncertainty: the interval is as wide as the rungs make
    # it (the suite's moved laws still missed by up to 0.42 dex), about the moved line.
    width = lambda f: f.exponent_interval[1] - f.exponent_interval[0]  # noqa: E731
    assert width(drawn) == pytest.approx(width(alone))
    # The rungs scatter more about a line turned away from them, and the prediction says so.
    far = 1e9
    assert drawn.scatter_log10 >= alone.scatter_log10
    assert (drawn.predict(far).high / drawn.predict(far).low
            >= alone.predict(far).high / alone.predict(far).low)
    assert drawn.predict(far).low < drawn.predict(far).value < drawn.predict(far).high
    # The law says so, and keeps it through its file.
    assert f"the rungs alone {alone.exponent:+.3f}, drawn toward the prior -0.12 +- 0.10" in (
        drawn.describe())
    path = tmp_path / "laws.json"
    laws = fit_studies(noisy_points, n_boot=300, lr_exponent_prior=prior)
    laws.save(path)
    assert FittedLaws.load(path) == laws


def test_a_precise_fit_keeps_most_of_its_own_exponent():
    points = synthetic_points(noise_log10=0.02)  # 8 rungs over 3 decades: b = -0.25 pinned down
    drawn = fit_studies(points, n_boot=300,
                        lr_exponent_prior=(SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD)).lr
    assert drawn.exponent == pytest.approx(LR_TRUE[1], abs=0.01)


def test_a_fit_whose_interval_is_not_degenerate_keeps_its_own_precision_under_a_prior():
    # A standard error under 1e-3 counted as "nothing varied" (the prior's precision) where the
    # warning calls an interval degenerate only below 1e-3 wide: an unwarned fit of -0.30 was
    # drawn to -0.21.
    points = synthetic_points(noise_log10=0.001, n=3)
    alone = fit_studies(points, n_boot=300).lr
    low, high = alone.exponent_interval
    assert high - low > DEGENERATE_WIDTH and not alone.warnings
    drawn = fit_studies(points, n_boot=300,
                        lr_exponent_prior=(SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD)).lr
    assert drawn.exponent == pytest.approx(alone.exponent, abs=1e-3)


def test_the_warnings_are_the_rungs_own_under_a_prior():
    # The case of the issue (two studies, their best trials only, lr rising with tokens): a prior
    # moves the exponent, and the warnings still say what the rungs alone show.
    points = [ScalePoint(1e5, "tokens", 0.0047, None, None, 3.0),
              ScalePoint(4e5, "tokens", 0.0066, None, None, 2.8)]
    fit = fit_studies(points, n_boot=200,
                      lr_exponent_prior=(SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD)).lr
    said = " ".join(fit.warnings)
    assert "fitted on 2 rungs" in said and "has zero width" in said
    assert "the fitted exponent +0.245 has the opposite sign" in said
    # Nothing measured the exponent: the prior and the rungs count alike.
    assert fit.exponent == pytest.approx((0.245 + SHORT_RUN_LR_EXPONENT) / 2, abs=1e-3)


def test_the_short_run_regime_is_where_every_lr_law_is_extrapolated_below_its_range():
    tiny = published_laws.non_embedding_params(2, 64)
    compute = published_laws.deepseek_compute_flops(2, 64, 64, 3e5)
    assert published_laws.lr_laws_below(tiny, 3e5, compute)
    big = published_laws.non_embedding_params(24, 1024)  # 3e8, inside Step Law's N
    tokens = 2e10
    compute = published_laws.deepseek_compute_flops(24, 1024, 2048, tokens)
    assert not published_laws.lr_laws_below(big, tokens, compute)
    # Above every range (7B on 2T tokens) is no short run, though every law is extrapolated.
    huge = published_laws.non_embedding_params(32, 4096)
    compute = published_laws.deepseek_compute_flops(32, 4096, 4096, 2e12)
    assert not published_laws.lr_laws_below(huge, 2e12, compute)
