"""Report on a study: a trials table, plots, and what the search cost and what pruning saved.

``scaletune report STUDY.yaml -o DIR`` writes into DIR:

    index.html              the page to open: the study, its best trial and compute at the top,
                            then every figure (a line each on what it shows) and the files below
    trials.csv              one row per trial: state, value, sampled and derived parameters,
                            tokens trained, compute, wall time, why it was pruned or failed
    NAME.png/.html          a figure for each entry of FIGURES (history, importances, lr_tau,
                            curves, priors) that the study has the trials for
    summary.json            the best trial, compute spent, compute saved by pruning, the
                            pruner audit, notes

Every figure with an Optuna equivalent is Optuna's: the PNG from optuna.visualization.matplotlib,
the HTML from optuna.visualization, both from the same study, parameters and target. What ours
show beyond Optuna's (pruned and failed trials, the best trial, curves coloured by state) is a
list of ``Layer``s drawn on both versions. The priors figure has no Optuna equivalent: its rows
are built once and drawn twice.

Compute is C = 6 * N * D (Kaplan et al., arXiv 2001.08361) with N the non-embedding parameters
12 * n_layer * n_embd^2 and D the tokens a trial actually trained: a pruned trial counts what it
trained, and what it did not train of its budget is the compute pruning saved. The HTML files
share one plotly.min.js written next to them, and index.html links only files in DIR, so the
report opens offline.

Optuna calls the x of an intermediate value a step; a trial here reports at the tokens it has
seen, so every learning-curve axis reads "tokens seen". Choices that are all numbers (batch
sizes, or an lr given as choices) are numbers on every axis, never categories, which plotly
would order as listed or as strings (128 before 16).

The pruner audit replays the study's pruner (the study file's, which the study goes on under,
where it differs from the one the study started with), and the median pruner beside it, on the
curves of the study's complete trials (search.pruners.replay, real Optuna pruners in a fresh in-memory
study): what each would have stopped, the compute that saves, and how many of the stopped
trials ended within 1% of the best (false prunes). Trials the predicted pruner stopped show the
prediction that stopped them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shlex
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import optuna
import optuna.visualization.matplotlib as optuna_mpl
import pandas as pd
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots
from rich.console import Console
from rich.table import Table

from scaletune.heuristics.priors import FIT_WARNS, FITTED_CITATION
from scaletune.search import hparams
from scaletune.search.config import MedianPrunerConfig, Param, StudyConfig
from scaletune.search.noise import REPEAT_OF, TRAIN_SEED, floor_of, measured_floor, seed_groups
from scaletune.search.plan import as_launched, resumes_under
from scaletune.search.pruners import (
    PREDICTION_ATTRS,
    STOPPED_AGAINST,
    audit,
    held_against,
    replay,
    shuffled,
)
from scaletune.search.studies import (
    Snapshot,
    left_running,
    open_study,
    read_by_name,
    running_note,
)
from scaletune.search.summary import (
    DERIVED,
    best_trial,
    diverged,
    flops,
    frequencies_note,
    holds,
    loss_said,
    non_embedding_params,
    summarize,
    token_budget,
    tokens_trained,
    trials_said,
    widest,
)
from scaletune.trainer.console import given_console, whole_cells
from scaletune.trainer.errors import ConfigError
from scaletune.trainer.record import fmt_duration
from scaletune.trainer.runlock import file_in_the_way

STATE_COLOURS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
    "WAITING": "#bbbbbb",
    "STOPPED": "#9467bd",
    "DIVERGED": "#8c564b",
}
"""A trial's colour by its state (``shown_state``)."""


BEST_COLOUR = "red"
"""The best trial's mark in every figure (its star, its curve)."""


def shown_state(t: FrozenTrial) -> str:
    """The state a figure shows: Optuna's, but STOPPED for a FAIL trial queued again (stopped
    by Ctrl-C or a signal, left by a stopped driver, its worker lost), which did not fail, and
    DIVERGED for a trial stopped as diverged, which Optuna holds as PRUNED (the report's text
    counts them apart; the figures' legends called them pruned)."""
    if t.state == TrialState.FAIL and t.user_attrs.get("retried"):
        return "STOPPED"
    if t.state == TrialState.PRUNED and diverged(t):
        return "DIVERGED"
    return t.state.name


def _state_label(state: str) -> str:
    # "interrupted", not "... and queued again": once its re-run has run, that read as a trial
    # still to run (the report's text counts the two apart, search.summary.state_words).
    return "interrupted" if state == "STOPPED" else state.lower()
LOSS_LABEL = "validation loss (nats/token)"
DPI = 110
FIGSIZE = (9.0, 5.5)
MARKERS = {"circle": "o", "x": "x", "star": "*", "diamond": "D", "line-ns": "|"}
"""Plotly marker symbols and the matplotlib markers that draw the same in the PNG."""
IMPORTANCE_QUANTILE = 0.1
"""PED-ANOVA's target: the best 10% of complete trials (Optuna's default, given here because the
rough-guide note rests on it)."""
TOKENS_LABEL = "tokens seen"
"""The x of every intermediate value: a trial reports its validation loss at the tokens it has
seen (Optuna's ``step``)."""
FIGURES = {
    "history": "final validation loss of each trial in trial order and the best so far; a "
               "pruned trial at its last reported loss",
    "importances": "how much each hyperparameter decides whether a trial reaches the best "
                   f"{IMPORTANCE_QUANTILE:.0%} of final losses (PED-ANOVA; they sum to 1)",
    "lr_tau": "final validation loss over the learning rate and weight decay (as tau or lambda), "
              "pruned and failed trials marked, the best trial starred",
    "curves": "validation loss against tokens seen for every trial, coloured by its state, the "
              "best trial's curve thicker",
    "priors": "each prior's center and range, from the published laws or laws fitted to your "
              "studies, against the values tried and the best trial's",
}
"""Every figure of the report by file name, with the line index.html shows under it."""
DATA_FILES = {
    "trials.csv": "one row per trial: state, value, sampled and derived parameters, tokens "
                  "trained, compute, wall time, why it was pruned or failed",
    "summary.json": "the best trial, compute spent and saved by pruning, the pruner audit, the "
                    "notes, the files",
}
"""The report's data files, with the line index.html shows beside each."""


# --------------------------------------------------------------------------- per-trial numbers


def params_by_form(cfg: StudyConfig) -> dict[str, Param]:
    """How the study sets each registered hyperparameter, by the name it is searched under:
    ``tau`` for weight decay searched as tau, as Optuna names the parameter."""
    return {hparams.form_for(hparams.HPARAMS[name], getattr(p, "as_", None)).name: p
            for name, p in cfg.search.params.items()}


def weight_decay_form(cfg: StudyConfig) -> str:
    """``tau`` or ``weight_decay``: the form weight decay is searched (or fixed) in."""
    return hparams.form_for(hparams.HPARAMS["weight_decay"], cfg.search.weight_decay.as_).name


def hparam_value(t: FrozenTrial, cfg: StudyConfig, name: str) -> Any:
    """A hyperparameter of a trial: sampled, derived (user attr), or fixed by the study. Another
    form of a fixed one (lambda when tau is fixed) is only known from the trial's user attrs."""
    if name in t.params:
        return t.params[name]
    if name in t.user_attrs:
        return t.user_attrs[name]
    param = params_by_form(cfg).get(name)
    if param is not None and not param.searched:
        return param.value
    return None


def trials_frame(study: optuna.Study, cfg: StudyConfig) -> pd.DataFrame:
    """One row per trial, in trial order."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        n = non_embedding_params(t, cfg)
        trained = tokens_trained(t)
        budget = token_budget(t, cfg)
        per_step = t.user_attrs.get("tokens_per_step")
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            # Optuna stores a trial its trainer stopped on a diverged loss as PRUNED: counted
            # apart, as the summary counts it.
            "diverged": diverged(t),
            "value": t.value,
            "best_val_loss": t.user_attrs.get("best_val_loss"),
            "final_val_loss": t.user_attrs.get("final_val_loss"),
        }
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row.update({f"derived_{k}": t.user_attrs[k] for k in DERIVED if k in t.user_attrs})
        row.update({
            "tokens_trained": trained,
            "token_budget": budget,
            # What pruning saved: not a diverged trial's rest (216,576 tokens of a study of
            # three diverged trials were, where the summary counted none).
            "tokens_not_trained": (max(0, budget - trained)
                                   if t.state == TrialState.PRUNED and not diverged(t) else 0),
            "steps_planned": budget // per_step if per_step else None,
            "steps_trained": trained // per_step if per_step else None,
            "non_embedding_params": n,
            "flops_6nd": flops(n, trained),
            "evaluations": len(t.intermediate_values),
            "wall_time_s": t.user_attrs.get("wall_time_s"),
            "train_time_s": t.user_attrs.get("train_time_s"),
            "tokens_per_s": t.user_attrs.get("tokens_per_s"),
            "started": t.datetime_start,
            "completed": t.datetime_complete,
            "source": t.user_attrs.get("source"),
            "attempt": t.user_attrs.get("attempt"),
            "retry_of": t.user_attrs.get("retry_of"),
            # A repeat of the best config (--repeat-best): the same params, another seed.
            "train_seed": t.user_attrs.get(TRAIN_SEED, cfg.seed),
            "repeat_of": t.user_attrs.get(REPEAT_OF),
            "prune_reason": t.user_attrs.get("prune_reason"),
            **{k: t.user_attrs.get(k) for k in PREDICTION_ATTRS},
            "fail_reason": t.user_attrs.get("fail_reason"),
            # The code that trained it: a study resumed after an upgrade holds two.
            "code": t.user_attrs.get("worker_code"),
        })
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    params = sorted(c for c in frame.columns if c.startswith("param_"))
    derived = [f"derived_{k}" for k in DERIVED if f"derived_{k}" in frame.columns]
    head = ["number", "state", "value", "best_val_loss", "final_val_loss"]
    rest = [c for c in frame.columns if c not in head + params + derived]
    return frame[head + params + derived + rest]


def whole_numbers(frame: pd.DataFrame, study: optuna.Study | None = None) -> pd.DataFrame:
    """``frame`` with the columns of counts that some trials leave empty (the attempt of a
    retried trial, steps of one that failed before its first) as integers with blanks: pandas
    reads them as floats, and the CSV would say "trial 2.0". So too the parameters ``study``
    searches as integers (a batch size), which a trial queued again leaves empty: "8.0"."""
    out = frame.copy()
    integer = integer_params(study) if study is not None else set()
    for column in out.columns:
        values = out[column].dropna()
        if (out[column].dtype.kind == "f" and len(values) and out[column].isna().any()
                and (values == values.round()).all()
                and column not in FLOAT_COLUMNS
                and (not column.startswith("param_") or column in integer)):
            out[column] = out[column].astype("Int64")
    return out


def integer_params(study: optuna.Study) -> set[str]:
    """The trials-table columns (``param_<name>``) of the parameters that ``study``'s trials
    drew as integers: from an integer range, or from choices that are all integers."""
    columns = set()
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            if isinstance(dist, IntDistribution) or (
                    isinstance(dist, CategoricalDistribution)
                    and all(isinstance(c, int) and not isinstance(c, bool)
                            for c in dist.choices)):
                columns.add(f"param_{name}")
    return columns


FLOAT_COLUMNS = {"value", "best_val_loss", "final_val_loss", "wall_time_s", "train_time_s",
                 "tokens_per_s", "flops_6nd"}
"""Measurements that may happen to be whole numbers yet are not counts."""


AUDIT_TRIALS = 500
"""Complete trials the pruner audit replays at most. Each report of a replay reads the curves
of the trials before it, so a replay's time grows with the square of the trials: the report of a
study of 10,000 trials did not finish in 5 minutes (benchmarks/driver_scale.py). A larger study
is replayed on this many of its complete trials, evenly spaced in trial order, and says so."""


def evenly_spaced(trials: list[FrozenTrial], most: int) -> list[FrozenTrial]:
    """``trials`` (in trial order), or ``most`` of them evenly spaced from the first to the
    last where there are more."""
    if len(trials) <= most:
        return list(trials)
    if most < 2:
        return list(trials[-most:]) if most else []
    return [trials[round(i * (len(trials) - 1) / (most - 1))] for i in range(most)]


AUDIT_ORDERS = 10
"""Shuffled orders of the complete trials the audit replays each pruner in besides theirs, for a
study of at most AUDIT_SHUFFLED_TRIALS: which trial came third decides whether a run near the
best was judged on two curves or on ten, so one order is one draw (on the suite, the predicted
pruner at confidence 0.9 stopped no run near the best in the order the trials ran, and 47 in 20
shuffles of each study; benchmarks/pruner_replay.py)."""
AUDIT_SHUFFLED_TRIALS = 100
"""Complete trials up to which the audit also replays shuffled orders (a replay of 64 trials
took 0.05-0.08 s; its time grows with the square of the trials)."""


def pruner_audit(study: optuna.Study, cfg: StudyConfig) -> dict[str, Any]:
    """What the study's pruner, and the median pruner for comparison, would have done to the
    study's complete trials, replayed on their curves in trial order (search.pruners.replay),
    at most ``AUDIT_TRIALS`` of them, and in ``AUDIT_ORDERS`` shuffled orders where there are
    at most ``AUDIT_SHUFFLED_TRIALS``; and the prediction that stopped each trial the predicted
    pruner pruned."""
    trials = study.get_trials(deepcopy=False)
    # The search's trials: a repeat of a config with another training seed is never pruned.
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE
                       and REPEAT_OF not in t.user_attrs), key=lambda t: t.number)
    sample = evenly_spaced(complete, AUDIT_TRIALS)
    pruner = cfg.pruner
    if getattr(pruner, "noise_floor", None) == "auto":
        # The floor the study's repeats measure (the replay's renumbered trials would lose
        # which trial each repeat repeats, and measure none).
        pruner = pruner.model_copy(update={"noise_floor": floor_of(seed_groups(trials,
                                                                               cfg.seed))[0]})
    # A study without a pruner is shown what the median pruner would have done; "none"
    # replayed stops nothing.
    configs = {} if cfg.pruner.name == "none" else {cfg.pruner.name: pruner}
    configs.setdefault("median", MedianPrunerConfig(name="median"))
    budget = cfg.tokens_per_trial
    replayed = {name: audit(replay(c.build(cfg), sample, budget), budget)
                for name, c in configs.items()}
    orders = {}
    if 3 <= len(sample) <= AUDIT_SHUFFLED_TRIALS:
        for name, c in configs.items():
            runs = [audit(replay(c.build(cfg), order, budget), budget)
                    for order in shuffled(sample, study.study_name, AUDIT_ORDERS)]
            orders[name] = {
                "replays": len(runs),
                "compute_saved": sum(r["compute_saved"] for r in runs) / len(runs),
                "false_prunes": sum(r["false_prunes"] for r in runs),
                "with_false_prune": sum(r["false_prunes"] > 0 for r in runs),
            }
    rank = getattr(cfg.pruner, "rank", 1)  # the study's last launch's (its trials' not stored)
    predictions = [
        {"number": t.number, **{k: t.user_attrs[k] for k in PREDICTION_ATTRS},
         **{k: t.user_attrs[k] for k in STOPPED_AGAINST if k in t.user_attrs}, "rank": rank}
        for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if PREDICTION_ATTRS[0] in t.user_attrs
    ]
    return {
        "replayed": replayed,
        "orders": orders,
        "complete": len(complete),
        "repeats": sum(t.state == TrialState.COMPLETE and REPEAT_OF in t.user_attrs
                       for t in trials),
        # stopped while the study ran: how they would have ended, no replay can tell
        "pruned_live": sum(t.state == TrialState.PRUNED and not diverged(t) for t in trials),
        "predictions": predictions,
        "definition": "each pruner replayed on the complete trials' curves in trial order, one "
                      "trial after another (repeats of a config with other training seeds "
                      "left out, and the predicted pruner's noise floor the one the study's "
                      "repeats measure now); compute saved: tokens not trained over the tokens "
                      "of those trials; false prunes: stopped trials that ended within 1% of "
                      "the best"
                      + (f"; replayed on {len(sample)} of the {len(complete)} complete trials, "
                         "evenly spaced in trial order" if len(sample) < len(complete) else "")
                      + (f"; orders: the same, in {AUDIT_ORDERS} other orders of those "
                         "trials, all there are where fewer (compute saved: the mean; false "
                         "prunes: the sum, and the replays with one)" if orders else ""),
    }


def seed_noise(study: optuna.Study, cfg: StudyConfig) -> dict[str, Any]:
    """The configs the study re-ran with other training seeds (search.noise), their final
    losses and spread, and the noise floor they measure."""
    trials = study.get_trials(deepcopy=False)
    groups = seed_groups(trials, cfg.seed)
    floor, where = floor_of(groups)
    fixed = getattr(cfg.pruner, "noise_floor", "auto")
    if fixed != "auto":  # the number the study file gives is the pruner's floor, measured or not
        floor, where = float(fixed), f"pruner.noise_floor: {fixed:g}, as the study file fixes it"
    return {
        "groups": [{"trial": g.trial, "seeds": list(g.seeds), "values": list(g.values),
                    "spread": g.spread, "lost": [list(run) for run in g.lost]} for g in groups],
        "measured_floor": measured_floor(groups),
        "floor": floor,
        "floor_source": where,
        "repeatable": any(t.state == TrialState.COMPLETE for t in trials),
        "definition": "spread: (worst - best) / best final loss of one config over training "
                      "seeds; measured floor: twice the pooled relative standard deviation; the "
                      "predicted pruner's floor under noise_floor: auto is that, at least 1%",
    }


def noise_rows(noise: dict[str, Any] | None, pruner: str) -> list[tuple[str, str]]:
    """The seed noise for people: one row per repeated config, then the floor."""
    if noise is None:
        return []
    if not noise["groups"] and not noise.get("repeatable", True):
        # (It named --repeat-best, which says there is no trial to repeat.)
        return [("seed noise", "not measured: no trial completed, so there is no best config to "
                               "re-run with other training seeds")]
    if not noise["groups"]:
        measure = noise.get("measure", "scaletune run STUDY.yaml --repeat-best 2")
        return [("seed noise", f"not measured: `{measure}` re-runs the best trial with two other "
                               "training seeds" + (", once the study file is again as the study "
                                                   "ran (it changed since, and run refuses a "
                                                   "changed file)" if noise.get("file_changed")
                                                   else ""))]
    rows = [("seed noise" if i == 0 else "",
             f"trial {g['trial']}, seeds {', '.join(map(str, g['seeds']))}: final loss "
             f"{', '.join(f'{v:.4f}' for v in g['values'])}, spread {g['spread']:.2%}"
             + "".join(f"; seed {seed} {how}" for seed, how in g.get("lost", [])))
            for i, g in enumerate(noise["groups"])]
    rows.append(("", f"noise floor {noise['measured_floor']:.2%} (2 standard deviations)"
                     + (f"; the predicted pruner uses {noise['floor']:.2%}"
                        if pruner == "predicted" else
                        f"; trials whose final losses differ by less are not told apart (the "
                        f"{pruner} pruner does not use it; the predicted pruner would)")))
    return rows


# --------------------------------------------------------------------------- plots


class Drawn(NamedTuple):
    """A figure as the report writes it: the PNG's matplotlib Figure, the HTML's plotly Figure
    and the two files."""

    png: Figure
    html: go.Figure
    paths: list[Path]


@dataclass(frozen=True)
class Layer:
    """Points drawn alike on a matplotlib Axes and on a plotly Figure: what our figures show
    beyond Optuna's, and the parts of the priors figure."""

    name: str
    """Legend entry; layers and traces of one name share one entry."""
    x: list[float]
    y: list[float]
    colour: str
    marker: str | None = "circle"
    """A plotly marker symbol (a key of MARKERS); None: a line without markers."""
    size: float = 8.0
    """Marker diameter: points in the PNG, pixels in the HTML."""
    line: float = 0.0
    """Width of a line through the points; 0: markers only."""
    edge: str | None = None
    """Colour of the markers' edges; None: the marker's own colour."""
    text: list[str] | None = None
    """Hover text of each point in the HTML (a PNG has no hover)."""


PED_ANOVA_FEW = "Some regimes for parameter"
"""The start of PED-ANOVA's warning (Optuna 5) where fewer than 2 complete trials drew a
parameter from one of its ranges (a regime each; ``searched_now`` makes a widened study's one),
whose importance then rests on fewer trials: a raw warning per parameter and call in the
report's output, which its note on importances already cautions about."""


@contextlib.contextmanager
def _matplotlib_style() -> Iterator[None]:
    """Optuna's matplotlib functions switch pyplot to the ggplot style for the whole process and
    warn that they are experimental: keep both to the figures drawn and saved inside. The priors
    figure, our own, is drawn in the same style so that the PNGs look alike."""
    with warnings.catch_warnings(), plt.style.context(["ggplot", {"figure.figsize": FIGSIZE}]):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's history asks for a legend even when it drew nothing (no complete trial yet);
        # ours replaces it.
        warnings.filterwarnings("ignore", "No artists with labels found", UserWarning)
        # Optuna's slice of a study with one complete trial sets a zero-width axis, which
        # matplotlib widens with a warning; the report sets its axes itself afterwards.
        warnings.filterwarnings("ignore", "Attempting to set identical low and high",
                                UserWarning)
        warnings.filterwarnings("ignore", PED_ANOVA_FEW, UserWarning)
        # Their log lines on a study with few trials ("There are no complete trials.", "Param
        # lr unique value length is less than 2.") say what the report's notes say in its words.
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(verbosity)


def _draw(layer: Layer, ax: Axes, html: go.Figure, row: int | None = None) -> None:
    """Draw ``layer`` on the PNG's ``ax`` and on the HTML's ``html`` (in subplot ``row``)."""
    edge = layer.edge or layer.colour
    if layer.line:
        ax.plot(layer.x, layer.y, color=layer.colour, linewidth=layer.line,
                marker=MARKERS[layer.marker] if layer.marker else "", markersize=layer.size,
                markeredgecolor=edge, solid_capstyle="butt", label=layer.name, zorder=4)
    else:
        ax.scatter(layer.x, layer.y, color=layer.colour, marker=MARKERS[layer.marker or "circle"],
                   s=layer.size**2, edgecolors=layer.edge, label=layer.name, zorder=4)
    mode = "+".join(m for m, on in (("lines", layer.line > 0), ("markers", bool(layer.marker)))
                    if on)
    html.add_trace(go.Scatter(
        x=layer.x, y=layer.y, mode=mode, name=layer.name, legendgroup=layer.name, text=layer.text,
        marker=dict(symbol=layer.marker, size=layer.size, color=layer.colour,
                    line=dict(width=1.5, color=edge)),
        line=dict(width=layer.line, color=layer.colour),
    ), row=row, col=None if row is None else 1)


def _titles(ax: Axes, html: go.Figure, title: str, xlabel: str, ylabel: str) -> None:
    """One title and axis titles on both versions, in place of Optuna's generic ones."""
    ax.set_title("")
    ax.set_title(title, loc="left")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    html.update_layout(title=title)
    html.update_xaxes(title_text=xlabel)
    html.update_yaxes(title_text=ylabel)


def _span(values: list[float], log: bool) -> tuple[float, float]:
    """A range that shows every value with a margin (a factor of 1.3 on a log axis)."""
    if log:
        positive = [v for v in values if v > 0]
        return min(positive) / 1.3, max(positive) * 1.3
    lo, hi = min(values), max(values)
    pad = 0.08 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _set_axis(ax: Axes, html: go.Figure, axis: str, span: tuple[float, float], log: bool,
              row: int | None = None) -> None:
    """The same scale and range on ``axis`` ('x' or 'y') of both versions."""
    getattr(ax, f"set_{axis}scale")("log" if log else "linear")
    getattr(ax, f"set_{axis}lim")(*span)
    if log and span[1] < 100 * span[0]:
        # Under two decades matplotlib labels the powers of ten alone ("10^0" and "10^1" under
        # batch sizes 1-16): 2 and 5 times them too, as plain numbers, as plotly does.
        which = getattr(ax, f"{axis}axis")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        which.set_major_formatter(plain)
        which.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        which.set_minor_formatter(plain)
    update = html.update_xaxes if axis == "x" else html.update_yaxes
    update(type="log" if log else "linear",
           range=[math.log10(v) for v in span] if log else list(span),
           row=row, col=None if row is None else 1)


def _legends(png: Figure, html: go.Figure, axes: list[Axes]) -> None:
    """One legend entry per name, below the plot, in both versions; none for what has no
    points (Optuna's scatter of infeasible trials)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            if not (isinstance(handle, PathCollection) and len(handle.get_offsets()) == 0):
                entries.setdefault(name, handle)
    if len(axes) == 1:
        axes[0].legend(list(entries.values()), list(entries), loc="upper center",
                       bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    else:
        png.legend(list(entries.values()), list(entries), loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=5, frameon=False)
    shown: set[str] = set()
    for trace in html.data:
        if trace.showlegend is False or not trace.name:
            continue
        if trace.x is not None and len(trace.x) == 0:
            trace.showlegend = False
            continue
        trace.showlegend = trace.name not in shown
        shown.add(trace.name)
    html.update_layout(showlegend=True, legend=dict(orientation="h", x=0.5, xanchor="center",
                                                    y=-0.2, yanchor="top"))


def _save(png: Figure, html: go.Figure, out: Path, name: str) -> Drawn:
    from scaletune.trainer.interrupt import DeferredInterrupt

    paths = [out / f"{name}.png", out / f"{name}.html"]
    # A Ctrl-C inside matplotlib's rendering left its state half made, and the next figure
    # failed on it ("ValueError: Invalid bounding box", a traceback): it waits for the end of
    # this figure's (a second one stops at once).
    with DeferredInterrupt() as rendering:
        try:
            written(paths[0], lambda tmp: png.savefig(tmp, dpi=DPI, bbox_inches="tight",
                                                      format="png"))
        finally:
            plt.close(png)  # Optuna draws on pyplot figures, which pyplot keeps until closed
    rendering.check()
    plotly_js(out)
    written(paths[1], lambda tmp: html.write_html(tmp, include_plotlyjs="directory",
                                                  full_html=True))
    return Drawn(png, html, paths)


def written(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` into a file beside ``path``, then put in its place: a write that fails (a
    full disk) leaves the file there before as it was. A report cut short by a full disk left a
    PNG cut short in place of the earlier report's."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plotly_js(out: Path) -> None:
    """plotly.js in ``out``, whole, for the HTML figures there, which load it from beside them.
    Plotly writes it only where no file of that name is, so one cut short by a full disk stayed,
    and every interactive figure of the reports written there after was broken."""
    path = out / "plotly.min.js"
    script = _plotly_script()
    if not path.is_file() or path.stat().st_size != len(script):
        written(path, lambda tmp: tmp.write_bytes(script))


@functools.cache
def _plotly_script() -> bytes:
    """plotly.min.js as plotly ships it (3.6 MB read from its package: once, not per figure)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]


def _last_value(t: FrozenTrial) -> float | None:
    if not t.intermediate_values:
        return None
    value = t.intermediate_values[max(t.intermediate_values)]
    return value if math.isfinite(value) else None


def _distribution(trials: list[FrozenTrial], name: str) -> BaseDistribution | None:
    """The distribution parameter ``name`` is searched with (the widened one, where a study's
    search widened: summary.widest); None: it was not searched."""
    return widest(trials).get(name)


def _is_log(dist: BaseDistribution | None) -> bool:
    return isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log


def plot_history(study: optuna.Study, out: Path, notes: list[str] | None = None) -> Drawn | None:
    """Optuna's optimization history (complete trials, the best so far) and, over it, each
    pruned trial's last reported loss, which Optuna leaves out; None, with a note, where no
    trial has a loss to show."""
    pruned = [(t.number, _last_value(t), shown_state(t))
              for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))]
    pruned = [(n, v, state) for n, v, state in pruned if v is not None and math.isfinite(v)]
    if not pruned and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if notes is not None:
            notes.append("optimization history skipped: no trial completed or reported a "
                         "finite loss")
        return None
    # Pruned and diverged apart (Optuna holds both as PRUNED): a diverged trial was drawn as
    # "pruned", where the other figures say diverged.
    by_state: dict[str, list[tuple[int, float]]] = {"PRUNED": [], "DIVERGED": []}
    for number, value, state in pruned:
        by_state[state].append((number, value))
    layers = [Layer(f"{_state_label(state)}: last reported loss", [n for n, _ in points],
                    [v for _, v in points], STATE_COLOURS[state], marker="x",
                    text=[f"trial {n}" for n, _ in points])
              for state, points in by_state.items() if points]
    with _matplotlib_style():
        ax = optuna_mpl.plot_optimization_history(study, target_name=LOSS_LABEL)
        html = optuna.visualization.plot_optimization_history(study, target_name=LOSS_LABEL)
        # Optuna's legend named the complete trials' dots after the axis and the line "Best
        # Value": said as the other figures say them.
        renamed = {LOSS_LABEL: "complete: final loss", "Best Value": "best so far"}
        for artist in [*ax.collections, *ax.get_lines()]:
            artist.set_label(renamed.get(artist.get_label(), artist.get_label()))
        for trace in html.data:
            trace.name = renamed.get(trace.name, trace.name)
        for layer in layers:
            _draw(layer, ax, html)
        _titles(ax, html, f"Optimization history: {study.study_name}", "trial number", LOSS_LABEL)
        _legends(ax.figure, html, [ax])
        return _save(ax.figure, html, out, "history")


def importance_evaluator() -> optuna.importance.BaseImportanceEvaluator:
    """PED-ANOVA (Watanabe et al. 2023, arXiv 2304.10255): how much each parameter decides
    whether a trial reaches the best 10% of complete trials. Deterministic, so the PNG and the
    HTML, each computing it, show the same numbers; unlike fANOVA it needs no scikit-learn.
    Experimental in Optuna before 5.0, which warned at each report."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.importance.PedAnovaImportanceEvaluator(
            target_quantile=IMPORTANCE_QUANTILE)


def importance_caution(n_complete: int) -> str | None:
    """The note for importances that rest on too few complete trials; None for enough.

    Why 11 trials: PED-ANOVA weighs the values of the best 10% of complete trials against those
    of all of them, and up to 10 trials that best 10% is one trial (ceil(0.1 * n) = 1): each
    importance then only says how far that one trial's values sit from the others'. From 11
    trials on it is two or more, still few (Optuna's documentation asks for 5, about 50 trials,
    for stable numbers), which is why the figure's title always gives the count.
    """
    top = math.ceil(IMPORTANCE_QUANTILE * n_complete)
    if top >= 2:
        return None
    return (f"importances from {n_complete} complete trials: a rough guide (the best "
            f"{IMPORTANCE_QUANTILE:.0%} that PED-ANOVA weighs against the rest is {top} trial)")


def _in_memory(study: optuna.Study) -> optuna.Study:
    """An empty study in memory named and directed as ``study``, made without Optuna's "A new
    study created in memory" line (which ``make_report`` printed, called from Python)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(study_name=study.study_name, directions=study.directions)
    finally:
        optuna.logging.set_verbosity(verbosity)


def searched_now(study: optuna.Study) -> optuna.Study:
    """The study as Optuna's importances should see it: every trial drawn from the range its
    parameters are searched over now (summary.widest), in a copy in memory, where a widened
    search (search.plan.search_widening) left the first trials with narrower ranges. PED-ANOVA
    takes each range of a parameter for a regime of its own, leaves out a regime of fewer than
    2 trials, and warns. A study searched in one range per parameter comes back as it is."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    now = widest(trials)
    if all(now[name] == dist for t in trials for name, dist in t.distributions.items()):
        return study
    view = _in_memory(study)
    for t in study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,)):
        t.distributions = {name: now[name] if holds(now[name], dist) else dist
                           for name, dist in t.distributions.items()}
        view.add_trial(t)
    return view


def plot_importances(study: optuna.Study, out: Path, notes: list[str]) -> Drawn | None:
    study = searched_now(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        notes.append(f"importances skipped: needs at least 2 complete trials, the study has "
                     f"{len(complete)}")
        return None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", PED_ANOVA_FEW, UserWarning)
            importances = optuna.importance.get_param_importances(
                study, evaluator=importance_evaluator()
            )
    except (ValueError, RuntimeError) as e:
        notes.append(f"importances skipped: {e}")
        return None
    if not importances:
        notes.append("importances skipped: no parameter varies across the complete trials")
        return None
    title = f"Parameter importances (PED-ANOVA over {len(complete)} complete trials)"
    caution = importance_caution(len(complete))
    if caution is not None:
        notes.append(caution)
        title = (f"Parameter importances from {len(complete)} complete trials: a rough guide "
                 "(PED-ANOVA)")
    with _matplotlib_style():
        ax = optuna_mpl.plot_param_importances(
            study, evaluator=importance_evaluator(), target_name=LOSS_LABEL
        )
        html = optuna.visualization.plot_param_importances(
            study, evaluator=importance_evaluator(), target_name=LOSS_LABEL
        )
        _titles(ax, html, title, f"importance for reaching the best {IMPORTANCE_QUANTILE:.0%} of "
                "final losses (sums to 1)", "hyperparameter")
        _legends(ax.figure, html, [ax])
        return _save(ax.figure, html, out, "importances")


def plot_lr_tau(study: optuna.Study, cfg: StudyConfig, out: Path,
                notes: list[str]) -> Drawn | None:
    """Final loss over lr x the weight-decay form (tau or lambda): Optuna's contour of the
    complete trials when both are searched, Optuna's slice of the one searched when the other is
    fixed. Over it in both versions: the pruned and failed trials, which Optuna leaves out, and
    a star on the best trial."""
    wd = weight_decay_form(cfg)
    by_form = params_by_form(cfg)
    searched = sorted(n for n in ("lr", wd) if by_form[n].searched)  # Optuna sorts them too
    study = numeric_choices(study, searched)
    finished = _finished(study)
    if not searched or not finished:
        notes.append(f"lr x {wd} skipped: needs lr or weight decay searched and a finished "
                     f"trial ({len(finished)} finished)")
        return None
    contour = len(searched) == 2
    x_name = searched[0]
    points = []
    for t in finished:
        y = t.params.get(searched[1]) if contour else (
            t.value if t.state == TrialState.COMPLETE else _last_value(t))
        if x_name in t.params and y is not None:
            points.append((t, float(t.params[x_name]), float(y)))
    if not points:
        notes.append(f"lr x {wd} skipped: no finished trial has the values to plot")
        return None
    x_log = _is_log(_distribution(finished, x_name))
    y_log = contour and _is_log(_distribution(finished, searched[1]))
    n_complete = sum(t.state == TrialState.COMPLETE for t, _, _ in points)
    if contour:
        # Optuna's surface is interpolated between the complete trials: from 4 of them it drew
        # rings and valleys that no trial measured, read as data.
        title = (f"lr x {wd}: final validation loss, interpolated between the "
                 f"{n_complete} complete trial{'s' if n_complete != 1 else ''} (dots)")
        y_label = hparams.label(searched[1])
    else:
        other = wd if x_name == "lr" else "lr"
        title = (f"{x_name} ({other} fixed at {hparams.HPARAMS[other].show(by_form[other].value)})"
                 ": final validation loss of each trial")
        y_label = LOSS_LABEL
    last = "" if contour else ": last reported loss"
    layers = []
    for state in ("PRUNED", "DIVERGED", "FAIL", "STOPPED"):
        pts = [(t, x, y) for t, x, y in points if shown_state(t) == state]
        if pts:
            layers.append(Layer(f"{_state_label(state)}{last}", [x for _, x, _ in pts],
                                [y for _, _, y in pts], STATE_COLOURS[state], marker="x", size=9,
                                text=[f"trial {t.number}" for t, _, _ in pts]))
    complete = [p for p in points if p[0].state == TrialState.COMPLETE]
    if complete and contour:  # Optuna's own dots are small, grey and in no legend
        layers.insert(0, Layer(f"complete ({len(complete)})", [x for _, x, _ in complete],
                               [y for _, _, y in complete], "black", size=6,
                               text=[f"trial {t.number}: {t.value:.4f}" for t, _, _ in complete]))
    if complete:
        best, bx, by = min(complete, key=lambda p: p[0].value)
        layers.append(Layer(f"best: trial {best.number} ({best.value:.4f})", [bx], [by],
                            BEST_COLOUR, marker="star", size=18, edge="black",
                            text=[f"trial {best.number}"]))
    with _matplotlib_style():
        if contour:
            target = f"final {LOSS_LABEL}"
            ax = optuna_mpl.plot_contour(study, params=searched, target_name=target)
            html = optuna.visualization.plot_contour(study, params=searched, target_name=target)
        else:
            ax = optuna_mpl.plot_slice(study, params=searched, target_name=LOSS_LABEL)
            html = optuna.visualization.plot_slice(study, params=searched, target_name=LOSS_LABEL)
        for layer in layers:
            _draw(layer, ax, html)
        _titles(ax, html, title, hparams.label(x_name), y_label)
        _set_axis(ax, html, "x", _span([x for _, x, _ in points], x_log), x_log)
        _set_axis(ax, html, "y", _span([y for _, _, y in points], y_log), y_log)
        _legends(ax.figure, html, [ax])
        return _save(ax.figure, html, out, "lr_tau")


def numeric_choices(study: optuna.Study, names: list[str]) -> optuna.Study:
    """The study as Optuna's plots of ``names`` should see it: a parameter searched over choices
    that are all numbers becomes a float range over them (log where the registry searches it on
    a log scale), in a copy in memory; a study without such a parameter comes back as it is.

    Optuna draws a categorical as categories: in the HTML in the order the choices were listed
    (as strings where the axis is forced numeric), in the PNG at positions 0, 1, 2 under our
    overlays, which sit at the values."""
    numeric: dict[str, FloatDistribution] = {}
    finished = _finished(study)
    for name in names:
        dist = _distribution(finished, name)
        span = _range(dist) if isinstance(dist, CategoricalDistribution) else None
        if span is not None and len(_numbers(dist.choices)) == len(dist.choices):
            hp = hparams.HPARAMS.get(name)
            numeric[name] = FloatDistribution(*span, log=span[0] > 0 and bool(hp and hp.log))
    if not numeric:
        return study
    view = _in_memory(study)
    for t in study.get_trials(deepcopy=True):  # in order: the copies keep their numbers
        t.distributions = {**t.distributions, **{n: d for n, d in numeric.items()
                                                   if n in t.distributions}}
        t.params = {n: float(v) if n in numeric else v for n, v in t.params.items()}
        view.add_trial(t)
    return view


def plot_curves(study: optuna.Study, out: Path, notes: list[str]) -> Drawn | None:
    """Optuna's intermediate values, one curve per trial, coloured by the trial's state with the
    best trial's curve thicker; the failed trials' curves, which Optuna leaves out, drawn over
    it. Both versions take the look of every curve from the same Layer."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        notes.append("learning curves skipped: no trial reported a validation loss")
        return None
    best = best_trial(trials)
    counts = Counter(map(shown_state, trials))
    curves = {}
    for t in trials:
        steps = sorted(t.intermediate_values)
        is_best = best is not None and t.number == best.number
        state = shown_state(t)
        name = (f"best: trial {t.number} ({t.value:.4f})" if is_best
                else f"{_state_label(state)} ({counts[state]})")
        curves[f"Trial{t.number}"] = Layer(  # Optuna names each curve "Trial<number>"
            name, steps, [t.intermediate_values[s] for s in steps],
            # The best in red, as its star in the other figures: thicker in the complete
            # trials' blue, it was lost among curves that end near it.
            BEST_COLOUR if is_best else STATE_COLOURS.get(state, "grey"), size=3,
            line=2.8 if is_best else 1.2,
            text=[f"trial {t.number}"] * len(steps),
        )
    title = f"Learning curves: {study.study_name} ({len(trials)} trials with a curve)"
    if len(trials) > CURVES_SHOWN:
        return _plot_some_curves(study.study_name, trials, best, curves, out)
    with _matplotlib_style():
        ax = optuna_mpl.plot_intermediate_values(study)
        html = optuna.visualization.plot_intermediate_values(study)
        # Optuna's curves by name, found once: looking each up among all of them took hours
        # at 10,000 trials (benchmarks/driver_scale.py).
        lines, traces = defaultdict(list), defaultdict(list)
        for line in ax.get_lines():
            lines[line.get_label()].append(line)
        for trace in html.data:
            traces[trace.name].append(trace)
        for optuna_name, layer in curves.items():
            if not _restyle(layer, lines.get(optuna_name, []), traces.get(optuna_name, [])):
                _draw(layer, ax, html)
        _titles(ax, html, title, TOKENS_LABEL, LOSS_LABEL)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        _legends(ax.figure, html, [ax])
        return _save(ax.figure, html, out, "curves")


CURVES_SHOWN = 1000
"""Trials the learning-curves figure draws at most: ten thousand curves on one chart are a
solid band, and drawing them took most of the report's time (benchmarks/driver_scale.py)."""


def _plot_some_curves(name: str, trials: list[FrozenTrial], best: FrozenTrial | None,
                      curves: dict[str, Layer], out: Path) -> Drawn:
    """The learning curves of ``CURVES_SHOWN`` of ``trials``: the best trial's and the others
    evenly spaced in trial order; the title says how many of how many."""
    shown = evenly_spaced(trials, CURVES_SHOWN - (best is not None))
    if best is not None and best not in shown:
        shown.append(best)
    title = (f"Learning curves: {name} ({len(shown):,} of {len(trials):,} trials: "
             f"evenly spaced{' and the best' if best is not None else ''})")
    with _matplotlib_style():
        fig = plt.figure()
        ax = fig.add_subplot()
        html = go.Figure()
        for t in sorted(shown, key=lambda t: (t is best, t.number)):  # the best drawn on top
            _draw(curves[f"Trial{t.number}"], ax, html)
        _titles(ax, html, title, TOKENS_LABEL, LOSS_LABEL)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        _legends(fig, html, [ax])
        return _save(fig, html, out, "curves")


def _restyle(layer: Layer, lines: list[Any], traces: list[Any]) -> bool:
    """Give Optuna's ``lines`` (PNG) and ``traces`` (HTML) of one curve the look and legend
    entry of ``layer``; False where Optuna did not draw it."""
    if not lines or not traces:
        return False
    for line in lines:
        line.set(color=layer.colour, linewidth=layer.line, markersize=layer.size,
                 label=layer.name)
    for trace in traces:
        trace.update(name=layer.name, legendgroup=layer.name, text=layer.text,
                     line=dict(color=layer.colour, width=layer.line),
                     marker=dict(color=layer.colour, size=layer.size))
    return True


class PriorLook(NamedTuple):
    """How the priors figure shows a prior of one origin."""

    legend: str
    words: str
    """What the row's axis title says of the prior."""
    range_colour: str
    center_colour: str


PRIOR_LOOKS = {
    False: PriorLook("prior", "prior from the published laws", "#9ecae1", "#08519c"),
    True: PriorLook("fitted prior", "prior fitted to your studies", "#a1d99b", "#006d2c"),
}
"""By whether the prior was fitted to the user's studies: blue from the published laws, green
fitted."""


def prior_is_fitted(prior: dict[str, Any]) -> bool:
    """Whether a recorded prior (an entry of heuristics.priors.Priors.to_json) rests on laws
    fitted to the user's studies: what its sources cite, not what the study file says now."""
    return any(FITTED_CITATION in str(s.get("citation", "")) for s in prior.get("sources", []))


def priors_origin(study: optuna.Study, cfg: StudyConfig, notes: list[str]) -> str:
    """Where the study's recorded priors came from, as the priors figure's title says it. The
    record decides; the config names the laws file, and a disagreement is a note."""
    recorded = [p for p in (study.user_attrs.get("priors") or {}).values()
                if isinstance(p, dict) and "sources" in p]
    fitted = any(prior_is_fitted(p) for p in recorded)
    if fitted != (cfg.priors.laws == "fitted"):
        recorded_as = "fitted to your studies" if fitted else "from the published laws"
        notes.append(f"priors: the study's config says laws: {cfg.priors.laws}, but the priors "
                     f"it recorded are {recorded_as}; the priors figure shows what was recorded")
    if not fitted:
        return "from the published laws"
    name = Path(cfg.priors.fitted_file).name if cfg.priors.laws == "fitted" else "file unknown"
    return f"fitted to your studies ({name})"


@dataclass(frozen=True)
class PriorRow:
    """One hyperparameter of the priors figure: the data both versions draw."""

    name: str
    label: str
    """The x-axis title: the registry's label and how the study set the value."""
    log: bool
    layers: list[Layer]

    def span(self) -> tuple[float, float]:
        return _span([x for layer in self.layers for x in layer.x], self.log)


def prior_rows(study: optuna.Study, cfg: StudyConfig) -> list[PriorRow]:
    """A row for every registered hyperparameter the study sets, each form of it (tau and
    lambda) with values in the finished trials: the prior's range and center where the study
    recorded one, the range searched, the values tried and the best trial's value."""
    priors = study.user_attrs.get("priors") or {}
    finished = _finished(study)
    best = best_trial(finished)
    rows = []
    for key, param in cfg.search.params.items():
        hp = hparams.HPARAMS[key]
        searched_as = hparams.form_for(hp, getattr(param, "as_", None)).name
        for name in dict.fromkeys([searched_as, *(form for _, form in hp.forms)]):
            tried = []
            for t in finished:
                value = hparam_value(t, cfg, name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    tried.append((t.number, float(value)))
            best_value = hparam_value(best, cfg, name) if best is not None else None
            if not isinstance(best_value, (int, float)):
                best_value = None
            if not tried and best_value is None:
                continue
            dist = _distribution(finished, name)
            prior = priors.get(name)
            how = ("searched" if dist is not None else "fixed" if name == searched_as
                   else f"derived from {searched_as}")
            layers = []
            if prior:
                look = PRIOR_LOOKS[prior_is_fitted(prior)]
                sources = "; ".join(f"{s['law']} ({s['citation']})" for s in prior["sources"])
                layers += [
                    Layer(f"{look.legend} range", [prior["low"], prior["high"]], [0.0, 0.0],
                          look.range_colour, marker=None, line=12),
                    Layer(f"{look.legend} center", [prior["center"]], [0.0], look.center_colour,
                          marker="diamond", size=9, text=[sources]),
                ]
                first = prior["sources"][0] if prior["sources"] else {}
                heuristic = (not prior_is_fitted(prior)
                             and "no published law" in first.get("citation", ""))
                blended = prior_is_fitted(prior) and any(
                    FIT_WARNS in str(s.get("note", "")) for s in prior["sources"])
                how += (", prior from a heuristic (no published law)" if heuristic else
                        ", prior blending your studies' fit half and half with the published "
                        "laws (the fit warns)" if blended else f", {look.words}")
            else:
                how += ", no prior"
            searched_range = _range(dist)
            if searched_range is not None:
                layers.append(Layer("search range", list(searched_range), [-0.38, -0.38], "black",
                                    marker="line-ns", size=12, line=1.2))
            if tried:
                layers.append(Layer("trials", [v for _, v in tried],
                                    np.linspace(-0.15, 0.15, len(tried)).tolist(), "grey", size=5,
                                    text=[f"trial {n}" for n, _ in tried]))
            if best_value is not None:
                layers.append(Layer("best trial", [float(best_value)], [0.0], "red", marker="star",
                                    size=16, edge="black", text=[f"trial {best.number}"]))
            form = hparams.HPARAMS.get(name)
            of = f" of {cfg.model.block_size} tokens" if form and form.unit == "sequences" else ""
            log = bool(prior["log"]) if prior else _is_log(dist)
            rows.append(PriorRow(name, f"{hparams.label(name)}{of}{' (log)' if log else ''}: "
                                       f"{how}", log, layers))
    return rows


def _range(dist: BaseDistribution | None) -> tuple[float, float] | None:
    """The range a parameter was searched over (of the numbers among categorical choices)."""
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        return float(dist.low), float(dist.high)
    if isinstance(dist, CategoricalDistribution):
        numeric = _numbers(dist.choices)
        return (min(numeric), max(numeric)) if numeric else None
    return None


def _numbers(choices: Any) -> list[float]:
    """The choices that are numbers (a bool is not)."""
    return [float(c) for c in choices if hparams.is_number(c)]


def plot_priors(study: optuna.Study, cfg: StudyConfig, out: Path,
                notes: list[str]) -> Drawn | None:
    """Each prior's center and range against the values tried and the best trial's. Optuna has
    no such figure: ours, its rows built once (prior_rows) and drawn on both versions."""
    if not study.user_attrs.get("priors"):
        notes.append("priors vs optimum skipped: the study records no priors")
        return None
    rows = prior_rows(study, cfg)
    if not rows:
        # Of a study whose trials all run yet, "no trial has values" was untrue (trials.csv
        # lists theirs): the figure draws finished trials.
        notes.append("priors vs optimum skipped: " + (
            "no trial has values for the priors' parameters" if _finished(study) else
            "no trial has finished yet (the figure draws the finished trials' values)"))
        return None
    title = f"Priors {priors_origin(study, cfg, notes)} vs the values tried and the best trial"
    n = len(rows)
    with _matplotlib_style():
        png = Figure(figsize=(FIGSIZE[0], 1.2 + 1.35 * n))
        axes = list(png.subplots(n, 1, squeeze=False)[:, 0])
        html = make_subplots(rows=n, cols=1, vertical_spacing=0.5 / n)
        for i, (ax, row) in enumerate(zip(axes, rows, strict=True), start=1):
            for layer in row.layers:
                _draw(layer, ax, html, row=i)
            _set_axis(ax, html, "x", row.span(), row.log, row=i)
            if row.name == "batch_size" and row.log:  # its choices are powers of two
                low, high = row.span()
                ticks = [2**k for k in range(math.ceil(math.log2(low)),
                                             math.floor(math.log2(high)) + 1)]
                labels = [f"{t:g}" for t in ticks]
                ax.set_xticks(ticks, labels)
                ax.xaxis.set_minor_formatter(NullFormatter())
                html.update_xaxes(tickvals=ticks, ticktext=labels, row=i, col=1)
            _set_axis(ax, html, "y", (-0.6, 0.4), False, row=i)
            ax.set_yticks([])
            ax.set_ylabel(row.name, rotation=0, ha="right", va="center")
            ax.set_xlabel(row.label)
            html.update_xaxes(title_text=row.label, row=i, col=1)
            html.update_yaxes(title_text=row.name, showticklabels=False, row=i, col=1)
        png.suptitle(title)
        html.update_layout(title=title, height=220 * n + 120)
        png.tight_layout()
        _legends(png, html, axes)
        return _save(png, html, out, "priors")


# --------------------------------------------------------------------------- the report


def ladder_figure(name: str) -> str:
    """The line index.html shows under a ladder's figure ``name`` (ladder_lr, ladder_warmup_frac;
    search.ladder_report): the warmup fraction's is a carried value, the others' a law (each
    said the warmup's words, under lr too)."""
    fitted = ("the value carried to the target, their weighted mean (no trend fitted)"
              if name == "ladder_warmup_frac" else "the law fitted to them")
    return (f"the optimum each rung found (the spread of its near-best trials), {fitted} with "
            "its 95% prediction interval, the published laws' prior center at each rung and at "
            "the target, the prediction at the target, and the center of the prior the target "
            "study searched around and its best trial, once it has run")


def report_folder_problem(out: Path, example: str) -> str | None:
    """Why no report can be written into ``out``: a file stands there or above it (``-o
    final.yaml``); ``example`` shows a folder's path given the way the caller takes it."""
    if (above := file_in_the_way(out)) is None:
        return None
    return (f"{above} is a file; a report is a folder of files (index.html, trials.csv, "
            f"plots): give a folder's path, e.g. {example}")


def make_report(
    cfg: StudyConfig | str | Path, out_dir: str | Path, source: str | None = None,
    console: Console | None = None, ladder: list[Drawn] | None = None,
) -> dict[str, Any]:
    """Write the trials table, the plots, summary.json and index.html into ``out_dir``; return
    the summary. ``cfg``: the study, or its file's path; or a ladder (a Ladder, or its file),
    whose figures come first and then its target study's report once the target has run, as
    `scaletune report LADDER.yaml` writes (search.ladder_report.make_ladder_report: {} before
    then); ``source``: the file its errors and commands name (by default the study file);
    ``ladder``: the figures of the ladder whose target the study is, drawn into ``out_dir``
    already, which index.html shows first."""
    from scaletune.search.ladder import as_ladder, one_study

    if ladder is None and (whole := as_ladder(cfg)) is not None:
        from scaletune.search.ladder_report import make_ladder_report

        return make_ladder_report(whole, out_dir, source, given_console(console, "make_report"))
    cfg = one_study(cfg, "make_report")
    console = given_console(console, "make_report")
    source = source or cfg.source
    study, ran_with, notes = open_study(cfg, source)
    study = Snapshot(study)  # every table and figure of one moment of a study that runs
    # The pruner of the study's last launch (what the trials trained with does not depend on
    # it): the audit replays that one, beside the median pruner.
    ran_with, changed = as_launched(study, cfg, ran_with, not read_by_name(cfg))
    notes += [changed] if changed else []
    running = running_note(study)
    notes += [running] if running else []
    if not running and (left := len(study.get_trials(deepcopy=False,
                                                     states=(TrialState.RUNNING,)))):
        notes.append(f"{left} running{left_running(left, study)}")
    out = Path(out_dir)
    if problem := report_folder_problem(out, "make_report(cfg, 'report')"):
        raise ConfigError("out_dir", [problem])  # FileExistsError of mkdir
    out.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_files(out)
    # Files there before that no earlier report wrote (no summary.json lists them): replaced by
    # this one's of the same name, which the output says (export says so of its file).
    ours = earlier | REPORT_FILES if (out / "summary.json").is_file() else set()
    before = {p.name for p in out.iterdir() if p.is_file()} - ours
    if ladder:  # drawn there by this command, just before (with their plotly.min.js)
        before -= {path.name for d in ladder for path in d.paths} | {"plotly.min.js"}
    frame = trials_frame(study, ran_with)
    written(out / "trials.csv", lambda tmp: whole_numbers(frame, study).to_csv(tmp, index=False))
    drawn = {
        "history": plot_history(study, out, notes),
        "importances": plot_importances(study, out, notes),
        "lr_tau": plot_lr_tau(study, ran_with, out, notes),
        "curves": plot_curves(study, out, notes),
        "priors": plot_priors(study, ran_with, out, notes),
    }
    files = [out / "trials.csv", *(path for d in [*(ladder or []), *drawn.values()]
                                   if d is not None for path in d.paths)]
    summary = summarize(study, ran_with)
    summary["pruner_audit"] = pruner_audit(study, ran_with)
    summary["seed_noise"] = seed_noise(study, ran_with)
    # How to measure it: a command to copy, on the study file the report was asked for.
    command = "ladder" if ladder is not None else "run"  # a ladder's target runs by its file
    runs = shlex.quote(source) if Path(source).is_file() else "STUDY.yaml"  # not by its name
    summary["seed_noise"]["measure"] = f"scaletune {command} {runs} --repeat-best 2"
    # A changed file (other than in ranges that widen): run refuses the command.
    attrs = study.user_attrs
    summary["seed_noise"]["file_changed"] = (attrs.get("fingerprint") is not None
                                             and not resumes_under(cfg, attrs))
    summary["pruner"] = ran_with.pruner.name
    summary["files"] = [p.name for p in files]
    for name in earlier - set(summary["files"]):  # an earlier report's, which would mislead
        (out / name).unlink(missing_ok=True)
    if replaced := sorted(before & {*summary["files"], *REPORT_FILES}):
        notes.append(f"replaced {len(replaced)} file(s) of {out} that no earlier report wrote "
                     f"there: {', '.join(replaced)}")
    summary["notes"] = notes
    summary["running"] = running is not None  # a driver runs the study: a report of a moment
    # Every note the report shows: the console and index.html give the one on token
    # frequencies beside the best loss (summary_rows), and summary.json had it nowhere.
    best = summary["best"]
    said = best and frequencies_note(best["value"], summary.get("unigram_loss"))
    text = json.dumps({**summary, "notes": [said, *notes] if said else notes}, indent=2,
                      default=str) + "\n"
    written(out / "summary.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    index = write_index(summary, out, drawn, ladder or [])
    if console is not None:
        print_summary(summary, index, console)
    return summary


REPORT_FILES = {"summary.json", "index.html", "plotly.min.js"}
"""The files every report writes beside its figures and tables."""


def _earlier_files(out: Path) -> set[str]:
    """The figures and tables an earlier report wrote into ``out`` (its summary.json's files):
    one this report does not draw (a plot with nothing to show now, another study's report in
    the same folder) is removed, not left beside this report's index.html."""
    try:
        files = json.loads((out / "summary.json").read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        return set()
    if not isinstance(files, list):
        return set()
    return {f for f in files if isinstance(f, str) and Path(f).name == f
            and f.endswith((".png", ".html", ".csv")) and f != "index.html"}


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary for people, a (what, value) pair per row: the console's table and the top of
    index.html."""
    rows = [("storage", summary["storage"]), ("trials", trials_said(summary))]
    best = summary["best"]
    if best:
        unigram = summary.get("unigram_loss")  # summaries written before it: none
        rows.append(("best", f"trial {best['number']}: {loss_said(best['value'], unigram)}"))
        rows.append(("", ", ".join(f"{k}={_short(v)}" for k, v in best["params"].items())))
        if note := frequencies_note(best["value"], unigram):
            rows.append(("note", note))
        rows += [("at an end" if i == 0 else "", note)
                 for i, note in enumerate(best.get("at_edges", []))]
    c, p = summary["compute"], summary["pruning"]
    rows += [
        ("compute", f"{c['tokens_trained']:,} tokens, {c['flops_6nd']:.3g} FLOPs (6ND)"),
        ("pruning saved", f"{p['tokens_saved']:,} tokens, {p['flops_saved']:.3g} FLOPs "
                          f"({p['fraction_saved']:.0%} of what the study would have cost) in "
                          f"{p['pruned_trials']} pruned trial(s)"
                          + (f"; {p['diverged_trials']} diverged trial(s) not counted"
                             if p.get("diverged_trials") else "")),
    ]
    rows += audit_rows(summary.get("pruner_audit"))
    rows += noise_rows(summary.get("seed_noise"), summary.get("pruner", ""))
    rows.append(("trial time", f"{c['trial_wall_time_s']:.1f} s"))
    if c["study_wall_time_s"] is not None:
        busy = c.get("study_busy_time_s")
        # Said where it tells: "9 s ... 9 s of it with a trial running (the time between
        # launches left out)" was said of one launch's gaps of milliseconds between trials.
        wall, idle = c["study_wall_time_s"], ""
        if busy is not None and busy < 0.99 * wall and fmt_duration(busy) != fmt_duration(wall):
            idle = (f"; {fmt_duration(busy)} of it with a trial running (the time with none, as "
                    "between launches, left out)")
        rows.append(("study time", f"{fmt_duration(wall)}, first start to last end{idle}"))
    return rows


SHOWN_PREDICTIONS = 10
"""Pruned trials whose prediction the summary shows; trials.csv has them all."""


def _held_against(prediction: dict[str, Any]) -> str:
    """What a prediction was held against when it stopped its trial (a trial stopped before
    the pruner recorded it: nothing)."""
    best, floor = (prediction.get(k) for k in STOPPED_AGAINST)
    if best is None or floor is None:
        return ""
    return held_against(best, floor, prediction.get("rank", 1))


def audit_rows(audit: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The pruner audit for people: one row per pruner replayed, then the predictions that
    stopped the pruned trials."""
    if not audit:
        return []
    if not audit.get("complete", 1):
        return [("pruner audit", "none: the study has no complete trial to replay a pruner on")]
    rows = []
    for i, (name, r) in enumerate(audit["replayed"].items()):
        complete = audit.get("complete", r["trials"])
        on = (f"the {r['trials']} complete trial(s)" if r["trials"] >= complete else
              f"{r['trials']} of the {complete:,} complete trials (evenly spaced)")
        if repeats := audit.get("repeats"):  # the trials row counts them among the complete
            on += f", not the {repeats} repeat(s) of a config with another seed"
        rows.append(("pruner audit" if i == 0 else "",
                     f"{name}: replayed on {on}, would stop "
                     f"{r['stopped']} and save {r['compute_saved']:.0%} of their compute; "
                     f"{r['false_prunes']} of those stopped ended within 1% of the best"))
        if o := audit.get("orders", {}).get(name):
            rows.append(("", f"{name}, the same trials in {o['replays']} other orders: would "
                             f"save {o['compute_saved']:.0%} on average; "
                             f"{o['false_prunes']} stopped that ended within 1% of the best "
                             f"({o['with_false_prune']} of the {o['replays']} orders had one)"))
    if live := audit.get("pruned_live"):
        rows.append(("", f"the replay judges complete trials only: the {live} trial(s) pruned "
                         "while the study ran are not in it, and how they would have ended is "
                         "not known"))
    shown = audit["predictions"][:SHOWN_PREDICTIONS]
    for i, p in enumerate(shown):
        rows.append(("pruned on prediction" if i == 0 else "",
                     f"trial {p['number']} at {p['predicted_at_tokens']:,} tokens: final loss "
                     f"predicted {p['predicted_final_loss']:.4f} "
                     f"[{p['predicted_final_loss_low']:.4f}, {p['predicted_final_loss_high']:.4f}]"
                     + _held_against(p)))
    more = len(audit["predictions"]) - len(shown)
    if more > 0:
        rows.append(("", f"and {more} more (trials.csv)"))
    return rows


def print_summary(summary: dict[str, Any], index: Path, console: Console) -> None:
    table = Table(title=f"study {summary['study']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for what, value in summary_rows(summary):
        table.add_row(what, value)
    console.print(whole_cells(table))
    for note in summary["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    # The figures and trials.csv, then summary.json, index.html and the plotly.js they share.
    written = len(summary["files"]) + 2 + (index.parent / "plotly.min.js").is_file()
    console.print(f"wrote {written} files to {index.parent}", highlight=False)
    console.print(f"report: {index.resolve()}", highlight=False, markup=False, soft_wrap=True)


INDEX_STYLE = (
    "body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em;color:#222}"
    "th,td{text-align:left;vertical-align:top;padding:.15em 1em .15em 0}"
    "img{max-width:100%;border:1px solid #ddd}section{margin:2em 0}"
)


def write_index(summary: dict[str, Any], out: Path, drawn: dict[str, Drawn | None],
                ladder: Sequence[Drawn] = ()) -> Path:
    """index.html: the summary's rows and notes, then the ladder's figures when the study is a
    ladder's target, then every figure of FIGURES with its line, its PNG shown and both
    versions linked (or why it is missing), then the data files. Plain HTML whose every link is
    a file beside it, so it opens offline."""
    def link(path: Path, text: str) -> str:
        return f'<a href="{escape(path.name)}">{escape(text)}</a>'

    def section(d: Drawn, name: str, about: str) -> str:
        png, page = d.paths
        title = escape(d.html.layout.title.text or name)
        return (
            f"<section><h3>{title}</h3><p>{escape(about)}.<br>{link(page, 'interactive (HTML)')}"
            f" &middot; {link(png, 'image (PNG)')}</p>\n"
            f'<a href="{escape(page.name)}"><img src="{escape(png.name)}" alt="{name}"></a>'
            "</section>"
        )

    rows = "".join(f"<tr><th>{escape(what)}</th><td>{escape(value)}</td></tr>\n"
                   for what, value in summary_rows(summary))
    notes = "".join(f"<li>{escape(note)}</li>\n" for note in summary["notes"])
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>scaletune report: {escape(summary['study'])}</title>",
        f"<style>{INDEX_STYLE}</style></head><body>",
        f"<h1>Study {escape(summary['study'])}</h1>", f"<table>\n{rows}</table>",
    ]
    if notes:
        parts.append(f"<h2>Notes</h2>\n<ul>\n{notes}</ul>")
    if ladder:
        parts.append("<h2>The ladder</h2>")
        parts += [section(d, d.paths[0].stem, ladder_figure(d.paths[0].stem)) for d in ladder]
    parts.append("<h2>Figures</h2>")
    for name, about in FIGURES.items():
        d = drawn.get(name)
        if d is None:
            parts.append(f"<section><h3>{name}</h3><p>{escape(about)}.</p>"
                         "<p><em>Not drawn: the notes above say why.</em></p></section>")
            continue
        parts.append(section(d, name, about))
    parts.append("<h2>Data</h2><ul>")
    parts += [f"<li>{link(out / name, name)}: {escape(about)}</li>" for name, about in
              DATA_FILES.items()]
    parts.append("</ul></body></html>")
    index = out / "index.html"
    written(index, lambda tmp: tmp.write_text("\n".join(parts) + "\n",  # as its <meta> says
                                              encoding="utf-8"))
    return index


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
