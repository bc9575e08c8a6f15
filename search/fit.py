"""Laws fitted to the user's own finished studies: the Optuna side of ``heuristics.fit``."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from scaletune.heuristics import laws
from scaletune.heuristics.fit import (
    EXPONENT_PRIOR_SD,
    NEAR_BEST,
    SHORT_RUN_LR_EXPONENT,
    FittedLaws,
    ScalePoint,
    fit_studies,
    missing_laws,
    near_best_weights,
)
from scaletune.search.config import StudyConfig, is_ladder, load_study
from scaletune.search.space import fixed_values
from scaletune.search.storage import mask_url
from scaletune.search.studies import UNIGRAM, open_study, running_note
from scaletune.search.summary import against_frequencies, frequencies_only
from scaletune.trainer.data import (
    cache_folder,
    holds_tokens,
    prepare_data,
    read_fingerprint,
    unigram_loss,
)
from scaletune.trainer.errors import ConfigError, DataError


def study_scale(cfg: StudyConfig, scale_kind: str) -> float:
    """The scale of a study: its tokens per trial, or its non-embedding parameters."""
    m = cfg.model
    return float(cfg.tokens_per_trial if scale_kind == "tokens"
                 else laws.non_embedding_params(m.n_layer, m.n_embd))


MODEL_SIZE_KEYS = ("model.n_layer", "model.n_embd")
"""The model fields that set its size (non-embedding parameters, 12 x n_layer x n_embd^2)."""


def model_size_searched(cfg: StudyConfig) -> list[str]:
    """The model-size fields ``cfg`` searches (``search.other``): a study whose trials are
    models of several sizes is at no one scale, and a law fitted to it mixes them."""
    return [k for k in MODEL_SIZE_KEYS if k in cfg.search.other and cfg.search.other[k].searched]


def _point(cfg: StudyConfig, trial: FrozenTrial, scale_kind: str, weight: float) -> ScalePoint:
    """One complete trial of ``cfg`` as a point of a law (batch in tokens per step)."""
    tokens_per_step = trial.user_attrs.get("tokens_per_step")
    batch_searched = "batch_size" in trial.params
    values = {**fixed_values(cfg), **trial.params}  # keyed by registered name or form
    return ScalePoint(
        scale=study_scale(cfg, scale_kind),
        scale_kind=scale_kind,
        lr=float(values.get("lr", cfg.trainer.optim.lr)),
        # tau where weight decay was searched (as tau, or as lambda with tau derived); a fixed
        # one is no optimum, as a fixed batch size or warmup is not.
        tau=(trial.params.get("tau", trial.user_attrs.get("tau"))
             if {"tau", "weight_decay"} & trial.params.keys() else None),
        batch_size=float(tokens_per_step) if batch_searched and tokens_per_step else None,
        value=float(trial.value),
        weight=weight,
        warmup_frac=(float(trial.params["warmup_frac"]) if "warmup_frac" in trial.params
                     else None),
    )


def scale_points(
    cfg: StudyConfig, study: optuna.Study, scale_kind: str, near: float = NEAR_BEST
) -> list[ScalePoint]:
    """The near-optimal complete trials of ``study`` (loss within ``near`` of its best),
    weighted by how close they are (``heuristics.fit.near_best_weights``), best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(cfg.name, [f"study {cfg.name!r} has no complete trial to fit on"])
    complete.sort(key=lambda t: t.value)
    weights = near_best_weights([t.value for t in complete], near)
    return [_point(cfg, t, scale_kind, w) for t, w in zip(complete, weights, strict=True) if w > 0]


def fit_from_studies(
    cfgs: list[StudyConfig], scale_kind: str = "tokens", n_boot: int = 1000,
    near: float = NEAR_BEST,
) -> FittedLaws:
    """Fit lr, tau and batch-size laws to the near-optimal trials of finished studies at
    several scales, and carry their warmup fraction."""
    # Given twice, its trials counted twice (and it was listed twice in fitted_on).
    seen = Counter((cfg.storage_url, cfg.name) for cfg in cfgs)
    twice = [f"study {name!r} ({mask_url(url)}) is given {n} times: give each study once"
             for (url, name), n in seen.items() if n > 1]
    if twice:
        raise ConfigError("fit", twice)
    mixed = [f"study {cfg.name!r} searches {' and '.join(keys)}: its trials are models of "
             "several sizes, so it is at no one scale and a law fitted to it would mix them; fit "
             "studies that fix the model's size"
             for cfg in cfgs if (keys := model_size_searched(cfg))]
    mixed += [f"study {cfg.name!r} fixes lr (search.lr: {{value: {fixed_values(cfg)['lr']}}}): "
              "its trials have no optimum lr for a law to follow; fit studies that search lr"
              for cfg in cfgs if "lr" in fixed_values(cfg)]
    if mixed:
        raise ConfigError("fit", mixed)
    if not cfgs:
        raise ConfigError("fit", ["no study given: a law needs studies at two or more scales"])
    points, fitted_on, ran, changed = [], [], [], []
    bests: list[tuple[str, int, float, float | None]] = []
    short = True
    for cfg in cfgs:
        # The config its trials trained with, as recorded (show and report read it so): a file
        # edited since is noted, and its edits are not what the fit reads as the study's scale.
        study, ran_with, notes = open_study(cfg, cfg.source)  # names a missing storage or study
        ran.append(ran_with)
        # A study a driver runs now is fitted as it stands (export and report say so; fit did not).
        notes += [note] if (note := running_note(study)) else []
        changed += [f"study {cfg.name!r} ({cfg.source}): {note}" for note in notes]
        at = scale_points(ran_with, study, scale_kind, near)
        points += at
        attrs = study.user_attrs
        bests.append((cfg.name, ran_with.tokens_per_trial, at[0].value,
                      study_unigram(attrs, ran_with)))
        fitted_on.append({"study": cfg.name, "n_layer": ran_with.model.n_layer,
                          "n_embd": ran_with.model.n_embd,
                          "tokens_per_trial": ran_with.tokens_per_trial,
                          "data": attrs.get("data_fingerprint")})
        m = ran_with.model
        compute = laws.deepseek_compute_flops(m.n_layer, m.n_embd, m.block_size,
                                              ran_with.tokens_per_trial)
        short &= laws.lr_laws_below(laws.non_embedding_params(m.n_layer, m.n_embd),
                                    ran_with.tokens_per_trial, compute)
    scales = sorted({p.scale for p in points})
    if len(scales) < 2:
        what = ("tokens per trial (tokens_per_trial)" if scale_kind == "tokens" else
                "model sizes (non-embedding parameters, 12 x n_layer x n_embd^2)")
        # The other scale is worth naming only where the studies differ along it (with one
        # study, --by params answered with this error again, suggesting --by tokens).
        others = {laws.non_embedding_params(r.model.n_layer, r.model.n_embd)
                  if scale_kind == "tokens" else r.tokens_per_trial for r in ran}
        other = (", or fit along the other scale (--by params)" if scale_kind == "tokens" else
                 ", or fit along the other scale (--by tokens)") if len(others) > 1 else ""
        raise ConfigError(
            "fit", [f"a law needs studies at two or more {what}; "
                    + ("the study given is" if len(cfgs) == 1 else
                       f"the {len(cfgs)} studies given are all")
                    + f" at {scales[0]:,.0f}: add a study at another scale (`scaletune ladder` "
                    f"plans and runs them){other}"]
        )
    # Studies far below the published lr laws' range (every one extrapolated): the lr law's
    # exponent in tokens is drawn toward what the suite's ladders measured there.
    prior = ((SHORT_RUN_LR_EXPONENT, EXPONENT_PRIOR_SD) if short and scale_kind == "tokens"
             else None)
    fitted = fit_studies(points, n_boot=n_boot, lr_exponent_prior=prior)
    learned_little = frequencies_warning(bests, near)
    return replace(fitted, study_warnings=(*changed, *_mixed_scales(ran, scale_kind),
                                           *_mixed_data(fitted_on),
                                           *([learned_little] if learned_little else [])),
                   fitted_on=tuple(fitted_on))


def frequencies_warning(studies: list[tuple[str, int, float, float | None]],
                        near: float = NEAR_BEST) -> str | None:
    """A warning naming the studies (name, tokens per trial, best loss, unigram loss) whose best
    loss is no more than ``near`` (the near-best band) below what a model of their data's token
    frequencies alone scores (``study_unigram``; None, not known: nothing said). Such a study is
    too short to have learned much more: its trials' losses differ by little, and by their luck
    more than by their hyperparameters, so where its optima lie says little of a longer run's."""
    short = [(name, tokens, best, unigram) for name, tokens, best, unigram in studies
             if frequencies_only(best, unigram, near)]
    if not short:
        return None
    why = ("learned little beyond how often each token occurs (or not even that, above it), "
           "and losses this close to it locate the optima (lr, tau, batch size) poorly; give "
           "{0} more tokens per trial, until {1} best loss is well below that, before trusting "
           "a law fitted on {0}")
    if len(short) == 1:
        name, tokens, best, unigram = short[0]
        return (f"study {name!r} ({tokens:,} tokens per trial): its best loss is "
                f"{against_frequencies(best, unigram)} that a model of its data's token "
                "frequencies alone scores: its trials have " + why.format("it", "its"))
    name, tokens, best, unigram = short[0]
    listed = [f"{name!r} ({tokens:,} tokens per trial: best loss "
              f"{against_frequencies(best, unigram)} that a model of its data's token "
              "frequencies alone scores)"]
    listed += [f"{name!r} ({tokens:,}: {against_frequencies(best, unigram)})"
               for name, tokens, best, unigram in short[1:]]
    return (f"studies {', '.join(listed[:-1])} and {listed[-1]}: their trials have "
            + why.format("them", "their"))


def study_unigram(attrs: dict[str, Any], cfg: StudyConfig) -> float | None:
    """What a model of the study's data's token frequencies alone scores: as the study recorded
    it (``UNIGRAM``), or, for one that has not launched since scaletune records it (a study
    finished before, a finished rung of a ladder run again), computed from its data where this
    machine's token cache holds them as its trials trained on them (by the cache's record of
    the files as they are: a file touched since reads as not held, which a read-only command
    does not tokenize again); None otherwise."""
    if (recorded := attrs.get(UNIGRAM)) is not None:
        return float(recorded)
    if attrs.get("data_fingerprint") is None:
        return None
    try:
        # The cache's folder as the study recorded it, where it exists: finding it made it
        # (a folder of another machine's config, made by a command that writes nothing).
        if not cache_folder(cfg.data).is_dir() or not holds_tokens(cfg.data, None):
            return None
        data = prepare_data(cfg.data, cfg.model.block_size)
    except (DataError, ConfigError, OSError, ValueError, KeyError):
        return None
    if data.fingerprint != attrs.get("data_fingerprint"):
        return None
    return unigram_loss(data, cfg.model.block_size, cfg.data.val_windows)


def _mixed_data(fitted_on: list[dict[str, Any]]) -> tuple[str, ...]:
    """A warning when the studies trained on different data (text or tokenizer): their optima
    are of different problems, which one law cannot follow."""
    by_data: dict[str, list[str]] = {}
    for record in fitted_on:
        if record["data"] is not None:
            by_data.setdefault(record["data"], []).append(record["study"])
    if len(by_data) < 2:
        return ()
    shown = "; ".join(f"{', '.join(names)}: {data}" for data, names in by_data.items())
    return (f"the studies trained on {len(by_data)} different data ({shown}): the optima of "
            "one corpus and tokenizer are not another's, and the fit mixes them; fit studies "
            "of one data",)


def laws_fit_note(cfg: StudyConfig, data_fingerprint: str | None = None) -> str | None:
    """What a study that starts from fitted laws (``priors: {laws: fitted}``) should hear where
    the laws' studies differ from it in what the laws do not follow: other data, or (laws in
    tokens) another model size, or (laws in parameters) another token budget. None where they
    agree, or the file does not say what it was fitted on. ``data_fingerprint``: the study's
    data where prepared already (else it is read, as `validate` reads it)."""
    if cfg.priors.laws != "fitted" or not cfg.priors.fitted_file:
        return None
    try:
        fitted = FittedLaws.load(cfg.priors.fitted_file)
    except (ValueError, OSError):
        return None  # the study's checks name the file
    records = fitted.fitted_on
    if "fitted_on" in fitted.unrecorded:
        return (f"priors.fitted_file: {cfg.priors.fitted_file} was written by an "
                "earlier scaletune, which did not record the studies it fitted: nothing checks "
                "that they match this one (data, model size, budget)"
                + (", and it has no warmup law" if "warmup_frac" in fitted.unrecorded else "")
                + "; fit them again (`scaletune fit`, or `scaletune ladder`) for laws fitted as "
                "this version fits them")
    if not records:
        return None
    said = []
    data = {r.get("data") for r in records} - {None}
    now = data_fingerprint
    if now is None:
        try:
            now = read_fingerprint(cfg.data)
        except (DataError, OSError):
            now = None
    if data and now is not None and now not in data:
        said.append(f"were fitted on other data ({', '.join(sorted(data))}) than this study's "
                    f"({now}): their optima are of another problem")
    m = cfg.model
    if fitted.scale_kind == "tokens":
        models = {(r.get("n_layer"), r.get("n_embd")) for r in records}
        if (m.n_layer, m.n_embd) not in models and all(a and b for a, b in models):
            base = max(laws.non_embedding_params(layers, width) for layers, width in models)
            ratio = laws.non_embedding_params(m.n_layer, m.n_embd) / base
            said.append(f"are in tokens per trial and were fitted on models of "
                        f"{', '.join(f'{a}x{b}' for a, b in sorted(models))} (layers x width); "
                        f"this study's is {m.n_layer}x{m.n_embd} ({ratio:.3g}x the parameters), "
                        "and an optimum in tokens moves with the model's size")
    else:
        budgets = {r.get("tokens_per_trial") for r in records}
        if cfg.tokens_per_trial not in budgets:
            said.append(f"are in parameters and were fitted on studies of "
                        f"{', '.join(f'{b:,}' for b in sorted(b for b in budgets if b))} tokens "
                        f"per trial; this study trains {cfg.tokens_per_trial:,}, and an optimum "
                        "in parameters moves with the token budget")
    if not said:
        return None
    return (f"priors.fitted_file: the laws of {cfg.priors.fitted_file} "
            + "; and they ".join(said)
            + ": their centers may be off here; fit laws on studies of this one (`scaletune "
              "ladder` plans them), or give laws: published")


def _mixed_scales(cfgs: list[StudyConfig], scale_kind: str) -> tuple[str, ...]:
    """A warning when the studies vary the quantity the laws are not a function of: model
    sizes under laws in tokens, tokens per trial under laws in parameters. The laws then read
    both changes as one, and the target's prediction holds only along the same path."""
    if scale_kind == "tokens":
        seen = sorted({(c.model.n_layer, c.model.n_embd) for c in cfgs})
        if len(seen) < 2:
            return ()
        shown = ", ".join(f"{layers}x{width}" for layers, width in seen)
        return (f"the studies are models of {len(seen)} sizes ({shown}, layers x width) and the "
                "laws are in tokens per trial, so the fit reads the models' differences as the "
                "horizon's: fit studies of one model (vary tokens_per_trial), or fit in "
                "parameters (scale: params, fit --by params) studies of one tokens_per_trial",)
    seen_tokens = sorted({c.tokens_per_trial for c in cfgs})
    if len(seen_tokens) < 2:
        return ()
    shown = ", ".join(f"{t:,}" for t in seen_tokens)
    return (f"the studies train {len(seen_tokens)} token budgets per trial ({shown}) and the laws "
            "are in non-embedding parameters, so the fit reads the horizons' differences as the "
            "models': fit studies of one tokens_per_trial, or fit in tokens (scale: tokens, fit "
            "--by tokens) studies of one model",)


def _yaml_kind(path: Path) -> str | None:
    """"a ladder file" or "a study or training file" for a YAML file of a mapping, else None."""
    if path.suffix not in (".yaml", ".yml"):
        return None
    from scaletune.search.config import LADDER_KEYS
    from scaletune.trainer.config import load_yaml

    try:
        raw = load_yaml(path)
    except Exception:  # noqa: BLE001 - not YAML that reads: the caller says what it is not
        return None
    if not isinstance(raw, dict):
        return None
    return "a ladder file" if LADDER_KEYS & raw.keys() else "a study or training file"


def laws_file_problem(path: Path) -> str | None:
    """Why fitted laws may not be written at ``path``, else None: a folder, or a file there that
    is not fitted laws (a study file given by mistake), which saving would replace. Laws that an
    earlier fit or ladder wrote are replaced."""
    if path.is_dir():
        return f"{path} is a folder; give the file to write, e.g. {path / 'laws.json'}"
    if path.exists():
        try:
            FittedLaws.load(path)
        except (ValueError, OSError) as e:
            if kind := _yaml_kind(path):  # said without the JSON parser's words
                return (f"{path} is {kind}, not fitted laws, which writing the laws would "
                        "replace: give another path (laws are JSON: laws.json)")
            why = str(e).removeprefix(f"{path}: ").removeprefix(
                "not a fitted-laws file this scaletune reads: ")
            return (f"{path} holds a file that is not fitted laws ({why}), which writing the "
                    "laws would replace; only laws an earlier fit or ladder wrote are replaced: "
                    "give another path, or delete the file if it is such laws, damaged (a "
                    "ladder fits them again from its finished rungs)")
    # What validate can tell without making the folder (laws_writable tries it, before a run).
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        return (f"{path}: cannot write the fitted laws there (a file stands where a folder of "
                "the path would be): give a path in a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        return (f"{path}: cannot write the fitted laws there ({existing} is not writable): give "
                "a path in a writable folder")
    return None


def ladder_rungs(path: str | Path, by: str | None, alone: bool, key: str = "--by"
                 ) -> tuple[list[StudyConfig], Any]:
    """The rung studies of the ladder file at ``path`` that have run trials, and the ladder
    (its scale and near_best, to fit them as `scaletune ladder` does); ``by``, a scale asked for, is
    refused where it is another (it was dropped without a word). ``alone``: the ladder is all
    that is fitted, so fewer than two rungs run is an error here, that names the ladder."""
    from scaletune.search.ladder import finished_trials, load_ladder

    ladder = load_ladder(path)
    if by not in (None, ladder.cfg.scale):
        raise ConfigError(key, [
            f"{key} {by}: {path} is a ladder whose laws are fitted along {ladder.cfg.scale} (its "
            f"scale: {ladder.cfg.scale}): leave {key} out, or change the ladder's scale"])
    ran = [r.cfg for r in ladder.rungs if finished_trials(r.cfg)]
    if len(ran) < 2 and alone:  # none ended on an IndexError traceback
        raise ConfigError(str(path), [
            f"{len(ran)} of its {len(ladder.rungs)} rungs have run trials: a law needs rungs at "
            f"two or more scales; `scaletune ladder {path}` runs them"])
    return ran, ladder


def fitted_as(ladders: list[Any], by: str | None) -> tuple[str, float]:
    """The scale and near_best of a fit: the ladders' (given as ladder files, ``ladders``), where
    they agree, else ``by`` (default tokens) and NEAR_BEST. Ladders of two scales are refused:
    their rungs were fitted along the last one's without a word."""
    kinds = {(ladder.cfg.scale, ladder.cfg.near_best) for ladder in ladders}
    if len(kinds) > 1:
        raise ConfigError("fit", [
            "the ladders given are fitted along other scales or near_best ("
            + ", ".join(f"{ladder.source}: {ladder.cfg.scale}, near_best {ladder.cfg.near_best:g}"
                        for ladder in ladders) + "): fit each apart"])
    return next(iter(kinds), (by or "tokens", NEAR_BEST))


def fit_laws(studies: list[StudyConfig | str | Path], output: str | Path | None = None,
             by: str | None = None) -> FittedLaws:
    """`scaletune fit` from Python: lr, tau and batch-size laws fitted on finished studies at
    several scales (configs, or study files' paths), ``by`` tokens per trial (the default) or
    model size (params); a ladder file's path stands for its rungs that have run, fitted along
    its scale as the ladder fits them. Written to ``output`` (a laws.json, for ``priors: {laws:
    fitted, fitted_file: ...}``) when given."""
    if isinstance(studies, (str, os.PathLike)):  # its letters were read as files: "t" not found
        raise TypeError(f"fit_laws takes a list of two or more studies (configs or study files' "
                        f"paths), not one {type(studies).__name__}: fit_laws([{str(studies)!r}, "
                        "...])")
    if by not in (None, "tokens", "params"):  # checked as the command's --by is, before any study
        raise ConfigError("fit_laws", [f"by: {by!r} is not a scale the laws are fitted over: "
                                       "'tokens' (tokens per trial) or 'params' (model size)"])
    cfgs, ladders = [], []
    for s in studies:
        if isinstance(s, (str, os.PathLike)) and Path(s).is_file() and is_ladder(s):
            # It was refused, pointing to `scaletune fit`, which takes it.
            rungs, ladder = ladder_rungs(s, by, alone=len(studies) == 1, key="by")
            cfgs += rungs
            ladders.append(ladder)
        else:
            cfgs.append(load_study(s) if isinstance(s, (str, os.PathLike)) else s)
    by, near = fitted_as(ladders, by)
    for cfg in cfgs:
        if not isinstance(cfg, StudyConfig):
            raise TypeError(f"fit_laws takes StudyConfigs or study files' paths, not a "
                            f"{type(cfg).__name__} (a dict: validate_study(d) first)")
    if not cfgs:
        raise ConfigError("fit_laws", ["studies: none given; a law needs studies at two or more "
                                       "scales"])
    if output is not None:  # before the fit, as the command checks -o ("." was a ValueError)
        laws_writable(Path(output), "fit_laws", "output")
    laws = fit_from_studies(cfgs, scale_kind=by, near=near)
    if output is not None:
        save_laws(laws, Path(output), "fit_laws", "output")
    return laws


def save_laws(fitted: FittedLaws, path: Path, source: str, key: str = "",
              predict_at: dict[str, float] | None = None) -> None:
    """``fitted.save`` into ``path``, its folder made first; a folder that cannot be made or
    written is a ConfigError of ``source`` that names ``key``, the setting that gave the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fitted.save(path, predict_at=predict_at)
    except OSError as e:
        raise ConfigError(source, [_cannot_write(path, e, key)]) from None


def laws_writable(path: Path, source: str, key: str = "") -> None:
    """Check before any trial runs that the laws can be written at ``path`` (its folder made, a
    file written and removed beside it), where a run would otherwise fail after its studies."""
    if problem := laws_file_problem(path):
        raise ConfigError(source, [f"{key}: {problem}" if key else problem])
    probe = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(source, [_cannot_write(path, e, key)]) from None


def _cannot_write(path: Path, e: OSError, key: str) -> str:
    # mkdir through a file says "File exists" (the file, not the folder asked for)
    why = ("a file stands where a folder of the path would be"
           if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror or str(e))
    return (f"{key + ': ' if key else ''}{path}: cannot write the fitted laws there ({why}): give "
            "a path in a writable folder")


def print_laws(laws: FittedLaws, console: Console) -> None:
    """Each fitted law on a line, then what the fits do not know, in yellow, and the laws left
    out."""
    for fit in laws.all_fits():
        console.print(fit.describe(), highlight=False, markup=False, soft_wrap=True)
    for warning in laws.warnings:
        console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False,
                      soft_wrap=True)
    for note in missing_laws(laws):
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
