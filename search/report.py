"""Report on a study: a trials table, plots, and what the search cost and what pruning saved.

``scaletune report STUDY.yaml -o DIR`` writes into DIR:

    trials.csv              one row per trial: state, value, sampled and derived parameters,
                            tokens trained, compute, wall time, why it was pruned or failed
    history.png/.html       final validation loss per trial and the best so far
    importances.png/.html   PED-ANOVA parameter importances (needs two complete trials)
    lr_tau.png/.html        lr x tau (or lr x weight decay), coloured by validation loss
    curves.png/.html        validation loss against tokens seen, every trial, coloured by state
    priors.png/.html        each prior's center and range against the values tried and the best
    summary.json            the best trial, compute spent, compute saved by pruning, notes

Compute is C = 6 * N * D (Kaplan et al., arXiv 2001.08361) with N the non-embedding parameters
12 * n_layer * n_embd^2 and D the tokens a trial actually trained: a pruned trial counts what it
trained, and what it did not train of its budget is the compute pruning saved. The HTML files
share one plotly.min.js written next to them, so they open offline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots
from rich.console import Console
from rich.table import Table
from scipy.interpolate import griddata

from scaletune.heuristics import laws
from scaletune.search.config import StudyConfig
from scaletune.search.export import open_study
from scaletune.search.storage import mask_url

STATE_COLOURS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
    "WAITING": "#bbbbbb",
}
LOSS_LABEL = "validation loss (nats/token)"
DERIVED = ("weight_decay", "tau", "warmup_steps", "tokens_per_step")
"""Trial user attrs computed from the sampled parameters (search.space.trial_config). Its
``steps`` attr is left out: the runner overwrites it with the steps the trial trained."""
LABELS = {
    "lr": "peak learning rate",
    "tau": "AdamW timescale tau = B/(lr*lambda*D)",
    "weight_decay": "AdamW weight decay lambda",
    "dropout": "dropout rate",
    "warmup_frac": "warmup (fraction of steps)",
    "batch_size": "batch size in sequences",
}
DPI = 110
CONTOUR_MIN_TRIALS = 8
"""Complete trials needed before the lr x tau plot interpolates a contour between them."""


# --------------------------------------------------------------------------- per-trial numbers


def tokens_trained(t: FrozenTrial) -> int:
    """Tokens a trial trained: what its worker reported, else its last evaluation."""
    seen = t.user_attrs.get("tokens_seen")
    if seen is not None:
        return int(seen)
    return int(max(t.intermediate_values, default=0))


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
    n_layer = int(t.params.get("model.n_layer", cfg.model.n_layer))
    n_embd = int(t.params.get("model.n_embd", cfg.model.n_embd))
    return laws.non_embedding_params(n_layer, n_embd)


def flops(params: int, tokens: int) -> float:
    return laws.flops_6nd(params, tokens) if tokens > 0 else 0.0


def hparam_value(t: FrozenTrial, cfg: StudyConfig, name: str) -> Any:
    """A hyperparameter of a trial: sampled, derived (user attr), or fixed by the study."""
    if name in t.params:
        return t.params[name]
    if name in t.user_attrs:
        return t.user_attrs[name]
    s = cfg.search
    param = s.weight_decay if name in ("tau", "weight_decay") else getattr(s, name, None)
    if param is not None and not param.searched:
        wd_name = "tau" if s.weight_decay.as_ == "tau" else "weight_decay"
        if name in ("tau", "weight_decay") and name != wd_name:
            return None
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
            "value": t.value,
            "best_val_loss": t.user_attrs.get("best_val_loss"),
            "final_val_loss": t.user_attrs.get("final_val_loss"),
        }
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row.update({f"derived_{k}": t.user_attrs[k] for k in DERIVED if k in t.user_attrs})
        row.update({
            "tokens_trained": trained,
            "token_budget": budget,
            "tokens_not_trained": max(0, budget - trained) if t.state == TrialState.PRUNED else 0,
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
            "prune_reason": t.user_attrs.get("prune_reason"),
            "fail_reason": t.user_attrs.get("fail_reason"),
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


def summarize(study: optuna.Study, cfg: StudyConfig) -> dict[str, Any]:
    """Best trial, trials by state, compute spent and compute saved by pruning."""
    trials = study.get_trials(deepcopy=False)
    by_state: dict[str, dict[str, float]] = {}
    saved_tokens = 0
    saved_flops = 0.0
    for t in trials:
        n = non_embedding_params(t, cfg)
        trained = tokens_trained(t)
        entry = by_state.setdefault(t.state.name, {"trials": 0, "tokens": 0, "flops_6nd": 0.0})
        entry["trials"] += 1
        entry["tokens"] += trained
        entry["flops_6nd"] += flops(n, trained)
        if t.state == TrialState.PRUNED:
            missing = max(0, token_budget(t, cfg) - trained)
            saved_tokens += missing
            saved_flops += flops(n, missing)
    spent_tokens = sum(e["tokens"] for e in by_state.values())
    spent_flops = sum(e["flops_6nd"] for e in by_state.values())
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    wall = [t.user_attrs["wall_time_s"] for t in trials if "wall_time_s" in t.user_attrs]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return {
        "study": study.study_name,
        "storage": mask_url(cfg.storage_url),
        "tokens_per_trial": cfg.tokens_per_trial,
        "trials": {state: int(e["trials"]) for state, e in by_state.items()},
        "best": None if best is None else {
            "number": best.number,
            "value": best.value,
            "params": dict(best.params),
            "derived": {k: best.user_attrs[k] for k in DERIVED if k in best.user_attrs},
            "tokens_trained": tokens_trained(best),
        },
        "compute": {
            "tokens_trained": int(spent_tokens),
            "flops_6nd": spent_flops,
            "by_state": by_state,
            "trial_wall_time_s": float(sum(wall)),
            "study_wall_time_s": (max(ends) - min(starts)).total_seconds() if starts and ends
            else None,
            "convention": "C = 6*N*D; N non-embedding = 12*n_layer*n_embd^2 (Kaplan, "
                          "arXiv 2001.08361); D the tokens each trial trained",
        },
        "pruning": {
            "pruned_trials": int(by_state.get("PRUNED", {}).get("trials", 0)),
            "tokens_saved": int(saved_tokens),
            "flops_saved": saved_flops,
            "fraction_saved": saved_tokens / (spent_tokens + saved_tokens)
            if spent_tokens + saved_tokens else 0.0,
            "definition": "tokens each pruned trial did not train of its full budget "
                          "(ceil(tokens_per_trial / tokens_per_step) steps x tokens per step)",
        },
    }


# --------------------------------------------------------------------------- plots


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]


def _last_value(t: FrozenTrial) -> float | None:
    if not t.intermediate_values:
        return None
    value = t.intermediate_values[max(t.intermediate_values)]
    return value if math.isfinite(value) else None


def _save(fig: Figure, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _save_html(fig: go.Figure, out: Path, name: str) -> Path:
    path = out / f"{name}.html"
    fig.write_html(path, include_plotlyjs="directory", full_html=True)
    return path


def plot_history(study: optuna.Study, out: Path) -> list[Path]:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, _last_value(t)) for t in trials if t.state == TrialState.PRUNED]
    pruned = [(n, v) for n, v in pruned if v is not None]
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    if complete:
        ax.scatter([t.number for t in complete], [t.value for t in complete],
                   color=STATE_COLOURS["COMPLETE"], label="complete: final loss", zorder=3)
        best_so_far = np.minimum.accumulate([t.value for t in complete])
        ax.step([t.number for t in complete], best_so_far, where="post", color="black",
                label="best so far", zorder=2)
    if pruned:
        ax.scatter([n for n, _ in pruned], [v for _, v in pruned], marker="x",
                   color=STATE_COLOURS["PRUNED"], label="pruned: last reported loss", zorder=3)
    ax.set_title(f"Optimization history: {study.study_name}")
    ax.set_xlabel("trial number")
    ax.set_ylabel(LOSS_LABEL)
    ax.grid(alpha=0.3)
    if complete or pruned:
        ax.legend()
    png = _save(fig, out, "history")
    html = optuna.visualization.plot_optimization_history(study, target_name=LOSS_LABEL)
    html.update_layout(title=f"Optimization history: {study.study_name}")
    return [png, _save_html(html, out, "history")]


def importance_evaluator() -> optuna.importance.BaseImportanceEvaluator:
    """PED-ANOVA (Watanabe et al. 2023, arXiv 2304.10255): how much each parameter decides
    whether a trial reaches the best 10% of complete trials. Deterministic, and unlike fANOVA it
    needs no scikit-learn."""
    return optuna.importance.PedAnovaImportanceEvaluator()


def plot_importances(study: optuna.Study, out: Path, notes: list[str]) -> list[Path]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        notes.append(f"importances skipped: needs at least 2 complete trials, the study has "
                     f"{len(complete)}")
        return []
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=importance_evaluator()
        )
    except (ValueError, RuntimeError) as e:
        notes.append(f"importances skipped: {e}")
        return []
    if not importances:
        notes.append("importances skipped: no parameter varies across the complete trials")
        return []
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    title = f"Parameter importances (PED-ANOVA over {len(complete)} complete trials)"
    fig = Figure(figsize=(9, 1.0 + 0.55 * len(names)))
    ax = fig.subplots()
    bars = ax.barh(names, values, color=STATE_COLOURS["COMPLETE"])
    ax.bar_label(bars, fmt="%.2f", padding=3)
    ax.set_xlim(0, max(1.0, max(values) * 1.15))
    ax.set_title(title)
    ax.set_xlabel("importance for reaching the best 10% of final losses (sums to 1)")
    ax.grid(axis="x", alpha=0.3)
    png = _save(fig, out, "importances")
    html = optuna.visualization.plot_param_importances(
        study, evaluator=importance_evaluator(), target_name=LOSS_LABEL
    )
    html.update_layout(title=title)
    return [png, _save_html(html, out, "importances")]


def plot_lr_tau(study: optuna.Study, cfg: StudyConfig, out: Path, notes: list[str]) -> list[Path]:
    y_name = "tau" if cfg.search.weight_decay.as_ == "tau" else "weight_decay"
    points = []
    for t in _finished(study):
        lr, y = hparam_value(t, cfg, "lr"), hparam_value(t, cfg, y_name)
        if lr is not None and y is not None and lr > 0 and y > 0:
            points.append((t, float(lr), float(y)))
    if not (cfg.search.lr.searched or cfg.search.weight_decay.searched) or not points:
        notes.append(f"lr x {y_name} skipped: needs lr or weight decay searched and a finished "
                     f"trial with both values ({len(points)} such trial(s))")
        return []
    complete = [(t, x, y) for t, x, y in points if t.state == TrialState.COMPLETE]
    others = [(t, x, y) for t, x, y in points if t.state != TrialState.COMPLETE]
    title = f"lr x {y_name}: final validation loss of each trial"
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    if complete:
        losses = [t.value for t, _, _ in complete]
        norm = Normalize(min(losses), max(losses))
        if len(complete) >= CONTOUR_MIN_TRIALS and _log_contour(
            ax, [x for _, x, _ in complete], [y for _, _, y in complete], losses, norm, notes
        ):
            ax.text(0.01, 0.01, "shading: loss interpolated between complete trials (log space)",
                    transform=ax.transAxes, fontsize=8, color="dimgrey")
        sc = ax.scatter([x for _, x, _ in complete], [y for _, _, y in complete], c=losses,
                        cmap="viridis_r", norm=norm, s=60, edgecolors="black", linewidths=0.5,
                        zorder=3, label="complete")
        fig.colorbar(sc, ax=ax, label=f"final {LOSS_LABEL}")
        best_t, bx, by = min(complete, key=lambda p: p[0].value)
        ax.scatter([bx], [by], marker="*", s=320, color="red", edgecolors="black", zorder=4,
                   label=f"best: trial {best_t.number} ({best_t.value:.4f})")
    for state in ("PRUNED", "FAIL"):
        pts = [(x, y) for t, x, y in others if t.state.name == state]
        if pts:
            ax.scatter(*zip(*pts, strict=True), marker="x", s=50, color=STATE_COLOURS[state],
                       zorder=3, label=state.lower())
    xs, ys = [x for _, x, _ in points], [y for _, _, y in points]
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    ax.set_ylim(min(ys) / 1.3, max(ys) * 1.3)
    ax.set_title(title)
    ax.set_xlabel(f"{LABELS['lr']} (log)")
    ax.set_ylabel(f"{LABELS[y_name]} (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    png = _save(fig, out, "lr_tau")

    html = go.Figure()
    if complete:
        html.add_trace(go.Scatter(
            x=[x for _, x, _ in complete], y=[y for _, _, y in complete], mode="markers",
            name="complete", text=[f"trial {t.number}" for t, _, _ in complete],
            marker=dict(size=11, color=[t.value for t, _, _ in complete],
                        colorscale="Viridis", reversescale=True, showscale=True,
                        colorbar=dict(title="final val loss"), line=dict(width=1)),
        ))
    for state in ("PRUNED", "FAIL"):
        pts = [(t, x, y) for t, x, y in others if t.state.name == state]
        if pts:
            html.add_trace(go.Scatter(
                x=[x for _, x, _ in pts], y=[y for _, _, y in pts], mode="markers",
                name=state.lower(), text=[f"trial {t.number}" for t, _, _ in pts],
                marker=dict(symbol="x", size=10, color=STATE_COLOURS[state]),
            ))
    html.update_layout(title=title, xaxis_title=LABELS["lr"], yaxis_title=LABELS[y_name],
                       legend=dict(x=0, y=1.1, orientation="h"))
    html.update_xaxes(type="log")
    html.update_yaxes(type="log")
    return [png, _save_html(html, out, "lr_tau")]


def _log_contour(ax: Any, xs: list[float], ys: list[float], zs: list[float], norm: Normalize,
                 notes: list[str]) -> bool:
    """Filled contours of the loss, interpolated linearly in log10(x), log10(y) space."""
    lx, ly = np.log10(xs), np.log10(ys)
    if np.ptp(lx) == 0 or np.ptp(ly) == 0:
        return False
    gx, gy = np.meshgrid(np.linspace(lx.min(), lx.max(), 160), np.linspace(ly.min(), ly.max(), 160))
    try:
        gz = griddata((lx, ly), np.asarray(zs), (gx, gy), method="linear")
    except (ValueError, RuntimeError):
        notes.append("lr x tau: the trials lie on a line, contour left out")
        return False
    ax.contourf(10**gx, 10**gy, gz, levels=12, cmap="viridis_r", norm=norm, alpha=0.35)
    return True


def plot_curves(study: optuna.Study, out: Path, notes: list[str]) -> list[Path]:
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        notes.append("learning curves skipped: no trial reported a validation loss")
        return []
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    counts = {s: sum(t.state.name == s for t in trials) for s in STATE_COLOURS}
    title = f"Learning curves: {study.study_name} ({len(trials)} trials)"
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    html = go.Figure()
    shown: set[str] = set()
    for t in trials:
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        state = t.state.name
        is_best = best is not None and t.number == best.number
        ax.plot(steps, values, color=STATE_COLOURS.get(state, "grey"), alpha=0.9 if is_best else 0.6,
                linewidth=2.8 if is_best else 1.2, marker="o", markersize=3, zorder=3 if is_best else 2)
        html.add_trace(go.Scatter(
            x=steps, y=values, mode="lines+markers", name=f"{state.lower()} ({counts[state]})",
            legendgroup=state, showlegend=state not in shown, text=f"trial {t.number}",
            line=dict(color=STATE_COLOURS.get(state, "grey"), width=4 if is_best else 1.5),
        ))
        shown.add(state)
    handles = [Line2D([], [], color=STATE_COLOURS[s], label=f"{s.lower()} ({counts[s]})")
               for s in STATE_COLOURS if counts[s]]
    if best is not None:
        handles.append(Line2D([], [], color=STATE_COLOURS["COMPLETE"], linewidth=2.8,
                              label=f"best: trial {best.number} ({best.value:.4f})"))
    ax.legend(handles=handles, title="trial state")
    ax.set_title(title)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel(LOSS_LABEL)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    ax.grid(alpha=0.3)
    png = _save(fig, out, "curves")
    html.update_layout(title=title, xaxis_title="tokens seen", yaxis_title=LOSS_LABEL)
    return [png, _save_html(html, out, "curves")]


def _search_range(trials: list[FrozenTrial], name: str) -> tuple[float, float] | None:
    """The range a parameter was searched over, from the trials' Optuna distributions."""
    for t in trials:
        dist = t.distributions.get(name)
        if isinstance(dist, (FloatDistribution, IntDistribution)):
            return float(dist.low), float(dist.high)
        if isinstance(dist, CategoricalDistribution):
            numeric = [float(c) for c in dist.choices
                       if isinstance(c, (int, float)) and not isinstance(c, bool)]
            return (min(numeric), max(numeric)) if numeric else None
    return None


def _how(cfg: StudyConfig, name: str, searched: tuple[float, float] | None) -> str:
    if searched is not None:
        return "searched"
    wd_name = "tau" if cfg.search.weight_decay.as_ == "tau" else "weight_decay"
    if name in ("tau", "weight_decay") and name != wd_name:
        return f"derived from {wd_name}"
    return "fixed"


def plot_priors(study: optuna.Study, cfg: StudyConfig, out: Path, notes: list[str]) -> list[Path]:
    priors = study.user_attrs.get("priors")
    if not priors:
        notes.append("priors vs optimum skipped: the study records no priors")
        return []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = min(complete, key=lambda t: t.value) if complete else None
    finished = _finished(study)
    rows = []
    for name in ("lr", "tau", "weight_decay", "dropout", "warmup_frac", "batch_size"):
        prior = priors.get(name)
        if not prior:
            continue
        tried = [hparam_value(t, cfg, name) for t in finished]
        tried = [float(v) for v in tried if isinstance(v, (int, float))]
        best_value = hparam_value(best, cfg, name) if best is not None else None
        if not tried and best_value is None:
            continue
        searched = _search_range(finished, name)
        rows.append((name, prior, tried, best_value, searched, _how(cfg, name, searched)))
    if not rows:
        notes.append("priors vs optimum skipped: no trial has values for the priors' parameters")
        return []
    title = "Priors from the scaling laws vs the values tried and the best trial"
    labels = {name: LABELS[name] + (f" of {cfg.model.block_size} tokens" if name == "batch_size"
                                    else "") for name, *_ in rows}
    fig = Figure(figsize=(9, 1.2 + 1.35 * len(rows)))
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    html = make_subplots(rows=len(rows), cols=1, vertical_spacing=0.5 / len(rows),
                         subplot_titles=[f"{labels[r[0]]}: {r[5]}" for r in rows])
    for i, (ax, row) in enumerate(zip(axes, rows, strict=True)):
        name, prior, tried, best_value, searched, how = row
        low, high, center = prior["low"], prior["high"], prior["center"]
        values = [low, high, center, *tried]
        ax.barh(0, high - low, left=low, height=0.5, color="#9ecae1", label="prior range")
        ax.plot([center], [0], marker="D", color="#08519c", markersize=8, linestyle="",
                label="prior center")
        if searched is not None:
            ax.errorbar([(searched[0] + searched[1]) / 2], [-0.38],
                        xerr=[[(searched[1] - searched[0]) / 2]], color="black", capsize=4,
                        linewidth=1.2, label="search range")
            values += list(searched)
        if tried:
            jitter = np.linspace(-0.15, 0.15, len(tried))
            ax.plot(tried, jitter, marker="o", color="grey", markersize=4, linestyle="",
                    alpha=0.7, label="trials")
        if best_value is not None:
            ax.plot([float(best_value)], [0], marker="*", color="red", markersize=16,
                    markeredgecolor="black", linestyle="", label="best trial")
            values.append(float(best_value))
        if prior["log"]:
            ax.set_xscale("log")
            lo, hi = min(v for v in values if v > 0), max(values)
            ax.set_xlim(lo / 1.5, hi * 1.5)
        else:
            lo, hi = min(values), max(values)
            pad = 0.08 * (hi - lo or 1.0)
            ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(-0.6, 0.4)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_xlabel(f"{labels[name]}{' (log)' if prior['log'] else ''}: {how}")
        ax.grid(axis="x", alpha=0.3, which="both")

        r = i + 1
        first = i == 0
        html.add_trace(go.Bar(x=[high - low], base=[low], y=[name], orientation="h",
                              marker_color="#9ecae1", name="prior range", showlegend=first,
                              legendgroup="range"), row=r, col=1)
        html.add_trace(go.Scatter(x=[center], y=[name], mode="markers", name="prior center",
                                  marker=dict(symbol="diamond", size=11, color="#08519c"),
                                  showlegend=first, legendgroup="center"), row=r, col=1)
        if tried:
            html.add_trace(go.Scatter(x=tried, y=[name] * len(tried), mode="markers",
                                      name="trials", marker=dict(color="grey", size=6),
                                      showlegend=first, legendgroup="trials"), row=r, col=1)
        if best_value is not None:
            html.add_trace(go.Scatter(x=[float(best_value)], y=[name], mode="markers",
                                      name="best trial", showlegend=first, legendgroup="best",
                                      marker=dict(symbol="star", size=16, color="red")),
                           row=r, col=1)
        if prior["log"]:
            html.update_xaxes(type="log", row=r, col=1)
    handles: list[Any] = []
    names: list[str] = []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in names:
                handles.append(h)
                names.append(lab)
    fig.legend(handles, names, loc="upper center", ncol=5, bbox_to_anchor=(0.5, 0.0),
               frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    png = _save(fig, out, "priors")
    html.update_layout(title=title, height=220 * len(rows) + 120, barmode="overlay")
    return [png, _save_html(html, out, "priors")]


# --------------------------------------------------------------------------- the report


def make_report(
    cfg: StudyConfig, out_dir: str | Path, source: str, console: Console | None = None
) -> dict[str, Any]:
    """Write the trials table, the plots and summary.json into ``out_dir``; return the summary."""
    study, ran_with, notes = open_study(cfg, source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study, ran_with)
    frame.to_csv(out / "trials.csv", index=False)
    files = [out / "trials.csv"]
    files += plot_history(study, out)
    files += plot_importances(study, out, notes)
    files += plot_lr_tau(study, ran_with, out, notes)
    files += plot_curves(study, out, notes)
    files += plot_priors(study, ran_with, out, notes)
    summary = summarize(study, ran_with)
    summary["files"] = [p.name for p in files]
    summary["notes"] = notes
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if console is not None:
        print_summary(summary, out, console)
    return summary


def print_summary(summary: dict[str, Any], out: Path, console: Console) -> None:
    table = Table(title=f"study {summary['study']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    trials = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["trials"].items()))
    table.add_row("trials", trials or "none")
    best = summary["best"]
    if best:
        params = ", ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
        table.add_row("best", f"trial {best['number']}: val loss {best['value']:.4f}")
        table.add_row("", params)
    c, p = summary["compute"], summary["pruning"]
    table.add_row("compute", f"{c['tokens_trained']:,} tokens, {c['flops_6nd']:.3g} FLOPs (6ND)")
    table.add_row("pruning saved", f"{p['tokens_saved']:,} tokens, {p['flops_saved']:.3g} FLOPs "
                  f"({p['fraction_saved']:.0%} of what the study would have cost) in "
                  f"{p['pruned_trials']} pruned trial(s)")
    table.add_row("trial time", f"{c['trial_wall_time_s']:.1f} s")
    console.print(table)
    for note in summary["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {len(summary['files'])} files to {out}", highlight=False)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
