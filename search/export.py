"""Export a study's best trial as the training config of a final run.

``scaletune export STUDY.yaml -o final.yaml`` copies the best trial exactly: same model, data,
optimizer, batch size and token budget. With ``--tokens`` (a longer run) or ``--model`` (a wider
or deeper model) the scaling laws carry the hyperparameters over:

    tau      kept: the AdamW timescale B / (eta * lambda * D) is what transfers across horizons
             (Power Lines, arXiv 2505.13738; Wang & Aitchison, arXiv 2405.13698)
    lr       eta * (D_new / D_old)^-0.32 for the horizon (Bjorck et al., arXiv 2409.19913), then
             eta * (width_old / width_new) for the width: muP's hidden-matrix rule eta ~ 1/width
             applied to the one global LR of the standard parameterization, a heuristic
             (Yang et al., arXiv 2203.03466)
    batch    B * (D_new / D_old)^0.383 in tokens per step (Power Lines), rounded to a power of two
             sequences, capped by --max-batch-size, at least 1
    lambda   re-derived from tau for the new lr, batch and horizon: lambda = B / (eta * tau * D)
    warmup   the same fraction of the steps; dropout kept (no law; it does not transfer under muP)

The file records the raw best values and the transferred ones, with the formulas and where the
study came from, both as comments at its top and as the ``provenance`` mapping that training
ignores. It is loaded back with ``load_train_config`` before it replaces any existing file.
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from scaletune.heuristics import laws
from scaletune.search.config import StudyConfig, validate_study
from scaletune.search.space import trial_config
from scaletune.search.storage import make_storage, mask_url, scrub
from scaletune.trainer.config import (
    ModelConfig,
    TrainConfig,
    format_errors,
    load_train_config,
)
from scaletune.trainer.errors import ConfigError
from scaletune.trainer.optim import warmup_steps

CHECKPOINT_FRACTION = 0.05
"""A final run writes a checkpoint every 5% of its tokens."""

HORIZON_CITATION = "Bjorck et al. 2025, arXiv 2409.19913"
POWER_LINES_CITATION = "Power Lines, Bergsma et al. 2025, arXiv 2505.13738"
MUP_CITATION = "Yang et al. 2022, arXiv 2203.03466"


# --------------------------------------------------------------------------- reading a study


def open_study(cfg: StudyConfig, source: str) -> tuple[optuna.Study, StudyConfig, list[str]]:
    """The study of ``cfg`` and the config it ran with, plus notes for the user.

    The config stored in the study (user attr ``config``) is what its trials trained with, so it
    wins over the study file when the two differ; the notes say so. Never creates a storage.
    """
    url = cfg.storage_url
    shown = mask_url(url)
    try:
        database = make_url(url).database if url.startswith("sqlite") else None
        if database and database != ":memory:" and not Path(database).is_file():
            raise ConfigError(source, [
                f"name: no study {cfg.name!r}: its storage {shown} does not exist; "
                f"run `scaletune run {source}` first"
            ])
        storage = make_storage(url)
        study = optuna.load_study(study_name=cfg.name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise ConfigError(source, [
            f"name: no study named {cfg.name!r} in {shown}; studies there: {names or 'none'}"
        ]) from None
    except SQLAlchemyError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(source, [f"storage: cannot open {shown}: {scrub(first, url)}"]) from None

    notes: list[str] = []
    stored = study.user_attrs.get("config")
    if stored is None:
        return study, cfg, ["the study records no config; using the study file as it is now"]
    try:
        ran_with = validate_study(stored, f"{shown} (study {cfg.name})")
    except ConfigError as e:
        notes.append(f"the config stored in the study no longer validates ({e.errors[0]}); "
                     "using the study file as it is now")
        return study, cfg, notes
    recorded = study.user_attrs.get("fingerprint")
    if recorded is not None and recorded != cfg.fingerprint():
        notes.append("the study file changed since the study ran; using the config stored in "
                     "the study, which its trials trained with")
    return study, ran_with, notes


def pick_trial(study: optuna.Study, number: int | None, source: str) -> FrozenTrial:
    """Trial ``number``, or the best complete trial; only complete trials have a final loss."""
    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            states = sorted({t.state.name for t in trials})
            raise ConfigError(source, [
                f"study {study.study_name!r} has no complete trial to export "
                f"({len(trials)} trial(s): {', '.join(states) or 'none'})"
            ])
        return min(complete, key=lambda t: t.value)
    found = [t for t in trials if t.number == number]
    if not found:
        raise ConfigError(source, [
            f"--trial: no trial {number} in study {study.study_name!r}; it has trials "
            f"0..{len(trials) - 1}" if trials else f"--trial: study {study.study_name!r} is empty"
        ])
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        raise ConfigError(source, [
            f"--trial: trial {number} is {trial.state.name}, not COMPLETE; only a trial that "
            "trained its whole budget can be exported"
        ])
    return trial


def fixed_values(cfg: StudyConfig) -> dict[str, Any]:
    """The values a study fixes instead of searching, keyed as ``search.space.build_space`` does."""
    s = cfg.search
    wd_name = "tau" if s.weight_decay.as_ == "tau" else "weight_decay"
    named = {"lr": s.lr, wd_name: s.weight_decay, "dropout": s.dropout,
             "warmup_frac": s.warmup_frac, "batch_size": s.batch_size, **s.other}
    return {name: p.value for name, p in named.items() if not p.searched}


# --------------------------------------------------------------------------- transfer rules


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
    warmup_frac: float
    dropout: float
    tokens: int
    block_size: int
    n_embd: int
    n_layer: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / self.tokens_per_step)

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_step": self.tokens_per_step, "steps": self.steps,
                "warmup_steps": warmup_steps(self.warmup_frac, self.steps)}


@dataclass(frozen=True)
class Rule:
    """One transfer step: which value, the formula, its factor and where it comes from."""

    value: str
    formula: str
    source: str
    factor: float | None = None


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


def transfer(
    best: Hparams,
    tokens: int,
    n_embd: int | None = None,
    n_layer: int | None = None,
    block_size: int | None = None,
    batch_size: int | None = None,
    max_batch_size: int | None = None,
) -> Transfer:
    """Carry the best trial's hyperparameters to a run of ``tokens`` tokens and this model shape.

    batch_size: None sets it from the batch-size law; a number forces it (pass the best trial's
    to keep the batch). Unchanged inputs give back exactly the best trial's values.
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
    if tokens != best.tokens:
        lr = laws.lr_transfer_horizon(lr, best.tokens, tokens)
        rules.append(Rule(
            "lr", f"eta * (D_new/D_old)^{laws.HORIZON_LR_EXPONENT} = eta * "
            f"({tokens:,}/{best.tokens:,})^{laws.HORIZON_LR_EXPONENT}",
            f"horizon rule, {HORIZON_CITATION}", lr / best.lr,
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
    growth = laws.powerlines_batch_opt_tokens(tokens) / laws.powerlines_batch_opt_tokens(best.tokens)
    law = best.tokens_per_step * growth / block_size
    if batch_size is not None:
        batch = batch_size
        rules.append(Rule("batch_size", f"set to {batch}", "the caller's choice"))
    elif law == best.batch_size:
        batch = best.batch_size
    else:
        batch = pow2_round(law)
        rules.append(Rule(
            "batch_size", f"B * (D_new/D_old)^0.383 = {law:.4g} sequences of {block_size} tokens,"
            f" rounded to a power of two", f"batch-size law, {POWER_LINES_CITATION}", growth,
        ))
    if max_batch_size is not None and batch > max_batch_size:
        batch = max_batch_size
        rules.append(Rule("batch_size", f"capped at {max_batch_size}", "--max-batch-size"))
    batch = max(1, batch)

    weight_decay = best.weight_decay
    if best.tau is not None and (lr, batch * block_size, tokens) != (
        best.lr, best.tokens_per_step, best.tokens
    ):
        weight_decay = laws.lambda_from_tau(best.tau, batch * block_size, lr, tokens)
        source = f"AdamW timescale, {POWER_LINES_CITATION}"
        if n_embd != best.n_embd:
            source += ("; across width this keeps eta*lambda fixed, lambda ~ width as Wang & "
                       "Aitchison (arXiv 2405.13698) give for muP")
        rules.append(Rule(
            "weight_decay", f"tau kept at {best.tau:.4g}; lambda = B/(eta*tau*D) with B and D in "
            "tokens", source, weight_decay / best.weight_decay,
        ))
    final = replace(best, lr=lr, weight_decay=weight_decay, batch_size=batch, tokens=tokens,
                    block_size=block_size, n_embd=n_embd, n_layer=n_layer)
    if final != best:
        rules.append(Rule(
            "warmup_frac", f"kept at {best.warmup_frac:.4g} of the steps: "
            f"{round(best.warmup_frac * final.steps):,} of {final.steps:,} steps",
            "the study's fraction",
        ))
        rules.append(Rule(
            "dropout", f"kept at {best.dropout:g}", "no law; under muP dropout does not transfer",
        ))
    return Transfer(best=best, final=final, batch_size_law=law, rules=tuple(rules))


# --------------------------------------------------------------------------- the export


@dataclass(frozen=True)
class Export:
    path: Path
    config: TrainConfig
    transfer: Transfer
    trial: FrozenTrial
    notes: tuple[str, ...]


def parse_model_overrides(items: list[str], source: str = "--model") -> dict[str, Any]:
    """``['n_embd=512', 'norm=rmsnorm']`` -> ``{'n_embd': 512, 'norm': 'rmsnorm'}`` (YAML values)."""
    out: dict[str, Any] = {}
    errors = []
    allowed = ", ".join(ModelConfig.model_fields)
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            errors.append(f"--model {item!r}: expected KEY=VALUE, e.g. n_embd=512")
        elif key not in ModelConfig.model_fields:
            errors.append(f"--model {key}: unknown model key; allowed: {allowed}")
        else:
            try:
                out[key] = yaml.safe_load(text)
            except yaml.YAMLError:
                out[key] = text
    if errors:
        raise ConfigError(source, errors)
    return out


def export_study(
    cfg: StudyConfig,
    output: str | Path,
    source: str,
    trial: int | None = None,
    tokens: int | None = None,
    model: dict[str, Any] | None = None,
    max_batch_size: int | None = None,
) -> Export:
    """Write the training config of the best trial (or ``trial``) to ``output``; see the module."""
    model = model or {}
    if tokens is not None and tokens < 1:
        raise ConfigError(source, [f"--tokens: must be >= 1, got {tokens}"])
    if max_batch_size is not None and max_batch_size < 1:
        raise ConfigError(source, [f"--max-batch-size: must be >= 1, got {max_batch_size}"])
    study, ran_with, notes = open_study(cfg, source)
    chosen = pick_trial(study, trial, source)
    base, derived = trial_config(ran_with, chosen.params, fixed_values(ran_with), None)

    unknown = [k for k in model if k not in ModelConfig.model_fields]
    if unknown:
        raise ConfigError(source, [f"--model {k}: unknown model key; allowed: "
                                   f"{', '.join(ModelConfig.model_fields)}" for k in unknown])
    try:
        new_model = ModelConfig.model_validate({**base.model.model_dump(), **model})
    except ValidationError as e:
        raise ConfigError(source, [f"--model {line}" for line in format_errors(e)]) from None

    tau = chosen.params.get("tau", derived.get("tau"))
    best = Hparams(
        lr=base.optim.lr, weight_decay=base.optim.weight_decay,
        tau=float(tau) if tau is not None and base.optim.weight_decay > 0 else None,
        batch_size=base.batch_size, warmup_frac=base.optim.warmup_frac, dropout=base.model.dropout,
        tokens=base.tokens, block_size=base.model.block_size, n_embd=base.model.n_embd,
        n_layer=base.model.n_layer,
    )
    moved = transfer(best, tokens or base.tokens, n_embd=new_model.n_embd,
                     n_layer=new_model.n_layer, block_size=new_model.block_size,
                     max_batch_size=max_batch_size)
    final = moved.final
    if base.optim.name != "adamw" and not moved.exact_copy:
        notes.append(f"optimizer {base.optim.name}: the rules are for AdamW's lr and weight decay"
                     + ("; muon_lr is kept" if base.optim.name == "muon" else ""))

    micro = base.micro_batch_size
    if micro is not None and final.batch_size % micro:
        micro = math.gcd(final.batch_size, micro)
        notes.append(f"micro_batch_size lowered to {micro} so that it divides batch_size "
                     f"{final.batch_size}")

    output = Path(output).resolve()
    out_dir = output.with_name(f"{output.stem}-run")
    config = base.model_copy(update={
        "model": new_model,
        "optim": base.optim.model_copy(update={"lr": final.lr, "weight_decay": final.weight_decay}),
        "tokens": final.tokens,
        "batch_size": final.batch_size,
        "micro_batch_size": micro,
        "eval_every_tokens": base.eval_every_tokens if moved.exact_copy else None,
        "num_threads": None,
        "progress": True,
        "out_dir": str(out_dir),
        "checkpoint_every_tokens": max(1, int(final.tokens * CHECKPOINT_FRACTION)),
        "data": _absolute_data(base),
    })
    record = provenance(study, cfg, source, chosen, moved, notes)
    config = TrainConfig.model_validate({**config.model_dump(), "provenance": record})
    _write_checked(output, config, header(record))
    return Export(path=output, config=config, transfer=moved, trial=chosen, notes=tuple(notes))


def _absolute_data(cfg: TrainConfig) -> Any:
    data = cfg.data
    if data.path and not Path(data.path).is_absolute():
        data = data.model_copy(update={"path": str(Path(data.path).resolve())})
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
) -> dict[str, Any]:
    """The machine-readable record of where an exported config came from."""
    study_prov = study.user_attrs.get("provenance") or {}
    return {
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "study": study.study_name,
        "study_file": str(Path(source).resolve()),
        "storage": mask_url(cfg.storage_url),
        "trial": trial.number,
        "value": trial.value,
        "n_complete_trials": len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
        "fingerprint": study.user_attrs.get("fingerprint"),
        "data_fingerprint": study.user_attrs.get("data_fingerprint"),
        "git_revision": study_prov.get("git_revision"),
        "study_provenance": study_prov,
        "trial_params": dict(trial.params),
        "transfer": "none: an exact copy of the trial" if moved.exact_copy else "scaling laws",
        "best": moved.best.record(),
        "final": moved.final.record(),
        "batch_size_law": moved.batch_size_law,
        "rules": [asdict(r) for r in moved.rules],
        "notes": list(notes),
    }


_ROWS = (
    ("tokens", "{:,}"), ("n_layer", "{}"), ("n_embd", "{}"), ("block_size", "{}"),
    ("lr", "{:.4g}"), ("tau", "{:.4g}"), ("weight_decay", "{:.4g}"), ("batch_size", "{}"),
    ("tokens_per_step", "{:,}"), ("steps", "{:,}"), ("warmup_frac", "{:.4g}"),
    ("warmup_steps", "{:,}"), ("dropout", "{:g}"),
)


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The record for people: where it came from, best vs this run, the rules applied."""
    best, final = record["best"], record["final"]
    lines = [
        "scaletune export: the training config of a final run (scaletune train THIS_FILE)",
        f"study        {record['study']} on {record['storage']}",
        f"trial        {record['trial']}, val loss {record['value']:.4f} "
        f"(of {record['n_complete_trials']} complete trials)",
        f"fingerprint  {record['fingerprint']}, code revision {record['git_revision']}",
        f"exported     {record['exported_at']}",
        f"transfer     {record['transfer']}",
        "",
        f"{'':14}{'best trial':>16}{'this run':>16}",
    ]
    for key, fmt in _ROWS:
        b, f = best[key], final[key]
        shown_b = "-" if b is None else fmt.format(b)
        shown_f = "-" if f is None else fmt.format(f)
        mark = "" if b == f else "  *"
        lines.append(f"{key:14}{shown_b:>16}{shown_f:>16}{mark}")
    if record["rules"]:
        lines += ["", "rules (* = changed):"]
        for r in record["rules"]:
            factor = "" if r["factor"] is None else f"  (x{r['factor']:.4g})"
            lines += textwrap.wrap(f"{r['value']}: {r['formula']}{factor}", 96,
                                   initial_indent="  ", subsequent_indent="      ")
            lines += textwrap.wrap(r["source"], 96, initial_indent="      ",
                                   subsequent_indent="      ")
        lines.append("Scaling laws fitted on far larger models: treat transferred values as a "
                     "start.")
    for note in record["notes"]:
        lines += textwrap.wrap(f"note: {note}", 96, subsequent_indent="  ")
    return lines


def header(record: dict[str, Any]) -> str:
    """The comment block at the top of an exported file."""
    lines = [*summary_lines(record),
             "The same record is the `provenance:` mapping at the end (training ignores it)."]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + "\n"


def _write_checked(path: Path, config: TrainConfig, comments: str) -> None:
    """Write next to ``path``, load it back as ``scaletune train`` would, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, width=100)
    try:
        tmp.write_text(comments + body)
        loaded = load_train_config(tmp)
        if loaded.model_dump() != config.model_dump():
            raise RuntimeError(f"{tmp} did not load back as the config that was written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
