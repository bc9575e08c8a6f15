"""Carry a tuned trial's hyperparameters to a longer run or a wider model, by the scaling laws.

Pure functions of numbers (no optuna, no torch); ``search.export`` reads the best trial into an
``Hparams``, calls ``transfer`` and writes the result. The rules, each from ``heuristics.laws``:

    tau      kept: the AdamW timescale B / (eta * lambda * D), as a fraction of the run, is
             roughly constant across model and data size (Wang & Aitchison, arXiv 2405.13698).
             Power Lines (arXiv 2505.13738) fits it as TPP^-0.527 instead, which the priors
             use; the rule names the tau and lambda that law would give (the two disagree, and
             nothing here measured which carries a final run)
    lr       eta * (D_new / D_old)^-0.32 for the horizon (Bjorck et al., arXiv 2409.19913), then
             eta * (width_old / width_new) for the width: muP's hidden-matrix rule eta ~ 1/width
             applied to the one global LR of the standard parameterization, a heuristic
             (Yang et al., arXiv 2203.03466)
    batch    B * (D_new / D_old)^0.383 in tokens per step (Power Lines), rounded to a power of two
             sequences, capped by max_batch_size, at least 1
    lambda   re-derived from tau for the new lr, batch and horizon: lambda = B / (eta * tau * D)
    warmup   the same fraction of the steps; dropout kept (no law; it does not transfer under muP)

Every law was fitted on models and budgets far larger than a study's trials (see the fitted
ranges in ``heuristics.laws``): transferred values are a start, not an answer. Where the user
fitted laws in tokens on their own studies (a scale ladder, ``heuristics.fit``), their exponents
replace the published ones for the horizon: lr * (D_new/D_old)^b_lr, batch * (D_new/D_old)^b_B,
and tau * (D_new/D_old)^b_tau instead of tau kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from scaletune.heuristics import laws

HORIZON_CITATION = "Bjorck et al. 2025, arXiv 2409.19913"
POWER_LINES_CITATION = "Power Lines, Bergsma et al. 2025, arXiv 2505.13738"
MUP_CITATION = "Yang et al. 2022, arXiv 2203.03466"
WANG_AITCHISON_CITATION = "Wang & Aitchison 2024, arXiv 2405.13698"


@dataclass(frozen=True)
class Hparams:
    """What the transfer rules act on. Batch in sequences of block_size; tokens in tokens."""

    lr: float
    """Peak learning rate."""
    weight_decay: float
    """PyTorch AdamW weight_decay lambda."""
    tau: float | None
    """AdamW timescale B / (eta * lambda * D), unitless; None when weight_decay is 0."""
    batch_size: int
    """Sequences of block_size tokens per optimizer step."""
    warmup_frac: float
    """Fraction of the optimizer steps spent in linear warmup."""
    dropout: float
    tokens: int
    """Training tokens of the whole run."""
    block_size: int
    n_embd: int
    n_layer: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / self.tokens_per_step)

    @property
    def warmup_steps(self) -> int:
        # Must match scaletune.trainer.optim.warmup_steps, the trainer's count (heuristics does
        # not import the trainer: it pulls torch); tests/heuristics/test_transfer.py holds the two
        # together.
        return round(self.warmup_frac * self.steps)

    def record(self) -> dict[str, Any]:
        """The fields and the derived counts, as an export's provenance records them."""
        return {**asdict(self), "tokens_per_step": self.tokens_per_step, "steps": self.steps,
                "warmup_steps": self.warmup_steps}


@dataclass(frozen=True)
class Rule:
    """One transfer step: which value, the formula, its factor and where it comes from."""

    value: str
    formula: str
    source: str
    factor: float | None = None


HORIZON_EXPONENTS = {"lr": laws.HORIZON_LR_EXPONENT, "tau": 0.0, "batch_size": 0.383}
"""The published rules' exponents in D at fixed N, as ``transfer`` applies them: Bjorck et al.'s
lr, tau kept (Wang & Aitchison), Power Lines' batch size."""
HORIZON_SOURCES = {"lr": "Bjorck et al.", "tau": "tau kept, Wang & Aitchison",
                   "batch_size": "Power Lines"}
"""Whose each of HORIZON_EXPONENTS is, as a rule names it."""


@dataclass(frozen=True)
class FittedExponents:
    """Exponents in tokens of laws fitted to the user's studies; None where none was fitted."""

    lr: float | None
    tau: float | None
    batch_size: float | None
    source: str
    """Where they come from, as a rule cites it: 'laws fitted on 3 rungs (laws.json)'."""
    blended: tuple[str, ...] = ()
    """The laws whose fit warns: their exponent is the mean of the fitted and the published."""

    def cite(self, name: str, label: str) -> str:
        """How a rule names the exponent of law ``name``: 'fitted lr law, fitted on 3 rungs
        (laws.json)', or for a blended one what it is the mean of."""
        if name in self.blended:
            return (f"mean of the fitted {label} law's exponent and the published horizon "
                    f"rule's, {HORIZON_EXPONENTS[name]:+.3g} ({HORIZON_SOURCES[name]}; the fit "
                    f"warns), {self.source}")
        return f"fitted {label} law, {self.source}"


@dataclass(frozen=True)
class Transfer:
    best: Hparams
    final: Hparams
    batch_size_law: float
    """The batch-size law's output in sequences, before rounding and capping."""
    rules: tuple[Rule, ...]

    @property
    def exact_copy(self) -> bool:
        return self.best == self.final


def pow2_round(x: float) -> int:
    """The power of two nearest to ``x`` in log space (at least 1)."""
    if x <= 1:
        return 1
    return 2 ** round(math.log2(x))


def _batch_near(law: float, trial_batch: int) -> tuple[int, str]:
    """The batch nearest (in log space) to the law's ``law`` sequences, and what it was rounded
    to: the trial's batch times a power of two where that is a whole number (a trial's 12 stays
    12 for a law of 12.0003, where rounding to a power of two made it 16 for one token more),
    else a power of two."""
    if trial_batch & (trial_batch - 1):  # not itself a power of two
        scaled = trial_batch * 2.0 ** round(math.log2(law / trial_batch))
        if scaled >= 1 and scaled.is_integer():
            return int(scaled), f"the trial's {trial_batch} times a power of two"
    return pow2_round(law), "a power of two"


def transfer(
    best: Hparams,
    tokens: int,
    n_embd: int | None = None,
    n_layer: int | None = None,
    block_size: int | None = None,
    batch_size: int | None = None,
    max_batch_size: int | None = None,
    fitted: FittedExponents | None = None,
) -> Transfer:
    """Carry the best trial's hyperparameters to a run of ``tokens`` tokens and this model shape.

    batch_size: None sets it from the batch-size law; a number forces it (pass the best trial's
    to keep the batch). max_batch_size caps the batch (sequences). fitted: exponents in tokens
    fitted to the user's studies, used for the horizon instead of the published ones. Unchanged
    inputs give back exactly the best trial's values.
    """
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens=}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size=}")
    n_embd = n_embd or best.n_embd
    n_layer = n_layer or best.n_layer
    block_size = block_size or best.block_size
    rules: list[Rule] = []

    lr = best.lr
    ratio = tokens / best.tokens
    own = fitted is not None and fitted.lr is not None
    if tokens != best.tokens:
        exponent = fitted.lr if own else laws.HORIZON_LR_EXPONENT
        lr = laws.lr_transfer_horizon(lr, best.tokens, tokens, exponent=exponent)
        rules.append(Rule(
            "lr", f"eta * (D_new/D_old)^{exponent:.3g} = eta * "
            f"({tokens:,}/{best.tokens:,})^{exponent:.3g}",
            fitted.cite("lr", "lr") if own else f"horizon rule, {HORIZON_CITATION}",
            lr / best.lr,
        ))
    if n_embd != best.n_embd:
        before = lr
        lr = laws.sp_lr_width_drift(lr, best.n_embd, n_embd)
        rules.append(Rule(
            "lr", f"eta * (width_old/width_new) = eta * ({best.n_embd}/{n_embd})",
            f"heuristic: muP's hidden-matrix rule eta ~ 1/width ({MUP_CITATION}) applied to the "
            "single global LR of the standard parameterization this trainer uses; the real "
            "optimum drifts less when embeddings matter", lr / before,
        ))
    if n_layer != best.n_layer:
        rules.append(Rule("lr", "no depth rule applied", "no law in the formula sheet"))

    # Power Lines: B_opt ~ D^0.383, independent of N. The ratio of the law at the two horizons
    # carries the best batch (in tokens per step) over; the law's constant cancels.
    own_batch = fitted is not None and fitted.batch_size is not None
    if own_batch:
        growth = ratio**fitted.batch_size
        batch_rule = (f"B * (D_new/D_old)^{fitted.batch_size:.3g}",
                      fitted.cite("batch_size", "batch-size"))
    else:
        growth = (laws.powerlines_batch_opt_tokens(tokens)
                  / laws.powerlines_batch_opt_tokens(best.tokens))
        batch_rule = ("B * (D_new/D_old)^0.383", f"batch-size law, {POWER_LINES_CITATION}")
    law = best.tokens_per_step * growth / block_size
    if batch_size is not None:
        batch = batch_size
        rules.append(Rule("batch_size", f"set to {batch}", "the caller's choice"))
    elif law == best.batch_size:
        batch = best.batch_size
    else:
        batch, to = _batch_near(law, best.batch_size)
        # The factor is the change made (after rounding), as every other rule's is: the law's
        # own growth (x1.701 for 4x the tokens) read as the batch's when 2 became 4.
        rules.append(Rule(
            "batch_size", f"{batch_rule[0]} = {law:.4g} sequences of {block_size} tokens,"
            f" rounded to {to}", batch_rule[1],
            batch * block_size / best.tokens_per_step,
        ))
    if max_batch_size is not None and batch > max_batch_size:
        batch = max_batch_size
        rules.append(Rule("batch_size", f"capped at {max_batch_size}", "--max-batch-size"))
    batch = max(1, batch)
    grown = batch * block_size / best.tokens_per_step
    if grown != 1 and not own:
        # Said, not applied: the priors move each law's lr to their batch by this rule, but the
        # horizon rule above was measured at a fixed batch, and no law here joins the two (an
        # lr law fitted on the user's rungs holds each rung's best batch already).
        rules.append(Rule(
            "lr", f"not moved with the batch (x{grown:.3g} tokens per step): Adam's square-root "
            f"rule would give eta x {math.sqrt(grown):.3g} = {lr * math.sqrt(grown):.4g}",
            f"the horizon rule ({HORIZON_CITATION}) was measured at a fixed batch; the "
            "square-root rule is the one the priors use, unverified at this scale",
        ))

    weight_decay, tau = best.weight_decay, best.tau
    if best.tau is not None and (lr, batch * block_size, tokens) != (
        best.lr, best.tokens_per_step, best.tokens
    ):
        source = f"AdamW timescale, {WANG_AITCHISON_CITATION}"
        other = ""
        if fitted is not None and fitted.tau is not None and tokens != best.tokens:
            tau = best.tau * ratio**fitted.tau
            kept = (f"tau * (D_new/D_old)^{fitted.tau:.3g} = {tau:.4g} "
                    f"({fitted.cite('tau', 'tau')})")
        else:
            kept = f"tau kept at {best.tau:.4g}"
            # tokens per non-embedding parameter (12 * layers * width^2), new over old
            tpp = ratio / ((n_layer / best.n_layer) * (n_embd / best.n_embd) ** 2)
            if tpp != 1:
                tau_pl = best.tau * tpp**laws.POWER_LINES_TAU_EXPONENT
                lam_pl = laws.lambda_from_tau(tau_pl, batch * block_size, lr, tokens)
                other = (f" (Power Lines' tau ~ TPP^{laws.POWER_LINES_TAU_EXPONENT} would give "
                         f"tau {tau_pl:.4g}, lambda {lam_pl:.4g}: the two published rules "
                         "disagree, and nothing here measured which carries a final run)")
        weight_decay = laws.lambda_from_tau(tau, batch * block_size, lr, tokens)
        if n_embd != best.n_embd:
            source += ("; across width this keeps eta*lambda fixed, lambda ~ width as Wang & "
                       "Aitchison (arXiv 2405.13698) give for muP")
        rules.append(Rule(
            "weight_decay", f"{kept}; lambda = B/(eta*tau*D) with B and D in tokens{other}",
            source,
            weight_decay / best.weight_decay,
        ))
    final = replace(best, lr=lr, weight_decay=weight_decay, tau=tau, batch_size=batch,
                    tokens=tokens, block_size=block_size, n_embd=n_embd, n_layer=n_layer)
    if final != best:
        rules.append(Rule(
            "warmup_frac", f"kept at {best.warmup_frac:.4g} of the steps: "
            f"{final.warmup_steps:,} of {final.steps:,} steps",
            "the study's fraction",
        ))
        rules.append(Rule(
            "dropout", f"kept at {best.dropout:g}", "no law; under muP dropout does not transfer",
        ))
    return Transfer(best=best, final=final, batch_size_law=law, rules=tuple(rules))
