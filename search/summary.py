"""What ``scaletune run`` prints at its end and ``scaletune report`` writes to summary.json: the
best trial, the trials by state, the compute spent and what pruning saved.

Apart from the report's figures (search.report), so that the end of a run imports no plotting
library: matplotlib, pandas and plotly cost a laptop about 0.8 s to import.

Compute is C = 6 * N * D (Kaplan et al., arXiv 2001.08361) with N the non-embedding parameters
12 * n_layer * n_embd^2 and D the tokens a trial actually trained: a pruned trial counts what it
trained, and what it did not train of its budget is the compute pruning saved.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from scaletune.heuristics import laws
from scaletune.heuristics.fit import NEAR_BEST
from scaletune.heuristics.priors import TAU_BOUNDS
from scaletune.search import hparams
from scaletune.search.config import StudyConfig, is_ladder
from scaletune.search.storage import mask_url
from scaletune.search.studies import UNIGRAM
from scaletune.trainer.errors import ConfigError

DERIVED = ("weight_decay", "tau", "warmup_steps", "tokens_per_step")
"""Trial user attrs computed from the sampled parameters (search.space.trial_config). Its
``steps`` attr is left out: it is the planned number of steps, which trials.csv shows as
``steps_planned`` beside ``steps_trained`` (the runner records what a trial trained as the
``steps_trained`` attr and keeps ``steps``)."""


def tokens_trained(t: FrozenTrial) -> int:
    """Tokens a trial trained: what its worker reported, else (a trial its killed driver left)
    its last evaluation's. An evaluation is keyed by the point of the token grid it stands for
    and made at the first whole step past it: 20,032 tokens of 64 a step for 20,000."""
    seen = t.user_attrs.get("tokens_seen")
    if seen is not None:
        return int(seen)
    last = int(max(t.intermediate_values, default=0))
    per_step = t.user_attrs.get("tokens_per_step")
    return math.ceil(last / int(per_step)) * int(per_step) if per_step else last


def diverged(t: FrozenTrial) -> bool:
    """A trial stopped because its loss diverged (prune_reason "diverged: ...", written by
    search.plan), not by the pruner's comparison."""
    return (t.state == TrialState.PRUNED
            and str(t.user_attrs.get("prune_reason", "")).startswith("diverged"))


def token_budget(t: FrozenTrial, cfg: StudyConfig) -> int:
    """Tokens the trial would have trained to the end: planned steps x tokens per step.

    The trainer runs ceil(tokens_per_trial / tokens_per_step) steps, so the last step may go
    past tokens_per_trial.
    """
    per_step = t.user_attrs.get("tokens_per_step")
    if per_step:
        return math.ceil(cfg.tokens_per_trial / int(per_step)) * int(per_step)
    return cfg.tokens_per_trial


def non_embedding_params(t: FrozenTrial, cfg: StudyConfig) -> int:
    """N = 12 * n_layer * n_embd^2 of this trial's model (a study may search model.n_embd)."""
    def of_trial(dotted: str) -> int:  # drawn by search.other or a registered entry, or fixed
        set_by = cfg.setting(dotted)
        return int(t.params.get(set_by[0] if set_by else dotted, cfg.fixed_field(dotted)))

    n_layer, n_embd = of_trial("model.n_layer"), of_trial("model.n_embd")
    return laws.non_embedding_params(n_layer, n_embd)


def flops(params: int, tokens: int) -> float:
    return laws.flops_6nd(params, tokens) if tokens > 0 else 0.0


def trial_wall(t: FrozenTrial) -> float:
    """Seconds trial ``t`` trained: what its worker reported, else (a trial stopped with its
    driver, whose tokens count in the compute) the time from its start to its end."""
    if "wall_time_s" in t.user_attrs:
        return float(t.user_attrs["wall_time_s"])
    if t.state.is_finished() and t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return 0.0


def best_trial(trials: list[FrozenTrial]) -> FrozenTrial | None:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return min(complete, key=lambda t: t.value) if complete else None


EDGE = 0.05
"""A value within this fraction of its range (on the range's scale, log or linear) of an end of
the range searched lies at that end."""


def holds(wide: Any, narrow: Any) -> bool:
    """Is distribution ``wide`` a range of the same kind, scale and step as ``narrow`` that holds
    all of it (or the same distribution)? Optuna lets a parameter's range change between trials
    of a study, not its kind nor a categorical's choices (search.plan.search_widening)."""
    if wide == narrow:
        return True
    if isinstance(narrow, CategoricalDistribution) or type(wide) is not type(narrow):
        return False
    return (wide.log == narrow.log and wide.step == narrow.step
            and wide.low <= narrow.low and wide.high >= narrow.high)


def widest(trials: Iterable[FrozenTrial]) -> dict[str, Any]:
    """Each parameter's range searched now, from ``trials`` in order: a later trial's where it
    is not one that an earlier trial's holds (a study whose search widened drew its first
    trials from less; a range that moved, as the ranges of a ladder's target may, is the
    later trial's)."""
    out: dict[str, Any] = {}
    for t in trials:
        for name, dist in t.distributions.items():
            if name not in out or not holds(out[name], dist):
                out[name] = dist
    return out


MORE_TRIALS = "run the study again for more trials (n_trials, or --n-trials)"
"""How a study runs more trials (at_edges' advice)."""


def more_trials(cfg: StudyConfig | None) -> str:
    """How the study of ``cfg`` runs more trials: a ladder's target (its config's file is the
    ladder's) takes target.n_trials of the ladder file, which overrides the study file's, and
    `scaletune ladder` takes no --n-trials."""
    source = getattr(cfg, "source", None)
    try:
        ladder = bool(source) and is_ladder(source)
    except ConfigError:  # no such file: a config built in code, a study read by its name
        ladder = False
    if ladder:
        return (f"run the ladder again for more trials of its target (target.n_trials in "
                f"{source}, then scaletune ladder)")
    return MORE_TRIALS


def at_edges(trial: FrozenTrial, searched: dict[str, Any] | None = None,
             cfg: StudyConfig | None = None) -> list[str]:
    """What the user should hear when ``trial`` (the best) took a value at an end of the range
    searched, where the optimum may lie beyond: one sentence per parameter. Ends that are the
    hyperparameter's own limits (dropout 0, warmup 0, a batch of 1 sequence) are left out, and
    so are choices that are not numbers or fewer than three (a best of two is always at an end).
    ``searched``: the study's ranges now (``widest``), where a widened study searched more than
    its best trial was drawn from; ``cfg``: the study's config, whose file says how it runs more
    trials (``more_trials``, read once, for the first note that needs it)."""
    notes = []
    more = ""
    for name, dist in trial.distributions.items():
        if searched is not None and holds(searched.get(name), dist):
            dist = searched[name]
        value = trial.params.get(name)
        hp = hparams.get(name)
        side = _edge(value, dist, hp, name)
        if side is None:
            continue
        show = hp.show if hp is not None else (lambda v: format(v, ".3g"))
        key = f"search.{hparams.owner(hp).name}" if hp is not None else f"search.other.{name}"
        if hp is not None and hp.is_form:
            key += f" (as: {next(w for w, n in hparams.owner(hp).forms if n == name)})"
        up = side == "high"
        if name == "tau" and up and not isinstance(dist, CategoricalDistribution) \
                and dist.high >= TAU_BOUNDS[1]:
            # The priors' own end: a timescale a thousand runs long is no decay in effect.
            notes.append(f"tau = {show(value)}, the best trial's, is at the top of the range "
                         f"searched [{show(dist.low)}, {show(dist.high)}], where weight decay "
                         "barely acts (a timescale of a thousand runs): this run does best with "
                         "little or no weight decay, and a larger tau would change little")
            continue
        if isinstance(dist, CategoricalDistribution):
            where = (f"the {'largest' if up else 'smallest'} of the choices "
                     f"{', '.join(map(show, sorted(dist.choices)))}")
            # Batch sizes are choices however the file gave them: a range too.
            end = f" or {'high' if up else 'low'}" if hp is not None and hp.powers_of_two else ""
            wider = (f"add {'larger' if up else 'smaller'} choices ({key}: choices{end}) in a "
                     "new study, as the choices of a study cannot change")
        else:
            where = (f"the {'top' if up else 'bottom'} of the range searched "
                     f"[{show(dist.low)}, {show(dist.high)}]")
            wider = (f"widen the range {'upward' if up else 'downward'} ({key}: "
                     f"{'high' if up else 'low'}) and {more or (more := more_trials(cfg))}: a "
                     "widened range resumes it, its trials kept")
        notes.append(f"{name} = {show(value)}, the best trial's, is at {where}: the optimum may "
                     f"lie {'above' if up else 'below'} it; {wider}")
    return notes


def _edge(value: Any, dist: Any, hp: hparams.HParam | None, name: str = "") -> str | None:
    """'low' or 'high' when ``value`` lies at that end of ``dist`` and the end is not ``hp``'s
    own limit (or, for a ``search.other`` key ``name``, its trainer field's); None otherwise."""
    if not hparams.is_number(value):
        return None
    if isinstance(dist, CategoricalDistribution):
        choices = sorted(dist.choices) if all(map(hparams.is_number, dist.choices)) else []
        if len(choices) < 3:
            return None
        low, high, position = choices[0], choices[-1], (0.0 if value == choices[0] else
                                                          1.0 if value == choices[-1] else 0.5)
    elif isinstance(dist, FloatDistribution | IntDistribution) and dist.high > dist.low:
        low, high = dist.low, dist.high
        if dist.log:
            position = math.log(value / low) / math.log(high / low)
        else:
            position = (value - low) / (high - low)
    else:
        return None
    own_low, own_high = (hp.low, hp.high) if hp is not None else _field_limits(name)
    if position >= 1 - EDGE and (own_high is None or high < own_high):
        return "high"
    if position <= EDGE and (own_low is None or low > own_low):
        return "low"
    return None


def _field_limits(dotted: str) -> tuple[float | None, float | None]:
    """The smallest and largest value the trainer field ``dotted`` (a ``search.other`` key,
    ``model.n_head``) allows, where its schema bounds it: an end of the range searched that is
    the field's own limit (one head) has nothing beyond it."""
    from scaletune.trainer.config import TrainConfig

    model: Any = TrainConfig
    *parents, leaf = dotted.split(".")
    for part in parents:
        field = model.model_fields.get(part)
        model = field.annotation if field is not None else None
        if not isinstance(model, type) or not hasattr(model, "model_fields"):
            return None, None
    field = model.model_fields.get(leaf)
    if field is None:
        return None, None
    low = high = None
    for c in field.metadata:
        low = getattr(c, "ge", None) if getattr(c, "ge", None) is not None else low
        high = getattr(c, "le", None) if getattr(c, "le", None) is not None else high
    return low, high


def busy_seconds(trials: Iterable[FrozenTrial]) -> float | None:
    """The seconds in which at least one of ``trials`` ran (the union of each ended trial's
    start to end); None where none has ended."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials
                   if t.datetime_start is not None and t.datetime_complete is not None)
    if not spans:
        return None
    total, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total += (end - start).total_seconds()
            start, end = s, e
        else:
            end = max(end, e)
    return total + (end - start).total_seconds()


def frequencies_only(best: float, unigram: float | None, near: float = NEAR_BEST) -> bool:
    """Whether a best loss is no more than ``near`` (a fraction) below ``unigram``, what a model
    of the data's token frequencies alone scores (None, not known: False)."""
    return unigram is not None and best >= unigram * (1 - near)


def against_frequencies(best: float, unigram: float) -> str:
    """'5.792, above the 5.736', '5.630, only 1.8% below the 5.736': a best loss against
    ``unigram``, with as many decimals as tell the two apart (3 to 6)."""
    d = next((d for d in range(3, 7) if f"{best:.{d}f}" != f"{unigram:.{d}f}"), 4)
    if abs(best - unigram) < 5e-4 * unigram:
        return f"{best:.{d}f}, about the {unigram:.{d}f}"
    where = "above" if best > unigram else f"only {1 - best / unigram:.1%} below"
    return f"{best:.{d}f}, {where} the {unigram:.{d}f}"


def loss_said(value: float, unigram: float | None) -> str:
    """'val loss 2.0563 (token frequencies alone: 3.2612)': a best loss as the summary, show and
    report give it, beside what token frequencies alone score where that is known."""
    return f"val loss {value:.4f}" + (f" (token frequencies alone: {unigram:.4f})"
                                      if unigram else "")


def frequencies_note(best: float, unigram: float | None, near: float = NEAR_BEST) -> str | None:
    """What a study whose best loss is no more than ``near`` below what a model of its data's
    token frequencies alone scores (``unigram``; None, not recorded: nothing) should be told:
    its trials learned little more (or not even that: above it), so their losses tell its
    hyperparameters apart poorly."""
    if not frequencies_only(best, unigram, near):
        return None
    learned = ("the trials have not learned even how often each token occurs"
               if best > unigram else
               "the trials learned little beyond how often each token occurs")
    return (f"the best loss is {against_frequencies(best, unigram)} that a model of the data's "
            f"token frequencies alone scores: {learned}, so their losses tell the "
            "hyperparameters apart poorly; give each trial more tokens (tokens_per_trial), or "
            "search learning rates nearer the priors' (scaletune priors) if the ones searched "
            "lie far from them, before reading the search")


def summarize(study: optuna.Study, cfg: StudyConfig) -> dict[str, Any]:
    """Best trial, trials by state, compute spent and compute saved by pruning."""
    trials = study.get_trials(deepcopy=False)
    by_state: dict[str, dict[str, float]] = {}
    saved_tokens = 0
    saved_flops = 0.0
    n_diverged = 0
    for t in trials:
        n = non_embedding_params(t, cfg)
        trained = tokens_trained(t)
        entry = by_state.setdefault(t.state.name, {"trials": 0, "tokens": 0, "flops_6nd": 0.0})
        entry["trials"] += 1
        entry["tokens"] += trained
        entry["flops_6nd"] += flops(n, trained)
        if diverged(t):
            # The trainer's loss guard stopped it, not the pruner: what it left untrained is
            # not pruning's saving (a study whose every trial diverged saved nothing).
            n_diverged += 1
        elif t.state == TrialState.PRUNED:
            missing = max(0, token_budget(t, cfg) - trained)
            saved_tokens += missing
            saved_flops += flops(n, missing)
    spent_tokens = sum(e["tokens"] for e in by_state.values())
    spent_flops = sum(e["flops_6nd"] for e in by_state.values())
    best = best_trial(trials)
    wall = [trial_wall(t) for t in trials]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return {
        "study": study.study_name,
        "storage": mask_url(cfg.storage_url),
        "tokens_per_trial": cfg.tokens_per_trial,
        # What a model of the data's token frequencies alone scores (None: not recorded)
        "unigram_loss": study.user_attrs.get(UNIGRAM),
        "trials": {state: int(e["trials"]) for state, e in by_state.items()},
        # FAIL trials queued again (their re-runs are counted): n_trials does not count them
        "trials_run_again": sum(1 for t in trials if t.state == TrialState.FAIL
                                and t.user_attrs.get("retried", False)),
        # Of those, the ones whose re-run has started (the others' wait)
        "reruns_started": reruns_started(trials),
        "best": None if best is None else {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "derived": {k: best.user_attrs[k] for k in DERIVED if k in best.user_attrs},
            "tokens_trained": tokens_trained(best),
            "at_edges": at_edges(best, widest(trials), cfg),
        },
        "compute": {
            "tokens_trained": int(spent_tokens),
            "flops_6nd": spent_flops,
            "by_state": by_state,
            "trial_wall_time_s": float(sum(wall)),
            "study_wall_time_s": (max(ends) - min(starts)).total_seconds() if starts and ends
            else None,
            # The time some trial ran: the hours between two launches left out.
            "study_busy_time_s": busy_seconds(trials),
            "convention": "C = 6*N*D; N non-embedding = 12*n_layer*n_embd^2 (Kaplan, "
                          "arXiv 2001.08361); D the tokens each trial trained",
        },
        "pruning": {
            "pruned_trials": int(by_state.get("PRUNED", {}).get("trials", 0)) - n_diverged,
            "diverged_trials": n_diverged,
            "tokens_saved": int(saved_tokens),
            "flops_saved": saved_flops,
            "fraction_saved": saved_tokens / (spent_tokens + saved_tokens)
            if spent_tokens + saved_tokens else 0.0,
            "definition": "tokens each pruned trial did not train of its full budget "
                          "(ceil(tokens_per_trial / tokens_per_step) steps x tokens per step); "
                          "trials stopped because their loss diverged are not counted",
        },
    }


STATES = ("COMPLETE", "PRUNED", "DIVERGED", "FAIL", "RUNNING", "WAITING")
"""The order trials by state are said in; DIVERGED: PRUNED in Optuna, stopped by the loss guard."""


def state_words(counts: Counter[str], again: int, diverged: int = 0, ran: int = 0) -> str:
    """``6 complete, 9 pruned, 1 diverged, 1 interrupted and queued again``: trials counted by state,
    the FAIL ones queued ``again`` apart from those that failed for good, and the ``diverged``
    ones apart from the pruner's stops; empty for no trial. ``ran``: how many of the ``again``
    have had their re-run start (``reruns_started``), said as ``interrupted and run again``: all
    were "queued again", which read as still to run, beside the trials that had re-run them."""
    counts = Counter(counts)
    counts["FAIL"] -= again
    counts["PRUNED"] -= diverged
    counts["DIVERGED"] += diverged
    words = {"FAIL": "failed"}
    parts = [f"{counts[s]} {words.get(s, s.lower())}"
             for s in [*STATES, *sorted(counts.keys() - set(STATES))] if counts[s] > 0]
    # Stopped with the driver, or their worker lost: they run again (as the report's figures)
    rerun = min(again, ran)
    if rerun:
        parts.append(f"{rerun} interrupted and run again")
    if again - rerun:
        parts.append(f"{again - rerun} interrupted and queued again")
    return ", ".join(parts)


def reruns_started(trials: Sequence[FrozenTrial]) -> int:
    """The trials, started, that re-run an interrupted one (user attr ``retry_of``): its re-run
    waits as a WAITING trial until a worker takes it."""
    return sum(1 for t in trials
               if t.state != TrialState.WAITING and t.user_attrs.get("retry_of") is not None)


def trials_said(summary: dict[str, Any]) -> str:
    """A summary's trials by state as run's summary and the report say them (``state_words``)."""
    return state_words(Counter(summary["trials"]), summary.get("trials_run_again", 0),
                       summary["pruning"].get("diverged_trials", 0),
                       summary.get("reruns_started", 0)) or "none"


def pruning_saved(pruning: dict[str, Any]) -> str:
    """What pruning saved, in words: ``pruning saved 1,200 tokens (40%) in 3 pruned trials``,
    with the diverged trials named apart (their untrained tokens are not a saving)."""
    n = pruning["pruned_trials"]
    text = (f"pruning saved {pruning['tokens_saved']:,} tokens ({pruning['fraction_saved']:.0%}) "
            f"in {n} pruned trial{'' if n == 1 else 's'}")
    if d := pruning.get("diverged_trials", 0):
        one = d == 1
        text += (f"; the tokens {'a' if one else d} diverged trial{'' if one else 's'} did not "
                 "train are not counted as saved")
    return text
