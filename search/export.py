"""Export a study's best trial as the training config of a final run.

``scaletune export STUDY.yaml -o final.yaml`` copies the best trial exactly: same model, data,
optimizer, batch size and token budget. With ``--tokens`` (a longer run) or ``--model`` (a wider
or deeper model) the scaling laws carry lr, weight decay and batch over; ``heuristics.transfer``
holds the rules and their papers, ``--max-batch-size`` caps the batch.

The file records the raw best values and the transferred ones, with the formulas and where the
study came from, both as comments at its top and as the ``provenance`` mapping that training
ignores. It is loaded back with ``load_train_config`` before it replaces any existing file.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from scaletune.heuristics import laws
from scaletune.heuristics.transfer import (
    HORIZON_EXPONENTS,
    HORIZON_SOURCES,
    FittedExponents,
    Hparams,
    Rule,
    Transfer,
    transfer,
)
from scaletune.search.config import StudyConfig
from scaletune.search.noise import TRAIN_SEED, seeds_note
from scaletune.search.space import fixed_values, trial_config
from scaletune.search.storage import mask_url
from scaletune.search.studies import open_study, pick_trial, running_note
from scaletune.trainer.config import (
    ModelConfig,
    TrainConfig,
    closest,
    file_kind,
    format_errors,
    load_train_config,
    load_yaml,
    whole_count,
)
from scaletune.trainer.errors import ConfigError

if TYPE_CHECKING:  # read where a study's priors are fitted laws alone
    from scaletune.heuristics.fit import FittedLaws

CHECKPOINT_FRACTION = 0.05
"""A final run writes a checkpoint every 5% of its tokens."""


@dataclass(frozen=True)
class Export:
    path: Path
    config: TrainConfig
    transfer: Transfer
    trial: FrozenTrial
    notes: tuple[str, ...]
    replaced: bool = False
    """``path`` held a training config (an earlier export) that this one replaced."""


def parse_model_overrides(items: list[str], source: str = "--model") -> dict[str, Any]:
    """``['n_embd=512', 'norm=rmsnorm']`` -> ``{'n_embd': 512, 'norm': 'rmsnorm'}`` (YAML values).

    Every bad item is reported at once, an unknown key with the keys allowed; the values are
    checked by ModelConfig in ``export_study``."""
    out: dict[str, Any] = {}
    errors = []
    allowed = ", ".join(ModelConfig.model_fields)
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(f"--model {item!r}: expected KEY=VALUE, e.g. n_embd=512")
        elif not text.strip():  # YAML reads nothing as null: "(got None)" named no cause
            errors.append(f"--model {key}: no value after '='; give one, e.g. {key}=VALUE "
                          "(null for none, where the key allows it)")
        elif key not in ModelConfig.model_fields:
            close = closest(key, list(ModelConfig.model_fields))
            errors.append(f"--model {key}: unknown model key; allowed: {allowed}"
                          + (f"; did you mean {close}?" if close else ""))
        else:
            try:
                out[key] = yaml.safe_load(text)
            except yaml.YAMLError:
                out[key] = text
            except RecursionError:  # [[[[...]]]]: no model field is nested at all
                errors.append(f"--model {key}: the value is nested too deep; give a plain value")
            except ValueError:  # an integer of more than 4,300 digits: Python refuses to read it
                errors.append(f"--model {key}: the value is too large a number to read")
    if errors:
        raise ConfigError(source, errors)
    return out


MAX_TOKENS = 1e14
"""No final run trains on more tokens than this (the largest corpora hold tens of trillions)."""
LARGE_STEP_TOKENS = 2**24
"""Tokens per step beyond the largest published batches (DeepSeek LLM's 67B: about 18M)."""


def _trial_hparams(run: TrainConfig, tau: float | None) -> Hparams:
    """What the transfer rules act on, read from a trial's training config and its tau."""
    return Hparams(
        lr=run.optim.lr, weight_decay=run.optim.weight_decay,
        tau=float(tau) if tau is not None and run.optim.weight_decay > 0 else None,
        batch_size=run.batch_size, warmup_frac=run.optim.warmup_frac, dropout=run.model.dropout,
        tokens=run.tokens, block_size=run.model.block_size, n_embd=run.model.n_embd,
        n_layer=run.model.n_layer,
    )


def _short_of_budget(chosen: FrozenTrial, ran_with: StudyConfig) -> str | None:
    """A complete trial whose curve ends before its token budget (its last report is filed at
    the grid point at or below it): one told COMPLETE outside the driver (the dashboard with
    --allow-writes), whose value was set there, not trained to the end; export took it as the
    best without a word. None for a trial that reported at its budget (or reported nothing,
    where nothing is known)."""
    budget, grid = ran_with.tokens_per_trial, ran_with.eval_interval
    reached = max(chosen.intermediate_values, default=None)
    if reached is None or reached >= budget // grid * grid:
        return None
    return (f"trial {chosen.number} reported up to {reached:,} of its {budget:,} tokens: it was "
            "ended outside the driver (the dashboard with --allow-writes, or another program), "
            f"and its value {chosen.value:.4f} is the one set there, not a trained run's")


def _data_since(ran_with: StudyConfig, ran_on: Any, began: str | None) -> str | None:
    """The study's data where it reads otherwise now than when its trials trained on it
    (``ran_on``, its fingerprint, under Python ``began``), or cannot be read: the final run
    trains on the data as it is, and export had said nothing. None where it reads the same, or
    where that is not known without tokenizing it (trainer.data.read_fingerprint; a local
    dataset of at most 512 MB is read for it)."""
    from scaletune.trainer.data import another_python, read_fingerprint, reads_otherwise, where
    from scaletune.trainer.errors import DataError

    if not isinstance(ran_on, str):
        return None
    try:
        now = read_fingerprint(ran_with.data, local_datasets=True)
    except (OSError, DataError) as e:
        return (f"data: {where(ran_with.data)}, which the study's trials trained on, cannot be "
                f"read here ({e}): the final run needs it")
    if now is None or now == ran_on:
        return None
    said = reads_otherwise(ran_with.data, ran_on, now, "the study's trials")
    if why := another_python(ran_with.data, ran_on, now, began, "the study ran"):
        return (f"{said}: the final run trains on the data as it is now ({why}; train it under "
                "that Python to train on what the trial did)")
    return (f"{said}: the final run trains on the data as it is now (restore it to train on what "
            "the trial did)")


def _params_laws_unused(cfg: StudyConfig, fitted: FittedLaws | None, old: Hparams,
                        new: Any) -> str | None:
    """The note of a study seeded by laws in parameters (a ladder along width, ``scale:
    params``) exported to another model (--model): the transfer takes the published width
    rules, not those laws, which it said nothing of. The trial's lr and tau moved by the laws'
    ratios to the new model are given, for a user who would follow them. ``fitted``: the
    study's laws (``_fitted_laws``)."""
    if fitted is None or fitted.scale_kind != "params":
        return None
    n_old = laws.non_embedding_params(old.n_layer, old.n_embd)
    n_new = laws.non_embedding_params(new.n_layer, new.n_embd)
    if n_old == n_new:
        return None
    # The trial's values moved by the laws' ratios: the written file holds the width rules'.
    moved = [f"{name} {value * fit.predict(n_new).value / fit.predict(n_old).value:.4g} (x"
             f"{fit.predict(n_new).value / fit.predict(n_old).value:.3g} of the trial's)"
             for name, value in (("lr", old.lr), ("tau", old.tau))
             if value is not None and (fit := getattr(fitted, name)) is not None]
    return (f"the study's priors are laws fitted in parameters ({cfg.priors.fitted_file}); "
            "--model is carried with the published width rules below, not with those laws"
            + (f", which from {n_old:,} to {n_new:,} non-embedding parameters give "
               f"{', '.join(moved)}: set those in the written file to follow them"
               if moved else ""))


def _fitted_laws(cfg: StudyConfig, notes: list[str]) -> FittedLaws | None:
    """The laws a study's priors were fitted with (a ladder's target), read once for export;
    None for published priors, or a laws file that is gone (a note says so)."""
    from scaletune.heuristics.fit import FittedLaws

    if cfg.priors.laws != "fitted" or not cfg.priors.fitted_file:
        return None
    try:
        return FittedLaws.load(Path(cfg.priors.fitted_file))
    except (OSError, ValueError) as e:
        notes.append(f"the study's fitted laws cannot be read ({e}); the published horizon "
                     "rules are used")
        return None


def fitted_exponents(cfg: StudyConfig, fitted: FittedLaws | None,
                     notes: list[str]) -> FittedExponents | None:
    """The exponents in tokens of the laws a study's priors were fitted with (``fitted``, read
    by ``_fitted_laws``), for the horizon transfer; None without them, or for laws in
    parameters. The fit's warnings become notes."""
    if fitted is None or fitted.scale_kind != "tokens":
        return None
    path = Path(cfg.priors.fitted_file)
    # The laws the horizon transfer uses; the carried warmup is kept as the trial had it.
    notes += [f"fitted laws: {w}" for w in fitted.study_warnings]
    notes += [f"fitted laws: {w}" for f in fitted.fits() for w in f.warnings]
    exponents: dict[str, float | None] = {}
    for name in HORIZON_EXPONENTS:
        fit = getattr(fitted, name)
        # A fit that warns is blended half and half with the published rule, as its prior is.
        exponents[name] = (None if fit is None else fit.exponent if not fit.weak
                           else (fit.exponent + HORIZON_EXPONENTS[name]) / 2)
    for name, published in HORIZON_EXPONENTS.items():
        fit = getattr(fitted, name)
        low, high = (None, None) if fit is None else fit.exponent_interval
        if fit is not None and not fit.weak and low <= published <= high:
            # Applied as fitted, though the rungs do not tell it from the published rule: an
            # exponent of -0.912 in [-2.950, 1.038] moved tau x0.12 for 10x the tokens, unsaid.
            notes.append(f"the fitted {name} law's exponent {fit.exponent:+.3f} has a "
                         f"{fit.level:.0%} interval [{low:+.3f}, {high:+.3f}] that holds the "
                         f"published horizon rule's {published:+.3g} ({HORIZON_SOURCES[name]}: "
                         f"how {name} moves as the run lengthens at a fixed model, not the "
                         f"priors' law): the rungs do not tell the two apart, and the transfer "
                         f"applies the fitted one")
    weak = [f.target for f in fitted.fits() if f.weak]
    if weak:
        notes.append(f"the fitted {', '.join(weak)} law(s) warn: their horizon exponents are "
                     "the mean of the fitted and the published horizon rules' (" + ", ".join(
                         f"{name} {HORIZON_EXPONENTS[name]:+.3g}" for name in weak
                         if name in HORIZON_EXPONENTS) + ")")
    # The file by its path and content: a ladder's later fit rotates it (laws.earlier-N.json).
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return FittedExponents(**exponents,
                           source=f"fitted on {fitted.lr.n_rungs} rungs ({path.resolve()}, "
                                  f"sha256 {digest})",
                           blended=tuple(name for name in weak if name in HORIZON_EXPONENTS))


def export_study(
    cfg: StudyConfig | str | Path,
    output: str | Path,
    source: str | None = None,
    trial: int | None = None,
    tokens: int | float | str | None = None,
    model: dict[str, Any] | None = None,
    max_batch_size: int | None = None,
) -> Export:
    """Write the training config of the best trial (or ``trial``) to ``output``; see the module.

    tokens: None keeps the trial's budget; a count as a study file writes one (2e9, "2B").
    model: ModelConfig fields to change. max_batch_size: cap on the transferred batch in
    sequences. ``cfg``: the study, or its file's path (a ladder, or its file, for its target).
    Errors name ``source`` (by default the study file)."""
    from scaletune.search.ladder import one_study

    cfg = one_study(cfg, "export_study")
    source = source or cfg.source
    if tokens is not None and (count := whole_count(tokens)) is None:
        raise ConfigError(source, [f"tokens: expected a whole number of tokens >= 1 (2e9, "
                                   f"2_000_000_000 or '2B'), got {tokens!r}"])
    tokens = None if tokens is None else count  # 3e6, a float, wrote "3,000,000.0 tokens"
    if max_batch_size is not None and (not isinstance(max_batch_size, int)
                                       or isinstance(max_batch_size, bool)):
        # "8": a TypeError of the transfer; 2.5: pydantic's error about TrainConfig.batch_size
        raise ConfigError(source, [f"max_batch_size: expected a whole number of sequences >= 1, "
                                   f"got {max_batch_size!r}"])
    if model is not None and not isinstance(model, Mapping):  # 'str' object is not a mapping
        raise TypeError(f"export_study: model takes a dict of the model's fields to change "
                        f"(model={{'n_embd': 128}}, as `--model n_embd=128` gives), not a "
                        f"{type(model).__name__}")
    output = Path(output).resolve()
    replaces = _replaceable(output, source)
    study, ran_with, notes = open_study(cfg, source)
    notes += [note] if (note := running_note(study)) else []
    chosen = pick_trial(study, trial, source)
    notes += [note] if (note := _short_of_budget(chosen, ran_with)) else []
    notes += [note] if (note := seeds_note(study.get_trials(deepcopy=False), chosen,
                                            ran_with.seed)) else []
    # A repeat of a config (run --repeat-best) trained with its own seed: the export keeps it.
    base, derived = trial_config(ran_with, chosen.params, fixed_values(ran_with), None,
                                 seed=chosen.user_attrs.get(TRAIN_SEED))
    try:
        new_model = ModelConfig.model_validate({**base.model.model_dump(), **(model or {})})
    except ValidationError as e:
        lines = format_errors(e, ModelConfig)  # an unknown key lists the keys allowed
        # The changes' fault, not the study file's (as parse_model_overrides says of its own).
        raise ConfigError("--model", [f"--model {line}" for line in lines]) from None
    from scaletune.trainer.data import vocab_problem

    began = (study.user_attrs.get("provenance") or {}).get("python")
    if note := _data_since(ran_with, study.user_attrs.get("data_fingerprint"), began):
        notes.append(note)

    # The tokenizer's vocabulary, as the study recorded it: a smaller vocab_size was written,
    # and refused by the run (and validate) only.
    if problem := vocab_problem(new_model.vocab_size, study.user_attrs.get("vocab_size"),
                                base.data.tokenizer):
        raise ConfigError(source, [f"--model {problem}"])

    best = _trial_hparams(base, chosen.params.get("tau", derived.get("tau")))
    # The fitted laws' notes are of the horizon transfer: none where the run keeps the horizon.
    horizon = tokens is not None and tokens != base.tokens
    laws_ = _fitted_laws(ran_with, notes if horizon else [])  # read once for both below
    fitted = fitted_exponents(ran_with, laws_, notes if horizon else [])
    notes += [note] if (note := _params_laws_unused(ran_with, laws_, best, new_model)) else []
    try:
        moved = transfer(best, base.tokens if tokens is None else tokens, n_embd=new_model.n_embd,
                         n_layer=new_model.n_layer, block_size=new_model.block_size,
                         max_batch_size=max_batch_size, fitted=fitted)
    except ValueError as e:  # transfer() checks its arguments; here they are the user's flags
        raise ConfigError(source, [f"--tokens/--max-batch-size: {e}"]) from None
    if new_model.dropout != best.dropout:  # --model dropout=...: the run's, not the trial's
        moved = _with_dropout(moved, new_model.dropout)
    moved = _with_model_changes(moved, base.model, new_model)
    final = moved.final
    if final.tokens > MAX_TOKENS:
        raise ConfigError(source, [
            f"--tokens: {final.tokens:.3g} is more than any corpus holds ({MAX_TOKENS:.0e} "
            "tokens, a hundred trillion): give the tokens of the final run"])
    step = final.batch_size * new_model.block_size
    if final.tokens < step:
        # Without --tokens, the trial's budget is short of a step only for a --model block_size.
        flag = "--tokens" if tokens is not None else f"--model block_size={new_model.block_size}"
        raise ConfigError(source, [
            f"{flag}: one optimizer step of the run's batch (batch_size {final.batch_size} x "
            f"block_size {new_model.block_size} = {step:,} tokens) is more than its "
            f"{final.tokens:,} tokens: give --tokens of at least {step:,}"
            + ("" if tokens is not None else " or a smaller block_size")])
    if final.tokens < base.tokens:
        notes.append(f"--tokens: {final.tokens:,} tokens, fewer than the {base.tokens:,} the "
                     "trial trained: the rules carry its config to a shorter run too, but a final "
                     "run is usually the longer one; check the value")
    if final.tokens_per_step > LARGE_STEP_TOKENS and max_batch_size is None:
        notes.append(f"the batch-size law gives {final.batch_size:,} sequences "
                     f"({final.tokens_per_step:,} tokens) per step at {final.tokens:.3g} tokens, "
                     f"beyond the largest batches published ({LARGE_STEP_TOKENS:,} tokens): "
                     "cap it with --max-batch-size")
    epochs_note = repeated_data_note(final.tokens, study.user_attrs.get("data_tokens"),
                                     final.dropout, new_model.dropout != best.dropout)
    if epochs_note is not None:
        notes.append(epochs_note)
    changed = code_changed(chosen, study) if _same_run(moved) else None
    if changed:
        notes.append(changed)
    if base.optim.name != "adamw" and not _same_run(moved):
        notes.append(f"optimizer {base.optim.name}: the rules are for AdamW's lr and weight decay"
                     + ("; muon_lr is kept" if base.optim.name == "muon" else ""))

    micro = base.micro_batch_size
    if micro is not None and final.batch_size % micro:
        micro = fitting_micro(final.batch_size, micro)
        notes.append(f"micro_batch_size lowered to {micro} so that it divides batch_size "
                     f"{final.batch_size}")

    # Beside the file, as a path relative to it (the trainer reads it so): a copy of the file in
    # another folder trains there, not into this file's run.
    out_dir = f"{output.stem}-run"
    config = base.model_copy(update={
        "model": new_model,
        "optim": base.optim.model_copy(update={"lr": final.lr, "weight_decay": final.weight_decay}),
        "tokens": final.tokens,
        "batch_size": final.batch_size,
        "micro_batch_size": micro,
        "eval_every_tokens": base.eval_every_tokens if _same_run(moved) else None,
        "num_threads": None,
        "progress": True,
        "out_dir": out_dir,
        "checkpoint_every_tokens": max(1, int(final.tokens * CHECKPOINT_FRACTION)),
        "data": _absolute_data(base),
    })
    record = provenance(study, cfg, source, chosen, moved, notes, ran_with,
                        other_code=changed is not None)
    config = TrainConfig.model_validate({**config.model_dump(), "provenance": record})
    config = _write_checked(output, config, header(record))  # as `scaletune train` reads it
    return Export(path=output, config=config, transfer=moved, trial=chosen, notes=tuple(notes),
                  replaced=replaces)


def _with_dropout(moved: Transfer, dropout: float) -> Transfer:
    """``moved`` with the final run's dropout set by ``--model``, and a rule that says so."""
    rules = tuple(r for r in moved.rules if r.value != "dropout")
    return replace(moved, final=replace(moved.final, dropout=dropout), rules=(*rules, Rule(
        "dropout", f"set to {dropout:g} by --model (the trial's: {moved.best.dropout:g})",
        "the command line")))


TRANSFERRED_MODEL_KEYS = ("n_embd", "n_layer", "block_size", "dropout")
"""The model's fields the transfer's rules carry (Hparams); --model's others are set as given."""


def _with_model_changes(moved: Transfer, was: ModelConfig, now: ModelConfig) -> Transfer:
    """``moved`` with a rule for the model's fields --model set that no transfer rule carries
    (n_head, norm, positions, ...): the run said it was "the trial's config", its loss the
    trial's to the digit, with another model."""
    old, new = was.model_dump(), now.model_dump()
    changed = [f"{k} {old[k]} -> {new[k]}" for k in new
               if k not in TRANSFERRED_MODEL_KEYS and new[k] != old[k]]
    if not changed:
        return moved
    return replace(moved, rules=(*moved.rules, Rule(
        "model", f"set by --model: {', '.join(changed)}", "the command line")))


def _model_set(moved: Transfer) -> bool:
    """Whether --model set fields of the model that no transfer rule carries."""
    return any(r.value == "model" for r in moved.rules)


def _same_run(moved: Transfer) -> bool:
    """The final run is the trial's own but, at most, for the dropout --model set."""
    return replace(moved.final, dropout=moved.best.dropout) == moved.best


def _replaceable(output: Path, source: str) -> bool:
    """Whether ``output`` holds a training config that the export replaces (True) or nothing
    (False). Anything else there (the study file itself, another study or ladder, a file that is
    no training config, a folder) is a ConfigError: an export never overwrites it."""
    where = f"-o {output}"
    if output.is_dir():
        raise ConfigError(where, [
            f"a folder; give the file to write, e.g. -o {output / 'final.yaml'}"])
    if not output.exists():
        return False
    if output == Path(source).resolve():
        kind = "ladder" if "rungs" in load_yaml(output) else "study"
        raise ConfigError(where, [f"the {kind} file itself; an export writes a training config: "
                                  "give another path, e.g. -o final.yaml"])
    try:
        kind = file_kind(load_yaml(output))
    except ConfigError:
        kind = None
    if kind != "training":
        what = {"study": "a study file", "ladder": "a ladder file"}.get(kind, "a file that is not "
                                                                        "a training config")
        raise ConfigError(where, [f"{what} is there; an export replaces only a training config "
                                  "(an earlier export): give another path, or move that file"])
    return True


def fitting_micro(batch: int, micro: int) -> int:
    """The largest micro-batch that divides ``batch`` and is no larger than ``micro``, the one the
    trial fitted in memory (the gcd of the two gave 4 for 16 and 12, where 8 fits)."""
    return max(d for d in range(1, min(batch, micro) + 1) if batch % d == 0)


def repeated_data_note(
    tokens: int, data_tokens: dict[str, int] | None, dropout: float, set_by_model: bool = False
) -> str | None:
    """The note for a final run that trains its data for more than one epoch, else None.

    ``data_tokens`` is the study's record of its data, {"train": N, "val": M} (None in studies
    that predate it). The final run trains on the study's data, so tokens beyond its training
    tokens are repeats: worth less than new data (Muennighoff et al.'s effective data,
    heuristics.laws.muennighoff_effective_tokens) and where dropout starts to help
    (heuristics.laws.dropout_by_epochs), while the trial's dropout is kept as it was."""
    train = (data_tokens or {}).get("train")
    if not train or tokens <= train:
        return None
    epochs = tokens / train
    kept = f"set to {dropout:g} by --model" if set_by_model else f"kept at the trial's {dropout:g}"
    return (f"this run trains {tokens:,} tokens, {epochs:.3g} epochs of the {train:,} training "
            f"tokens the study's data holds: repeated data; see dropout ({kept}; the epochs "
            f"heuristic gives {laws.dropout_by_epochs(epochs):.2g}) and "
            "Muennighoff et al.'s effective data (arXiv 2305.16264: a repeat is worth nearly a new "
            "token up to ~4 epochs, little beyond ~16); and weight decay is carried as tau, a "
            "fraction of the whole run, which is Wang & Aitchison's rule (arXiv 2405.13698: tau "
            "constant per epoch) only while no token repeats: over several epochs theirs gives a "
            "larger weight decay, and nothing here measured which holds")


def _absolute_data(cfg: TrainConfig) -> Any:
    data = cfg.data
    for key in ("path", "val_path"):  # written without the study file's ../ (a/b/../../c)
        if getattr(data, key):
            data = data.model_copy(update={key: str(Path(getattr(data, key)).resolve())})
    if data.cache_dir and not Path(data.cache_dir).is_absolute():
        data = data.model_copy(update={"cache_dir": str(Path(data.cache_dir).resolve())})
    return data


def provenance(
    study: optuna.Study,
    cfg: StudyConfig,
    source: str,
    trial: FrozenTrial,
    moved: Transfer,
    notes: list[str],
    ran_with: StudyConfig,
    other_code: bool = False,
) -> dict[str, Any]:
    """The machine-readable record of where an exported config came from. ``ran_with``: the
    config the study's trials ran with, whose threads an exact copy needs; ``other_code``: the
    trial was trained by other code than this (``code_changed``)."""
    study_prov = study.user_attrs.get("provenance") or {}
    return {
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "study": study.study_name,
        "study_file": str(Path(source).resolve()) if Path(source).is_file() else None,
        "storage": mask_url(cfg.storage_url),
        "trial": trial.number,
        "value": trial.value,
        "n_complete_trials": len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
        "fingerprint": study.user_attrs.get("fingerprint"),
        "data_fingerprint": study.user_attrs.get("data_fingerprint"),
        # The code that trained the trial (a trial from before each recorded its own: the
        # study's first launch's).
        "git_revision": trial.user_attrs.get("worker_code") or study_prov.get("git_revision"),
        "study_provenance": study_prov,
        "trial_params": dict(trial.params),
        "transfer": ("none: the trial's config, trained by other code than this (the note "
                     "below): the run may not repeat its loss, and repeats it at most with "
                     f"num_threads: {_trial_threads(ran_with)}, as the trial had"
                     if moved.exact_copy and not _model_set(moved) and other_code else
                     f"none: the trial's config; num_threads is left to the machine, and "
                     f"only with num_threads: {_trial_threads(ran_with)}, as the trial "
                     "had, does the run repeat its loss exactly (other thread counts round sums "
                     "differently)"
                     if moved.exact_copy and not _model_set(moved) else
                     "none: the trial's config, with the model --model sets"
                     if _same_run(moved) and _model_set(moved) else
                     "none: the trial's config, with the dropout --model sets"
                     if _same_run(moved) else "scaling laws"),
        "best": moved.best.record(),
        "final": moved.final.record(),
        "batch_size_law": moved.batch_size_law,
        "rules": [asdict(r) for r in moved.rules],
        "notes": list(notes),
    }


def code_changed(trial: FrozenTrial, study: optuna.Study) -> str | None:
    """The note for a trial trained by other code than this (``worker_code``; for a trial from
    before trials recorded it, the study's first launch's), which a run of its config may not
    repeat: a study resumed after an upgrade holds trials of both versions. None where the code
    is the same or unknown."""
    from scaletune.trainer.record import code_name, code_revision

    now = code_revision()
    ran = trial.user_attrs.get("worker_code")
    if ran is None:
        first = study.user_attrs.get("provenance") or {}
        ran = code_name(first.get("git_revision"), first.get("scaletune"))
        if ran is None or now is None or ran == now:
            return None
        return (f"trial {trial.number} records no code revision (it trained before scaletune "
                f"recorded each trial's); the study's first launch ran {ran}, and this is "
                f"{now}: where the trainer changed between them (CPU dropout's masks did on "
                "2026-12-05), this run does not repeat the trial's loss")
    if now is None or ran == now:
        return None
    return (f"trial {trial.number} was trained by {ran}, and this is {now}: where the trainer "
            "changed between them, this run does not repeat the trial's loss")


def _trial_threads(cfg: StudyConfig) -> int:
    """The torch threads a trial of ``cfg`` trained with: one per CPU it asked Ray for."""
    return max(1, int(cfg.workers.cpus_per_trial))


_ROWS = (
    ("tokens", "{:,}"), ("n_layer", "{}"), ("n_embd", "{}"), ("block_size", "{}"),
    ("lr", "{:.4g}"), ("tau", "{:.4g}"), ("weight_decay", "{:.4g}"), ("batch_size", "{}"),
    ("tokens_per_step", "{:,}"), ("steps", "{:,}"), ("warmup_frac", "{:.4g}"),
    ("warmup_steps", "{:,}"), ("dropout", "{:.4g}"),
)


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The record for people: where it came from, the trial vs this run, the rules applied."""
    best, final = record["best"], record["final"]
    lines = [
        "scaletune export: the training config of a final run (scaletune train THIS_FILE)",
        f"study        {record['study']} on {record['storage']}",
        f"trial        {record['trial']}, val loss {record['value']:.4f} "
        f"(of {record['n_complete_trials']} complete trials)",
        f"fingerprint  {record['fingerprint']}, code revision "
        f"{record['git_revision'] or 'unknown (not run from a git checkout)'}",
        f"exported     {record['exported_at']}",
        f"transfer     {record['transfer']}",
        "",
    ]
    shown = [(key, *("-" if v is None else fmt.format(v) for v in (best[key], final[key])),
              "" if best[key] == final[key] else "  *") for key, fmt in _ROWS]
    # Columns as wide as their widest number and two spaces apart: 1e12 tokens ran into the
    # trial's count ("20,0001,000,000,000,000").
    width = max(16, *(len(text) + 2 for _, b, f, _ in shown for text in (b, f)))
    # The trial's number, not "best trial": export --trial N copies another.
    lines.append(f"{'':14}{'trial ' + str(record['trial']):>{width}}{'this run':>{width}}")
    lines += [f"{key:14}{b:>{width}}{f:>{width}}{mark}" for key, b, f, mark in shown]
    if record["rules"]:
        lines += ["", "rules (* = changed):"]
        for r in record["rules"]:
            factor = "" if r["factor"] is None else f"  (x{r['factor']:.4g})"
            lines += textwrap.wrap(f"{r['value']}: {r['formula']}{factor}", 96,
                                   initial_indent="  ", subsequent_indent="      ")
            lines += textwrap.wrap(r["source"], 96, initial_indent="      ",
                                   subsequent_indent="      ")
        own = any("rungs (" in r["source"] or "rungs (" in r["formula"] for r in record["rules"])
        if own and final["tokens"] < best["tokens"]:  # below the trial, and maybe the rungs
            lines.append("The rules carry the trial's values down to a shorter run by laws "
                         "(fitted on your rungs, and published ones fitted on far larger models): "
                         "treat the values as a start.")
        elif own:
            lines.append("The rules extrapolate laws (fitted on your rungs, on smaller runs than "
                         "this one, and published ones fitted on far larger models): treat the "
                         "values as a start.")
        elif any(r["source"] != "the command line" for r in record["rules"]):
            lines.append("Scaling laws fitted on far larger models: treat transferred values as "
                         "a start.")
    for note in record["notes"]:
        lines += textwrap.wrap(f"note: {note}", 96, subsequent_indent="  ")
    return lines


def header(record: dict[str, Any]) -> str:
    """The comment block at the top of an exported file."""
    lines = [*summary_lines(record),
             "The same record is the `provenance:` mapping at the end (training ignores it)."]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + "\n"


def _write_checked(path: Path, config: TrainConfig, comments: str) -> TrainConfig:
    """Write next to ``path``, load it back as ``scaletune train`` would, then rename into place;
    the config loaded back (its out_dir resolved against the file's folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written = config.model_dump(mode="json")
    # A text source's file need not say `builtin: ...`, nor an adamw run's `muon_lr: ...`.
    for section, names in (("data", config.data.unread_defaults()),
                           ("model", config.model.unread_defaults()),
                           ("optim", config.optim.unread_defaults())):
        for name in names:
            del written[section][name]
    body = yaml.safe_dump(written, sort_keys=False, width=100)
    try:
        tmp.write_text(comments + body, encoding="utf-8")  # read back as UTF-8
        loaded = load_train_config(tmp)
        expected = config.model_copy(update={"out_dir": str(path.parent.resolve() / config.out_dir)
                                             if config.out_dir else None})
        if loaded.model_dump() != expected.model_dump():  # out_dir resolved against the file
            raise RuntimeError(f"{tmp} did not load back as the config that was written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return loaded
