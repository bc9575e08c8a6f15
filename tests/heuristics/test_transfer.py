"""heuristics.transfer: a tuned trial's hyperparameters carried to a longer run or a wider model.

Pure numbers, no study: each rule against its law's own formula (heuristics.laws, tested there
against the papers' numbers).
"""

from __future__ import annotations

from typing import Any

import pytest

from scaletune.heuristics.transfer import Hparams, pow2_round, transfer


def best_hparams(**overrides: Any) -> Hparams:
    """A best trial whose lambda realizes its tau: lambda = B/(eta*tau*D), B and D in tokens."""
    values = dict(lr=4e-3, tau=0.5, batch_size=16, warmup_frac=0.1, dropout=0.0,
                  tokens=1_000_000, block_size=32, n_embd=64, n_layer=2)
    values.update(overrides)
    if "weight_decay" not in values:
        values["weight_decay"] = values["batch_size"] * values["block_size"] / (
            values["lr"] * values["tau"] * values["tokens"]
        )
    return Hparams(**values)


def test_unchanged_horizon_and_model_is_an_exact_copy():
    best = best_hparams()
    moved = transfer(best, best.tokens)
    # Rule: nothing changes, no rule fires, and lambda is not recomputed through tau.
    assert moved.final == best and moved.exact_copy and moved.rules == ()


def test_doubling_tokens_with_tau_fixed_halves_lambda_at_fixed_lr_and_batch():
    best = best_hparams()
    moved = transfer(best, 2 * best.tokens, batch_size=best.batch_size)
    final = moved.final
    # Rule: tau is kept; the batch is held by the caller.
    assert final.tau == best.tau and final.batch_size == best.batch_size
    # Rule: lambda = B/(eta*tau*D): at a fixed lr, doubling D halves lambda; the lr rule also
    # shrinks eta by 2^-0.32, which raises lambda by the inverse factor.
    assert final.weight_decay * final.lr == pytest.approx(best.weight_decay * best.lr / 2)
    assert final.weight_decay == pytest.approx(best.weight_decay / 2 / 2**-0.32)
    # Rule: the timescale B/(eta*lambda*D) of the new run equals the best trial's tau.
    tokens_per_step = final.batch_size * final.block_size
    assert tokens_per_step / (final.lr * final.weight_decay * final.tokens) == pytest.approx(0.5)


def test_the_weight_decay_rule_names_what_power_lines_tau_law_would_give():
    # Export kept tau citing Power Lines, whose own tau law (which the priors use) shrinks tau
    # as TPP^-0.527: 20x the tokens at one model, tau x0.206, lambda x4.9 against the kept one.
    best = best_hparams()
    moved = transfer(best, 20 * best.tokens)
    [rule] = [r for r in moved.rules if r.value == "weight_decay"]
    assert moved.final.tau == best.tau and "Wang & Aitchison" in rule.source
    tau = best.tau * 20**-0.527
    block = moved.final.block_size
    lam = moved.final.batch_size * block / (moved.final.lr * tau * moved.final.tokens)
    assert (f"Power Lines' tau ~ TPP^-0.527 would give tau {tau:.4g}, lambda {lam:.4g}: the two "
            "published rules disagree") in rule.formula
    # Wider at the same tokens: TPP falls as the non-embedding parameters (12 l d^2) grow.
    [rule] = [r for r in transfer(best, best.tokens, n_embd=128).rules
              if r.value == "weight_decay"]
    assert f"would give tau {best.tau * 4**0.527:.4g}" in rule.formula


def test_each_rules_factor_is_the_change_it_made():
    best = best_hparams()
    moved = transfer(best, 4 * best.tokens)
    [batch] = [r for r in moved.rules if r.value == "batch_size"]
    # The batch rule gave the law's growth, 4^0.383 = 1.70, where the batch changed by a power of
    # two after rounding: a reader multiplying the factors through got the wrong batch.
    assert batch.factor == moved.final.batch_size / best.batch_size
    assert batch.factor in (1.0, 2.0, 4.0)
    [lr, with_batch] = [r for r in moved.rules if r.value == "lr"]
    # The batch grew; the lr is not moved with it, and the rule says what the square-root rule
    # would give (the priors apply it; the horizon rule was measured at a fixed batch).
    grown = batch.factor
    assert with_batch.factor is None and with_batch.formula.startswith(
        f"not moved with the batch (x{grown:.3g} tokens per step): Adam's square-root rule "
        f"would give eta x {grown**0.5:.3g} = {moved.final.lr * grown**0.5:.4g}")
    assert lr.factor == pytest.approx(moved.final.lr / best.lr)


def test_lambda_follows_a_forced_batch():
    best = best_hparams()
    moved = transfer(best, best.tokens, batch_size=4 * best.batch_size)
    # Rule: same horizon and lr, 4x the batch -> 4x lambda (tau fixed, Wang & Aitchison).
    assert moved.final.lr == best.lr
    assert moved.final.weight_decay == pytest.approx(4 * best.weight_decay)


def test_lr_shrinks_with_the_horizon():
    best = best_hparams()
    # Rule: eta_new = eta * (D_new/D_old)^-0.32 (Bjorck et al.): x2 tokens -> x2^-0.32,
    # x4 tokens -> x0.64 (the formula sheet's number).
    assert transfer(best, 2 * best.tokens).final.lr == pytest.approx(best.lr * 2**-0.32)
    assert transfer(best, 4 * best.tokens).final.lr == pytest.approx(best.lr * 0.6417, rel=1e-3)


def test_batch_grows_with_the_batch_size_law():
    best = best_hparams(batch_size=16)
    moved = transfer(best, 2 * best.tokens)
    # Rule: B_new = B * (D_new/D_old)^0.383 before rounding ...
    assert moved.batch_size_law == pytest.approx(16 * 2**0.383)
    # ... then the nearest power of two: 16 * 1.30 = 20.9 -> 16; x8 tokens: 35.5 -> 32.
    assert moved.final.batch_size == 16
    moved8 = transfer(best, 8 * best.tokens)
    assert moved8.batch_size_law == pytest.approx(16 * 8**0.383)
    assert moved8.final.batch_size == 32
    # Rule: the law is in tokens per step, so a longer context means fewer sequences.
    longer = transfer(best, 8 * best.tokens, block_size=4 * best.block_size)
    assert longer.batch_size_law == pytest.approx(16 * 8**0.383 / 4)
    assert longer.final.batch_size == 8


def test_a_batch_that_is_no_power_of_two_moves_by_powers_of_two():
    # A trial's batch of 12 became 16 for one token more (the law: 12.0003, rounded to a power
    # of two), and the lr was said not moved with it.
    best = best_hparams(batch_size=12)
    one_more = transfer(best, best.tokens + 1)
    assert one_more.final.batch_size == 12
    assert [r.factor for r in one_more.rules if r.value == "batch_size"] == [1.0]
    # Rule: the trial's batch times the power of two nearest the law's growth (x3.43 for 25x
    # the tokens: 41.2 -> 48), said so.
    longer = transfer(best, 25 * best.tokens)
    assert longer.final.batch_size == 48
    (rule,) = [r for r in longer.rules if r.value == "batch_size"]
    assert "rounded to the trial's 12 times a power of two" in rule.formula


def test_batch_is_capped_and_at_least_one():
    best = best_hparams(batch_size=16)
    # Rule: --max-batch-size caps the law's batch.
    assert transfer(best, 1000 * best.tokens).final.batch_size == 256
    assert transfer(best, 1000 * best.tokens, max_batch_size=64).final.batch_size == 64
    # Rule: a much shorter run never goes below one sequence.
    tiny = best_hparams(batch_size=1)
    assert transfer(tiny, best.tokens // 1000).final.batch_size == 1
    assert [pow2_round(x) for x in (0.3, 1.0, 2.9, 3.0, 5.5, 6.0)] == [1, 1, 4, 4, 4, 8]


def test_width_doubling_halves_lr_and_keeps_tau():
    best = best_hparams(n_embd=64)
    moved = transfer(best, best.tokens, n_embd=128)
    # Rule: under the standard parameterization eta * (width_old/width_new) (muP's rule, a
    # heuristic): 2x width -> lr / 2.
    assert moved.final.lr == pytest.approx(best.lr / 2)
    # Rule: the batch does not depend on width; tau is kept, so eta*lambda is unchanged.
    assert moved.final.batch_size == best.batch_size
    assert moved.final.lr * moved.final.weight_decay == pytest.approx(best.lr * best.weight_decay)
    assert any("heuristic" in r.source for r in moved.rules)


def test_zero_weight_decay_stays_zero():
    best = best_hparams(weight_decay=0.0, tau=None)
    # Rule: without weight decay there is no timescale to keep; lambda stays 0.
    assert transfer(best, 10 * best.tokens).final.weight_decay == 0.0


def test_bad_arguments_are_value_errors_that_quote_them():
    best = best_hparams()
    # Rule: a run of fewer than one token, or a cap below one sequence, is refused.
    with pytest.raises(ValueError, match=r"got tokens=0"):
        transfer(best, 0)
    with pytest.raises(ValueError, match=r"got max_batch_size=0"):
        transfer(best, best.tokens, max_batch_size=0)


def test_warmup_steps_are_counted_as_the_trainer_counts_them():
    optim = pytest.importorskip("scaletune.trainer.optim")  # torch: heuristics runs without it
    # Rule: the warmup steps an export records and quotes are the steps the trainer warms up
    # for, ties (x.5) included, for any fraction a study may give and any run length.
    fracs = [i / 200 for i in range(199)] + [0.125, 0.25, 0.375, 0.5, 1 / 3]
    for frac in fracs:
        for steps in [*range(1, 130), 255, 256, 1000, 2930, 10**6 + 1]:
            h = best_hparams(warmup_frac=frac, batch_size=1, block_size=1, tokens=steps)
            assert h.steps == steps
            assert h.warmup_steps == optim.warmup_steps(frac, steps), (frac, steps)
    final = transfer(best_hparams(), 2 * best_hparams().tokens).final
    assert final.record()["warmup_steps"] == optim.warmup_steps(final.warmup_frac, final.steps)
