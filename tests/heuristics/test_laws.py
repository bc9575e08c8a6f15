"""Every formula in heuristics.laws against a number published in its paper, the formula sheet's
worked example, or seed 001."""

import math

import pytest

from scaletune.heuristics import laws

# --- seed 001 (GPT-2 small on 3.26B tokens, the Power Lines formulas) ------------------------


def test_powerlines_batch_opt_seed001():
    # Seed 001: D = 3,260,252,160 tokens -> B_opt = 0.0306 * D^0.383 ~ 134.68 sequences.
    assert laws.powerlines_batch_opt_seqs2048(3_260_252_160) == pytest.approx(134.68, rel=1e-4)
    # The token form is the same law times the 2048-token sequences it is counted in.
    assert laws.powerlines_batch_opt_tokens(3_260_252_160) == pytest.approx(134.68 * 2048, rel=1e-4)


def test_powerlines_tau_opt_seed001():
    # Seed 001: TPP 20 -> tau_opt ~ 0.22352. The seed rounds 20^-0.527 to 0.2062 before
    # multiplying (exact: 0.223556), hence the 5e-4 tolerance.
    assert laws.powerlines_tau_opt(20) == pytest.approx(0.22352, rel=5e-4)


def test_lambda_from_tau_seed001():
    # Seed 001: tau 0.22352, B 96 seqs, D 3,183,840 seqs: lambda 0.33724 at eta 4e-4 and
    # 0.096355 at eta 1.4e-3.
    assert laws.lambda_from_tau(0.22352, 96, 4e-4, 3_183_840) == pytest.approx(0.33724, rel=1e-4)
    assert laws.lambda_from_tau(0.22352, 96, 1.4e-3, 3_183_840) == pytest.approx(0.096355, rel=1e-4)
    # B and D in tokens (x1024 each) give the same lambda: only B/D = 1/steps matters.
    in_tokens = laws.lambda_from_tau(0.22352, 96 * 1024, 4e-4, 3_260_252_160)
    assert in_tokens == pytest.approx(0.33724, rel=1e-4)


def test_tau_and_lambda_are_inverse():
    # tau_from_lambda and lambda_from_tau solve the same equation tau = B/(eta*lambda*D).
    lam = laws.lambda_from_tau(0.5, 64, 1e-3, 20_000)
    assert laws.tau_from_lambda(64, 1e-3, lam, 20_000) == pytest.approx(0.5, rel=1e-12)


# --- DeepSeek LLM (arXiv 2401.02954) -------------------------------------------------------


def test_deepseek_7b_row():
    # 7B: 30 layers, d_model 4096, context 4096, 2T tokens -> C = M*D = 8.46e22 (sheet).
    c = laws.deepseek_compute_flops(30, 4096, 4096, 2e12)
    assert c == pytest.approx(8.46e22, rel=1e-3)
    # Sheet: B_opt ~ 9.2M tokens and eta_opt ~ 4.25e-4 ...
    assert laws.deepseek_batch_opt_tokens(c) == pytest.approx(9.2e6, rel=0.01)
    assert laws.deepseek_lr_opt(c) == pytest.approx(4.25e-4, rel=0.01)
    # ... against the paper's table: 2304 sequences of 4096 (9.44M tokens) and 4.2e-4.
    assert laws.deepseek_batch_opt_tokens(c) == pytest.approx(2304 * 4096, rel=0.03)
    assert laws.deepseek_lr_opt(c) == pytest.approx(4.2e-4, rel=0.02)


def test_deepseek_67b_row():
    # The sheet gives no 67B row. From the paper's table: 95 layers, d_model 8192, context 4096,
    # 2T tokens, batch 4608 sequences, lr 3.2e-4. M = 72*95*8192^2 + 12*95*8192*4096 = 4.97e11
    # FLOPs/token, so C = 9.95e23 (about 1e24, not 3e23).
    c = laws.deepseek_compute_flops(95, 8192, 4096, 2e12)
    assert laws.deepseek_flops_per_token(95, 8192, 4096) == pytest.approx(4.9728e11, rel=1e-4)
    assert c == pytest.approx(9.95e23, rel=1e-3)
    # The laws land within 10% (batch) and 3% (lr) of what the paper trained with.
    assert laws.deepseek_batch_opt_tokens(c) == pytest.approx(4608 * 4096, rel=0.10)
    assert laws.deepseek_lr_opt(c) == pytest.approx(3.2e-4, rel=0.03)


# --- the formula sheet's worked example: 6L/8H/256d, block 256, vocab 50304, 20M tokens ------


N_EX, D_EX = laws.non_embedding_params(6, 256), 20e6


def test_worked_example_accounting():
    # N = 12 * 6 * 256^2 = 4,718,592 non-embedding parameters.
    assert N_EX == 4_718_592
    # 64 sequences of 256 tokens per step over 20M tokens -> 1,220.7 steps.
    assert laws.steps_from_tokens(D_EX, 64, 256) == pytest.approx(1220.7, abs=0.05)
    # TPP = 4.24 with non-embedding N.
    assert laws.tokens_per_param(D_EX, N_EX) == pytest.approx(4.24, abs=0.005)
    # Conventions section: with a 50k vocab the same model has 17.7M total parameters.
    assert laws.total_params(6, 256, 50304, 256) == pytest.approx(17.7e6, rel=0.005)


def test_worked_example_powerlines():
    tpp = laws.tokens_per_param(D_EX, N_EX)
    tau = laws.powerlines_tau_opt(tpp)
    # tau_opt = 0.506 at TPP 4.24.
    assert tau == pytest.approx(0.506, abs=5e-4)
    # lambda_opt = B/(eta*tau*D) = 1.62 at B = 64 seqs of 256 tokens, eta = 1e-3.
    assert laws.lambda_from_tau(tau, 64 * 256, 1e-3, D_EX) == pytest.approx(1.62, abs=0.005)
    # B_opt = 19.1 sequences of 2048 tokens ~ 39K tokens.
    assert laws.powerlines_batch_opt_seqs2048(D_EX) == pytest.approx(19.1, abs=0.05)
    assert laws.powerlines_batch_opt_tokens(D_EX) == pytest.approx(39e3, rel=0.01)


def test_worked_example_deepseek():
    c = laws.deepseek_compute_flops(6, 256, 256, D_EX)
    # C = M*D = 6.61e14 FLOPs -> B_opt ~ 20.6K tokens, eta_opt ~ 4.4e-3.
    assert c == pytest.approx(6.61e14, rel=1e-3)
    assert laws.deepseek_batch_opt_tokens(c) == pytest.approx(20.6e3, rel=0.005)
    assert laws.deepseek_lr_opt(c) == pytest.approx(4.4e-3, rel=0.01)


def test_worked_example_steplaw():
    # Step Law: eta_opt ~ 5.4e-3 and B_opt ~ 8.6K tokens.
    assert laws.steplaw_lr_opt(N_EX, D_EX) == pytest.approx(5.4e-3, rel=0.01)
    assert laws.steplaw_batch_opt_tokens(D_EX) == pytest.approx(8.6e3, rel=0.01)


def test_worked_example_warmup():
    # Ma & Yarats warmup at beta2 = 0.95 is 40 steps.
    assert laws.warmup_steps_ma_yarats(0.95) == pytest.approx(40)


# --- the other rules ------------------------------------------------------------------------


def test_ma_yarats_table():
    # Ma & Yarats: 2/(1-beta2): 0.95 -> 40, 0.99 -> 200, 0.999 -> 2000 steps.
    assert laws.warmup_steps_ma_yarats(0.95) == pytest.approx(40)
    assert laws.warmup_steps_ma_yarats(0.99) == pytest.approx(200)
    assert laws.warmup_steps_ma_yarats(0.999) == pytest.approx(2000)


def test_horizon_rule():
    # Bjorck et al.: eta ~ D^-0.32, so 4x the tokens -> 0.64x the LR.
    assert laws.lr_transfer_horizon(1e-3, 1e6, 4e6) == pytest.approx(0.64e-3, rel=0.005)
    # Transferring there and back is the identity.
    there = laws.lr_transfer_horizon(1e-3, 1e6, 4e6)
    assert laws.lr_transfer_horizon(there, 4e6, 1e6) == pytest.approx(1e-3, rel=1e-12)


def test_muennighoff_effective_tokens():
    u = 1.1e6
    # At one epoch nothing repeats: D' = U.
    assert laws.muennighoff_effective_tokens(u, u) == pytest.approx(u)
    # Less than one epoch: every token is new.
    assert laws.muennighoff_effective_tokens(0.5 * u, u) == pytest.approx(0.5 * u)
    # Up to ~4 epochs repeated data is nearly as good as new (D' > 90% of D) ...
    assert laws.muennighoff_effective_tokens(4 * u, u) > 0.9 * 4 * u
    # ... and D' never exceeds U * (1 + R*) however many epochs.
    assert laws.muennighoff_effective_tokens(100 * u, u) < u * (1 + laws.MUENNIGHOFF_R_STAR)


def test_chinchilla():
    # Chinchilla: D_opt ~ 20 tokens per (total) parameter.
    assert laws.chinchilla_tokens_opt(70e9) == pytest.approx(1.4e12)


def test_flops_6nd():
    # Kaplan: C = 6 N D.
    assert laws.flops_6nd(N_EX, D_EX) == pytest.approx(6 * 4_718_592 * 20e6)


def test_tau_epoch_matches_powerlines_tau_for_one_epoch():
    # Wang & Aitchison: tau_epoch = tau_iter / iterations per epoch; for a one-epoch run this is
    # Power Lines' tau = B/(eta*lambda*D) with D/B the steps of the run.
    steps = D_EX / (64 * 256)
    assert laws.tau_epoch(1e-3, 0.1, steps) == pytest.approx(
        laws.tau_from_lambda(64 * 256, 1e-3, 0.1, D_EX), rel=1e-12
    )
    assert laws.tau_iter(1e-3, 0.1) == pytest.approx(1e4)


def test_mup_width_rules():
    # muP: hidden LR ~ 1/fan_in; Wang & Aitchison: lambda ~ fan_in, so eta*lambda is unchanged.
    lr = laws.mup_hidden_lr(1e-2, 256, 1024)
    wd = laws.mup_weight_decay(0.1, 256, 1024)
    assert lr == pytest.approx(2.5e-3)
    assert lr * wd == pytest.approx(1e-2 * 0.1)


def test_sp_width_drift_goes_down():
    # Standard parameterization: the optimal LR drifts down as width grows; the default is the
    # muP hidden-matrix bound (1/width), a milder exponent drifts less.
    assert laws.sp_lr_width_drift(1e-3, 256, 512) == pytest.approx(5e-4)
    assert 5e-4 < laws.sp_lr_width_drift(1e-3, 256, 512, exponent=-0.5) < 1e-3


def test_total_params_conventions():
    # Untied head adds vocab*d; RoPE (no learned positions) removes block*d.
    tied = laws.total_params(2, 64, 256, 64)
    assert laws.total_params(2, 64, 256, 64, tie_weights=False) == tied + 256 * 64
    assert laws.total_params(2, 64, 256, 64, learned_positions=False) == tied - 64 * 64


def test_dropout_heuristic():
    # 0 for single-epoch runs (Liu et al. 2025), rising with epochs, ~0.1 at 7 epochs (seed 000),
    # approaching but never exceeding 0.2.
    assert laws.dropout_by_epochs(0.5) == 0.0
    assert laws.dropout_by_epochs(1.0) == 0.0
    values = [laws.dropout_by_epochs(e) for e in (1.5, 2, 4, 7, 16, 80)]
    assert values == sorted(values)
    assert laws.dropout_by_epochs(7) == pytest.approx(0.1, abs=0.01)
    assert 0.19 < laws.dropout_by_epochs(80) < 0.2


def test_bad_inputs_name_the_value():
    # Constructors validate arguments and quote the bad value.
    with pytest.raises(ValueError, match="tokens=0"):
        laws.powerlines_batch_opt_seqs2048(0)
    with pytest.raises(ValueError, match="beta2=1.0"):
        laws.warmup_steps_ma_yarats(1.0)
    with pytest.raises(ValueError, match="tpp=nan"):
        laws.powerlines_tau_opt(math.nan)


def test_outside():
    # A value is extrapolated exactly when it falls outside the fitted range.
    assert laws.outside(1e12, laws.DEEPSEEK_COMPUTE_RANGE_FLOPS)
    assert not laws.outside(1e18, laws.DEEPSEEK_COMPUTE_RANGE_FLOPS)
