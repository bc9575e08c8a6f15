"""From a study's search space and its priors to Optuna distributions and trial configs."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import ValidationError

from scaletune.heuristics.priors import ModelShape, Prior, Priors, priors_for
from scaletune.search import hparams
from scaletune.search.config import (
    MAX_BATCH_LOG2,
    TAU_LIKE_LAMBDA,
    Param,
    StudyConfig,
    batch_sizes_in,
    no_batch_sizes,
)
from scaletune.trainer.config import TrainConfig, format_errors
from scaletune.trainer.data import (
    byte_text_train_tokens,
    known_vocab_size,
    prepared_sizes,
    vocab_size_of,
)
from scaletune.trainer.errors import ConfigError, DataError
from scaletune.trainer.optim import warmup_steps


@dataclass(frozen=True)
class Dim:
    """One searched dimension: the Optuna parameter name, its distribution and its prior."""

    name: str
    distribution: BaseDistribution
    prior: Prior | None = None


def model_shape(cfg: StudyConfig, vocab_size: int) -> ModelShape:
    """The model the priors are taken at: the file's, with what search.other fixes for every
    trial (a fixed model.n_embd trained 4x the N the priors and the report counted)."""
    m = cfg.model
    with _fixed_values_checked(cfg):
        return ModelShape(
            n_layer=cfg.fixed_field("model.n_layer"),
            n_head=cfg.fixed_field("model.n_head"),
            n_embd=cfg.fixed_field("model.n_embd"),
            block_size=m.block_size,
            vocab_size=m.vocab_size or vocab_size,
            tie_weights=cfg.fixed_field("model.tie_weights"),
            learned_positions=cfg.fixed_field("model.positions") == "learned",
        )


@contextlib.contextmanager
def _fixed_values_checked(cfg: StudyConfig) -> Iterator[None]:
    """The ValueError of a model or optimizer that search.other's fixed values make (n_head 3
    of n_embd 32, beta2 1.5), as the error of the study file it is: the priors are taken at
    those values before space_problems sees them, and every command ended in a traceback."""
    try:
        yield
    except ValueError as e:
        # search.other's fixed values, and those of hyperparameters registered beyond the five.
        fixed = {f"search.other.{k}": p.value for k, p in cfg.search.other.items()
                 if p.value is not None}
        fixed |= {f"search.{name}": p.value for name, p in cfg.search.params.items()
                  if p is not None and p.value is not None and name not in hparams.BUILT_IN}
        if not fixed:
            raise
        shown = ", ".join(f"{k}={v!r}" for k, v in fixed.items())
        raise ConfigError(cfg.source, [f"search: the values it fixes ({shown}) make a trial "
                                       f"config no run can train: {e}"]) from None


def largest_shape(cfg: StudyConfig, vocab_size: int) -> ModelShape:
    """The largest model a trial may train, for its parameter count: ``model_shape`` with
    search.other's model.n_layer and model.n_embd at their top (``StudyConfig.largest``), one
    head (the heads do not count: an n_embd searched up to 48 of 5 heads was a traceback of
    every command, where space_problems names the combinations that no run trains)."""
    return dataclasses.replace(model_shape(cfg, vocab_size), n_head=1,
                               n_layer=int(cfg.largest("model.n_layer")),
                               n_embd=int(cfg.largest("model.n_embd")))


def study_priors(
    cfg: StudyConfig, vocab_size: int, unique_tokens: float | None, epochs_from: str = ""
) -> Priors:
    """The priors of this study: published laws, or the user's fitted ones. ``epochs_from``
    says where unique_tokens was not counted on the prepared data (``priors_for``)."""
    fitted = None
    if cfg.priors.laws == "fitted":
        from scaletune.heuristics.fit import FittedLaws

        try:
            fitted = FittedLaws.load(cfg.priors.fitted_file)
        except ValueError as e:  # a file of something else: a traceback from every command
            raise ConfigError(cfg.source, [
                f"priors.fitted_file: {e} (`scaletune fit STUDY... -o FILE` or `scaletune "
                "ladder` writes one)"]) from None
    shape = model_shape(cfg, vocab_size)
    with _fixed_values_checked(cfg):
        return priors_for(
            shape,
            tokens=cfg.tokens_per_trial,
            unique_tokens=unique_tokens,
            beta2=_adam_beta2(cfg),
            fitted=fitted,
            epochs_from=epochs_from,
            trained_batches=trained_batches(cfg),
            trained_lr=_fixed_lr(cfg),
        )


def _fixed_lr(cfg: StudyConfig) -> float | None:
    """The lr every trial trains, where the study fixes it (the weight decay prior's, not the lr
    prior's center); None where lr is searched."""
    param = cfg.search.params.get("lr")
    if param is None or param.searched or not hparams.is_number(param.value):
        return None
    return float(param.value)


def _adam_beta2(cfg: StudyConfig) -> float | None:
    """The beta2 of the study's Adam second moment, which sets one of the warmup rules; None
    where every trial trains with SGD, which has none (the rule moved the warmup prior with a
    beta2 the trials never read)."""
    return None if cfg.optimizers == {"sgd"} else cfg.fixed_field("optim.beta2")


def plain(value: Any) -> str:
    """A value of no registered hyperparameter, for people: ``true``, ``1,024``, ``0.003``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show_value(name: str, value: Any) -> str:
    """``value`` of the searched or fixed ``name`` as its hyperparameter shows it."""
    hp = hparams.get(name)
    return hp.show(value) if hp is not None else plain(value)


def range_words(d: Dim) -> str:
    """What dimension ``d`` is searched over: ``choices 4, 8`` or ``[0.001, 0.02]``."""
    dist = d.distribution
    if isinstance(dist, CategoricalDistribution):
        return "choices " + ", ".join(show_value(d.name, c) for c in dist.choices)
    return f"[{show_value(d.name, dist.low)}, {show_value(d.name, dist.high)}]"


def searched_ranges(dims: list[Dim], fixed: dict[str, Any]) -> dict[str, str]:
    """What a study does with each hyperparameter, as words for a table beside the priors'
    own ranges (which the study's ranges, choices and fixed values replace), as the dry run's
    search space says them: ``[0.001, 0.02]``, ``choices 4, 8``, ``fixed at 0.05``, and
    ``from tau`` for weight decay searched as tau."""
    out = {d.name: range_words(d) for d in dims}
    out |= {name: f"fixed at {show_value(name, value)}" for name, value in fixed.items()}
    for derived, source in (("weight_decay", "tau"), ("tau", "weight_decay")):
        if source in out and derived not in out:
            out[derived] = f"from {source}"
    return out


def trained_batches(cfg: StudyConfig) -> tuple[float, float] | None:
    """The smallest and largest batch size (sequences) the study trains: its choices, its low
    and high, or its fixed value; None where the batch size prior's own range is searched."""
    param = cfg.search.params.get("batch_size")
    if param is None:
        return None
    if not param.searched:
        return (float(param.value), float(param.value)) if hparams.is_number(param.value) else None
    if param.choices is not None:
        numeric = [float(c) for c in param.choices if hparams.is_number(c)]
        return (min(numeric), max(numeric)) if numeric else None
    if param.low is None and param.high is None:
        return None  # the prior's own range: it holds the center
    # A range trains the powers of two in it (_batch_distribution): [192, 512] trains 256 and 512,
    # and the priors taken at 192 gave the first trial, at 256, the lr of a batch never trained.
    # One end given (prior: auto, high: 8): the other is the prior's, which holds its center, so
    # only the end given can move the batch the lr is taken at (it had been left at the center,
    # 16, where the study trains 8 at most).
    given_low = param.low if param.low is not None else 1
    given_high = param.high if param.high is not None else 2**MAX_BATCH_LOG2
    sizes = batch_sizes_in(given_low, given_high, cfg.trainer.micro_batch_size)
    low, high = (min(sizes), max(sizes)) if sizes else (given_low, given_high)
    return (float(low) if param.low is not None else 0.0,
            float(high) if param.high is not None else math.inf)


def planning_priors(cfg: StudyConfig) -> Priors:
    """The priors of this study without preparing its data: nothing is downloaded or tokenized,
    so a study can be planned on a machine without network (``scaletune priors``).

    lr, batch size, warmup and tau need only the model, the token budget and the vocabulary
    (total parameters); the vocabulary comes from model.vocab_size, the tokenizer's name or its
    file (``trainer.data.known_vocab_size``), so they equal those ``scaletune run`` computes (tau's
    range aside where trials repeat the data: an effective-data law then widens it). Dropout
    needs the data's size (its epochs): counted from the token cache where the data was prepared
    already (then every prior equals run's), estimated from the files' sizes for byte-level
    text, else unknown and one epoch assumed; the dropout prior says which.
    """
    try:
        prepared = prepared_sizes(cfg.data)
        estimate = None if prepared else byte_text_train_tokens(cfg.data)
        unknown = "the data is not prepared"
    except (DataError, OSError) as e:  # a missing file or cache: the epochs are unknown, not lr
        prepared, estimate, unknown = None, None, str(e)
    if prepared is not None:
        unique, vocab = prepared
        return study_priors(cfg, vocab, unique)  # what `scaletune run` computes
    tokenizer = cfg.data.tokenizer
    vocab = cfg.model.vocab_size or known_vocab_size(tokenizer) or vocab_size_of(tokenizer)
    if estimate:
        return study_priors(cfg, vocab, estimate, epochs_from="data.path's size, a token per byte")
    if estimate == 0:  # validate and run refuse it (trainer.data.size_problem)
        unknown = "the data holds no text"
    return study_priors(cfg, vocab, None, epochs_from=unknown)


def build_space(cfg: StudyConfig, priors: Priors) -> tuple[list[Dim], dict[str, Any]]:
    """The searched dimensions and the fixed values of a study, in registry order, then
    ``search.other``. A dimension is named as its form is (``tau`` for weight decay searched as
    tau); fixed values are keyed the same way, or by dotted trainer key for ``search.other``."""
    try:
        return _build_space(cfg, priors)
    except ConfigError as e:  # named "study" below: the study's file is known here
        raise ConfigError(cfg.source, e.errors) from None


def _build_space(cfg: StudyConfig, priors: Priors) -> tuple[list[Dim], dict[str, Any]]:
    dims: list[Dim] = []
    errors: list[str] = []  # every dimension's at once (validate gave one per fix)
    micro = cfg.trainer.micro_batch_size or 1
    for name, param in cfg.search.params.items():
        form = hparams.form_for(hparams.HPARAMS[name], getattr(param, "as_", None))
        if not param.searched:
            continue
        prior = form.prior(priors) if form.prior is not None else None
        try:
            if form.powers_of_two:
                dist = _batch_distribution(form, param, prior, micro)
            else:
                dist = _distribution(f"search.{name}", form, param, prior)
        except ConfigError as e:
            errors += e.errors
            continue
        dims.append(Dim(form.name, dist, prior))
    for dotted, param in cfg.search.other.items():
        if param.searched:
            try:
                dist = _distribution(f"search.other.{dotted}", None, param, None)
            except ConfigError as e:
                errors += e.errors
                continue
            dims.append(Dim(dotted, dist))
    if errors:
        raise ConfigError("study", errors)
    return dims, fixed_values(cfg)


OTHER_COMBINATIONS = 256
"""``space_problems`` tries every combination of the values ``search.other`` searches up to this
many; beyond, each value with the others at their first."""


def space_problems(cfg: StudyConfig, dims: list[Dim], fixed: dict[str, Any]) -> list[str]:
    """What the space of ``cfg`` lets a trial draw that no trial could train, found from the
    study file (``scaletune validate``, ``run --dry-run``) as before the first trial: a budget
    below one optimizer step of the largest batch, a trainer.max_loss that the first step
    already exceeds, and values of ``search.other`` that make an invalid training config (n_embd
    that n_head does not divide) alone or together."""
    errors = []
    batches = [fixed.get("batch_size", 0)]
    batches += [max(d.distribution.choices) for d in dims if d.name == "batch_size"]
    step = int(max(batches)) * cfg.model.block_size
    if step > cfg.tokens_per_trial:
        errors.append(
            f"tokens_per_trial: {cfg.tokens_per_trial:,} is less than one optimizer step of "
            f"the largest batch searched ({max(batches)} sequences x block_size "
            f"{cfg.model.block_size} = {step:,} tokens), so such a trial would train more "
            f"than its budget: raise tokens_per_trial to at least {step:,}, or search "
            "smaller batches")
    max_loss = getattr(cfg.trainer, "max_loss", None)
    vocab = cfg.model.vocab_size or known_vocab_size(cfg.data.tokenizer)
    if max_loss is not None and vocab and max_loss <= math.log(vocab):
        start = math.log(vocab)
        errors.append(
            f"trainer.max_loss: {max_loss:g} is not above the loss a model starts from (ln "
            f"{vocab:,} = {start:.2f}, a uniform guess over the vocabulary): every trial would "
            f"stop as diverged at its first step; leave it unset (1.5 x that, {1.5 * start:.2f}) "
            f"or give more than {start:.2f}")
    if not cfg.search.other:
        return errors
    others = [d for d in dims if d.name in cfg.search.other]
    # The five at the priors' center (the first trial), or a value of their range without one.
    base = {d.name: _some_value(d.distribution) for d in dims if d.name not in cfg.search.other}
    base.update(prior_center_params([d for d in dims if d.name not in cfg.search.other]))
    candidates = [[(d.name, v) for v in _values_to_try(d.distribution)] for d in others]
    if "micro_batch_size" in cfg.search.other:  # it must divide every batch size searched
        candidates += [[(d.name, v) for v in _values_to_try(d.distribution)]
                       for d in dims if d.name == "batch_size"]
    if math.prod(len(c) for c in candidates) <= OTHER_COMBINATIONS:
        combos = [dict(c) for c in itertools.product(*candidates)]
    else:
        first = {c[0][0]: c[0][1] for c in candidates}
        combos = [{**first, name: v} for c in candidates for name, v in c]
    bad: list[str] = []
    for combo in combos or [{}]:
        try:
            trial_config(cfg, {**base, **combo}, fixed, None)
        except (ValidationError, ValueError) as e:
            what = ", ".join(f"{k}={v!r}" for k, v in combo.items()) or "the values fixed"
            bad.append(f"{what} ({'; '.join(config_problems(e))})")
    if bad:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        verb = "makes" if len(bad) == 1 else "make"
        errors.append(f"search.other: {len(bad)} of the {len(combos) or 1} combinations of "
                      f"values tried {verb} a trial config no run can train: {shown}; search "
                      "only values that train together")
    return errors


def config_problems(e: ValidationError | ValueError) -> list[str]:
    """The lines of what ``trial_config`` raised for values that make no trainable config: the
    TrainConfig keys at fault, or the message of a value that could not be converted."""
    return format_errors(e, TrainConfig) if isinstance(e, ValidationError) else [str(e)]


def _values_to_try(dist: BaseDistribution) -> list[Any]:
    """The values of a ``search.other`` dimension worth trying: every choice, every integer of
    a short range; of a longer one its first 16 (every remainder of a division by up to 16, as
    n_head divides n_embd) and 48 spread over it (n_embd from 16 to 200 met n_head 2 only at
    its even ends; 64 spread over 16 to 142 were all even); the ends and the middle of a float
    range."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        n = (dist.high - dist.low) // dist.step
        picks = (range(n + 1) if n < 64 else
                 sorted(set(range(16)) | {round(i * n / 47) for i in range(48)}))
        return [dist.low + k * dist.step for k in picks]
    return [dist.low, (dist.low + dist.high) / 2, dist.high]


def _some_value(dist: BaseDistribution) -> Any:
    """One value of a dimension of the five, to fill a trial config whose other values are
    tried: the first choice, or the range's low end."""
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


def fixed_values(cfg: StudyConfig) -> dict[str, Any]:
    """The values a study fixes instead of searching, keyed as ``search.space.build_space`` keys
    them: by the registered form a hyperparameter is given as (``tau`` for weight decay given
    ``as: tau``), and by dotted trainer key for ``search.other``."""
    fixed = {
        hparams.form_for(hparams.HPARAMS[name], getattr(param, "as_", None)).name: param.value
        for name, param in cfg.search.params.items() if not param.searched
    }
    fixed.update({dotted: p.value for dotted, p in cfg.search.other.items() if not p.searched})
    return fixed


def _distribution(
    key: str, hp: hparams.HParam | None, p: Param, prior: Prior | None
) -> BaseDistribution:
    if p.choices is not None:
        return CategoricalDistribution(p.choices)
    if p.prior == "auto":
        if prior is None:  # a hyperparameter registered without one (prior=None)
            raise ConfigError("study", [
                f"{key}: prior: auto, and it has no prior (registered with prior=None): give "
                "low and high, choices or a value"])
        low = p.low if p.low is not None else prior.low
        high = p.high if p.high is not None else prior.high
        if hp is not None:  # a registered prior's range, kept to the values a study may give
            low, high = max(low, hp.low), min(high, hp.high)
        log = p.log if p.log is not None else prior.log
        if not low < high:
            raise ConfigError("study", [
                f"{key}: low={low:.4g}, high={high:.4g} is an empty range: the prior's "
                f"range here is [{prior.low:.4g}, {prior.high:.4g}]; give a low and high that "
                "overlap it, or both"])
        if log and low <= 0:  # the prior's own low end (dropout's is 0): Optuna's ValueError
            raise ConfigError("study", [
                f"{key}: log: true, and the range starts at {low:g} (the prior's low end), "
                "where a log scale cannot start: give a low above 0, or leave log out"])
    else:
        low, high = p.low, p.high
        log = p.log if p.log is not None else (hp.log if hp else False)
    # Registered hyperparameters are floats, or integers where they are whole (batch sizes are
    # categorical); an other field is searched as an integer where the trainer's field holds
    # whole numbers (n_layer), as a float where it holds any (min_lr_ratio from 0 to 1 is not
    # the choice of 0 or 1).
    numbers = ((int if hp.whole else float) if hp is not None
               else hparams.field_numbers(key.removeprefix("search.other.")))
    if numbers is None:  # model.bias from 0 to 1 drew 0.65, and the trial failed
        raise ConfigError("study", [
            f"{key}: low={low!r}, high={high!r}: a range of a field that holds no numbers; "
            "give its values as choices"])
    if numbers is int:
        if p.prior == "auto" and p.low is None and p.high is None:  # the prior's range, inward
            low, high = math.ceil(low), math.floor(high)
        if not all(float(v).is_integer() for v in (low, high)):
            raise ConfigError("study", [
                f"{key}: low={low:g}, high={high:g}: this field holds whole numbers; give "
                "whole-number ends"])
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _batch_distribution(
    hp: hparams.HParam, p: Param, prior: Prior | None, micro: int
) -> BaseDistribution:
    """Batch sizes are searched as powers of two (multiples of the micro-batch) in the range."""
    if p.choices is not None:
        return CategoricalDistribution(sorted(int(c) for c in p.choices))
    low = p.low if p.low is not None else prior.low
    high = p.high if p.high is not None else prior.high
    if p.prior == "auto" and not low <= high:  # one end given, past the prior's other end
        raise ConfigError("study", [
            f"search.batch_size: low={low:g}, high={high:g} is an empty range: the prior's range "
            f"here is [{prior.low:g}, {prior.high:g}]; give a low and high that overlap it, or "
            "both"])
    sizes = batch_sizes_in(low, high, micro)
    if not sizes:
        raise ConfigError("study", [no_batch_sizes(low, high, micro)])
    return CategoricalDistribution(sizes)


def nothing_searched(dims: list[Dim], n_trials: int) -> list[str]:
    """A note where the study searches nothing (every hyperparameter given a value) and runs
    more than one trial: each trains the same config with the same seed, to the same loss."""
    if dims or n_trials < 2:
        return []
    return [f"search: every hyperparameter has a value, so nothing is searched: each of the "
            f"{n_trials} trials trains the same config with the same seed, to the same loss; "
            "n_trials: 1 trains it once, `scaletune run --repeat-best N` trains it again with "
            "other seeds, and a range or choices (or prior: auto) searches a hyperparameter"]


def one_batch_size(dims: list[Dim], cfg: StudyConfig) -> list[str]:
    """A note where a batch-size range holds one power of two ({low: 3, high: 5} searched 4
    alone, unsaid). Where its prior's center lies beyond it, centers_outside says so of a study
    seeded by the priors ("one value is searched"), and this says nothing."""
    batch = cfg.search.params.get("batch_size")
    if batch is None or batch.low is None or batch.high is None:
        return []
    return [f"search.batch_size: [{batch.low:g}, {batch.high:g}] holds one batch size, "
            f"{d.distribution.choices[0]} (a range searches its powers of two), so every trial "
            "trains it: widen the range, or give choices" for d in dims
            if d.name == "batch_size" and len(d.distribution.choices) == 1
            and not (cfg.seeding == "prior" and centers_outside([d]))]


def centers_outside(dims: list[Dim], draws: bool = True) -> list[str]:
    """One line per searched dimension whose prior's center lies outside the range searched:
    such a study's first trial sits at the range's end, and its start-up draws (``draws``: a
    sampler that draws from the priors, not random) crowd there. A batch-size center counts as
    outside beyond half a doubling from the extreme choices."""
    notes = []
    for d in dims:
        p, dist = d.prior, d.distribution
        if p is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            numeric = [c for c in dist.choices if hparams.is_number(c)]
            if not numeric or min(numeric) <= 0:
                continue
            low, high, slack = min(numeric), max(numeric), math.sqrt(2)
        elif isinstance(dist, (FloatDistribution, IntDistribution)):
            low, high, slack = dist.low, dist.high, 1.0
        else:
            continue
        if low / slack <= p.center <= high * slack:
            continue
        hp = hparams.HPARAMS.get(d.name)
        key = f"search.{hparams.owner(hp).name}" if hp else d.name
        shown = hp.show if hp else str
        if low == high:  # choices: [32], or a batch range that holds one power of two
            notes.append(
                f"{key}: one value is searched, {d.name} = {shown(float(low))}, and every trial "
                f"trains it, where the priors' center is {shown(float(p.center))}: write "
                f"{{value: {shown(float(low))}}} to fix it, or search more values toward the "
                "center")
            continue
        side = "below" if p.center < low else "above"
        fix = ("add choices toward the center, or give no choices" if
               isinstance(dist, CategoricalDistribution) else
               "widen the range toward the center, or give no low and high")
        note = (
            f"{key}: the priors' center {d.name} = {shown(float(p.center))} lies {side} the range "
            f"searched [{shown(float(low))}, {shown(float(high))}], so the first trial starts at "
            f"{shown(float(snap(dist, p.center)))}"
            + (" and the start-up draws crowd that end" if draws else "")
            + f"; {fix} to search the priors' range")
        if d.name == "tau" and side == "above" and high <= TAU_LIKE_LAMBDA:
            # weight_decay's low and high are a tau range unless the file says `as: lambda`; a
            # range under 1 is the usual AdamW weight decay, read as a decay faster than the run.
            note += (f". A {key} range of [{shown(float(low))}, {shown(float(high))}] reads as "
                     "tau = B/(eta*lambda*D), weight decay's timescale in runs (as: tau, the "
                     "default); if these are AdamW weight_decay values, write as: lambda")
        notes.append(note)
    return notes


def prior_center_params(dims: list[Dim]) -> dict[str, Any]:
    """The trial the laws point at: each prior's center, snapped into its distribution."""
    params: dict[str, Any] = {}
    for d in dims:
        if d.prior is None:
            continue
        params[d.name] = snap(d.distribution, d.prior.center)
    return params


def snap(dist: BaseDistribution, value: float) -> Any:
    """The value of ``dist`` closest to ``value`` (in log space for positive choices)."""
    if isinstance(dist, CategoricalDistribution):
        numeric = [c for c in dist.choices if hparams.is_number(c)]
        if not numeric:
            return dist.choices[0]
        if value > 0 and all(c > 0 for c in numeric):
            return min(numeric, key=lambda c: abs(math.log(c / value)))
        return min(numeric, key=lambda c: abs(c - value))
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        clipped = min(max(value, dist.low), dist.high)
        return int(round(clipped)) if isinstance(dist, IntDistribution) else float(clipped)
    raise TypeError(f"cannot snap to {dist!r}")


def suggest(trial: optuna.Trial, dims: list[Dim]) -> dict[str, Any]:
    """The trial's value of each of ``dims``: drawn, or the one it was queued with (a trial run
    again, a repeat), kept even where the range has moved since (``outside_ranges`` says so
    once, in scaletune's words, where Optuna warned at every such trial)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range",
                                category=UserWarning)
        return _suggest(trial, dims)


def outside_ranges(params: dict[str, Any], dims: list[Dim]) -> list[str]:
    """``lr=0.0322 (range now [0.00166, 0.0263])`` for each value of ``params`` that the space
    ``dims`` does not hold."""
    out = []
    for d in dims:
        dist, value = d.distribution, params.get(d.name)
        if value is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            if value not in dist.choices:
                out.append(f"{d.name}={value!r} (choices now {list(dist.choices)})")
        elif not dist.low <= value <= dist.high:
            out.append(f"{d.name}={value:.3g} (range now [{dist.low:.3g}, {dist.high:.3g}])")
    return out


def _suggest(trial: optuna.Trial, dims: list[Dim]) -> dict[str, Any]:
    params = {}
    for d in dims:
        dist = d.distribution
        if isinstance(dist, CategoricalDistribution):
            params[d.name] = trial.suggest_categorical(d.name, dist.choices)
        elif isinstance(dist, IntDistribution):
            params[d.name] = trial.suggest_int(d.name, dist.low, dist.high, log=dist.log)
        else:
            params[d.name] = trial.suggest_float(d.name, dist.low, dist.high, log=dist.log)
    return params


def trial_config(
    cfg: StudyConfig, params: dict[str, Any], fixed: dict[str, Any], num_threads: int | None,
    seed: int | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The training config of one trial and the values derived from its parameters; ``seed``,
    the training seed, is the study's unless given (a repeat of a config, search.noise)."""
    values = {**fixed, **params}
    base = TrainConfig(
        **dict(cfg.trainer),  # the trainer: section, TrainConfig's own fields
        model=cfg.model,
        data=cfg.data,
        tokens=cfg.tokens_per_trial,
        batch_size=int(values.get("batch_size", 32)),
        eval_every_tokens=cfg.eval_interval,
        seed=cfg.seed if seed is None else seed,
        num_threads=num_threads,
        progress=False,
    )
    raw = base.model_dump()
    forms = []  # values that become their target once the others are set (tau -> lambda)
    for key, value in values.items():
        hp = hparams.get(key)
        if hp is not None and hp.is_form:
            forms.append((hp, value))
        else:
            _set(raw, hp.target if hp else key, value)
    train_cfg = TrainConfig.model_validate(raw)
    derived: dict[str, Any] = {}
    if forms:
        for hp, value in forms:
            target = hp.to_target(value, train_cfg)
            _set(raw, hp.target, target)
            derived[hparams.owner(hp).name] = target
        train_cfg = TrainConfig.model_validate(raw)
    steps = train_cfg.steps
    derived.update(
        steps=steps,
        warmup_steps=warmup_steps(train_cfg.optim.warmup_frac, steps),  # as the trainer counts
        tokens_per_step=train_cfg.tokens_per_step,
    )
    for hp in hparams.HPARAMS.values():  # a form not searched is recorded beside the trial
        if hp.is_form and hp.name not in params and hp.of_run is not None:
            seen = hp.of_run(train_cfg)
            if seen is not None:
                derived[hp.name] = seen
    return train_cfg, derived


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        node = node[p]
    node[leaf] = value
