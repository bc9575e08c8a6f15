"""The scale ladder: studies at smaller scales (rungs), laws fitted to them, the target seeded.

A ladder file names a target study file and the rungs below it. Each rung is an ordinary study
(the target's file with a smaller budget, a narrower model, or both), run by the same runner as
`scaletune run`, in the same storage, cheapest first. After each rung the lr, tau and batch-size
laws are fitted on every rung so far (``search.fit``) and written to the ladder's laws file;
once three rungs agree on the target (the last one moved no prediction by more than
``settle_log10``) and the fit gives no warning, the rest are skipped. The target study then
runs with ``priors: {laws: fitted}`` on that file. Running the command again resumes: finished
rungs are skipped, a rung cut short runs its missing trials.

    scaletune ladder studies/quickstart-ladder.yaml
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState
from pydantic import Field, ValidationError, field_validator, model_validator
from rich.console import Console
from rich.table import Table

from scaletune.heuristics import laws
from scaletune.heuristics.fit import NEAR_BEST, FittedLaws
from scaletune.search.config import (
    MAX_NAME,
    NAME_PATTERN,
    StudyConfig,
    _Strict,
    check_study,
    is_ladder,
    resolve_study,
)
from scaletune.search.fit import (
    fit_from_studies,
    laws_file_problem,
    laws_writable,
    model_size_searched,
    save_laws,
    study_scale,
)
from scaletune.search.noise import finished_of
from scaletune.search.plan import n_finished
from scaletune.search.space import fixed_values
from scaletune.search.storage import make_storage, sqlite_path
from scaletune.trainer.config import (
    ModelConfig,
    Tokens,
    Whole,
    file_kind,
    format_errors,
    laws_file_error,
    load_yaml,
)
from scaletune.trainer.console import given_console, make_console, whole_cells
from scaletune.trainer.data import byte_text_train_tokens, prepared_sizes
from scaletune.trainer.errors import ConfigError, DataError
from scaletune.trainer.record import earlier_name

SETTLE_LOG10 = 0.05
"""Default settle_log10: a prediction that moves less than 12% (0.05 dex) with a new rung."""
MIN_SETTLE_RUNGS = 3
"""A ladder may stop early only after this many rungs (two always fit a line)."""


class RungModel(_Strict):
    """The model fields a rung changes; the others are the target's."""

    n_layer: Whole | None = Field(None, ge=1)
    n_head: Whole | None = Field(None, ge=1)
    n_embd: Whole | None = Field(None, ge=1)


class RungConfig(_Strict):
    """One rung: a smaller study than the target, along tokens, width or both."""

    tokens_per_trial: Tokens | None = None
    """Training tokens of each trial of this rung; default the target's (a rung along width)."""
    model: RungModel = Field(default_factory=RungModel)
    """Model fields that differ from the target's (n_layer, n_head, n_embd)."""
    n_trials: Whole | None = Field(None, ge=1)
    """Finished trials of this rung; default the ladder's rung_trials."""

    @model_validator(mode="before")
    @classmethod
    def _model_keys_under_model(cls, raw: Any) -> Any:
        """A model field given beside tokens_per_trial goes under ``model:``: said so, where the
        unknown key's list of the keys allowed did not name it."""
        if isinstance(raw, dict) and (loose := [k for k in raw if k in RungModel.model_fields]):
            given = ", ".join(f"{k}: {raw[k]}" for k in loose)
            one = len(loose) == 1
            raise ValueError(f"{', '.join(loose)} {'is a model field' if one else 'are model fields'}"
                             f": give {'it' if one else 'them'} under model, as model: {{{given}}}")
        return raw


class TargetConfig(_Strict):
    """The study the ladder climbs to."""

    study: str = Field(min_length=1)
    """The target's study file (relative to the ladder file): model, data, search space,
    sampler, pruner and workers of every rung and of the target."""
    tokens_per_trial: Tokens | None = None
    """Tokens per trial of the target; default the study file's."""
    n_trials: Whole | None = Field(None, ge=1)
    """Finished trials of the target study; default the study file's."""


class LadderConfig(_Strict):
    """A ladder: a target study and the rungs below it."""

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    """The ladder's name (ASCII letters, digits, _ . -, not starting with a dot or a hyphen): its
    rungs are studies <name>-rung-..., its target <name>-target."""
    target: TargetConfig
    """The target study: {study: FILE, ...}, or the file alone (``target: study.yaml``)."""
    rungs: list[RungConfig]
    """The rungs below the target, as a list of at least two (three or more for a law that
    something tests), e.g. [{tokens_per_trial: 30000}, {tokens_per_trial: 60000}]."""

    @field_validator("target", mode="before")
    @classmethod
    def _file_alone(cls, v: Any) -> Any:
        return {"study": v} if isinstance(v, str) else v
    rung_trials: Whole = Field(8, ge=1)
    """Finished trials of each rung that sets no n_trials."""
    scale: Literal["tokens", "params"] = "tokens"
    """What the laws are a function of: tokens per trial, or non-embedding parameters."""
    near_best: float = Field(NEAR_BEST, gt=0, lt=1)
    """Trials within this fraction of their rung's best loss enter the fit, weighted by the gap."""
    settle_log10: float | None = Field(SETTLE_LOG10, gt=0)
    """Skip the remaining rungs once, from the third rung on, the last rung moved each predicted
    target value by less than this (log10) and the fit gives no warning; null runs every rung."""
    laws_file: str | None = None
    """Where the fitted laws are written; default runs/<name>/laws.json beside the ladder file."""
    hold_epochs: bool = False
    """Where the target makes more than one pass over its training data, train each rung on the
    first part of that data which gives it as many passes (``data.train_tokens``; the rung's
    name ends in ``-data<tokens>``), so that the rungs measure weight decay and dropout under the
    target's repetition. The passes are counted where the data is prepared and estimated for
    byte-level text; ``scaletune ladder`` prepares the data first otherwise."""

    @field_validator("rungs")
    @classmethod
    def _two_or_more(cls, v: list[RungConfig]) -> list[RungConfig]:
        if len(v) < 2:
            raise ValueError(f"a ladder needs at least two rungs to fit a line through, and "
                             f"three or more for a law that something tests; got {len(v)}")
        return v

    @model_validator(mode="after")
    def _distinct_rungs(self) -> LadderConfig:
        seen = [(r.tokens_per_trial, r.model.model_dump_json()) for r in self.rungs]
        twice = sorted({i for i, key in enumerate(seen) if seen.index(key) != i})
        if twice:
            i = twice[0]
            raise ValueError(f"rungs[{i}] repeats rungs[{seen.index(seen[i])}] (the same tokens "
                             "and model): give each rung its own tokens_per_trial or model")
        return self


@dataclass(frozen=True)
class Rung:
    """A rung as it runs: its study config, scale and cost."""

    cfg: StudyConfig
    scale: float
    tokens_per_param: float
    flops: float
    """Compute of the whole rung: 6 * N * D per trial times its trials (N non-embedding)."""
    key: str = "rungs"
    """Where the ladder file gives it, for its problems to name: ``rungs[1]``."""


@dataclass(frozen=True)
class Ladder:
    """A validated ladder file: rungs cheapest first, the target study, where the laws go."""

    cfg: LadderConfig
    source: str
    rungs: tuple[Rung, ...]
    target: StudyConfig
    laws_file: Path
    held: str | None = None
    """What ``hold_epochs`` did, in words (None when it is off)."""
    notes: tuple[str, ...] = ()
    """What of the target's study file the ladder does not use (its study_dir, its priors)."""

    @property
    def target_scale(self) -> float:
        return study_scale(self.target, self.cfg.scale)


def _tokens_label(tokens: int) -> str:
    """``tokens`` in a study's name: exact (1,234,567 and 1,234,568 were both 1234.57k, two
    rungs refused as one)."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if tokens >= size and tokens % (size // 1000 or 1) == 0:
            return f"{tokens / size:.12g}{unit}"
    return str(tokens)


def _study(raw: dict[str, Any], changes: dict[str, Any], where: str, path: Path,
           errors: list[str]) -> StudyConfig | None:
    """The target's study file with ``changes``, validated; its problems named by ``where``."""
    try:
        cfg = check_study({**raw, **changes}, where)
    except ConfigError as e:
        errors += [f"{where}: {line}" for line in e.errors]
        return None
    return resolve_study(cfg, path)


def study_or_target(path: str | Path) -> StudyConfig:
    """The study of a study file, or the target study of a ladder file: what the commands that
    read one study (report, export, show, best, dashboard) or its storage (studies) take either
    for."""
    from scaletune.search.config import load_study

    if not is_ladder(path):
        return load_study(path)
    return named_target(load_ladder(path))


def as_ladder(cfg: Any) -> Ladder | None:
    """``cfg`` where it is a ladder (a Ladder, or the path of a ladder file), else None."""
    if isinstance(cfg, Ladder):
        return cfg
    if isinstance(cfg, (str, os.PathLike)) and Path(cfg).is_file() and is_ladder(cfg):
        return load_ladder(cfg)
    return None


def one_study(cfg: Any, who: str) -> StudyConfig:
    """What the functions that read one study (``who``: make_report, export_study) take, as
    their commands do: a StudyConfig, the path of a study file, or a ladder (a Ladder, or its
    file's path) for its target study. Anything else is a TypeError."""
    if isinstance(cfg, (str, os.PathLike)):
        return study_or_target(cfg)
    if isinstance(cfg, Ladder):
        return named_target(cfg)
    if not isinstance(cfg, StudyConfig):
        raise TypeError(f"{who} takes a StudyConfig, a Ladder or the path of a study or ladder "
                        f"file, not a {type(cfg).__name__} (a dict: validate_study(d) first)")
    return cfg


def named_target(ladder: Ladder) -> StudyConfig:
    """The ladder's target study, its errors naming the ladder file: what the user gave, which
    commands name (not the target's study file, which the ladder names)."""
    target = ladder.target.model_copy()
    target._source = ladder.source
    return target


def _target_file(path: Path, study: str) -> tuple[Path, list[str], dict[str, Any] | None]:
    """The target's study file, named by ``study`` in the ladder file at ``path``: its path,
    what is wrong with it as a file (it is missing, unreadable, a ladder, a training config or
    laws), and its contents where nothing is."""
    # ~ as every path of a study file takes it (a laws_file of ~/laws.json made a folder ~ here).
    study_path = path.resolve().parent / Path(study).expanduser()
    try:
        target_raw = load_yaml(study_path)
    except ConfigError as e:
        return study_path, [f"target.study: {line}" + (
            f": {str(study_path)!r} (taken from the ladder file's folder)"
            if line == "file not found" else "") for line in e.errors], None
    if "rungs" in target_raw:
        return study_path, [
            f"target.study: {study_path} is a ladder file (it has rungs), not a study file: name "
            "the study file whose model and budget the ladder's target runs"], None
    if (kind := file_kind(target_raw)) in ("training", "laws"):
        what = ("a training config (tokens, no n_trials)" if kind == "training"
                else "a fitted-laws file")
        return study_path, [
            f"target.study: {study_path} is {what}, not a study file: name the study file whose "
            "model and budget the ladder's target runs"], None
    return study_path, [], target_raw


def load_ladder(path: str | Path) -> Ladder:
    """Read and validate a ladder file and the target study it names; every problem at once,
    each naming its key (a rung's problems name the rung: ``rungs[1]: model.n_head: ...``)."""
    raw = load_yaml(path)  # first: it says what it takes in place of a path (a dict)
    path = Path(path)
    kind = file_kind(raw)
    if kind in ("study", "training", "laws"):
        # One line that says what the file is, not every ladder key it lacks.
        raise ConfigError(str(path), [{
            "study": f"a study file, not a ladder file (target, rungs): run it with `scaletune "
                     f"run {path}`, or name it as a ladder's target (target: {{study: "
                     f"{path.name}}})",
            "training": f"a training config, not a ladder file (target, rungs): train it with "
                        f"`scaletune train {path}`",
            "laws": laws_file_error(path)}[kind]])
    raw.setdefault("name", path.stem)
    try:
        cfg = LadderConfig.model_validate(raw)
    except ValidationError as e:
        errors = format_errors(e, LadderConfig)
        # The target's file is said beside the ladder's own errors (a missing one came to light
        # only once they were fixed).
        given = raw.get("target")
        given = given.get("study") if isinstance(given, dict) else given
        if isinstance(given, str) and given and not any(
                line.startswith("target") for line in errors):
            errors += _target_file(path, given)[1]
        raise ConfigError(str(path), errors) from None
    study_path, problems, target_raw = _target_file(path, cfg.target.study)
    if target_raw is None:
        raise ConfigError(str(path), problems)
    errors: list[str] = []
    laws_file = (path.resolve().parent / Path(cfg.laws_file).expanduser() if cfg.laws_file
                 else path.resolve().parent / "runs" / cfg.name / "laws.json")
    # Where no laws file can be: a folder, a path no file can take. A file there that is not
    # laws (damaged) is refused where laws are written (manage.ladder_problems), not by the
    # commands that only read the ladder.
    if not laws_file.is_file() and (problem := laws_file_problem(laws_file)):
        errors.append(f"laws_file: {problem}")
    target_changes: dict[str, Any] = {
        "name": f"{cfg.name}-target",
        "priors": {"laws": "fitted", "fitted_file": str(laws_file)},
    }
    if cfg.target.tokens_per_trial is not None:
        target_changes["tokens_per_trial"] = cfg.target.tokens_per_trial
        target_changes["eval_every_tokens"] = None
    if cfg.target.n_trials is not None:
        target_changes["n_trials"] = cfg.target.n_trials
    # The target study file's own problems name it, once: each rung is built from it too.
    target = _study({k: v for k, v in target_raw.items() if k != "study_dir"}, target_changes,
                    f"target.study {cfg.target.study}", study_path, errors)
    in_study_file = {line.split(": ", 1)[1] for line in errors if line.startswith("target.study")}
    base = {k: v for k, v in target_raw.items() if k not in ("study_dir", "priors")}
    base.pop("eval_every_tokens", None)  # a tenth of each rung's budget, not the target's cadence
    rungs = []
    for i, rung in enumerate(cfg.rungs):
        tokens = rung.tokens_per_trial or (target.tokens_per_trial if target else None)
        if tokens is None:
            continue  # a rung at the target's tokens, whose study is refused above
        model = {**target_raw.get("model", {}), **rung.model.model_dump(exclude_none=True)}
        shape = {**ModelConfig().model_dump(), **model}
        name = f"{cfg.name}-rung-{_tokens_label(tokens)}-{shape['n_layer']}x{shape['n_embd']}"
        study = _study(base, {"name": name, "model": model, "tokens_per_trial": tokens,
                              "n_trials": rung.n_trials or cfg.rung_trials},
                       f"rungs[{i}]", study_path, errors)
        same = next((j for j, r in enumerate(rungs) if r.cfg.name == name), None)
        if target is not None and study is not None and tokens == target.tokens_per_trial and \
                study.model == target.model:  # (a rung that is no study was named above)
            errors.append(f"rungs[{i}]: the target's own tokens_per_trial ({tokens:,}) and model: "
                          "it would run the target's study once more; a rung is a smaller study")
        elif same is not None:  # as written they differ: one at the target's tokens, or n_head
            errors.append(f"rungs[{i}]: the same tokens per trial and model size as an earlier "
                          f"rung ({name}): give each rung its own tokens_per_trial or model size")
        elif study is not None:
            n = laws.non_embedding_params(study.model.n_layer, study.model.n_embd)
            rungs.append(Rung(study, study_scale(study, cfg.scale), tokens / n,
                              planned_flops(study), f"rungs[{i}]"))
    errors = [line for line in errors if not (line.startswith("rungs[")
                                              and line.split(": ", 1)[1] in in_study_file)]
    if target is not None and "lr" in (fixed := fixed_values(target)):
        errors.append(f"target: its study fixes lr (search.lr: {{value: {fixed['lr']}}}), so "
                      "every rung would train one lr and the ladder would fit a law to no "
                      "optimum; search lr in the study (search.lr: {prior: auto})")
    if target is not None and (keys := model_size_searched(target)):
        errors.append(f"target: its study searches {' and '.join(keys)}, so each rung's trials "
                      "would be models of several sizes, at no one scale for the laws; fix the "
                      "model's size in the study (model:), and vary it across rungs instead")
    if len(rungs) >= 2 and len({r.scale for r in rungs}) < 2:
        widths = len({study_scale(r.cfg, "params") for r in rungs}) > 1
        errors.append(f"rungs: every rung has the same {cfg.scale} ({rungs[0].scale:,.0f}), so no "
                      f"law in {cfg.scale} can be fitted: vary "
                      + ("tokens_per_trial" if cfg.scale == "tokens" else "model.n_embd or n_layer")
                      + ("; or, for rungs that vary the model's size, fit the laws in it "
                         "(scale: params)" if cfg.scale == "tokens" and widths else ""))
    tpp = sorted(r.tokens_per_param for r in rungs)
    if len(rungs) >= 2 and tpp[-1] / tpp[0] < 1.5:
        low, high = f"{tpp[0]:.3g}", f"{tpp[-1]:.3g}"
        span = low if low == high else f"{low}-{high}"
        errors.append(f"rungs: every rung trains {span} tokens per parameter; "
                      "vary it (by 1.5x or more: change tokens_per_trial at a fixed width) so "
                      "that the fit sees how the optimum moves with the horizon, which the "
                      "target's may differ in")
    if target is not None and len(rungs) == len(cfg.rungs):
        top = study_scale(target, cfg.scale)
        errors += [f"rungs[{i}]: its {cfg.scale} ({r.scale:,.0f}) is not below the target's "
                   f"({top:,.0f}): a rung is a smaller study" for i, r in enumerate(rungs)
                   if r.scale > top * (1 + 1e-9)]
        # Along the other quantity too: a wider rung at fewer tokens passed, and cost more.
        other = "params" if cfg.scale == "tokens" else "tokens"
        most = study_scale(target, other)
        errors += [f"rungs[{i}]: its {other} ({study_scale(r.cfg, other):,.0f}"
                   + (" non-embedding parameters" if other == "params" else " per trial")
                   + f") are more than the target's ({most:,.0f}): a rung is a smaller study"
                   for i, r in enumerate(rungs) if study_scale(r.cfg, other) > most * (1 + 1e-9)]
        # At the target's tokens and size both (its n_head apart): the target's cost again.
        errors += [f"rungs[{i}]: the target's own tokens per trial and model size: a rung is a "
                   "smaller study" for i, r in enumerate(rungs)
                   if r.cfg.tokens_per_trial == target.tokens_per_trial
                   and study_scale(r.cfg, "params") == study_scale(target, "params")
                   and r.cfg.model != target.model]
    if errors:
        raise ConfigError(str(path), errors)
    assert target is not None
    held = None
    if cfg.hold_epochs:
        rungs, held = _hold_epochs(rungs, target, base, study_path)
    ordered = tuple(sorted(rungs, key=lambda r: r.flops))
    # What of the study file the ladder does not use, said (its studies went elsewhere without
    # a word, and a priors: section, valid or not, was dropped).
    notes = tuple(note for key, note in (
        ("study_dir", f"target.study: its study_dir ({target_raw.get('study_dir')}) is not used: "
                      "the ladder's studies live in runs/ beside the study file "
                      f"({study_path.parent / 'runs'}; their storage is the one the study file "
                      "names, where it names one)"),
        ("priors", "target.study: its priors: section is not used: the rungs start from the "
                   "published laws, the target from the laws they fit"))
        if target_raw.get(key) is not None)
    return Ladder(cfg, str(path), ordered, target, laws_file, held, notes)


def _hold_epochs(rungs: list[Rung], target: StudyConfig, base: dict[str, Any],
                 study_path: Path) -> tuple[list[Rung], str]:
    """The rungs on the first part of the training data that gives each the target's passes
    over it (``hold_epochs``), and what was done, in words."""
    passes = epochs(target)
    if passes is None:
        return rungs, ("hold_epochs: the target's passes over its data are not known until the "
                       "data is prepared (`scaletune ladder` prepares it first); rungs as given")
    if passes <= 1:
        return rungs, (f"hold_epochs: the target makes {passes:.2g} passes over its data, no "
                       "more than one: the rungs train on all of it, as the target does")
    held = []
    for rung in rungs:
        cfg = rung.cfg
        tokens = max(math.ceil(cfg.tokens_per_trial / passes), cfg.model.block_size + 1)
        unit = 10 ** max(0, len(str(tokens)) - 3)  # three significant digits: a readable name
        tokens = math.ceil(tokens / unit) * unit
        data = {**base.get("data", {}), "train_tokens": tokens}
        errors: list[str] = []
        study = _study(base, {"name": f"{cfg.name}-data{_tokens_label(tokens)}", "data": data,
                              "model": cfg.model.model_dump(exclude_unset=True), "tokens_per_trial":
                              cfg.tokens_per_trial, "n_trials": cfg.n_trials},
                       cfg.name, study_path, errors)
        if study is None:  # the rung validated with the target's data; this changes one count
            raise ConfigError(str(study_path), errors)
        held.append(Rung(study, rung.scale, rung.tokens_per_param, rung.flops, rung.key))
    return held, (f"hold_epochs: the target makes {passes:.2g} passes over its data; each rung "
                  "trains on the first part of it that gives it as many (data.train_tokens)")


# --------------------------------------------------------------------------- running


def stored_study(cfg: StudyConfig) -> optuna.Study | None:
    """The study of ``cfg`` in its storage, or None where it has not run. Never creates a
    storage."""
    database = sqlite_path(cfg.storage_url)
    if database is not None and not database.is_file():
        return None
    try:
        return optuna.load_study(study_name=cfg.name, storage=make_storage(cfg.storage_url))
    except KeyError:
        return None


def finished_trials(cfg: StudyConfig) -> int:
    """Finished trials of the study of ``cfg`` in its storage; 0 where it has not run."""
    study = stored_study(cfg)
    return 0 if study is None else n_finished(study)


def _has_a_complete_trial(ladder: Ladder, rung: Rung) -> None:
    """A rung whose finished trials were all pruned or diverged gives the fit nothing; run again,
    the ladder found it finished and stopped on the same error, saying nothing of what to do."""
    from scaletune.search.studies import by_state

    study = stored_study(rung.cfg)
    trials = [] if study is None else study.get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return
    key = "rung_trials" if rung.cfg.n_trials == ladder.cfg.rung_trials else "its n_trials"
    raise ConfigError(ladder.source, [
        f"rungs: no trial of {rung.cfg.name} completed ({by_state(trials) or 'none ran'}), so "
        f"the laws have no loss at this rung to fit: raise {key} above {rung.cfg.n_trials} and "
        "run the ladder again, which runs only the rung's missing trials; where its trials "
        "diverged, search lower learning rates (search.lr in the target study) with a new "
        "name: in the ladder file (its rungs, which trained with the range they had, start "
        "again then)"])


def fit_rungs(ladder: Ladder, rungs: tuple[Rung, ...] | list[Rung]) -> FittedLaws:
    """The laws fitted on the near-best trials of ``rungs`` (finished studies)."""
    return fit_from_studies([r.cfg for r in rungs], scale_kind=ladder.cfg.scale,
                            near=ladder.cfg.near_best)


def predictions(laws_: FittedLaws, scale: float) -> dict[str, float]:
    """log10 of each fitted law at ``scale``, by target."""
    return {f.target: math.log10(f.predict(scale).value) for f in laws_.fits()}


def settled(ladder: Ladder, before: FittedLaws | None, now: FittedLaws, n_rungs: int) -> bool:
    """True when the last rung moved no prediction of a law (lr, tau, batch size) for the
    target by settle_log10 or more, from the third rung on, and the fit gives no warning (of a
    law, or of the studies). The carried warmup is not one: it has no trend with scale to
    settle."""
    limit = ladder.cfg.settle_log10
    if limit is None or before is None or n_rungs < MIN_SETTLE_RUNGS or now.warnings:
        return False
    was, is_ = predictions(before, ladder.target_scale), predictions(now, ladder.target_scale)
    return all(k in was and abs(v - was[k]) < limit for k, v in is_.items())


def epochs(cfg: StudyConfig) -> float | None:
    """Passes over its training data that a trial of ``cfg`` trains: counted where the data is
    prepared already, estimated from the files' sizes for byte-level text; None where neither
    can be known without preparing the data (nothing is tokenized here)."""
    try:
        prepared = prepared_sizes(cfg.data)
        unique = prepared[0] if prepared else byte_text_train_tokens(cfg.data)
    except (DataError, OSError):
        return None
    return cfg.tokens_per_trial / unique if unique else None


def epochs_warning(rungs: list[float | None], target: float | None) -> str | None:
    """A warning when the target repeats its data and the rungs do not (``epochs`` of each):
    laws fitted on rungs that see every token once are carried to a run where regularization
    acts differently."""
    if target is None or None in rungs or target <= 1 or max(rungs) > 1:
        return None
    return (f"the target trains {target:.2g} epochs of its data and the rungs at most "
            f"{max(rungs):.2g}: the laws fitted on rungs that see each token once are carried to "
            "a run that repeats its data, where weight decay and dropout act differently. On the "
            "benchmark suite's pydoc-long (1.6 epochs) the ladder's tau was 0.8-1.25 dex below the "
            "best found; give the target study a wider tau range, or set hold_epochs: true "
            "(rungs on a share of the data, repeated as the target repeats it: there, tau came "
            "closer but the losses did not)")


def planned_flops(cfg: StudyConfig) -> float:
    """Compute a study plans (6ND of its non-embedding parameters, times its trials)."""
    n = laws.non_embedding_params(cfg.model.n_layer, cfg.model.n_embd)
    return laws.flops_6nd(n, cfg.tokens_per_trial) * cfg.n_trials


def plan_table(ladder: Ladder, passes: list[float | None]) -> Table:
    """The rungs cheapest first, then the target, with their scale, ``passes`` (the epochs of
    each, in that order) and state."""
    table = Table(title=f"Ladder {ladder.cfg.name}: rungs cheapest first, then the target")
    for column in ("study", "tokens/trial", "model", "N non-emb.", "tokens/param", "epochs",
                   "trials", "compute (6ND)", "finished"):
        table.add_column(column, justify="left" if column in ("study", "model") else "right")
    studies = [r.cfg for r in ladder.rungs] + [ladder.target]
    for cfg, epochs_ in zip(studies, passes, strict=True):
        n = laws.non_embedding_params(cfg.model.n_layer, cfg.model.n_embd)
        m = cfg.model
        table.add_row(cfg.name, f"{cfg.tokens_per_trial:,}", f"{m.n_layer}x{m.n_embd}",
                      f"{n:,}", f"{cfg.tokens_per_trial / n:.3g}",
                      "?" if epochs_ is None else f"{epochs_:.2g}", str(cfg.n_trials),
                      f"{planned_flops(cfg):.3g}", _finished_cell(cfg))
    return whole_cells(table)


def _finished_cell(cfg: StudyConfig) -> str:
    """A study's finished trials of those it runs to, as the plan's table shows them: with its
    repeats of the best (--repeat-best) said apart, where the target read '4/3'."""
    from scaletune.search.noise import n_repeats, trials_asked

    study = stored_study(cfg)
    trials = [] if study is None else study.get_trials(deepcopy=False)
    done = 0 if study is None else n_finished(study)
    repeats = n_repeats(trials)
    if not repeats:
        return f"{done}/{cfg.n_trials}"
    return f"{done}/{trials_asked(trials, cfg.n_trials)} ({repeats} repeat{'s' * (repeats > 1)})"


def print_plan(ladder: Ladder, console: Console, notes: list[str] | None = None,
               repeat_best: int = 0) -> None:
    """The plan table, the repeats of the target's best (``--repeat-best``), the warning of
    ``epochs_warning`` where it applies, and ``notes`` (the plan's, ``checked``)."""
    passes = [epochs(cfg) for cfg in [r.cfg for r in ladder.rungs] + [ladder.target]]
    console.print(plan_table(ladder, passes))
    if repeat_best:
        console.print(f"repeats: the target study's best complete trial, {repeat_best} more "
                      "time(s) with training seeds it has not used, never pruned, on top of its "
                      "n_trials", highlight=False, markup=False, soft_wrap=True)
    if ladder.held:
        console.print(ladder.held, highlight=False, markup=False, soft_wrap=True)
    for warning in (epochs_warning(passes[:-1], passes[-1]), cost_warning(ladder)):
        if warning:
            console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False,
                          soft_wrap=True)
    for note in notes or []:
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False,
                      soft_wrap=True)


def cost_warning(ladder: Ladder) -> str | None:
    """A warning where the rungs cost as much compute as the target study or more: a ladder is
    worth its rungs when they are cheaper than the search at the target they seed."""
    target = planned_flops(ladder.target)
    rungs = sum(r.flops for r in ladder.rungs)
    if rungs < target:
        return None
    return (f"the rungs cost {rungs:.3g} FLOPs (6ND), {rungs / target:.2g}x the target study's "
            f"{target:.3g}: a ladder pays when its rungs are cheaper than the search at the "
            "target; use smaller rungs (fewer tokens or a narrower model) or fewer rung_trials")


def print_fit(ladder: Ladder, fitted: FittedLaws, console: Console) -> None:
    """Each law, its prediction at the target with the interval, and its warnings."""
    scale = ladder.target_scale
    for fit in fitted.all_fits():
        pred = fit.predict(scale)
        console.print(f"  {fit.describe()}", highlight=False, markup=False, soft_wrap=True)
        block = ladder.target.model.block_size
        below = (f" (less than one sequence of {block} tokens: no batch trains that; the "
                 "target's batch is a sequence or more)"
                 # a relative margin: 32 sequences' worth of tokens predicted as 31.999999...
                 if fit.target == "batch_size" and pred.value < block * (1 - 1e-9) else "")
        # A bootstrap with nothing to vary gives [x, x]: said as what it is, not as certainty.
        interval = (f"{pred.level:.0%} prediction interval [{pred.low:.4g}, {pred.high:.4g}]"
                    if pred.high > pred.low * (1 + 1e-9) else
                    "no prediction interval (zero width: the rungs gave nothing to vary; see "
                    "the warnings)")
        console.print(f"    at the target ({ladder.cfg.scale} {scale:,.0f}): {pred.value:.4g} "
                      f"{fit.unit}, {interval}{below}", highlight=False, markup=False,
                      soft_wrap=True)
    for warning in fitted.warnings:
        console.print(f"  warning: {warning}", style="yellow", highlight=False, markup=False,
                      soft_wrap=True)


def rungs_compute(ladder: Ladder) -> dict[str, float]:
    """What the rungs that ran cost: rungs, trials, tokens trained and FLOPs (6ND), from their
    studies in the storage (a rung skipped once the laws settled has none)."""
    from scaletune.search.plan import n_finished
    from scaletune.search.summary import summarize

    out = {"rungs": 0, "trials": 0, "tokens": 0, "flops": 0.0, "stopped": 0}
    for rung in ladder.rungs:
        study = stored_study(rung.cfg)
        if study is None:
            continue
        summary = summarize(study, rung.cfg)
        out["rungs"] += 1
        out["trials"] += n_finished(study)  # a failure run again is counted by its re-run
        # Trials that failed or were stopped (Ctrl-C, a killed worker; run again): the tokens
        # above count what they trained.
        out["stopped"] += summary["trials"].get("FAIL", 0)
        out["tokens"] += summary["compute"]["tokens_trained"]
        out["flops"] += summary["compute"]["flops_6nd"]
    return out


def with_data_sized(ladder: Ladder) -> Ladder:
    """``ladder`` with ``hold_epochs`` applied where it waits on the size of the data (a
    tokenizer other than bytes, data not prepared yet): the data is tokenized now, as the
    first rung would, and the ladder file read again. Otherwise ``ladder`` itself."""
    if not ladder.cfg.hold_epochs or epochs(ladder.target) is not None:
        return ladder
    from scaletune.trainer.data import prepare_data

    prepare_data(ladder.target.data, ladder.target.model.block_size)
    return load_ladder(ladder.source)


def _laws_at_launch(path: Path, scale: float) -> tuple[bytes, dict[str, float]] | None:
    """The laws file as a ladder's launch finds it, and its predictions at the target (at
    ``scale``): as the file wrote them, or, for a file without them (written by `scaletune fit`
    over the ladder's), as its laws give them."""
    try:
        text = path.read_bytes()
    except OSError:
        return None
    try:
        target = json.loads(text)["predictions"]["target"]
        return text, {k: float(v["value"]) for k, v in target.items() if isinstance(v, dict)}
    except (ValueError, KeyError, TypeError):
        pass
    try:
        laws = FittedLaws.from_json(json.loads(text))
        return text, _predictions(laws, scale)
    except (ValueError, KeyError, TypeError):
        return None


def _fitted_scales(text: bytes) -> set[float] | None:
    """The scales of the rungs that a laws file's laws were fitted on; None where it does not
    say (a file of `scaletune fit`, or of another version)."""
    try:
        laws = json.loads(text)
        return {float(r["scale"]) for key in ("lr", "tau", "batch_size")
                if isinstance(laws.get(key), dict) for r in laws[key].get("rungs") or []}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _predictions(laws: FittedLaws, scale: float) -> dict[str, float]:
    """Each law's prediction at ``scale`` (the target's), by what it predicts."""
    return {f.target: f.predict(scale).value for f in laws.all_fits()}


def _moved(earlier: dict[str, float], now: dict[str, float]) -> list[str]:
    """The predictions at the target that ``now`` moves from ``earlier``'s, as 'lr 0.0012 ->
    0.0015'."""
    return [f"{k} {a:.3g} -> {now[k]:.3g}" for k, a in earlier.items()
            if a > 0 and now.get(k, 0) > 0 and abs(math.log10(now[k] / a)) > 1e-3]


def _refitted(path: Path, earlier: tuple[bytes, dict[str, float]] | None, scale: float,
              seeded: tuple[str, int] | None, trained: bool,
              scales: Iterable[float] = (), kept: Path | None = None) -> str | None:
    """Where this launch's fit moved the predictions at the target from the file it found:
    keep the file it replaced (unless the launch has, at ``kept``) and say so (``scales``: the
    ladder's rungs' now, against which the rungs the earlier laws were fitted on tell a rung
    taken out of the file). Said where no rung trained (the same rungs fitted again: another
    version of scaletune fits otherwise, or the file was written by hand or by `scaletune
    fit`), and where the target study (``seeded``: its name and finished trials) ran
    from the earlier laws. The target's new trials and `scaletune export` read the laws file."""
    now = _laws_at_launch(path, scale)
    if earlier is None or now is None:
        return None
    moved = _moved(earlier[1], now[1])
    if not moved:
        return None
    if kept is None:
        kept = earlier_name(path)
        kept.write_bytes(earlier[0])
    gone = (_fitted_scales(earlier[0]) or set()) - set(scales)
    if trained:
        whys = []
    elif gone:
        # A rung taken out of the ladder file was not among the causes named.
        whys = ["though no rung trained in this launch: the ladder file's rungs changed, and "
                "the laws are fitted without the rung(s) at "
                f"{', '.join(f'{x:,.6g}' for x in sorted(gone))}"]
    else:
        whys = ["though no rung trained in this launch: the ladder file's near_best or scale "
                f"changed, another version of scaletune wrote {path.name}, it was written by "
                "hand or by `scaletune fit`, or trials were run on a rung's study apart"]
    if seeded is not None:
        whys.append(f"after the target study {seeded[0]} had finished {seeded[1]} trial(s) "
                    "seeded from the laws before")
    why = "; and ".join(whys)
    return (f"the laws fitted again moved at the target ({', '.join(moved)}), {why}; the "
            f"earlier file is kept as {kept}. The target study's new trials and `scaletune "
            "export` use the laws as written now")


def checked(ladder: Ladder) -> list[str]:
    """The notes of the ladder's plan (manage.ladder_notes) once what `validate` finds in it
    (manage.ladder_problems: a rung's space that makes no trainable config, a change to a stored
    rung's study) is refused with a ConfigError, before its first rung: found only once the rungs
    before it had run, or never, where they had finished."""
    from scaletune.search.manage import ladder_notes, ladder_problems

    if problems := ladder_problems(ladder):
        raise ConfigError(ladder.source, problems)
    return ladder_notes(ladder)


def run_ladder(ladder: Ladder | str | Path, console: Console | None = None,
               repeat_best: int = 0, summary: bool = True) -> optuna.Study:
    """Run (or resume) every rung cheapest first, fitting after each, then the target study
    seeded from the fitted laws, and ``repeat_best`` repeats of its best trial with other
    training seeds (search.noise). Returns the target study. ``ladder``: a Ladder
    (load_ladder) or a ladder file's path; ``summary``: end with what `scaletune ladder`
    prints at the end (print_ladder_summary)."""
    from scaletune.search.runner import quiet_libraries

    start = time.monotonic()
    console = given_console(console, "run_ladder") or make_console()
    if isinstance(ladder, (str, os.PathLike)):
        ladder = load_ladder(ladder)
    elif not isinstance(ladder, Ladder):  # a dict: "'dict' object has no attribute 'target'"
        raise TypeError(f"run_ladder takes a Ladder or a ladder file's path, not a "
                        f"{type(ladder).__name__} (a dict: write it as a ladder file)")
    with quiet_libraries(ladder.target):
        study = _run_ladder(ladder, console, repeat_best)
    if summary:
        print_ladder_summary(ladder, study, console, time.monotonic() - start)
    return study


def print_ladder_summary(ladder: Ladder, study: optuna.Study, console: Console,
                         wall_s: float) -> dict[str, Any]:
    """The target study's run summary (search.progress.print_run_summary) with what its rungs
    cost; returns the target's numbers (search.summary.summarize)."""
    from scaletune.search.progress import print_run_summary
    from scaletune.search.summary import summarize

    rungs = rungs_compute(ladder)
    # Read once: the summary below prints it. Named as the ladder's (its advice on more trials
    # is the ladder file's).
    target = summarize(study, named_target(ladder))
    stopped = (f" (and {rungs['stopped']} failed or stopped, whose tokens count too)"
               if rungs["stopped"] else "")
    cost = (f"{rungs['rungs']} rung(s) before the target: {rungs['trials']} trials{stopped}, "
            f"{rungs['tokens']:,} tokens, {rungs['flops']:.3g} FLOPs (6ND); "
            f"{rungs['flops'] + target['compute']['flops_6nd']:.3g} FLOPs with the target's")
    return print_run_summary(console, study, ladder.target, ladder.source, wall_s,
                             more=[("ladder", cost)], summary=target, ladder=True)


def _run_ladder(ladder: Ladder, console: Console, repeat_best: int) -> optuna.Study:
    """run_ladder's run."""
    from scaletune.search.runner import run_study

    notes = checked(ladder)
    ladder = with_data_sized(ladder)
    print_plan(ladder, console, notes)
    laws_writable(ladder.laws_file, ladder.source, "laws_file")
    earlier = _laws_at_launch(ladder.laws_file, ladder.target_scale)
    target = ladder.target
    study = stored_study(target)
    seeded = 0 if study is None else n_finished(study)  # target trials of the laws found
    trained = False  # whether a rung ran trials in this launch
    done: list[Rung] = []
    before: FittedLaws | None = None
    fitted: FittedLaws | None = None
    kept: Path | None = None  # where this launch kept the laws file it found
    # Rungs finished before this launch: the fit after one that a finished rung follows is not
    # printed again (a ladder run again prints the fit it ends on, not every step to it).
    finished = [finished_trials(rung.cfg) >= rung.cfg.n_trials for rung in ladder.rungs]
    # Once the laws settle, the rungs not trained yet are skipped; a finished rung is fitted
    # still (one added below finished ones settled before them, and the rung nearest the target
    # was left out of the fit that export then carried).
    settled_at: int | None = None
    skipped = 0
    for i, rung in enumerate(ladder.rungs):
        have = finished_trials(rung.cfg)
        if settled_at is not None and not finished[i]:
            skipped += 1
            continue
        if have >= rung.cfg.n_trials:
            console.print(f"rung {i + 1}/{len(ladder.rungs)} {rung.cfg.name}: {have}/"
                          f"{rung.cfg.n_trials} trials finished", highlight=False)
        else:
            console.print(f"[bold]rung {i + 1}/{len(ladder.rungs)}[/] {rung.cfg.name}", highlight=False)
            run_study(rung.cfg, console, summary=False)
            trained = True
        _has_a_complete_trial(ladder, rung)
        done.append(rung)
        if len({r.scale for r in done}) < 2:
            if trained and i + 1 < len(ladder.rungs):
                console.print("no laws yet: a law needs rungs at two scales", highlight=False)
            continue
        fitted = fit_rungs(ladder, done)
        # What the file holds: every rung finished so far, those above this one too. Fitted on
        # the rungs up to this one alone, a launch stopped in a rung added below finished ones
        # left a file without the finished rung nearest the target, which export carried.
        above = [r for j, r in enumerate(ladder.rungs) if j > i and finished[j]]
        for rung_above in above:  # one with nothing to fit says what to do, as when reached
            _has_a_complete_trial(ladder, rung_above)
        written = fit_rungs(ladder, done + above) if above else fitted
        if kept is None and earlier is not None and seeded and _moved(
                earlier[1], _predictions(written, ladder.target_scale)):
            # Kept before the file changes: a launch stopped after this lost the laws the
            # target's trials were seeded from.
            kept = earlier_name(ladder.laws_file)
            kept.write_bytes(earlier[0])
        save_laws(written, ladder.laws_file, ladder.source, "laws_file",
                  predict_at={"target": ladder.target_scale})
        if (settled_at is None and i + 1 < len(ladder.rungs)
                and settled(ladder, before, fitted, len(done))):
            settled_at = len(done)
        # The fit is printed where the next rung trains, or where no rung is fitted after it.
        later = [j for j in range(i + 1, len(ladder.rungs))
                 if finished[j] or settled_at is None]
        if not later or not finished[later[0]]:
            console.print(f"laws fitted on {len(done) + len(above)} rung(s), written to "
                          f"{ladder.laws_file}:", highlight=False, markup=False)
            print_fit(ladder, written, console)
        before = fitted
    if skipped:
        console.print(f"the target's predictions moved less than {ladder.cfg.settle_log10} dex "
                      f"once {settled_at} rungs were fitted: {skipped} rung(s) not trained yet "
                      "skipped", highlight=False)
    if fitted is not None and (not trained or seeded) and (note := _refitted(
            ladder.laws_file, earlier, ladder.target_scale,
            (target.name, seeded) if seeded else None, trained,
            [r.scale for r in ladder.rungs], kept)):
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    study = stored_study(target)
    have = 0 if study is None else n_finished(study)
    if study is not None and have >= target.n_trials and not repeat_best:
        # "(9/8 trials)" after --repeat-best: the repeats are said apart
        said = finished_of(study.get_trials(deepcopy=False), have, target.n_trials)
        console.print(f"target {target.name}: {said}", highlight=False, markup=False)
        return study
    console.print(f"[bold]target[/] {target.name}: priors from {ladder.laws_file}",
                  highlight=False)
    return run_study(target, console, repeat_best=repeat_best, summary=False)
