"""Priors for tiny CPU models and for GPT-2 small: finite, ordered, bounded, with provenance."""

import json
import math
import re

import pytest
from rich.console import Console

from scaletune.heuristics import laws
from scaletune.heuristics.priors import (
    DROPOUT_BOUNDS,
    LR_BOUNDS,
    MIN_STEPS,
    SHORT_RUN_LR_SHIFT_LOG10,
    SHORT_RUN_TAU_SHIFT_LOG10,
    SHORT_RUN_TAU_SIGMA,
    TAU_BOUNDS,
    WARMUP_BOUNDS,
    WEIGHT_DECAY_BOUNDS,
    ModelShape,
    Prior,
    Priors,
    print_priors,
    priors_for,
    priors_table,
)

TINY = ModelShape(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=256)
SMALL = ModelShape(n_layer=6, n_head=8, n_embd=256, block_size=256, vocab_size=256)
GPT2 = ModelShape(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304)

CASES = {
    "tiny": (TINY, 2e6, 1.1e6),
    "small_bytes": (SMALL, 20e6, 1.1e6),
    "small_bytes_short": (SMALL, 0.5e6, 1.1e6),
    "gpt2_10B": (GPT2, 10e9, None),
}
BOUNDS = {
    "lr": LR_BOUNDS,
    "weight_decay": WEIGHT_DECAY_BOUNDS,
    "tau": TAU_BOUNDS,
    "dropout": DROPOUT_BOUNDS,
    "warmup_frac": WARMUP_BOUNDS,
}


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    model, tokens, unique = CASES[request.param]
    return model, tokens, unique, priors_for(model, tokens, unique_tokens=unique)


def test_every_prior_is_finite_ordered_and_bounded(case):
    model, tokens, unique, priors = case
    for name, p in priors.as_dict().items():
        # Every number of a prior is finite.
        assert all(math.isfinite(v) for v in (p.center, p.low, p.high, p.sigma)), name
        # The center lies strictly inside the range; the one exception is dropout 0 for a
        # single-epoch run, which sits on its physical bound.
        if name == "dropout" and (unique is None or tokens <= unique):
            assert p.low == p.center == 0.0 < p.high
        else:
            assert p.low < p.center < p.high, name
        # The range stays inside the documented sane bounds.
        if name in BOUNDS:
            lo, hi = BOUNDS[name]
            assert lo <= p.low and p.high <= hi, name
        # A log prior has a positive low; every prior names its sources.
        assert not p.log or p.low > 0, name
        assert p.sources, name


def test_batch_size_is_powers_of_two_in_sequences(case):
    model, tokens, _, priors = case
    b = priors.batch_size
    # The batch prior is an integer prior in sequences of block_size, all powers of two, >= 1.
    assert b.integer and b.log and b.unit == f"seqs of {model.block_size} tokens"
    for v in (b.low, b.center, b.high):
        assert v >= 1 and math.log2(v) == int(math.log2(v))


def test_tiny_model_is_flagged_extrapolated():
    priors = priors_for(TINY, 2e6, unique_tokens=1.1e6)
    # Every published law was fitted far above a 98K-parameter model: lr, batch and tau say so.
    assert priors.lr.extrapolated and priors.batch_size.extrapolated and priors.tau.extrapolated
    assert priors.weight_decay.extrapolated


def test_gpt2_small_inside_deepseek_outside_steplaw():
    priors = priors_for(GPT2, 10e9)
    srcs = {s.law: s for s in priors.lr.sources}
    # GPT-2 small on 10B tokens: C = M*D = 6.2e18 is inside DeepSeek's 1e17..2e19 ...
    assert not srcs["DeepSeek eta_opt(C)"].extrapolated
    # ... but N = 85M non-embedding is below Step Law's 2.1e8: its B_opt is carried there too,
    # D (1e10) inside its fit or not (it was flagged by D alone), and the batch prior's spread is
    # the floor of an extrapolated law's.
    assert srcs["Step Law eta_opt(N, D)"].extrapolated
    batch = {s.law: s for s in priors.batch_size.sources}
    assert batch["Step Law B_opt(D)"].extrapolated and "N 2.1e8-1.07e9" in batch["Step Law B_opt(D)"].note
    inside = ModelShape(n_layer=24, n_head=16, n_embd=1440, block_size=1024, vocab_size=50304)
    assert not {s.law: s for s in priors_for(inside, 3e10).batch_size.sources}[
        "Step Law B_opt(D)"].extrapolated


def test_lr_center_is_geometric_mean_and_range_covers_the_laws():
    priors = priors_for(GPT2, 10e9)
    values = [s.value for s in priors.lr.sources]
    # The lr center is the geometric mean of DeepSeek and Step Law ...
    assert priors.lr.center == pytest.approx(math.sqrt(values[0] * values[1]))
    # ... and the range covers both laws.
    assert all(priors.lr.low <= v <= priors.lr.high for v in values)


@pytest.mark.parametrize("name", list(CASES))
def test_batch_range_covers_the_laws_within_the_step_floor(name):
    model, tokens, unique = CASES[name]
    b = priors_for(model, tokens, unique).batch_size
    # Every law's batch (in sequences of block_size) is inside the range unless it would leave
    # fewer than MIN_STEPS optimizer steps.
    for s in b.sources:
        if laws.steps_from_tokens(tokens, s.value, model.block_size) >= MIN_STEPS:
            assert b.low <= s.value <= b.high, s.law


def test_short_runs_far_below_the_laws_get_the_suite_corrections():
    # A 2-layer byte model on 2M tokens: both lr laws and Power Lines are extrapolated.
    assert SHORT_RUN_LR_SHIFT_LOG10 < 0 < SHORT_RUN_TAU_SHIFT_LOG10  # what the suite found
    model, tokens, unique = CASES["tiny"]
    p = priors_for(model, tokens, unique)
    lr_laws = [s for s in p.lr.sources if s.law != "short-run correction"]
    assert all(s.extrapolated for s in lr_laws)
    geomean = math.sqrt(lr_laws[0].value * lr_laws[1].value)
    assert p.lr.center == pytest.approx(geomean * 10**SHORT_RUN_LR_SHIFT_LOG10)
    # The correction is a named source, and the range still covers the laws as published.
    (corr,) = [s for s in p.lr.sources if s.law == "short-run correction"]
    assert "leave-one-task-out" in corr.citation
    assert all(p.lr.low <= s.value <= p.lr.high for s in lr_laws)
    tpp = tokens / model.non_embedding_params
    assert p.tau.center == pytest.approx(
        laws.powerlines_tau_opt(tpp) * 10**SHORT_RUN_TAU_SHIFT_LOG10)
    assert p.tau.sigma == SHORT_RUN_TAU_SIGMA
    assert p.tau.low <= laws.powerlines_tau_opt(tpp)  # the law as published stays in range


def test_a_study_inside_the_laws_ranges_gets_the_laws_as_published():
    p = priors_for(GPT2, 10e9)
    # DeepSeek is inside its range here, so lr is not corrected; GPT-2 small lies inside Power
    # Lines' 111M-3.3B, so tau is not either.
    assert all(s.law != "short-run correction" for s in p.lr.sources + p.tau.sources)
    tpp = 10e9 / GPT2.non_embedding_params
    assert p.tau.center == pytest.approx(laws.powerlines_tau_opt(tpp))


def test_a_run_beyond_the_laws_ranges_gets_the_laws_as_published_not_the_short_run_ones():
    # A 7B model on 2T tokens lies above every law's range; the corrections for runs far below
    # them applied all the same (lr halved, tau x63: weight decay 0.0025 where Power Lines
    # gives 0.16).
    big = ModelShape(n_layer=32, n_head=32, n_embd=4096, block_size=4096, vocab_size=50304)
    p = priors_for(big, 2e12)
    assert all(s.extrapolated for s in p.lr.sources)  # flagged: both laws are carried there
    assert all(s.law != "short-run correction" for s in p.lr.sources + p.tau.sources)
    assert p.lr.center == pytest.approx(math.sqrt(p.lr.sources[0].value * p.lr.sources[1].value))
    tpp = 2e12 / big.non_embedding_params
    assert p.tau.center == pytest.approx(laws.powerlines_tau_opt(tpp))
    assert p.tau.sigma < SHORT_RUN_TAU_SIGMA


def test_weight_decay_center_comes_from_tau():
    model, tokens, unique = CASES["tiny"]
    p = priors_for(model, tokens, unique)
    # lambda center = B/(eta*tau*D) at the centers of tau, lr and batch (B and D in tokens).
    expected = laws.lambda_from_tau(
        p.tau.center, p.batch_size.center * model.block_size, p.lr.center, tokens
    )
    assert p.weight_decay.center == pytest.approx(expected)
    # tau's center is Power Lines tau_opt at the non-embedding TPP, corrected for short runs.
    tpp = tokens / model.non_embedding_params
    assert p.tau.center == pytest.approx(
        laws.powerlines_tau_opt(tpp) * 10**SHORT_RUN_TAU_SHIFT_LOG10)
    # The weight-decay range always includes the common 0.1.
    assert p.weight_decay.low <= 0.1 <= p.weight_decay.high


def test_warmup_blends_ma_yarats_with_practice():
    model, tokens, unique = CASES["tiny"]
    p = priors_for(model, tokens, unique, beta2=0.95)
    steps = laws.steps_from_tokens(tokens, p.batch_size.center, model.block_size)
    srcs = {s.law: s.value for s in p.warmup_frac.sources}
    # Ma & Yarats' 40 steps as a fraction of the run at the center batch is one source ...
    assert srcs["Ma & Yarats 2/(1-beta2)"] == pytest.approx(40 / steps)
    # ... the seeds' 10% practice another; the center lies between the smallest and largest.
    assert min(srcs.values()) <= p.warmup_frac.center <= max(srcs.values())
    # A longer-memory beta2 asks for a longer warmup.
    assert priors_for(model, tokens, unique, beta2=0.99).warmup_frac.center > p.warmup_frac.center


def test_a_warmup_source_capped_at_the_bound_says_so():
    # The quickstart's shape at 100k tokens: Porian's ~N tokens of warmup is 98% of the run.
    p = priors_for(TINY, 1e5, unique_tokens=1e6)
    porian = next(s for s in p.warmup_frac.sources if s.law == "Porian warmup ~ N tokens")
    # The table showed 0.5 with no word of the law's own 0.983.
    assert porian.value == 0.5
    assert porian.note.endswith("; 0.983 capped at 0.5"), porian.note


def test_dropout_grows_with_epochs():
    # No repetition -> dropout 0; more epochs over the same data -> more dropout.
    one = priors_for(SMALL, 1e6, unique_tokens=1e6).dropout.center
    few = priors_for(SMALL, 4e6, unique_tokens=1e6).dropout.center
    many = priors_for(SMALL, 40e6, unique_tokens=1e6).dropout.center
    assert one == 0.0 < few < many <= 0.2


def test_priors_json_roundtrip():
    model, tokens, unique = CASES["tiny"]
    data = json.loads(json.dumps(priors_for(model, tokens, unique).to_json(), allow_nan=False))
    # The JSON record holds all five hyperparameters (weight decay twice: lambda and tau) ...
    assert set(data) >= {"lr", "weight_decay", "tau", "dropout", "warmup_frac", "batch_size"}
    # ... with their sources and the quantities the laws were evaluated at.
    assert data["lr"]["sources"][0]["citation"].startswith("DeepSeek LLM")
    assert data["lr"]["extrapolated"] is True
    assert data["context"]["non_embedding_params"] == 98304


def test_renderers():
    priors = priors_for(TINY, 2e6, unique_tokens=1.1e6)
    console = Console(record=True, width=200)
    console.print(priors_table(priors))
    text = console.export_text()
    # The table has one row per hyperparameter and marks extrapolated laws.
    for name in priors.as_dict():
        assert name in text
    assert "DeepSeek eta_opt(C)*" in text


def test_a_spread_too_wide_to_print_is_shown_as_a_power_of_ten():
    # A wild laws file's spread, 10^100, was printed with its 100 digits (10^400: OverflowError).
    from dataclasses import replace

    priors = priors_for(TINY, 2e6, unique_tokens=1.1e6)
    console = Console(record=True, width=300)
    for sigma, shown in ((100.4, "x/ 1e100"), (400.0, "x/ 1e400"), (0.5, "x/ 3.16")):
        console.print(priors_table(replace(priors, lr=replace(priors.lr, sigma=sigma))))
        assert shown in console.export_text()


def test_print_priors_json(capsys):
    print_priors(priors_for(TINY, 2e6, 1.1e6), json_output=True)
    # --json prints plain JSON on stdout.
    assert json.loads(capsys.readouterr().out)["batch_size"]["integer"] is True


def test_prior_validation_quotes_the_value():
    # A prior whose center is outside its range is an error that names the values.
    with pytest.raises(ValueError, match="center=5"):
        Prior("lr", center=5, low=1, high=2, log=True, sigma=0.2)
    with pytest.raises(ValueError, match="n_head must divide n_embd"):
        ModelShape(n_layer=2, n_head=3, n_embd=64, block_size=64, vocab_size=256)
    with pytest.raises(ValueError, match="tokens=0"):
        priors_for(TINY, 0)
    # As a study file writes it: a TypeError of the first comparison, which named neither.
    for text in ("2.5B", "2.5e9", None):  # None: "'>' not supported between ..."
        with pytest.raises(ValueError, match=re.escape(
                "tokens must be a number of tokens (2.5e9, not the text '2.5e9' or '2.5B' a "
                f"study file may hold), got {text!r}")):
            priors_for(TINY, text)
    # What a notebook passes first: a laws file's path, a dict of the model (each "'str'
    # object has no attribute 'scale_of'" and the like), and the same to the functions around.
    from scaletune.heuristics import fit_studies, print_priors

    with pytest.raises(TypeError, match=r"fitted takes fitted laws, not a str: FittedLaws.load"):
        priors_for(TINY, 2e6, fitted="laws.json")
    with pytest.raises(TypeError, match=r"priors_for takes a ModelShape, not a dict: ModelShape"):
        priors_for({"n_layer": 2}, 2e6)
    with pytest.raises(TypeError, match="print_priors takes the Priors that priors_for returns, "
                                        "not a dict"):
        print_priors({})
    with pytest.raises(TypeError, match=r"fit_studies takes ScalePoints, not a dict \(of studies: "
                                        r"scaletune.search.fit_laws\)"):
        fit_studies([{}])


def test_as_dict_lists_the_six_priors():
    p = priors_for(TINY, 2e6, 1.1e6)
    assert isinstance(p, Priors)
    names = ["lr", "weight_decay", "tau", "dropout", "warmup_frac", "batch_size"]
    assert list(p.as_dict()) == names


def test_step_law_flags_tokens_per_parameter_outside_its_fit():
    # N = 5.97e8 and D = 4e9 are each inside Step Law's fit, but D/N = 6.7 is below its 19-466.
    model = ModelShape(n_layer=24, n_head=16, n_embd=1440, block_size=1024, vocab_size=50304)
    low = {s.law: s for s in priors_for(model, 4e9).lr.sources}["Step Law eta_opt(N, D)"]
    inside = {s.law: s for s in priors_for(model, 3e10).lr.sources}["Step Law eta_opt(N, D)"]
    assert low.extrapolated and "D/N 19-466" in low.note
    assert not inside.extrapolated  # D/N = 50


def test_lr_tau_and_warmup_are_taken_at_the_nearest_batch_the_study_trains():
    """A study that trains only batches above the laws' batch center (a ladder's short rung
    searching the target's choices) gets the lr of the smallest batch it trains: Adam's
    square-root rule, as each law's lr is carried to the center; tau, lambda and the warmup's
    steps follow that batch too. Batches that include the center change nothing."""
    model, tokens, unique = CASES["tiny"]
    free = priors_for(model, tokens, unique)
    center = free.batch_size.center
    assert priors_for(model, tokens, unique, trained_batches=(center / 2, center * 4)) == free
    above = priors_for(model, tokens, unique, trained_batches=(center * 4, center * 32))
    assert above.batch_size == free.batch_size  # the batch prior itself is the laws'
    assert above.lr.center == pytest.approx(free.lr.center * 2)  # sqrt(4)
    assert dict(above.context)["batch_of_lr"] == center * 4
    assert above.weight_decay.center == pytest.approx(laws.lambda_from_tau(
        above.tau.center, center * 4 * model.block_size, above.lr.center, tokens))
    assert dict(above.context)["steps_at_center_batch"] == pytest.approx(
        laws.steps_from_tokens(tokens, center * 4, model.block_size))
    # A fixed batch below the center: the lr of that batch.
    below = priors_for(model, tokens, unique, trained_batches=(center / 4, center / 4))
    assert below.lr.center == pytest.approx(free.lr.center / 2)
    # The table says which batch the lr is of: its center beside the batch center read as the
    # lr of that batch, twice the lr of batch center / 4.
    console = Console(record=True, width=300)
    console.print(priors_table(below))
    text = " ".join(console.export_text().split())
    assert f"sources (lr: at batch {center / 4:g})" in text
    assert (f"lr, tau, weight_decay and warmup_frac are those of batch {center / 4:g}, the batch "
            f"size this study trains nearest the batch center ({center:g})") in text
    console.print(priors_table(free))
    assert "sources (lr: at the batch center)" in console.export_text()


def test_weight_decay_is_taken_at_the_lr_a_study_fixes():
    """lambda = B/(eta*tau*D) with the eta every trial trains: at the lr prior's center, the
    weight decay prior of a study that fixed lr at 0.001 was 8 times below what its first trial
    trained (the center tau at lr 0.001). The lr prior itself stays the laws'."""
    model, tokens, unique = CASES["tiny"]
    free = priors_for(model, tokens, unique)
    fixed = priors_for(model, tokens, unique, trained_lr=free.lr.center / 8)
    assert fixed.lr == free.lr
    batch_tokens = dict(free.context)["batch_of_lr"] * model.block_size
    assert fixed.weight_decay.center == pytest.approx(laws.lambda_from_tau(
        fixed.tau.center, batch_tokens, free.lr.center / 8, tokens))
    assert fixed.weight_decay.center == pytest.approx(free.weight_decay.center * 8)
    # The lr adds nothing to the spread: it is not drawn.
    assert fixed.weight_decay.sigma < free.weight_decay.sigma
    console = Console(record=True, width=300)
    console.print(priors_table(fixed))
    text = " ".join(console.export_text().split())
    assert f"weight_decay is that of lr {free.lr.center / 8:.3g}, the lr this study fixes" in text
    assert "(fixed by the study)" not in text  # the sources' notes are for --json
    assert "(fixed by the study)" in {s.law: s for s in fixed.weight_decay.sources}[
        "lambda = B/(eta*tau*D)"].note


def test_the_table_on_a_narrow_terminal_that_is_not_utf8_keeps_every_value():
    # At 80 columns rich cut cells with "…" (a range read "[0.0023…", a source lost its "*"),
    # and a terminal whose encoding is not UTF-8 could not print it: UnicodeEncodeError.
    import io

    from rich.console import Console

    from scaletune.heuristics.priors import priors_table

    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    Console(file=out, force_terminal=True, width=80, color_system=None).print(
        priors_table(priors_for(TINY, 2e6, unique_tokens=1.1e6)))
    out.flush()
    text = raw.getvalue().decode("ascii")
    assert "..." not in text and "eta_opt(C)*" in "".join(text.split())
