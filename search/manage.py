"""Studies as a user manages them from the command line, as Optuna's, Ray Tune's and W&B's own
commands do: a launch changed on the command line, the plan of a run before it starts, the
studies in a storage, one study, its best parameters, its deletion.

``with_options`` puts ``scaletune run``'s options into a study config, validated as the file is.
``print_plan`` is ``run --dry-run``: priors, search space, first trial, sampler, pruner,
resources, storage and budget, from the study file alone (no data prepared, no Ray, nothing
written). ``list_studies``, ``show_study``, ``print_best`` and ``delete_study`` read a storage;
all but ``list_studies`` open their study through ``search.studies.open_study``, which never
creates a storage.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from scaletune.heuristics import laws
from scaletune.heuristics.priors import Priors, priors_table
from scaletune.search import hparams, lease
from scaletune.search.config import (
    LADDER_KEYS,
    SHARED_DATABASE,
    StudyConfig,
    check_study_files,
    flags_blamed,
    how_many,
    job_server_problem,
    load_study,
    stored_study_attrs,
    stored_study_names,
    validate_study,
)
from scaletune.search.fit import laws_file_problem, laws_fit_note
from scaletune.search.noise import REPEAT_OF, finished_of, seed_of, trials_asked
from scaletune.search.plan import (
    LAST_N_TRIALS,
    WIDENED,
    as_launched,
    changed_studies,
    failed_for_good,
    memory_problem,
    mps_problem,
    n_done,
    n_finished,
    optim_note,
    optimizer_note,
    priors_note,
    pruner_note,
    sampler_note,
    started_apart,
    stored_change,
    stored_changes,
    stored_data_change,
    stored_trial_states,
    stored_widening,
    widening_note,
)
from scaletune.search.progress import fmt_params, seeds_of_best
from scaletune.search.space import (
    build_space,
    centers_outside,
    fixed_values,
    largest_shape,
    nothing_searched,
    one_batch_size,
    plain,
    planning_priors,
    prior_center_params,
    searched_ranges,
    show_value,
    space_problems,
    trial_config,
)
from scaletune.search.storage import (
    READ_ERRORS,
    cannot_read,
    make_storage,
    mask_url,
    scrub,
    sqlite_file_errors,
    sqlite_path,
    storage_problems,
    storage_url,
    study_folder_problem,
    tally,
    unreachable,
    unusable_url,
    url_problem,
)
from scaletune.search.studies import (
    UNIGRAM,
    by_state,
    elsewhere_note,
    no_complete_trial,
    open_study,
    read_by_name,
    running_note,
    with_left_running,
)
from scaletune.search.summary import (
    DERIVED,
    at_edges,
    best_trial,
    diverged,
    frequencies_note,
    loss_said,
    state_words,
    widest,
)
from scaletune.search.tracking import tracker_problems
from scaletune.trainer.config import sqlite_url, usable_cores
from scaletune.trainer.console import make_console, whole_cells
from scaletune.trainer.data import (
    BYTE_VOCAB,
    cache_dir,
    column_problem,
    download_notes,
    fingerprint_known,
    holds_tokens,
    known_tokens,
    known_vocab_size,
    lossy_tokenizer_note,
    read_fingerprint,
    saved_dataset,
    separator_problem,
    size_problem,
    split_sizes,
    train_tokens_note,
    unwritable_cache,
    validation_note,
    validation_part,
    vocab_problem,
)
from scaletune.trainer.errors import (
    ConfigError,
    DataError,
    ScaletuneError,
    SetupError,
    StudyStateError,
    first_line,
)
from scaletune.trainer.record import fmt_duration

OPTIONS = {
    "n_trials": ("--n-trials", "n_trials"),
    "address": ("--address", "workers.address"),
    "max_concurrent": ("--max-concurrent", "workers.max_concurrent"),
    "storage": ("--storage", "storage"),
}
"""The study fields a launch may change on the command line: option -> (flag, key in the file).
None of them is in the study's fingerprint (search.config.FINGERPRINTED), so a study resumes
with any of them changed."""


# --------------------------------------------------------------------------- run's options


def with_options(cfg: StudyConfig, **options: Any) -> StudyConfig:
    """``cfg`` with the options given (not None) in place of its fields, validated as the study
    file is; a bad value is a ConfigError that names its option."""
    given = {k: v for k, v in options.items() if v is not None}
    unknown = given.keys() - OPTIONS.keys()
    if unknown:
        raise TypeError(f"with_options: unknown options {sorted(unknown)}; allowed: {list(OPTIONS)}")
    if not given:
        return cfg
    raw = cfg.model_dump(by_alias=True)
    for option, value in given.items():
        *parents, leaf = OPTIONS[option][1].split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[leaf] = value
    try:
        checked = validate_study(raw, "the command line", recorded=True)  # every field dumped
    except ConfigError as e:
        raise flags_blamed(e.errors, {key: flag for flag, key in OPTIONS.values()},
                           "the command line") from None
    if ("storage" in given and sqlite_path(checked.storage) is None
            and (problems := storage_problems(checked.storage, checked.storage))):
        # The URL's own checks (not a URL, no driver), here: they were said as errors of the
        # study file, which has no such storage. An SQLite file's are the commands' to say.
        raise ConfigError("the command line", [f"--storage: {p.removeprefix('storage: ')}"
                                               for p in problems])
    # The fields only: the rest stays as load_study resolved it (data paths, the study file).
    out = cfg.model_copy(update={"n_trials": checked.n_trials, "storage": checked.storage,
                                 "workers": checked.workers})
    out._flags = {**cfg._flags, **{OPTIONS[option][1]: OPTIONS[option][0] for option in given}}
    return out


# --------------------------------------------------------------------------- run --dry-run


def _filed_late_by(step: int, every: int) -> int:
    """How many tokens after the multiple of ``every`` it files a loss at a trial of ``step``
    tokens a step may have measured it: 0 where one divides the other, else up to a step."""
    return 0 if every % step == 0 or step % every == 0 else step - math.gcd(step, every)


def plan_notes(cfg: StudyConfig, dims: list | None = None) -> list[str]:
    """What the plan of ``cfg`` warns of before anything runs: priors' centers outside the
    ranges searched (``centers_outside``), a validation split too small for its windows where
    its size is known without preparing the data (``validation_note``), a tokenizer or a
    dataset the first run downloads (``download_notes``). ``dims``: the search space if built
    already."""
    notes = []
    fixed = fixed_values(cfg)
    if dims is None:
        dims, fixed = build_space(cfg, planning_priors(cfg))
    if cfg.seeding == "prior":
        notes += centers_outside(dims, draws=cfg.sampler.name != "random")
    notes += nothing_searched(dims, cfg.n_trials) + one_batch_size(dims, cfg)
    batches = _batch_sizes(dims, fixed)
    step = min(batches, default=0) * cfg.model.block_size
    if cfg.eval_interval < step:
        notes.append(
            f"eval_every_tokens: {cfg.eval_interval:,} is less than one optimizer step of the "
            f"smallest batch searched ({step:,} tokens): trials evaluate after every step "
            f"({cfg.tokens_per_trial // step:,} evaluations at that batch), which may take "
            f"longer than training; {step:,} or more evaluates less often")
    elif late := {b: t for b in sorted(batches)
                  if (t := _filed_late_by(b * cfg.model.block_size, cfg.eval_interval))
                  > cfg.eval_interval / 4}:
        # A trial evaluates at its first step past each multiple of eval_every_tokens and
        # files the loss at that multiple (search.plan.TrialRun.report): where the two do not
        # divide each other, up to a step later than filed, which the pruner compares with the
        # other trials' as if at equal tokens (batch 16 x 32 against a grid of 300: the loss at
        # 512 tokens filed at 300). More than a quarter of the grid late is said: a step of 512
        # tokens on a grid of 30,000 files each loss at most 496 tokens late, 1.7%.
        top = max(batches) * cfg.model.block_size
        even = max(top, cfg.eval_interval // top * top)
        notes.append(
            f"eval_every_tokens: {cfg.eval_interval:,} and one optimizer step of batch_size "
            f"{', '.join(map(str, late))} do not divide each other: those trials evaluate at "
            f"the first step past each multiple of {cfg.eval_interval:,} and file the loss "
            f"there, measured up to {max(late.values()):,} tokens later, which the pruner "
            f"compares with other trials' as if at equal tokens; a multiple of every batch's "
            f"step ({even:,}, say) files each loss where it was measured")
    notes += pruner_notes(cfg)
    notes += sampler_notes(cfg, dims)
    notes += overridden_notes(cfg)
    notes += [note] if (note := searched_size_note(cfg)) else []
    if cfg.workers.address in (None, "local"):  # trials run here
        notes += compile_note(cfg.trainer.compile, "run", "trainer.")
    notes += [note for note in (cpu_note(cfg), gpu_note(cfg), mps_problem(cfg), auto_note(cfg),
                                bf16_note(cfg)) if note]
    notes += [note] if (note := table_as_text_note(cfg)) else []
    notes += [note] if (note := lossy_tokenizer_note(cfg.data)) else []
    if cfg.priors.laws == "published" and cfg.priors.fitted_file:  # named for later, say
        notes.append(f"priors.fitted_file: {cfg.priors.fitted_file} is not read: laws "
                     "is published (the default), and laws: fitted uses the file")
    notes += [note] if (note := elsewhere_note(cfg)) else []
    notes += [note for note in (optim_note(cfg), optimizer_note(cfg)) if note]
    notes += [note] if (note := laws_fit_note(cfg)) else []
    try:
        sizes = split_sizes(cfg.data)
    except (DataError, OSError):  # a missing file: check_study_files names it
        sizes = None
    notes += few_steps_notes(cfg, batches, sizes[0] if sizes else None)
    if sizes:
        notes += [note for note in (train_tokens_note(cfg.data, sizes[0]),
                                    validation_note(cfg.data, cfg.model.block_size, sizes[1]))
                  if note]
    return notes + download_notes(cfg.data)


def sampler_notes(cfg: StudyConfig, dims: list) -> list[str]:
    """What the sampler will not do that the plan's sampler line alone says (`validate` gave
    none of it): a study that ends within the sampler's start-up; CMA-ES, which draws choices
    (the batch sizes among them) at random in every trial."""
    s, notes = cfg.sampler, []
    if s.name != "random" and cfg.n_trials <= s.n_startup_trials:
        notes.append(f"sampler.n_startup_trials: n_trials {cfg.n_trials} <= n_startup_trials "
                     f"{s.n_startup_trials}: every trial is a start-up trial and {s.name} "
                     "proposes none; lower sampler.n_startup_trials or raise n_trials")
    chosen = [d.name for d in dims if isinstance(d.distribution, CategoricalDistribution)
              and len(d.distribution.choices) > 1]
    if s.name == "cmaes" and chosen:
        notes.append(f"sampler: cmaes searches numbers in a range only: {', '.join(chosen)} "
                     f"({'its' if len(chosen) == 1 else 'their'} choices) "
                     f"{'is' if len(chosen) == 1 else 'are'} drawn at random in every trial "
                     "after start-up, never learned from the trials; tpe and gp learn choices")
    return notes


def table_as_text_note(cfg: StudyConfig) -> str | None:
    """Records read as plain text (``source: text`` of .jsonl, .csv...): the trials learn the
    JSON's braces and keys, or the commas, with the text."""
    from scaletune.trainer.config import FILE_BUILDERS

    data = cfg.data
    if data.source != "text" or not data.path:
        return None
    ext = data.path.rpartition(".")[2].lower()
    builder = FILE_BUILDERS.get(ext)
    if builder in (None, "text"):
        return None
    return (f"data.path: {Path(data.path).name} is read as plain text, its {ext} syntax and "
            f"all; to train on one column of its records, give source: hf, dataset: {builder}, "
            f"data_files: {Path(data.path).name} and text_column")


def cpu_note(cfg: StudyConfig) -> str | None:
    """A study on Ray of this machine whose trials ask for more cores than it has (a study's
    own Ray counts usable_cores()): `run` here refuses it. A note, as gpu_note's."""
    w = cfg.workers
    have = usable_cores()
    if w.address not in (None, "local") or w.cpus_per_trial <= have:
        return None
    return (f"workers.cpus_per_trial: {w.cpus_per_trial:g}, and this machine has {have} CPU(s): "
            f"`scaletune run` refuses it here; give at most {have}, or run it where the cores are "
            "(workers.address joins a cluster)")


def gpu_note(cfg: StudyConfig) -> str | None:
    """A study of GPU trials on Ray of this machine, which has fewer GPUs than a trial asks for
    (counted as Ray counts them when it starts): `run` here refuses it. A note, not an error: the
    file may be meant for another machine."""
    w = cfg.workers
    if w.address not in (None, "local") or not w.gpus_per_trial:
        return None
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        have = get_accelerator_manager_for_resource("GPU").get_current_node_num_accelerators()
    except Exception:  # another Ray, or no way to count: the run says
        return None
    if have >= w.gpus_per_trial:
        return None
    return (f"workers.gpus_per_trial: {w.gpus_per_trial:g}, and this machine has {have} GPU(s) "
            "that Ray would count: `scaletune run` refuses it here; give 0 to train on CPUs, or "
            "run it where the GPUs are (workers.address joins a cluster)")


def bf16_note(cfg: StudyConfig) -> str | None:
    """``trainer.dtype: bfloat16`` for trials on this machine's CPU (Ray of this machine, no
    GPU per trial) where the CPU has no bfloat16 arithmetic: they trained several times slower
    than in float32, without a word (trainer.kernels.cpu_bf16_note)."""
    t, w = cfg.trainer, cfg.workers
    other = cfg.search.other.get("dtype")  # search.other sets it in every trial instead
    dtypes = set(other.choices or [other.value]) if other is not None else {t.dtype}
    # device cpu trains on the CPU whatever GPU Ray gives the trial; auto only without one.
    on_cpu = t.device == "cpu" or (t.device == "auto" and not w.gpus_per_trial)
    if "bfloat16" not in dtypes or not on_cpu or w.address not in (None, "local"):
        return None
    from scaletune.trainer.kernels import cpu_bf16_note  # imports torch: for bfloat16 alone

    return cpu_bf16_note("search.other.dtype" if other is not None else "trainer.dtype")


def auto_note(cfg: StudyConfig) -> str | None:
    """``workers.address: auto`` with no cluster for it to join from this machine (none that
    `ray start` recorded, no RAY_ADDRESS): `scaletune run` refuses it here. A note, not an
    error: the file may be meant for the machine where the cluster runs."""
    if cfg.workers.address != "auto":
        return None
    from scaletune.search.cluster import auto_address  # imports Ray: only for auto

    try:
        auto_address(cfg)
    except ConfigError as e:
        return f"{e.errors[0]} (`scaletune run` refuses it on this machine now)"
    return None


def overridden_notes(cfg: StudyConfig) -> list[str]:
    """A line for each value the file gives in ``trainer.optim`` or ``model`` that ``search:``
    sets in every trial instead (a hyperparameter the file leaves out of search: is searched
    with its prior): it was trained with the searched value, without a word."""
    notes = []
    for name, param in cfg.search.params.items():
        section, _, field = hparams.HPARAMS[name].target.rpartition(".")
        owner = {"optim": cfg.trainer.optim, "model": cfg.model}.get(section)
        if owner is None or field not in owner.model_fields_set:
            continue
        given = getattr(owner, field)
        where = f"trainer.optim.{field}" if section == "optim" else f"model.{field}"
        as_tau = getattr(param, "as_", None) == "tau"
        if not param.searched and param.value == given and not as_tau:
            continue
        # A hyperparameter that search: leaves out is searched with its prior all the same.
        how = (f"fixes it at {param.value:g}{' as tau' if as_tau else ''}" if not param.searched
               else "searches it")
        as_lambda = ", as: lambda" if name == "weight_decay" else ""
        notes.append(f"{where}: {given:g} is not what the trials train with: search.{name} "
                     f"{how}; to train every trial with {given:g}, give search.{name}: "
                     f"{{value: {given:g}{as_lambda}}}")
    for dotted, param in cfg.search.other.items():
        section, _, field = dotted.rpartition(".")
        owner = {"optim": cfg.trainer.optim, "model": cfg.model, "": cfg.trainer}.get(section)
        if owner is None or field not in owner.model_fields_set:
            continue
        given = getattr(owner, field)
        if not param.searched and param.value == given:
            continue
        where = f"trainer.{dotted}" if section != "model" else dotted
        how = f"fixes it at {param.value}" if not param.searched else "searches it"
        notes.append(f"{where}: {given} is not what the trials train with: search.other."
                     f"{dotted} {how}; to train every trial with {given}, leave {dotted} out of "
                     "search.other")
    return notes


SIZE_FIELDS = ("model.n_layer", "model.n_embd", "model.block_size", "optim.beta2")
"""The trainer fields the priors are taken at (the laws read N, D and the batch in tokens;
Ma & Yarats' warmup reads beta2)."""


def searched_size_note(cfg: StudyConfig) -> str | None:
    """Where ``search:`` searches a field the priors are taken at (``SIZE_FIELDS``): the priors
    are the file's value's, which no trial need train (a width searched over 256-512 took the
    lr of the file's 64, 8x the laws' at 512), and say nothing of it otherwise."""
    searched = [d for d in SIZE_FIELDS if (s := cfg.setting(d)) is not None and s[1].searched]
    if not searched or cfg.seeding != "prior" and not any(
            p is not None and p.prior for p in cfg.search.params.values()):
        return None
    at = ", ".join(f"{d} {cfg.fixed_field(d)}" for d in searched)
    them = "it" if len(searched) == 1 else "them"
    return (f"priors: taken at {at}, the file's (model: and trainer:, or the default of a "
            f"field it leaves out), while "
            f"search: searches {them}: the laws' lr, tau, batch and warmup move with {them}, so "
            f"the priors fit trials at those values alone; set {them} in the file to what the "
            "study centers on, or search each value in a study of its own")


FEW_STEPS = 10
"""Optimizer steps below which a trial's schedule (warmup, then decay) means little."""


def _batch_sizes(dims: list, fixed: dict[str, Any]) -> list[int]:
    """The batch sizes a study's trials may train: the one it fixes, or the choices searched."""
    if "batch_size" in fixed:
        return [fixed["batch_size"]]
    return [c for d in dims if d.name == "batch_size" for c in d.distribution.choices]


def few_steps_notes(cfg: StudyConfig, batches: list[int],
                    train_tokens: int | None) -> list[str]:
    """A line where the largest of ``batches`` leaves a trial fewer than FEW_STEPS optimizer
    steps, or takes more tokens a step than the training split holds (``train_tokens``, where
    known): such trials ran, and the summary showed their batch as if it meant something."""
    if not batches:
        return []
    batch = max(batches)
    step = batch * cfg.model.block_size
    steps = -(-cfg.tokens_per_trial // step)
    notes = []
    if steps < FEW_STEPS:
        notes.append(f"search.batch_size: {batch} sequences, the largest batch searched, leave a "
                     f"trial {steps} optimizer step{'' if steps == 1 else 's'} ({step:,} tokens "
                     f"a step, tokens_per_trial {cfg.tokens_per_trial:,}): too few for warmup "
                     "and decay to mean much; search smaller batches, or give more tokens")
    if train_tokens is not None and step > train_tokens:
        notes.append(f"search.batch_size: a step of {batch} sequences is {step:,} tokens, more "
                     f"than the {train_tokens:,} training tokens of the data: every step "
                     "repeats it; search smaller batches")
    return notes


def pruner_notes(cfg: StudyConfig) -> list[str]:
    """A line where the study's pruner can stop no trial: it waits past the last evaluation it
    is asked about (``n_warmup_steps``, a first rung's ``min_resource``, more evaluations than a
    trial makes), or for as many complete trials as the study runs (``n_startup_trials``,
    where the file gives it or, for Optuna's median and percentile pruners, by default); the
    pruner a ``patient`` one wraps too. Such a pruner was
    accepted and ran silently.

    The driver asks a pruner at each evaluation before the budget, not at the last one
    (search.plan.TrialRun.report): a trial of B tokens evaluated every E is asked (B - 1) // E
    times, the last at that many E."""
    budget, every = cfg.tokens_per_trial, cfg.eval_interval
    asked = (budget - 1) // every
    last = asked * every
    if not asked:
        return [f"eval_every_tokens: {every:,} of a trial's {budget:,} tokens: the pruner is "
                "asked at no evaluation (not at the last, which ends the trial), so it never "
                "stops one; evaluate more often, or pruner: none"]
    from scaletune.search.pruners import LEAST_CURVES

    notes = []
    p = cfg.pruner
    while p is not None:
        name = f"pruner.wrapped ({p.name})" if p is not cfg.pruner else "pruner"
        never = (f"the {p.name} pruner never stops a trial (it is asked at {asked} "
                 f"evaluation{'s' if asked > 1 else ''}, every {every:,} tokens up to {last:,}; "
                 "not at the last, which ends the trial)")
        warmup = getattr(p, "n_warmup_steps", None)
        if warmup is not None and warmup > last:
            notes.append(f"{name}.n_warmup_steps: {warmup:,} tokens: {never}; give fewer "
                         "tokens, or pruner: none")
        if hasattr(p, "min_resource"):
            rung = (p.min_resource or every) * p.reduction_factor ** getattr(
                p, "min_early_stopping_rate", 0)
            if rung > last:  # hyperband has no min_early_stopping_rate to give
                rate = (" (or min_early_stopping_rate)"
                        if hasattr(p, "min_early_stopping_rate") else "")
                notes.append(f"{name}.min_resource: its first rung is at {rung:,} tokens: "
                             f"{never}; give a smaller min_resource{rate}, or pruner: none")
        # Optuna's patient pruner compares patience + 1 evaluations with one before them; its
        # Wilcoxon pruner needs max(2, n_startup_steps) evaluations.
        for key, needs in (("patience", lambda n: n + 2), ("n_startup_steps", lambda n: max(2, n))):
            wait = getattr(p, key, None)
            if wait is not None and needs(wait) > asked:
                notes.append(f"{name}.{key}: {wait} needs {needs(wait)} evaluations: {never}; "
                             "give fewer, or pruner: none")
        trials = f"{cfg.n_trials} trial{'' if cfg.n_trials == 1 else 's'}"
        # The predicted pruner needs LEAST_CURVES complete trials whatever it is given: where
        # the study runs no more, no smaller value of its keys helps.
        least = LEAST_CURVES if p.name == "predicted" else 0
        if least >= cfg.n_trials:
            notes.append(f"{name}: the {p.name} pruner needs {least} complete trials at least "
                         f"before it stops one, and the study runs {trials}: it never stops "
                         "one; run more trials, or pruner: none")
        for key in ("n_startup_trials", "rank"):  # the predicted pruner waits for max of the two
            wait = getattr(p, key, None)
            # Optuna's median and percentile pruners at their default too: `pruner: {name:
            # median}` in a study of 3 trials never stopped one, and nothing said so.
            given = key in p.model_fields_set
            if wait is not None and least < cfg.n_trials <= wait and (
                    given or p.name in ("median", "percentile")):
                default = "" if given else " (its default)"
                notes.append(f"{name}.{key}: {wait}{default}, and the study runs {trials}: the "
                             f"{p.name} pruner waits for that many complete trials, so it never "
                             f"stops one; give a smaller {key}, or pruner: none")
        p = getattr(p, "wrapped", None)
    return notes


def plan_problems(cfg: StudyConfig, dims: list | None = None,
                  fixed: dict[str, Any] | None = None) -> list[str]:
    """What ``scaletune run`` would refuse in ``cfg`` before its first trial, found from the
    study file and its SQLite storage alone: ``search.space.space_problems`` in the space the
    planning priors give (``dims`` and ``fixed`` where built already), ``data_problems``, and a
    change to what the trials of the stored study trained with (``stored_change``); before
    them, a storage it cannot use (search.storage.storage_problems)."""
    if dims is None or fixed is None:
        dims, fixed = build_space(cfg, planning_priors(cfg))
    storage = storage_problems(cfg.storage, cfg.storage_url)
    if cfg.storage is None and (in_the_way := study_folder_problem(cfg.folder)):
        storage.append(in_the_way)  # the runner's to make, with the default storage in it
    change = None if storage else stored_change(cfg)
    # A vocabulary below a tokenizer's size known offline (the run finds the others' once it
    # loads them).
    vocab = known_vocab_size(cfg.data.tokenizer)
    small = vocab_problem(cfg.model.vocab_size, vocab, cfg.data.tokenizer, "trial")
    # A model too big for memory: run refused it once it had prepared the data (validate said
    # ok); its vocabulary, where not known offline, counted as bytes'.
    too_big = memory_problem(cfg, cfg.model.vocab_size or vocab or 256)
    return (storage + data_problems(cfg) + space_problems(cfg, dims, fixed)
            + [p for p in (small, too_big, change) if p])


def ladder_problems(ladder: Any) -> list[str]:
    """What ``scaletune ladder`` would refuse of a ladder (search.ladder.Ladder) before or
    during its run, found as ``plan_problems`` finds a study's, for `validate`, the ladder's dry
    run and the ladder before its first rung: the files its target study names, each rung's
    budget and space and the data (once), and a stored rung or target whose trials trained with
    what the files now change. Each names the study file or the stage it is about. The target's
    space is the laws' to set once its rungs ran: its stored study is checked alone."""
    source = Path(ladder.source).name
    study_file = ladder.cfg.target.study
    first = ladder.rungs[0].cfg
    if missing := check_study_files(first):
        return [f"target.study {study_file}: {m}" for m in missing]
    rename = (f"give the ladder a new name (name: in {source}; its rungs and target are new "
              "studies then, run from the start)")
    stages = [*(r.cfg for r in ladder.rungs), ladder.target]
    if storage := storage_problems(ladder.target.storage, ladder.target.storage_url):
        return storage  # the stages' storage, one for all
    problems = [f"target.study {study_file}: {p}" for p in data_problems(first, stages, rename)
                + tracker_problems(first)]
    if problem := laws_file_problem(Path(ladder.laws_file)):  # the run refused it, validate not
        problems.append(f"laws_file: {problem}")
    for rung in ladder.rungs:
        dims, fixed = build_space(rung.cfg, planning_priors(rung.cfg))
        problems += [f"{rung.key}: {p}" for p in space_problems(rung.cfg, dims, fixed)]
    # Stored studies the files now change, said once for the stages alike (a change to the
    # target study's file changes every stage).
    changed: dict[str, list[str]] = {}
    for cfg in stages:
        if (changes := stored_changes(cfg)) is not None:
            changed.setdefault(changes, []).append(cfg.name)
    problems += [changed_studies(names, first.storage_url, changes, rename)
                 for changes, names in changed.items()]
    if ladder.target.name not in sum(changed.values(), []) and (
            apart := started_apart(ladder.target, rename)):
        problems.append(apart)
    return problems


def ladder_notes(ladder: Any) -> list[str]:
    """The plan's notes of each rung (``plan_notes``), each named by the rungs it is about
    (``every rung`` where all give it: the data, a download), once."""
    by_note: dict[str, list[str]] = {}
    for rung in ladder.rungs:
        dims, _ = build_space(rung.cfg, planning_priors(rung.cfg))
        for note in plan_notes(rung.cfg, dims):
            by_note.setdefault(note, []).append(rung.cfg.name)
    for cfg in (*(r.cfg for r in ladder.rungs), ladder.target):  # stored stages widened
        if (widened := stored_widening(cfg)) is not None:
            by_note.setdefault(widening_note(widened), []).append(cfg.name)
    every = len(ladder.rungs)
    notes = [f"{'every rung' if len(names) == every > 1 else ', '.join(names)}: {note}"
             for note, names in by_note.items()]
    # The target's own: its n_trials and the pruner and sampler it runs under (its space is the
    # laws' to set once the rungs ran, so its other notes are not known yet: the last rung's
    # space stands for it).
    target = ladder.target
    return list(ladder.notes) + notes + [f"{target.name}: {note}" for note in
                                         pruner_notes(target) + sampler_notes(target, dims)]


def planned(cfg: StudyConfig) -> tuple[Priors, list, dict[str, Any]]:
    """The planning priors and search space of ``cfg``, once `run` would get past its checks
    from the file alone: a ConfigError names the files missing, else ``plan_problems``. What
    `run --dry-run` and `validate` both check."""
    if problems := check_study_files(cfg):
        raise cfg.refusal(problems)
    priors = planning_priors(cfg)
    dims, fixed = build_space(cfg, priors)
    if problems := plan_problems(cfg, dims, fixed) + tracker_problems(cfg):
        raise cfg.refusal(problems)
    return priors, dims, fixed


def data_problems(cfg: StudyConfig, stages: list[StudyConfig] | None = None,
                  rename: str = "give this study a new name") -> list[str]:
    """What ``scaletune run`` refuses when it prepares the data, where it is found without
    preparing it: a size problem (no text, a split shorter than one window) where the size is
    known; local text it cannot read (not UTF-8, whitespace only, one character); a text column
    the first local file of a dataset lacks; data other than the stored study's trials trained
    on (trainer.data.read_fingerprint), or that any of ``stages`` trained on (a ladder's studies
    of the same data; advice ending in ``rename``); and a token cache folder that cannot be
    made."""
    problems, fingerprint = readable_data_problems(cfg.data, cfg.model.block_size)
    if fingerprint is not None:  # the stages' data is one: said once
        problems += dict.fromkeys(stored_data_change(stage, fingerprint, rename)
                                  for stage in stages or [cfg])
    return [p for p in problems if p]


def readable_data_problems(data: Any, block_size: int) -> tuple[list[str], str | None]:
    """What preparing ``data`` (a DataConfig) for windows of ``block_size`` would refuse, found
    without preparing it (data_problems' checks of the data itself, for a study's and a
    training file's validate), and the data's fingerprint where it is known."""
    try:
        cache = cache_dir(data)
    except DataError as e:
        return [str(e)], None
    held = validation_part(data)
    try:
        n_tokens = known_tokens(data)
        n_val = known_tokens(held) if held else None
    except (DataError, OSError):  # a missing file: the file checks name it
        return [], None
    if held and n_val is None:
        n_tokens = None  # the sizes are known of both parts, or checked when they are prepared
    try:
        fingerprint = read_fingerprint(data)
    except DataError as e:
        return [str(e)], None
    problems = [] if n_tokens is None else [size_problem(n_tokens, data, block_size, n_val)]
    problems += [column_problem(data), separator_problem(data)]
    if not os.access(cache, os.W_OK) and not holds_tokens(data, fingerprint):
        problems.append(unwritable_cache(data, cache, "read-only, or another user's"))
    return [p for p in problems if p], fingerprint


def out_dir_note(config: Any) -> list[str]:
    """What `scaletune train` (without --resume or --overwrite) says of a checkpoint in the
    training config's out_dir: a run there, of this config or another (a file exported again
    to the same name: validate said ok, and train refused it). torch is imported only where
    out_dir is there."""
    if not config.out_dir:
        return []
    from scaletune.trainer.runlock import out_dir_problem

    out_dir = Path(os.path.normpath(config.out_dir))
    try:
        why = (f"out_dir {out_dir}: {problem}" if (problem := out_dir_problem(out_dir)) else None)
        if why is None and out_dir.is_dir():
            from scaletune.trainer.checkpoint import run_in_the_way
            from scaletune.trainer.cli import FLAGS

            why = run_in_the_way(config.out_dir, False, False, FLAGS,
                                 config=config.model_dump(mode="json"))
    except OSError as e:  # a folder it may not read: train says why
        why = f"out_dir {out_dir}: cannot read it ({e.strerror or e})"
    return [f"{why} (`scaletune train` as it is refuses it)"] if why else []


def compile_note(compile: bool, command: str, section: str = "") -> list[str]:
    """``compile: true`` where no C++ compiler works: `scaletune COMMAND` refuses it on this
    machine (validate said ok); ``section`` is the key's (``trainer.`` in a study file). torch
    is imported only when compile is asked for."""
    if not compile:
        return []
    from scaletune.trainer.loop import compiler_missing

    why = compiler_missing()
    return [f"{section}{why} (`scaletune {command}` refuses it on this machine)"] if why else []


def device_note(device: str, command: str, section: str = "") -> list[str]:
    """A ``device`` this machine does not have (cuda without a CUDA GPU, mps without an Apple
    one): `scaletune COMMAND` refuses it here (validate said ok). torch is imported only for a
    device named."""
    if device in ("auto", "cpu"):
        return []
    from scaletune.trainer.distributed import device_for
    from scaletune.trainer.errors import SetupError

    try:
        device_for(device)
    except SetupError as e:
        return [f"{section}{e} (`scaletune {command}` refuses it on this machine)"]
    return []


def run_validation_note(config: Any) -> list[str]:
    """A training config's validation split too small for its windows, where the data's size
    is known without preparing it (train said it; validate did not)."""
    try:
        sizes = split_sizes(config.data)
    except (DataError, OSError):  # a file the checks above name
        return []
    note = sizes and validation_note(config.data, config.model.block_size, sizes[1], study=False)
    return [note] if note else []


def validate_file(path: str, storage: str | None = None) -> tuple[str, list[str]]:
    """What `scaletune validate` checks of one file, from the file (and a study's storage,
    read; a server's connected to) alone: nothing is prepared, started or written. Returns its
    kind ("study", "ladder" or "training config") and the notes the plan would warn of; raises a
    ConfigError that lists every problem found (a data or tokenizer error found while planning
    included). ``storage``: a study's storage in place of its file's, as `run --storage` gives
    it (a study file only)."""
    from scaletune.trainer.config import (
        file_kind,
        load_train_config,
        load_yaml,
        tensorboard_missing,
    )

    try:
        raw = load_yaml(path)
        kind = ("training config" if file_kind(raw) == "training" else
                "ladder" if isinstance(raw, dict) and LADDER_KEYS & raw.keys() else "study")
        if storage is not None and kind != "study":
            raise ConfigError(path, [f"--storage: a study file's storage, and {path} is a {kind}, "
                                     "whose storage it does not set"])
        if kind == "training config":  # for `scaletune train`: a token budget, no trials
            config = load_train_config(path)
            if missing := config.data.file_errors(study=False):  # train trains on the overlap
                raise ConfigError(path, missing)
            if no_board := tensorboard_missing(config):
                raise ConfigError(path, [no_board])
            if small := vocab_problem(config.model.vocab_size,  # train refused it
                                      known_vocab_size(config.data.tokenizer),
                                      config.data.tokenizer):
                raise ConfigError(path, [small])
            if problems := readable_data_problems(config.data, config.model.block_size)[0]:
                raise ConfigError(path, problems)  # train refused them once it read the data
            return "training config", (download_notes(config.data) + config.notes()
                                       + compile_note(config.compile, "train")
                                       + device_note(config.device, "train")
                                       + run_validation_note(config)
                                       + out_dir_note(config))
        if kind == "ladder":
            from scaletune.search.ladder import load_ladder

            # The laws file is the ladder's to write: only the rungs' files must be there.
            ladder = load_ladder(path)
            if problems := ladder_problems(ladder):
                raise ConfigError(path, problems)
            return "ladder", ladder_notes(ladder)
        try:
            cfg = with_options(load_study(path), storage=storage)
        except ConfigError as e:
            raise ConfigError(e.source, e.errors + _data_file_errors(raw, path, e.errors)) from None
        # A server storage that refuses the login or does not answer: validate connects to it
        # (it said ok, and run refused); the dry run shows the plan of a file for elsewhere.
        usable = not storage_problems(cfg.storage, cfg.storage_url)  # else planned names it
        reach = [problem] if usable and (problem := unreachable(cfg.storage_url)) else []
        try:
            _, dims, _ = planned(cfg)  # the space planned once, for its problems and its notes
        except ConfigError as e:
            raise ConfigError(e.source, reach + e.errors) from None
        if reach:
            # The file is valid and planned: its notes stand beside the storage's error (a
            # study for a cluster, checked offline, lost its notes of what it downloads).
            unreached = ConfigError(cfg.source, reach)
            unreached.notes = plan_notes(cfg, dims)
            raise unreached
        # A job server's address is for `run --detach` alone: validate said ok, run refused it.
        detach_only = job_server_problem(cfg)
        widened = stored_widening(cfg)
        return "study", plan_notes(cfg, dims) + (
            [f"{detach_only} (`scaletune run` without --detach refuses it)"] if detach_only
            else []) + ([widening_note(widened)] if widened is not None else [])
    except ConfigError:
        raise
    except ScaletuneError as e:  # a data or tokenizer error found while planning: the file's
        raise ConfigError(path, [str(e)]) from None


def _data_file_errors(raw: Any, path: str, errors: list[str]) -> list[str]:
    """The missing files of a study file's ``data:`` section (data.path, a tokenizer), where
    other keys of the file are wrong: found only once those were fixed, `validate` gave every
    error but these at once. None where the data section has errors of its own."""
    from scaletune.trainer.config import DataConfig

    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict) or any(e.startswith("data") for e in errors):
        return []
    try:
        config = DataConfig.model_validate(data).resolved(Path(path).resolve().parent)
    except ValueError:  # pydantic's ValidationError among them
        return []
    return config.file_errors()


def print_plan(cfg: StudyConfig, console: Console, repeat_best: int = 0) -> None:
    """What ``scaletune run`` would do with ``cfg`` (and ``--repeat-best``), from the study file
    alone: nothing is prepared, started or written (the priors plan as ``scaletune priors``
    does)."""
    priors, dims, fixed = planned(cfg)
    out = _printer(console)
    out(f"plan of study {cfg.name} ({cfg.source}); a dry run: nothing starts, nothing is written")
    console.print()
    console.print(priors_table(priors))
    console.print()
    console.print(_space_table(dims, fixed, seeded=cfg.seeding == "prior"))
    for note in plan_notes(cfg, dims) + _resumed_notes(cfg, priors):
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    console.print()
    rows: list[tuple[str, str]] = []
    stored = stored_trial_states(cfg)
    if cfg.seeding == "prior" and not stored:  # a study that has trials drew its first
        first = prior_center_params(dims)
        _, derived = trial_config(cfg, first, fixed, None)
        drawn = [d.name for d in dims if d.prior is None]  # search.other: no prior to center
        rows.append(("first", f"trial 0, the priors' center: {fmt_params(first)}"
                     + (f"; {', '.join(drawn)} drawn at random (no prior)" if drawn else "")))
        shown = {k: v for k, v in derived.items() if k in DERIVED and k not in first}
        rows.append(("", f"derived {fmt_params(shown)}; {derived['steps']:,} steps"))
    rows += [
        ("sampler", describe_sampler(cfg)),
        ("pruner", describe_pruner(cfg)),
        ("workers", _resources(cfg)),
        ("storage", _storage_state(cfg, stored, repeat_best)),
        ("budget", _budget(cfg, priors, repeat_best)),
    ]
    if repeat_best:
        left = not stored or n_done(stored) < trials_asked(stored, cfg.n_trials)
        when = ("first, or after the search where no trial has completed yet"
                if sqlite_path(cfg.storage_url) is None  # a server's: not read by a dry run
                else "first" if any(t.state == TrialState.COMPLETE for t in stored or [])
                else "after the search (no trial has completed yet)" if left
                else "none: run refuses them, with no complete trial to repeat and no search "
                     "left to find one (`--n-trials N` runs more)")
        rows.append(("repeats", f"the study's best complete trial, {repeat_best} more time(s) "
                                f"with training seeds it has not used, never pruned, {when}, on "
                                "top of n_trials"))
    _rows(out, rows)


def _resumed_notes(cfg: StudyConfig, priors: Priors) -> list[str]:
    """What `run` tells a study it resumes, as far as the file and its SQLite storage say it
    before a run: a sampler or pruner other than the one the study started with, priors that
    moved since (dropout's center is left out: the plan does not read the data its epochs
    need)."""
    database = sqlite_path(cfg.storage_url)
    attrs = stored_study_attrs(database, cfg.name, ("config", "priors")) if database else {}
    if not attrs:
        return []
    stored = attrs.get("priors")
    if isinstance(stored, dict) and "dropout" in stored:
        attrs = {**attrs, "priors": {k: v for k, v in stored.items() if k != "dropout"}}
    widened = stored_widening(cfg)
    return [note for note in (sampler_note(attrs, cfg), pruner_note(attrs, cfg),
                              priors_note(attrs, priors),
                              None if widened is None else widening_note(widened)) if note]


def _space_table(dims: list[Any], fixed: dict[str, Any], seeded: bool) -> Table:
    """The space searched; where the study's trial 0 is the priors' center (``seeded``) and
    takes another value than the center (a choice, an end of the range), that value too."""
    table = Table(title="Search space")
    for column in ("parameter", "searched over", "scale", "prior center"):
        table.add_column(column)
    first = prior_center_params(dims) if seeded else {}
    over = searched_ranges(dims, fixed)
    for d in dims:
        dist = d.distribution
        scale = ("" if isinstance(dist, CategoricalDistribution)
                 else "log" if dist.log else "linear")
        center = show_value(d.name, d.prior.center) if d.prior is not None else ""
        if d.name in first and show_value(d.name, first[d.name]) != center:  # a choice, a range's end
            center += f" (trial 0: {show_value(d.name, first[d.name])})"
        table.add_row(d.name, over[d.name], scale, center)
    for name in fixed:
        table.add_row(name, over[name], "", "")
    return whole_cells(table)


def describe_sampler(cfg: StudyConfig) -> str:
    """``tpe (multivariate, constant liar), seed 0: the priors' center, then 6 trials drawn
    from the priors, then TPE``, as search.samplers.make_sampler builds it."""
    s = cfg.sampler
    seed = cfg.seed if s.seed is None else s.seed
    flags = [w for w, on in (("multivariate", s.multivariate), ("constant liar", s.constant_liar))
             if on and s.name == "tpe"]
    head = f"{s.name} ({', '.join(flags)})" if flags else s.name
    head += f", seed {seed}"
    center = "the priors' center, then " if cfg.seeding == "prior" else ""
    if s.name == "random":
        return f"{head}: {center}uniform draws (the baseline: the priors seed no draw)"
    if cfg.seeding == "none":
        return (f"{head}: {s.n_startup_trials} start-up trial{_s(s.n_startup_trials)} at "
                f"random, then {s.name} (plain "
                f"Optuna){_pruned_seen(cfg)}")
    then = s.name
    if s.name == "tpe" and s.prior_weight > 0:
        then = (f"tpe weighted by the priors (prior_weight {s.prior_weight:g}: a pull that fades "
                "as 1/n over n finished trials)")
    # Start-up lasts while fewer than n_startup_trials have finished (search.samplers), the
    # center among them: one at a time, the center and n - 1 draws. GP and CMA-ES count the
    # trials they see as complete (PriorSampler's complete_only): a pruned trial they do not
    # see does not end it.
    if not s.n_startup_trials:  # "draws from the priors until 0 trials have finished"
        return f"{head}: {center}{then}{_pruned_seen(cfg)}"
    finished = "trial has" if s.n_startup_trials == 1 else "trials have"
    ended = ("completed" + (" (pruned ones counted where the sampler sees them at their "
                           "prediction)" if s.pruned_trials != "ignore" else "")
             if s.fits_complete_only else "finished")
    return (f"{head}: {center}draws from the priors until {s.n_startup_trials} {finished} "
            f"{ended} (the center among them), then {then}{_pruned_seen(cfg)}")


def _s(n: int) -> str:
    """The plural ending of a count: 1 trial, 2 trials."""
    return "" if n == 1 else "s"


def _pruned_seen(cfg: StudyConfig) -> str:
    """What GP and CMA-ES, which fit complete trials only, learn from pruned and diverged ones
    (search.samplers.PredictionsTeachSampler)."""
    name = cfg.pruner.name
    if not cfg.sampler.fits_complete_only:
        return ""
    if cfg.sampler.pruned_trials == "ignore":
        return "; it does not see pruned or diverged trials (pruned_trials: ignore)"
    if name == "predicted":
        return "; it sees pruned trials at their predicted final loss, diverged ones at the worst"
    if name == "none":
        return "; it sees diverged trials at the worst loss"
    return (f"; it sees diverged trials at the worst loss, not pruned ones (the {name} pruner "
            "predicts no final loss; the predicted pruner does)")


def describe_pruner(cfg: StudyConfig) -> str:
    """``median: n_startup_trials=3, n_warmup_steps=default, interval_steps=1``; the predicted
    pruner's ``margin`` only under ``interval: range`` and its ``confidence`` and ``min_spread``
    only under ``t``, the interval each one draws."""
    unused = {"t": {"margin"}, "range": {"confidence", "min_spread"}}
    return _fields(cfg.pruner, hide=unused.get(getattr(cfg.pruner, "interval", None), set()))


def _fields(model: BaseModel, hide: set[str] | None = None) -> str:
    """``name: key=value, ...`` but for the fields in ``hide``; a field left to its default
    says what the default is, as its docstring does ("...; default 25% of a trial")."""
    name = getattr(model, "name", type(model).__name__)
    parts = []
    for key, field in type(model).model_fields.items():
        if key == "name" or key in (hide or ()):
            continue
        value = getattr(model, key)
        if isinstance(value, BaseModel):
            parts.append(f"{key}=({_fields(value)})")
        elif value is None:
            # What None means, as the field's docstring says it: "...; default 25% of a trial",
            # or "(none: prune on patience alone)".
            said = re.search(r"\bdefault ([^.;]+)", field.description or "")
            nothing = re.search(r"\b[Nn]one: ([^.;)]+)", field.description or "")
            parts.append(f"{key}=none ({nothing.group(1)})" if nothing and not said else
                         f"{key}=default" + (f" ({said.group(1)})" if said else ""))
        else:
            parts.append(f"{key}={plain(value)}")
    return f"{name}: {', '.join(parts)}" if parts else name


def _resources(cfg: StudyConfig) -> str:
    w = cfg.workers
    each = f"{w.cpus_per_trial:g} CPU and {w.gpus_per_trial:g} GPU per trial"
    cap = f", at most {w.max_concurrent}" if w.max_concurrent else ""
    if w.address not in (None, "local"):
        where = ("this machine belongs to" if w.address == "auto" else
                 f"whose job server is at {mask_url(w.address)} (the driver runs there, a Ray "
                 "job)" if w.job_server else f"at {mask_url(w.address)}")
        return (f"the Ray cluster {where}; {each}; concurrency is decided when Ray "
                f"starts (the cluster's CPUs and GPUs over a trial's){cap}")
    cores = usable_cores()
    fit = how_many(cores, w.cpus_per_trial)  # as search.runner.concurrency counts
    if fit == 0:
        return (f"Ray on this machine; {each}: no trial fits on its {cores} cores (lower "
                "workers.cpus_per_trial)")
    slots = min(fit, w.max_concurrent or fit)
    gpus = "; GPUs are counted when Ray starts" if w.gpus_per_trial else ""
    return (f"Ray on this machine; {each}; {slots} trial(s) at once ({cores} cores"
            f"{f', max_concurrent {w.max_concurrent}' if w.max_concurrent else ''}){gpus}")


def _storage_state(cfg: StudyConfig, stored: list[Any] | None, repeat_best: int = 0) -> str:
    """The storage and, for an SQLite file, whether the study resumes there (``stored``: its
    trials there, search.plan.stored_trial_states), with how many have finished; a launch
    with repeats (``repeat_best``) has them to run."""
    url, name = cfg.storage_url, cfg.name
    database = sqlite_path(url)
    if database is None:  # a server is not asked (the plan above is that of a new study)
        return (f"{mask_url(url)} (a server: the dry run does not read what it holds; "
                f"`scaletune show` says whether the run resumes the study)")
    names = stored_study_names(database) if database.is_file() else None
    if not database.is_file():
        there = "not there yet"
    elif names is None:
        there = "the file exists but cannot be read as SQLite: run refuses it"
    elif name in names and (driver := _driven(database, name)):
        held = f", {finished_of(stored, n_done(stored), cfg.n_trials)}" if stored else ""
        there = (f"it holds this study{held}, which a driver runs now ({driver}): the run is "
                 "refused until that driver ends")
    elif name in names and stored:
        done, total = n_done(stored), trials_asked(stored, cfg.n_trials)
        there = (f"it holds this study, {finished_of(stored, done, cfg.n_trials)}: "
                 + ("nothing to run" if done >= total and not repeat_best
                    else f"the run resumes it{_if_same_data(cfg)}"))
    elif name in names:
        there = f"it holds this study: the run resumes it{_if_same_data(cfg)}"
    else:
        others = f"{len(names)} other stud{'y' if len(names) == 1 else 'ies'}" if names else "no study"
        there = f"the file exists and holds {others}: the study starts there"
    return f"{mask_url(url)} ({there})"


def _driven(database: Path, name: str) -> str | None:
    """The driver that holds study ``name``'s lease in the SQLite file ``database`` now
    (lease.describe), read without writing; None where none does. The plan of a study being
    run said "the run resumes it", and the run was refused."""
    return lease.holder(stored_study_attrs(database, name, (lease.ATTR,)).get(lease.ATTR),
                        url=sqlite_url(database))


def _if_same_data(cfg: StudyConfig) -> str:
    """What a resume also needs where the plan cannot check it: data that reads as the study's
    trials' did, told only once the run prepares it (a .jsonl with a line added: the plan said
    the run resumes, and the run refused it)."""
    return "" if fingerprint_known(cfg.data) else (
        " if its data is the data its trials trained on (the run checks it as it prepares it)")


def _budget(cfg: StudyConfig, priors: Priors, repeat_best: int = 0) -> str:
    """The tokens and FLOPs of n_trials full trials and the ``repeat_best`` repeats (never
    pruned), at most: the repeats were left out of "at most"."""
    n = int(dict(priors.context)["non_embedding_params"])
    # The largest model searched (search.other's model.n_layer, model.n_embd): "at most" was
    # counted at the file's, and the run trained twice that.
    top = largest_shape(cfg, BYTE_VOCAB).non_embedding_params  # no vocabulary in N
    largest = "" if top <= n else ", the largest model searched"
    tokens = (cfg.n_trials + repeat_best) * cfg.tokens_per_trial
    repeats = f" + {repeat_best} repeat(s)" if repeat_best else ""
    return (f"{cfg.n_trials} trials{repeats} x {cfg.tokens_per_trial:,} tokens = {tokens:,} "
            "tokens, "
            f"{laws.flops_6nd(max(n, top), tokens):.3g} FLOPs (6ND, N = {max(n, top):,} "
            f"non-embedding params{largest}) at most, up to one step's tokens more per trial "
            "(a trial trains whole steps); pruned trials train less")


# --------------------------------------------------------------------------- studies in a storage


def stored_studies(url: str) -> tuple[optuna.storages.RDBStorage, list[optuna.Study]]:
    """The storage at ``url`` and its studies, by name, opened to read: an SQLite file that is
    not there, or a database that is not an Optuna storage, is a ConfigError, never created."""
    database = sqlite_path(url)
    if problems := sqlite_file_errors(url):  # a folder, an empty file, not a database
        raise ConfigError("storage", problems)
    if database is not None and not database.is_file():
        # run makes a study's own folder (runs/, its study_dir), not that of a storage its file
        # names: "creates it" was refused there.
        where = ("" if database.parent.is_dir() else
                 f"; where a study file names this storage, make its folder "
                 f"{database.parent.resolve()} first")
        raise ConfigError("storage", [f"storage: {database.resolve()} does not exist: no study has run "
                                      "there (`scaletune run STUDY.yaml`, or `scaletune "
                                      f"ladder LADDER.yaml`, creates it{where})"])
    if problem := url_problem(url):
        raise ConfigError("storage", [problem])
    try:
        storage = make_storage(url, create=False)
        names = sorted(optuna.get_all_study_names(storage))
        studies = [optuna.load_study(study_name=n, storage=storage) for n in names]
    except ScaletuneError:  # ours, raised above (a ConfigError is a ValueError too)
        raise
    except READ_ERRORS as e:
        if isinstance(e, ValueError) and unusable_url(e, url) is None:
            raise
        raise ConfigError("storage", [cannot_read(e, url, "cannot list the studies in")]
                          ) from None
    return storage, studies


def list_studies(url: str, console: Console) -> int:
    """A table of the studies in ``url``: trials by state, best value, last activity. Reads
    only; an SQLite file that is not there is an error, never created."""
    shown = mask_url(url)
    storage, studies = stored_studies(url)
    if not studies:
        _printer(console)(f"no studies in {shown}")
        return 0
    table = Table(title=f"Studies in {shown}")
    for column in ("study", "trials", "best", "last activity"):
        table.add_column(column)
    for study in studies:
        # Counted by the database: loading 10,000 trials to count them took half a minute.
        t = tally(storage, study.study_name, study.direction == StudyDirection.MINIMIZE)
        words = state_words(Counter(t.by_state), t.retried, t.diverged, t.reruns_started) or "none"
        live = _running(study)
        table.add_row(study.study_name, with_left_running(words, t.by_state.get("RUNNING", 0),
                                                          study),
                      f"{t.best[1]:.4f} (trial {t.best[0]})" if t.best else "",
                      live or _when(t.last))
    console.print(whole_cells(table))
    here = sqlite_url((Path("runs") / SHARED_DATABASE).resolve())
    # The SQLite file's URL, to copy; with a password in it (an SQLite URL reads none), URL.
    storage_arg = ("" if url == here else f" --storage {shlex.quote(url)}"
                   if sqlite_path(url) is not None and mask_url(url) == url else " --storage URL")
    _printer(console)(f"one study, by its name: scaletune show NAME{storage_arg} (or best, "
                      "report, export)")
    return 0


def _running(study: optuna.Study) -> str:
    """``running now (pid 1234 on host-a, ...)`` while a driver holds the study's lease."""
    held = lease.holder(study.user_attrs.get(lease.ATTR), url=storage_url(study._storage))
    return f"running now ({held})" if held else ""


def _last_activity(trials: list[FrozenTrial]) -> str:
    """When a trial last started or ended: ``2026-01-01 12:03 (5 min ago)``."""
    times = [t.datetime_complete or t.datetime_start for t in trials]
    return _when(max((t for t in times if t is not None), default=None))


def _when(last: datetime | None) -> str:
    """``2026-01-01 12:03 (5 min ago)``, or nothing for None."""
    if last is None:
        return ""
    # Optuna stores local time without a zone
    ago = fmt_duration(max(0.0, (datetime.now() - last).total_seconds()))
    return f"{last:%Y-%m-%d %H:%M} ({ago} ago)"


def _when_recorded(at: Any) -> str:
    """An ISO time a study recorded (UTC), as ``_when`` says a trial's (local time); the text
    as it is where it is not one."""
    try:
        return _when(datetime.fromisoformat(at).astimezone().replace(tzinfo=None))
    except (TypeError, ValueError):
        return str(at)


# --------------------------------------------------------------------------- one study


SHOWN_FAILURES = 3
"""Distinct reasons of failed trials that ``scaletune show`` lists; trials.csv has them all."""


def _failures(trials: list[FrozenTrial], run_again: bool = False) -> list[str]:
    """The reasons failed trials recorded, most frequent first, each with its trials: ``trials
    0, 1, 2: SetupError: ...``; of the failures that were not run again, or (``run_again``) of
    those that were (a stopped driver's, a lost worker's)."""
    by_reason: dict[str, list[int]] = {}
    for t in trials:
        if t.state == TrialState.FAIL and failed_for_good(t) != run_again:
            by_reason.setdefault(t.user_attrs.get("fail_reason", "no reason recorded"),
                                 []).append(t.number)
    ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    lines = [f"trial{'s' if len(ns) > 1 else ''} {_numbers(ns)}: {reason}"
             for reason, ns in ranked[:SHOWN_FAILURES]]
    if len(ranked) > SHOWN_FAILURES:
        lines.append(f"and {len(ranked) - SHOWN_FAILURES} other reason(s) (`scaletune report`: "
                     "trials.csv)")
    return lines


def _pruned(trials: list[FrozenTrial]) -> list[tuple[str, str]]:
    """Who stopped the pruned trials, most trials first: ``("pruned", "trials 2, 3: the median
    pruner")``; then the diverged ones (stored as pruned), with the first one's reason:
    ``("diverged", "trials 0, 1 (trial 0: training loss 5.51 above max_loss 3 at step 1)")``."""
    by_who: dict[str, list[FrozenTrial]] = {}
    gone = []
    for t in trials:
        if t.state == TrialState.PRUNED and diverged(t):
            gone.append(t)
        elif t.state == TrialState.PRUNED:
            reason = str(t.user_attrs.get("prune_reason", ""))
            who = (f"the {reason.split(' at ')[0]}" if " pruner at " in reason else
                   "no reason recorded")
            by_who.setdefault(who, []).append(t)
    lines = [("pruned", f"trial{'s' if len(ts) > 1 else ''} {_numbers([t.number for t in ts])}: "
                        f"{who}")
             for who, ts in sorted(by_who.items(), key=lambda kv: -len(kv[1]))]
    if gone:
        first = gone[0].user_attrs["prune_reason"].removeprefix("diverged:").strip()
        lines.append(("diverged", f"trials {_numbers([t.number for t in gone])} (trial "
                                  f"{gone[0].number}: {first})" if len(gone) > 1 else
                                  f"trial {gone[0].number}: {first}"))
    return lines


def _numbers(numbers: list[int], most: int = 6) -> str:
    """``0, 1, 2`` or ``0, 1, 2, 3, 4, 5 and 4 more``."""
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def _finished_said(study: Any, trials: list[Any], n_trials: int | str,
                   from_file: bool = True) -> str:
    """``9 finished of n_trials 6`` (``of n_trials 6 in the study file; its last run asked for
    12`` after ``run --n-trials 12``); with repeats of a config (``run --repeat-best``, on top of
    n_trials): ``9 finished: 7 of the search (n_trials 6) and 2 repeats of trial 1 with other
    training seeds``. A study read by its name (``from_file`` False; a ladder's rung has no
    file) has only its record: the n_trials its last run asked for."""
    from scaletune.search.noise import finished_repeats

    finished = n_finished(study)
    repeats = finished_repeats(trials)
    asked = study.user_attrs.get(LAST_N_TRIALS)
    if isinstance(asked, int) and asked != n_trials:  # run with --n-trials, or the file changed
        n_trials = (f"{n_trials} in the study file; its last run asked for {asked}" if from_file
                    else asked)
    if not repeats:
        return f"{finished} finished of n_trials {n_trials}"
    of = sorted({t.user_attrs[REPEAT_OF] for t in repeats})
    return (f"{finished} finished: {finished - len(repeats)} of the search (n_trials {n_trials}) "
            f"and {len(repeats)} repeat{'s' if len(repeats) > 1 else ''} of "
            f"trial{'s' if len(of) > 1 else ''} {', '.join(map(str, of))} with other training "
            "seeds")


def show_study(cfg: StudyConfig, console: Console) -> int:
    """One study: where it lives, its driver, trials by state, the best trial, the config it
    ran with and its priors' centers."""
    study, ran_with, notes = open_study(cfg, cfg.source)
    from_file = Path(cfg.source).is_file()
    by_name = read_by_name(cfg)  # the record alone
    ran_with, changed = as_launched(study, cfg, ran_with, not by_name)
    notes += [changed] if changed else []
    trials = study.get_trials(deepcopy=False)
    out = _printer(console)
    running = _running(study)
    # Read by its name: "study tiny (tiny)" said the name twice; where it was read from is said.
    out(f"study {study.study_name} "
        f"({'read by its name: its record alone' if by_name else cfg.source})")
    # n_trials as the file (or `--n-trials`) says now: the stored config is that of the first run.
    rows = [
        ("storage", mask_url(cfg.storage_url)),
        ("driver", running or "none running"),
        ("trials", with_left_running(by_state(trials) or "none", sum(
                       t.state == TrialState.RUNNING for t in trials), study)
                   + f"; {_finished_said(study, trials, cfg.n_trials, from_file)}; "
                   f"last activity {_last_activity(trials) or 'none'}"),
    ]
    rows += [("failed" if i == 0 else "", line) for i, line in enumerate(_failures(trials))]
    rows += [("run again" if i == 0 else "", line)
             for i, line in enumerate(_failures(trials, run_again=True))]
    rows += [(kind, line) for kind, line in _pruned(trials)]
    best = best_trial(trials)
    if best is not None:
        unigram = study.user_attrs.get(UNIGRAM)
        rows.append(("best", f"trial {best.number}: {loss_said(best.value, unigram)}"))
        rows.append(("", fmt_params(best.params)))
        derived = {k: best.user_attrs[k] for k in DERIVED
                   if k in best.user_attrs and k not in best.params}
        if derived:
            rows.append(("", f"derived {fmt_params(derived)}"))
        if seeds := seeds_of_best(trials, best.number, ran_with.seed):
            rows.append(("", f"seeds: {seeds}"))
        rows += [("", f"note: {note}") for note in (frequencies_note(best.value, unigram),
                                                     *at_edges(best, widest(trials), cfg)) if note]
    rows += _config_rows(ran_with)
    rows += [("widened" if i == 0 else "", f"{', '.join(w.get('changes') or ['the same ranges'])}"
              f", by the launch of {_when_recorded(w.get('at'))}; the trials before it drew "
              "from the narrower ranges")
             for i, w in enumerate(study.user_attrs.get(WIDENED) or [])]
    centers = _prior_centers(study.user_attrs.get("priors"))
    if centers:
        laws_used = ran_with.priors
        rows.append(("priors", f"{centers} (from the "
                     + (f"laws fitted in {laws_used.fitted_file})" if laws_used.laws == "fitted"
                        else "published laws)")))
    provenance = study.user_attrs.get("provenance") or {}
    if provenance:
        rows.append(("ran with", ", ".join(f"{k} {provenance[k]}" for k in
                                           ("scaletune", "git_revision", "torch", "optuna", "ray")
                                           if provenance.get(k))))
    if codes := _trial_codes(trials):
        rows.append(("trained by", codes))
    _rows(out, rows + [("note", n) for n in notes])
    return 0


def _trial_codes(trials: list[FrozenTrial]) -> str | None:
    """Which code trained which trials (user attr ``worker_code``), where the study's trials
    were trained by more than one (a study resumed after an upgrade); else None."""
    by_code: dict[str, list[int]] = {}
    for t in trials:
        if "worker_started_at" in t.user_attrs:  # trained on a worker, not only asked
            by_code.setdefault(t.user_attrs.get("worker_code") or "unrecorded",
                               []).append(t.number)
    if len(by_code) < 2:
        return None
    return "; ".join(f"{code} (trial{'s' if len(numbers) > 1 else ''} {_spans(numbers)})"
                     for code, numbers in by_code.items())


def _spans(numbers: list[int], most: int = 6) -> str:
    """Sorted trial numbers as runs, the first ``most`` of them: [0, 1, 2, 5, 7, 8] is
    "0-2, 5, 7-8"; a study whose nodes ran two codes turn about is not a row of 10,000 characters
    ("0-3, 5, 7, 9, 11, 13 and 994 more")."""
    runs: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:most])
    rest = sum(b - a + 1 for a, b in runs[most:])
    return shown + (f" and {rest} more" if rest else "")


def _config_rows(cfg: StudyConfig) -> list[tuple[str, str]]:
    d = cfg.data
    where = {"builtin": d.builtin, "text": d.path, "hf": d.dataset}.get(d.source, "")
    if d.source == "hf" and d.data_files and not saved_dataset(d.dataset):  # a builder's files
        files = [d.data_files] if isinstance(d.data_files, str) else d.data_files
        where += f" of {', '.join(files)}"
    searched = [f"{name}{f' as {p.as_}' if getattr(p, 'as_', None) else ''} ({_how(p)})"
                for name, p in {**cfg.search.params, **cfg.search.other}.items()]

    def at(dotted: str) -> Any:
        """What every trial trains with at ``dotted``: the file's, or what search: fixes there
        (the file's model: line said width 32 of trials that trained at 64); "searched"."""
        set_by = cfg.setting(dotted)
        return "searched" if set_by is not None and set_by[1].searched else cfg.fixed_field(dotted)

    def count(dotted: str, word: str) -> str:
        n = at(dotted)
        return f"{word}s {n}" if n == "searched" else f"{n} {word}{'s' if n != 1 else ''}"

    micro, compiled, max_loss = at("micro_batch_size"), at("compile"), at("max_loss")
    return [
        ("model", f"{count('model.n_layer', 'layer')}, {count('model.n_head', 'head')}, width "
                  f"{at('model.n_embd')}, block {at('model.block_size')} ({at('model.positions')} "
                  f"positions, norm {at('model.norm')})"),
        ("trainer", f"optimizer {at('optim.name')}, schedule {at('optim.schedule')}, dtype "
                    f"{at('dtype')}" + (f", micro-batches of {micro}" if micro else "")
                    + (f", compile {compiled}" if compiled == "searched" else
                       ", compiled" if compiled else "")
                    + (f", max_loss {max_loss}" if max_loss is not None else "")),
        ("data", f"{d.source} {where}, tokenizer {d.tokenizer}"
                 + (f", first {d.max_documents:,} documents" if d.max_documents else "")
                 + (f", trains on its first {d.train_tokens:,} tokens" if d.train_tokens else "")
                 + "; validation: "
                 + (f"{d.val_path}" if d.val_path else f"the split {d.val_split!r}"
                    if d.val_split else f"its last {d.val_fraction:g}")),
        ("budget", f"{cfg.tokens_per_trial:,} tokens per trial, evaluated every "
                   f"{cfg.eval_interval:,}"),
        ("search", ", ".join(searched)),
        ("sampler", describe_sampler(cfg)),
        ("pruner", describe_pruner(cfg)),
    ]


def _how(p: Any) -> str:
    """How a study file searches one parameter, in a word."""
    if not p.searched:
        return f"fixed at {plain(p.value)}"
    if p.prior:
        return "prior"
    return "choices" if p.choices is not None else "range"


def _prior_centers(stored: Any) -> str:
    """``lr 0.0127, tau 3.24, ...`` from the study user attr ``priors`` (Priors.to_json)."""
    if not isinstance(stored, dict):
        return ""
    parts = []
    for name, prior in stored.items():
        if isinstance(prior, dict) and "center" in prior:
            hp = hparams.get(name)
            parts.append(f"{name} {hp.show(prior['center']) if hp else plain(prior['center'])}")
    return ", ".join(parts)


def print_best(cfg: StudyConfig, json_output: bool, console: Console) -> int:
    """The best trial's parameters: ``name=value`` lines, or one JSON object, on stdout (exact
    values, for scripts); notes go to stderr."""
    study, ran_with, notes = open_study(cfg, cfg.source)
    notes += [note] if (note := running_note(study)) else []
    trials = study.get_trials(deepcopy=False)
    best = best_trial(trials)
    if best is None:
        raise StudyStateError(cfg.source, [no_complete_trial(study, trials)])
    # A repeat of the best config (--repeat-best) trained with a seed of its own: the values
    # alone, trained with the study's seed, gave another loss (export writes the seed).
    seed = seed_of(best, ran_with.seed)
    if (repeat := best.user_attrs.get(REPEAT_OF)) is not None:
        notes.append(f"trial {best.number} repeats trial {repeat}'s config with training seed "
                     f"{seed} (--repeat-best); `scaletune show` gives the mean of its seeds")
    for note in notes:
        make_console(stderr=True).print(f"note: {note}", highlight=False, markup=False)
    derived = {k: best.user_attrs[k] for k in DERIVED
               if k in best.user_attrs and k not in best.params}
    fixed = {k: v for k, v in fixed_values(ran_with).items() if k not in best.params}
    if json_output:
        record = {"study": study.study_name, "trial": best.number, "value": best.value,
                  "params": best.params, "derived": derived, "fixed": fixed, "seed": seed,
                  **({REPEAT_OF: repeat} if repeat is not None else {})}
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
    else:  # the searched values, then the weight decay of a tau searched, then the fixed ones
        shown = {**best.params, **{k: v for k, v in derived.items() if k in hparams.HPARAMS},
                 **fixed, **({"seed": seed} if seed != ran_with.seed else {})}
        sys.stdout.write("".join(f"{k}={v}\n" for k, v in shown.items()))
    return 0


def delete_study(cfg: StudyConfig, yes: bool, console: Console) -> int:
    """Delete the study from its storage, after a confirmation: ``yes``, or a "y" typed on a
    terminal. Refused while a driver runs it; the storage file stays, and so does the study
    folder, unless it is the default one (runs/<name>) and empty."""
    study, _, _ = open_study(cfg, cfg.source)
    name, shown = study.study_name, mask_url(cfg.storage_url)
    _refuse_while_running(study)
    n = len(study.get_trials(deepcopy=False))
    if not yes:
        if sys.stdin is None or not sys.stdin.isatty():  # None: closed (`<&-`)
            raise SetupError(f"delete: not deleting study {name!r} ({n} trials) in {shown} "
                             "without a confirmation, and there is no terminal to ask on: "
                             "add --yes")
        try:
            answer = input(f"delete study {name!r} ({n} trials) from {shown}? "
                           "This cannot be undone. [y/N] ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            _printer(console)("not deleted")
            return 1
    # The driver's lease, taken as a driver takes it: a driver that started since the check
    # (while we asked) keeps the study, and one that starts now is refused until it is gone.
    import sqlalchemy.exc

    held = lease.DriverLease(study)
    try:
        held.acquire()
        optuna.delete_study(study_name=name, storage=make_storage(cfg.storage_url))
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
        # A read-only file: a traceback, from Optuna's delete or from the lease's write.
        held.release()
        cause = getattr(e, "orig", None) or e.__cause__ or e.__context__ or e
        raise SetupError(f"delete: study {name!r} in {shown} was not deleted: "
                         f"{scrub(first_line(cause), cfg.storage_url)}") from None
    except BaseException:
        held.release()
        raise
    _printer(console)(f"deleted study {name!r} ({n} trials) from {shown}")
    folder = cfg.folder
    if cfg._folder_by_default and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()  # runs/<name>, made by its runs and left empty: nothing of it stays
    if note := _folder_left(cfg):
        _printer(console)(note)
    return 0


def _folder_left(cfg: StudyConfig) -> str | None:
    """What a deleted study leaves on disk: its folder (the report, TensorBoard's logs), which a
    new study of the same name writes into; None where there is none. Deleting files is left to
    the user, who may want the report."""
    folder = cfg.folder
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    # A study of this name deleted from another storage (--storage, a copy): the folder is the
    # one its file's own storage still holds a study of this name for ("remove it" was said).
    own = sqlite_path(cfg.model_copy(update={"storage": None}).storage_url)
    if (own is not None and own != sqlite_path(cfg.storage_url)
            and cfg.name in (stored_study_names(own) or [])):
        return (f"its folder {folder} stays: the study {cfg.name!r} in {own} writes there "
                "too")
    database = sqlite_path(cfg.storage_url)
    holds_storage = database is not None and folder.resolve() in database.resolve().parents
    held = "its report and logs, and the storage" if holds_storage else "its report and logs"
    return (f"its folder {folder} stays ({held}; a new study of this name writes there too)"
            + ("" if holds_storage else
               f": remove it with rm -r {shlex.quote(str(folder))} if not wanted"))


def _refuse_while_running(study: optuna.Study) -> None:
    held = study.user_attrs.get(lease.ATTR)
    if lease.live(held, url=storage_url(study._storage)):
        raise lease.busy(study.study_name, held)


# --------------------------------------------------------------------------- printing


def _printer(console: Console) -> Any:
    """A print of plain text: no markup, no highlighting, never wrapped."""
    return lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True)


def _rows(out: Any, rows: list[tuple[str, str]]) -> None:
    for key, text in rows:
        out(f"  {key:<9} {text}")



