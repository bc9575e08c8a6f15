"""Scaling-law formulas for GPT pretraining hyperparameters, as pure functions.

Every function states its units, the paper it comes from (arXiv id), the range the law was
fitted on, the counting convention it assumes, and how well the constant is verified:

    [V] checked in the paper or the authors' code
    [S] from a secondary source
    [?] not found in any retrieved text: usable, but unverified

Source of truth for all constants: the project's formula sheet (scaling-laws.md). Every law was
fitted on models and budgets far larger than a CPU test model, so callers treat outputs as
priors (a center and a spread), never as answers; ``heuristics.priors`` does that.

Vocabulary used in names and docstrings:

    N     non-embedding parameters, 12 * n_layer * n_embd^2 (Kaplan), unless a name says total
    D     training tokens
    TPP   tokens per parameter, D / N
    C     training compute in FLOPs (6ND, or DeepSeek's M * D)
    B     batch size: per optimizer step, in the unit the name says (tokens or sequences)
    eta   PEAK learning rate of a warmup + decay schedule
    lambda  PyTorch AdamW ``weight_decay`` (each step subtracts eta * lambda * theta)
"""

from __future__ import annotations

import math

# Fitted ranges of the published laws, used to flag extrapolation.
DEEPSEEK_COMPUTE_RANGE_FLOPS = (1e17, 2e19)
"""DeepSeek LLM fitted its batch and LR laws for C = M*D in 1e17..2e19 FLOPs (validated at 1e20)."""
STEPLAW_PARAMS_RANGE = (2.1e8, 1.07e9)
"""Step Law fitted range of N (non-embedding parameters)."""
STEPLAW_TOKENS_RANGE = (4e9, 1e11)
"""Step Law fitted range of D (tokens)."""
STEPLAW_TPP_RANGE = (19.0, 466.0)
"""Step Law fitted range of tokens per (non-embedding) parameter."""
POWERLINES_PARAMS_RANGE = (1.11e8, 3.3e9)
"""Power Lines model sizes (111M-3.3B, total parameters as in the Cerebras-GPT model names)."""
POWERLINES_SEQ_LEN = 2048
"""Context length of the Power Lines runs: their batch sizes are in sequences of 2048 tokens."""
MUENNIGHOFF_R_STAR = 15.39
"""Muennighoff et al.'s fitted decay constant R*_D for repeated epochs."""
HORIZON_LR_EXPONENT = -0.32
"""Bjorck et al.'s exponent of eta_opt in D at fixed N."""


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")


def outside(value: float, fitted_range: tuple[float, float]) -> bool:
    """True when ``value`` lies outside ``fitted_range`` (inclusive bounds): an extrapolation."""
    low, high = fitted_range
    return not (low <= value <= high)


def steplaw_outside(n: float, tokens: float) -> bool:
    """True when Step Law is evaluated outside the N, D and D/N it was fitted on."""
    return (outside(n, STEPLAW_PARAMS_RANGE) or outside(tokens, STEPLAW_TOKENS_RANGE)
            or outside(tokens / n, STEPLAW_TPP_RANGE))


def below(value: float, fitted_range: tuple[float, float]) -> bool:
    """True when ``value`` lies below ``fitted_range``: an extrapolation toward small runs."""
    return value < fitted_range[0]


def lr_laws_below(n: float, tokens: float, compute: float) -> bool:
    """True when every published lr law is evaluated below its fitted range: DeepSeek's eta(C)
    below its compute, Step Law's eta(N, D) below its N, D or D/N. The short runs that the
    suite-fitted corrections are for; a large run beyond the laws' ranges is not one."""
    return below(compute, DEEPSEEK_COMPUTE_RANGE_FLOPS) and (
        below(n, STEPLAW_PARAMS_RANGE) or below(tokens, STEPLAW_TOKENS_RANGE)
        or below(tokens / n, STEPLAW_TPP_RANGE))


# --- model and budget accounting ------------------------------------------------------------


def non_embedding_params(n_layer: int, n_embd: int) -> int:
    """Non-embedding parameters N = 12 * n_layer * n_embd^2 of a standard GPT block stack.

    Units: parameters. Paper: Kaplan et al. 2020 (arXiv 2001.08361) [V].
    Convention: counts the attention (4 d^2) and MLP (8 d^2, hidden 4d) matrices; excludes
    token and position embeddings, the output head, norms and biases. Step Law, Power Lines'
    TPP in this package, and Kaplan use this N; Chinchilla counts total parameters instead.
    """
    _positive(n_layer=n_layer, n_embd=n_embd)
    return 12 * n_layer * n_embd**2


def total_params(
    n_layer: int,
    n_embd: int,
    vocab_size: int,
    block_size: int,
    tie_weights: bool = True,
    learned_positions: bool = True,
) -> int:
    """Total parameters of a GPT: blocks + token embedding (+ positions) (+ untied head).

    Units: parameters. Convention (Chinchilla counts total parameters, arXiv 2203.15556 [V]):
    12*n_layer*n_embd^2 + vocab_size*n_embd, plus block_size*n_embd for learned absolute
    positions (0 for RoPE), plus vocab_size*n_embd when the output head is not tied to the
    token embedding. Norm gains and biases (< 0.1% here) are left out. Example from the sheet:
    6L/256d, vocab 50304, block 256, tied: 4.7M non-embedding vs 17.7M total.
    """
    _positive(vocab_size=vocab_size, block_size=block_size)
    n = non_embedding_params(n_layer, n_embd) + vocab_size * n_embd
    if learned_positions:
        n += block_size * n_embd
    if not tie_weights:
        n += vocab_size * n_embd
    return n


def tokens_per_param(tokens: float, params: float) -> float:
    """TPP = D / N (unitless).

    Say which N: non-embedding (Kaplan, Step Law, this package's default) or total (Chinchilla).
    """
    _positive(tokens=tokens, params=params)
    return tokens / params


def flops_6nd(params: float, tokens: float) -> float:
    """Training compute C = 6 * N * D in FLOPs (forward 2N + backward 4N per token).

    Paper: Kaplan et al. 2020 (arXiv 2001.08361) [V]; valid when n_embd >> block_size / 12
    (attention FLOPs ignored). Convention: N as passed (Kaplan: non-embedding).
    """
    _positive(params=params, tokens=tokens)
    return 6.0 * params * tokens


def deepseek_flops_per_token(n_layer: int, n_embd: int, seq_len: int) -> float:
    """DeepSeek's non-embedding FLOPs per token M = 72*n_layer*d^2 + 12*n_layer*d*seq_len.

    Units: FLOPs per training token (forward + backward). Paper: DeepSeek LLM, Bi et al. 2024
    (arXiv 2401.02954) [V]. Convention: includes attention's sequence-length cost, excludes
    the vocabulary (embedding and output head). seq_len is the training context length.
    """
    _positive(n_layer=n_layer, n_embd=n_embd, seq_len=seq_len)
    return 72.0 * n_layer * n_embd**2 + 12.0 * n_layer * n_embd * seq_len


def deepseek_compute_flops(n_layer: int, n_embd: int, seq_len: int, tokens: float) -> float:
    """DeepSeek training compute C = M * D in FLOPs (M from ``deepseek_flops_per_token``).

    Paper: arXiv 2401.02954 [V]. Example: 7B (30 layers, d 4096, seq 4096) on 2T tokens gives
    C = 8.46e22.
    """
    _positive(tokens=tokens)
    return deepseek_flops_per_token(n_layer, n_embd, seq_len) * tokens


def steps_from_tokens(tokens: float, batch_size_seqs: float, block_size: int) -> float:
    """Optimizer steps S = D / (B * block_size), as a float (the trainer rounds up).

    Units: tokens, sequences per step, tokens per sequence -> steps.
    """
    _positive(tokens=tokens, batch_size_seqs=batch_size_seqs, block_size=block_size)
    return tokens / (batch_size_seqs * block_size)


def batch_tokens_to_seqs(batch_tokens: float, block_size: int) -> float:
    """Convert a batch in tokens per step to sequences of ``block_size`` tokens (float)."""
    _positive(batch_tokens=batch_tokens, block_size=block_size)
    return batch_tokens / block_size


# --- Power Lines (Bergsma et al., Cerebras, 2025, arXiv 2505.13738) --------------------------


def tau_from_lambda(batch: float, lr: float, weight_decay: float, data: float) -> float:
    """AdamW timescale tau = B / (eta * lambda * D), unitless.

    Paper: Power Lines, arXiv 2505.13738 [V]. Units: B and D in the SAME unit (both tokens or
    both sequences), so that B/D = 1/steps; eta is the peak LR; lambda is PyTorch AdamW's
    weight_decay. Equivalently tau = tau_iter / steps with tau_iter = 1/(eta*lambda): the
    fraction of the run that the weights' exponential moving average spans.
    """
    _positive(batch=batch, lr=lr, weight_decay=weight_decay, data=data)
    return batch / (lr * weight_decay * data)


def lambda_from_tau(tau: float, batch: float, lr: float, data: float) -> float:
    """AdamW weight decay lambda = B / (eta * tau * D) that realizes timescale ``tau``.

    Paper: Power Lines, arXiv 2505.13738 [V]. Units: B and D in the same unit; returns PyTorch
    AdamW's weight_decay. Seed 001: tau 0.22352, B 96 seqs, D 3,183,840 seqs -> 0.33724 at
    eta 4e-4 and 0.096355 at eta 1.4e-3.
    """
    _positive(tau=tau, batch=batch, lr=lr, data=data)
    return batch / (lr * tau * data)


def powerlines_tau_opt(tpp: float) -> float:
    """Optimal AdamW timescale tau_opt = 1.084 * TPP^-0.527 (unitless).

    Paper: Power Lines, arXiv 2505.13738 [S]/[?]: the exponent is from secondary sources, the
    constant from seed 001 (TPP 20 -> 0.22352). Fitted range: 111M-3.3B parameter models,
    SlimPajama, context 2048, muP, AdamW, 10% warmup then linear decay to zero. Convention:
    TPP = D / N; the paper's N is ambiguous in the sheet. This package passes non-embedding N
    (Kaplan); total-parameter TPP is the alternative (lower TPP, larger tau for small models).
    """
    _positive(tpp=tpp)
    return 1.084 * tpp**POWER_LINES_TAU_EXPONENT


POWER_LINES_TAU_EXPONENT = -0.527
"""Power Lines' exponent of tau_opt in tokens per parameter (``powerlines_tau_opt``)."""


def powerlines_batch_opt_seqs2048(tokens: float) -> float:
    """Optimal batch B_opt = 0.0306 * D^0.383, in sequences of 2048 tokens (D in tokens).

    Paper: Power Lines, arXiv 2505.13738 [S]/[?]: exponent used by nanochat citing the paper,
    constant from seed 001 (D = 3,260,252,160 -> 134.68). Independent of N. The unit reading
    (D tokens in, 2048-token sequences out) is the one that gives sane numbers. Fitted range:
    111M-3.3B parameter models at context 2048.
    """
    _positive(tokens=tokens)
    return 0.0306 * tokens**0.383


def powerlines_batch_opt_tokens(tokens: float) -> float:
    """Power Lines B_opt in tokens per step: 2048 * 0.0306 * D^0.383 (see the seqs2048 form)."""
    return POWERLINES_SEQ_LEN * powerlines_batch_opt_seqs2048(tokens)


# --- DeepSeek LLM (Bi et al., 2024, arXiv 2401.02954) ----------------------------------------


def deepseek_batch_opt_tokens(compute_flops: float) -> float:
    """Optimal batch B_opt = 0.2920 * C^0.3271, in TOKENS per step (C = M*D in FLOPs).

    Paper: DeepSeek LLM, arXiv 2401.02954 [V]. Fitted for C in 1e17..2e19 FLOPs, validated at
    1e20; AdamW (0.9, 0.95), wd 0.1, clip 1.0, 2000 warmup steps, multi-step decay to 10%.
    Convention: C from ``deepseek_compute_flops`` (non-embedding FLOPs/token M times D).
    Check: 7B, C = 8.46e22 -> 9.2M tokens (the paper trains with 9.44M).
    """
    _positive(compute_flops=compute_flops)
    return 0.2920 * compute_flops**0.3271


def deepseek_lr_opt(compute_flops: float) -> float:
    """Optimal peak LR eta_opt = 0.3118 * C^-0.1250 (C = M*D in FLOPs).

    Paper: DeepSeek LLM, arXiv 2401.02954 [V]. Fitted range and setup as in
    ``deepseek_batch_opt_tokens``. Check: 7B, C = 8.46e22 -> 4.25e-4 (the paper trains with 4.2e-4).
    """
    _positive(compute_flops=compute_flops)
    return 0.3118 * compute_flops**-0.1250


# --- Step Law (Li et al., StepFun, 2025, arXiv 2503.04715) -----------------------------------


def steplaw_lr_opt(non_embedding_params: float, tokens: float) -> float:
    """Optimal peak LR eta_opt = 1.79 * N^-0.713 * D^0.307 (N non-embedding, D tokens).

    Paper: Step Law, arXiv 2503.04715 [V, from the released code]. Fitted on N 2.1e8-1.07e9,
    D 4e9-1e11, TPP 19-466; AdamW, 2000 warmup steps, cosine to 1e-5 absolute.
    """
    _positive(non_embedding_params=non_embedding_params, tokens=tokens)
    return 1.79 * non_embedding_params**-0.713 * tokens**0.307


def steplaw_batch_opt_tokens(tokens: float) -> float:
    """Optimal batch B_opt = 0.58 * D^0.571, in TOKENS per step (D tokens).

    Paper: Step Law, arXiv 2503.04715 [V, from the released code]. Fitted range as in
    ``steplaw_lr_opt``. Independent of N.
    """
    _positive(tokens=tokens)
    return 0.58 * tokens**0.571


# --- Chinchilla (Hoffmann et al., 2022, arXiv 2203.15556) ------------------------------------


def chinchilla_tokens_opt(total_params: float) -> float:
    """Compute-optimal training tokens D_opt ~ 20 * N (N TOTAL parameters), in tokens.

    Paper: Chinchilla, arXiv 2203.15556 [S]. Fitted on 70M-16B parameter models, 5B-500B tokens.
    Convention: total parameters including embeddings (not Kaplan's non-embedding N).
    """
    _positive(total_params=total_params)
    return 20.0 * total_params


# --- Wang & Aitchison 2024 (arXiv 2405.13698) -------------------------------------------------


def tau_iter(lr: float, weight_decay: float) -> float:
    """AdamW timescale in optimizer steps, tau_iter = 1 / (eta * lambda).

    Paper: Wang & Aitchison 2024, arXiv 2405.13698 [V/S]. Units: steps.
    """
    _positive(lr=lr, weight_decay=weight_decay)
    return 1.0 / (lr * weight_decay)


def tau_epoch(lr: float, weight_decay: float, iters_per_epoch: float) -> float:
    """AdamW timescale in epochs, tau_epoch = tau_iter / iterations per epoch.

    Paper: Wang & Aitchison 2024, arXiv 2405.13698 [V/S]. Units: epochs. Their finding: the
    optimal tau_epoch is roughly constant across model and data size, so lambda ~ B/(eta*D) as
    data grows (the same quantity Power Lines calls tau when the run is one epoch).
    """
    _positive(iters_per_epoch=iters_per_epoch)
    return tau_iter(lr, weight_decay) / iters_per_epoch


def mup_weight_decay(weight_decay: float, base_fan_in: float, fan_in: float) -> float:
    """Weight decay of hidden matrices under muP when width changes: lambda ~ fan_in.

    Paper: Wang & Aitchison 2024, arXiv 2405.13698 [V/S]: under muP the hidden-matrix LR scales
    as 1/fan_in, so eta*lambda (the timescale) stays fixed only if lambda scales with fan_in.
    Units: AdamW weight_decay.
    """
    _positive(weight_decay=weight_decay, base_fan_in=base_fan_in, fan_in=fan_in)
    return weight_decay * fan_in / base_fan_in


# --- warmup and horizon rules ---------------------------------------------------------------


def warmup_steps_ma_yarats(beta2: float) -> float:
    """Linear warmup length 2 / (1 - beta2) in optimizer steps.

    Paper: Ma & Yarats 2021, arXiv 1910.04209 [V]: about the time Adam's second-moment average
    needs to become reliable. beta2 0.95 -> 40 steps, 0.99 -> 200, 0.999 -> 2000.
    """
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"beta2 must be in [0, 1), got {beta2=}")
    return 2.0 / (1.0 - beta2)


def warmup_tokens_porian(params: float) -> float:
    """Warmup of about N tokens (Porian et al. 2024, arXiv 2406.19146) [V].

    Units: tokens. Convention: this package passes non-embedding N; which count the paper uses
    is not recorded in the formula sheet [?].
    """
    _positive(params=params)
    return float(params)


def lr_transfer_horizon(
    lr: float, tokens_from: float, tokens_to: float, exponent: float = HORIZON_LR_EXPONENT
) -> float:
    """Carry a peak LR tuned at D1 tokens to a run of D2 tokens: eta2 = eta1 * (D2/D1)^-0.32.

    Paper: Bjorck et al. 2025, arXiv 2409.19913 [S]: eta_opt ~ D^-0.32 at fixed N, so an LR tuned
    on a short proxy run must shrink for a longer final run (x4 tokens -> x0.64).
    """
    _positive(lr=lr, tokens_from=tokens_from, tokens_to=tokens_to)
    return lr * (tokens_to / tokens_from) ** exponent


# --- width: muP and the standard parameterization (Yang et al. 2022, arXiv 2203.03466) -------


def mup_hidden_lr(lr: float, base_fan_in: float, fan_in: float) -> float:
    """muP (Adam) hidden-matrix LR when width changes: eta ~ 1 / fan_in.

    Paper: Yang et al. 2022, arXiv 2203.03466 [V]. Applies to hidden (2-D, non-embedding)
    matrices only: embeddings and biases keep eta, output logits are scaled by 1/width_mult.
    Transfers across width: LR, betas, schedule, init scales; not dropout or weight decay.
    """
    _positive(lr=lr, base_fan_in=base_fan_in, fan_in=fan_in)
    return lr * base_fan_in / fan_in


def sp_lr_width_drift(lr: float, base_width: float, width: float, exponent: float = -1.0) -> float:
    """Standard-parameterization drift of the optimal global LR with width: eta ~ width^exponent.

    Paper: Yang et al. 2022, arXiv 2203.03466 [V for the direction, ? for the size]: under the
    standard parameterization (one global Adam LR, fixed init std) the optimal LR drifts DOWN as
    width grows; muP removes the drift. No fitted exponent is published in the sheet: the
    default -1 is muP's hidden-matrix rule, the most the drift can be when hidden matrices
    dominate; embeddings and biases prefer a constant LR, so the real drift is usually milder.
    Use as a bound, not a point estimate.
    """
    _positive(lr=lr, base_width=base_width, width=width)
    return lr * (width / base_width) ** exponent


# --- repeated data and dropout ----------------------------------------------------------------


def muennighoff_effective_tokens(
    tokens: float, unique_tokens: float, r_star: float = MUENNIGHOFF_R_STAR
) -> float:
    """Effective data D' = U + U * R* * (1 - exp(-R_D / R*)) of a multi-epoch run, in tokens.

    Paper: Muennighoff et al. 2023, arXiv 2305.16264 [V]. U unique tokens, R_D = epochs - 1
    repetitions, R* = 15.39. Up to ~4 epochs repeated data is nearly as good as new; returns fade
    by ~16 epochs; D' never exceeds U * (1 + R*). One epoch or less gives D' = tokens.
    Fitted range: models up to 9B parameters and 900B tokens (the paper's abstract).
    """
    _positive(tokens=tokens, unique_tokens=unique_tokens, r_star=r_star)
    if tokens <= unique_tokens:
        return float(tokens)
    repetitions = tokens / unique_tokens - 1.0
    return unique_tokens + unique_tokens * r_star * (1.0 - math.exp(-repetitions / r_star))


def dropout_by_epochs(epochs: float, max_dropout: float = 0.2, scale_epochs: float = 8.0) -> float:
    """Dropout prior p = max_dropout * (1 - exp(-(epochs - 1) / scale_epochs)); 0 at <= 1 epoch.

    A HEURISTIC: no published law for optimal dropout versus epochs exists. What is published:
    single-epoch pretraining is better with dropout 0 (Liu et al. 2025, arXiv 2505.24788 [V];
    seed 004), and dropout is the regularizer that helps once data repeats (Xue et al. 2023,
    arXiv 2305.13230 [V]). The curve rises from 0 at one epoch toward ``max_dropout`` for many
    epochs; the scale of 8 epochs is chosen so that 7 epochs gives ~0.1 (seed 000's value for
    its 7-epoch run) and tens of epochs approach 0.2 (nanoGPT's character-level Shakespeare).
    """
    _positive(epochs=epochs, scale_epochs=scale_epochs)
    if not 0.0 <= max_dropout < 1.0:
        raise ValueError(f"max_dropout must be in [0, 1), got {max_dropout=}")
    if epochs <= 1.0:
        return 0.0
    return max_dropout * (1.0 - math.exp(-(epochs - 1.0) / scale_epochs))
