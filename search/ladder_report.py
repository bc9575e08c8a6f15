"""The ladder's figures: one per fitted hyperparameter, drawn as ``search.report`` draws.

Each shows, over the scale (tokens per trial or non-embedding parameters): the optimum each
rung found (the weighted mean of its near-best trials, with their spread), the fitted law and its
prediction interval out to the target, the published laws' prior center at every rung and at
the target, the prediction at the target, and the best trial of the target study once it ran.
The warmup fraction, carried from the rungs without a trend (``heuristics.fit.CarriedFit``), is
drawn the same way on a linear axis. ``scaletune report LADDER.yaml`` writes them beside the
target study's report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from rich.console import Console

from scaletune.heuristics.fit import CarriedFit, FittedLaws, PowerLawFit, ScalePoint
from scaletune.heuristics.priors import batch_of_lr
from scaletune.search.config import Param, PriorsConfig, StudyConfig
from scaletune.search.fit import print_laws, scale_points, study_scale
from scaletune.search.ladder import Ladder, finished_trials, named_target, stored_study
from scaletune.search.report import (
    FIGSIZE,
    Drawn,
    Layer,
    _draw,
    _legends,
    _matplotlib_style,
    _save,
    _set_axis,
    _span,
    _titles,
    make_report,
    report_folder_problem,
)
from scaletune.search.space import planning_priors, trained_batches
from scaletune.search.studies import open_study
from scaletune.trainer.errors import ConfigError

COLOURS = {"rung": "#1f77b4", "fit": "#d62728", "published": "#7f7f7f", "target": "#2ca02c"}
LABELS = {"lr": "peak learning rate", "tau": "AdamW timescale tau = B/(eta*lambda*D)",
          "batch_size": "batch (tokens per step)", "warmup_frac": "warmup (fraction of steps)"}


def published_center(cfg: StudyConfig, target: str, batch: float | None = None) -> float:
    """The published laws' prior center of ``target`` for the study ``cfg`` (batch in tokens
    per step, as the fit counts it). ``batch``: the batch (sequences) lr, tau and warmup are
    taken at, in place of the published batch law's: a target study's prior is taken at the
    fitted batch's, and a fit that warns is blended with the published laws there (drawn at
    the published batch, the blend lay below both values the figure drew)."""
    update: dict[str, Any] = {"priors": PriorsConfig()}
    if batch is not None and target != "batch_size":
        # A batch the study fixes is the one its priors are taken at (space.trained_batches).
        fixed = Param(value=int(batch) if float(batch).is_integer() else batch)
        update["search"] = cfg.search.model_copy(
            update={"params": {**cfg.search.params, "batch_size": fixed}})
    priors = planning_priors(cfg.model_copy(update=update))
    prior = getattr(priors, target)
    return prior.center * (cfg.model.block_size if target == "batch_size" else 1)


def prior_batch(cfg: StudyConfig, centers: dict[str, float]) -> float | None:
    """The batch (sequences) a study's lr, tau and warmup priors were taken at, from the
    centers it recorded (``target_best``; batch in tokens per step): its batch prior's center,
    or the nearest batch it trains (heuristics.priors.batch_of_lr). None before it ran."""
    if "batch_size" not in centers:
        return None
    return batch_of_lr(centers["batch_size"] / cfg.model.block_size, trained_batches(cfg))


def target_best(ladder: Ladder) -> tuple[ScalePoint | None, StudyConfig, dict[str, float]]:
    """The target study's best trial as a point of the laws (None before it finished a trial),
    the target's config: the one its trials ran with once it has run (the study file may
    have changed since), else the study file's; and the centers of the priors it searched
    around, as the laws count them (batch in tokens per step; none before it ran)."""
    if finished_trials(ladder.target) == 0:
        return None, ladder.target, {}
    study, ran_with, _ = open_study(ladder.target, ladder.source)
    recorded = study.user_attrs.get("priors") or {}
    centers = {name: float(p["center"]) * (ran_with.model.block_size if name == "batch_size"
                                           else 1)
               for name, p in recorded.items() if isinstance(p, dict) and "center" in p}
    try:
        return scale_points(ran_with, study, ladder.cfg.scale)[0], ran_with, centers
    except ConfigError:  # no complete trial yet
        return None, ran_with, centers


def plot_fit(ladder: Ladder, fit: PowerLawFit | CarriedFit, best: ScalePoint | None,
             out: Path, target: StudyConfig | None = None,
             searched_at: float | None = None, batch: float | None = None) -> Drawn:
    """The figure of one fitted law or carried value (see the module); ``target``: the config
    the target study ran with (default the ladder's study file), whose scale is the target's;
    ``searched_at``: the center of the prior the target study searched around, where it ran
    (the prediction, or its blend with the published laws where the fit is weak); ``batch``:
    the batch (sequences) that prior was taken at, where the published laws' center at the
    target is drawn (``prior_batch``)."""
    law = isinstance(fit, PowerLawFit)
    target = target or ladder.target
    top = study_scale(target, ladder.cfg.scale)
    xs = [float(x) for x in np.logspace(np.log10(fit.x_min) - 0.05, np.log10(top) + 0.05, 40)]
    line = [fit.predict(x) for x in xs]
    at_target = fit.predict(top)
    # A law whose exponent was drawn toward a prior does not follow the rungs' own slope: the
    # legend says so, with the slope they alone give (heuristics.fit.PowerLawFit).
    name = ("carried value (the rungs' weighted mean)" if not law else "fitted law"
            if fit.exponent_prior is None else
            f"fitted law, exponent drawn toward the prior {fit.exponent_prior[0]:+.2f} (the "
            f"rungs alone: {fit.data_exponent:+.3f})")
    layers = [
        Layer(name, xs, [p.value for p in line], COLOURS["fit"], marker=None, line=2.0),
        Layer(f"{fit.level:.0%} prediction interval", xs, [p.low for p in line], COLOURS["fit"],
              marker=None, line=0.8),
        Layer(f"{fit.level:.0%} prediction interval", xs, [p.high for p in line],
              COLOURS["fit"], marker=None, line=0.8),
    ]
    for r in fit.rungs:  # the spread of each rung's near-best trials, as a bar
        layers.append(Layer("rung optimum (spread of its near-best trials)", [r.scale, r.scale],
                            [r.low, r.high], COLOURS["rung"], marker=None, line=2.0))
    layers.append(Layer("rung optimum (spread of its near-best trials)",
                        [r.scale for r in fit.rungs], [r.value for r in fit.rungs],
                        COLOURS["rung"], text=[f"{r.n_trials} near-best trials"
                                               for r in fit.rungs]))
    published = sorted([(r.scale, published_center(r.cfg, fit.target), "")
                        for r in ladder.rungs]
                       + [(top, published_center(target, fit.target, batch),
                           "" if batch is None or fit.target == "batch_size" else
                           f"at the batch of the target's prior, {batch:g} sequences")])
    layers.append(Layer("published laws' prior center", [p[0] for p in published],
                        [p[1] for p in published], COLOURS["published"], marker="x", line=1.0,
                        text=[p[2] for p in published]))
    layers.append(Layer("prediction at the target", [top, top], [at_target.low, at_target.high],
                        COLOURS["fit"], marker=None, line=3.0))
    layers.append(Layer("prediction at the target", [top], [at_target.value], COLOURS["fit"],
                        marker="star", size=14))
    if searched_at is not None:  # a blend sat apart from the star, unexplained
        layers.append(Layer("target study's prior center", [top], [searched_at],
                            COLOURS["target"], marker="x", size=11))
    found = None if best is None else getattr(best, fit.target)
    if found is not None:
        layers.append(Layer("target study's best trial", [top], [found], COLOURS["target"],
                            marker="diamond", size=11, edge="black"))
    if law:
        low, high = fit.exponent_interval
        title = (f"{fit.target} ~ {ladder.cfg.scale}^{fit.exponent:.3f} "
                 f"({fit.level:.0%} CI [{low:.3f}, {high:.3f}]) over {fit.n_rungs} rungs")
    else:
        title = (f"{fit.target} {fit.value:.3g}: the mean of {fit.n_rungs} rungs, carried to the "
                 "target (no trend fitted)")
    if fit.warnings:
        title += f"; {len(fit.warnings)} warning(s) of this law in laws.json"
    ys = [v for layer in layers for v in layer.y]
    with _matplotlib_style():
        png = Figure(figsize=FIGSIZE)
        ax = png.subplots()
        html = go.Figure()
        for layer in layers:
            _draw(layer, ax, html)
        _titles(ax, html, title, f"{ladder.cfg.scale} per trial" if ladder.cfg.scale == "tokens"
                else "non-embedding parameters", LABELS.get(fit.target, fit.target))
        _set_axis(ax, html, "x", _span(xs, True), True)
        _set_axis(ax, html, "y", _span(ys, law), law)
        _legends(png, html, [ax])
        return _save(png, html, out, f"ladder_{fit.target}")


def read_laws(ladder: Ladder) -> FittedLaws:
    """The ladder's laws file, read; a file that is not fitted laws (damaged, cut short) is a
    ConfigError that says how to make it again (a traceback of json's error)."""
    try:
        return FittedLaws.load(ladder.laws_file)
    except (OSError, ValueError) as e:
        why = str(e).removeprefix(f"{ladder.laws_file}: ")
        head = ladder.laws_file.read_bytes()[:4096] if ladder.laws_file.is_file() else b""
        if b'"format_version"' in head or b'"scale_kind"' in head:  # laws, damaged
            todo = (f"delete it, and `scaletune ladder {ladder.source}` fits the laws again "
                    "from the finished rungs")
        else:  # another file named as the laws file (a study file): not the user's to delete
            todo = "give the ladder's laws file as laws_file (by default runs/NAME/laws.json)"
        raise ConfigError(ladder.source, [
            f"laws_file: {ladder.laws_file} cannot be read ({why}): {todo}"]) from None


def make_ladder_figures(ladder: Ladder, out: Path, laws_: FittedLaws | None = None) -> list[Drawn]:
    """A figure per fitted law and carried value into ``out``, from the ladder's laws file."""
    if laws_ is None:
        if not ladder.laws_file.is_file():
            raise ConfigError(ladder.source, [
                f"laws_file: {ladder.laws_file} does not exist: `scaletune ladder "
                f"{ladder.source}` writes it once two rungs have finished (and again from the "
                "finished rungs, where it was deleted)"])
        laws_ = read_laws(ladder)
    out.mkdir(parents=True, exist_ok=True)
    best, target, centers = target_best(ladder)
    batch = prior_batch(target, centers)
    return [plot_fit(ladder, fit, best, out, target, centers.get(fit.target), batch)
            for fit in laws_.all_fits()]


def make_ladder_report(ladder: Ladder, out_dir: str | Path, source: str | None = None,
                       console: Console | None = None,
                       target: StudyConfig | None = None) -> dict[str, Any]:
    """What `scaletune report LADDER.yaml` writes into ``out_dir``: a figure per fitted law
    (make_ladder_figures), then, once the target study has trials, its report
    (search.report.make_report), whose index.html opens on the figures. Returns the target's
    summary, or {} before it has run. ``source``: the ladder file the commands name;
    ``target``: the target study as a command gives it (its --storage), by default the
    ladder's."""
    out = Path(out_dir)
    source = source or ladder.source
    if problem := report_folder_problem(out, "make_report(ladder, 'report')"):
        raise ConfigError("out_dir", [problem])
    laws_ = read_laws(ladder) if ladder.laws_file.is_file() else None
    drawn = make_ladder_figures(ladder, out, laws_)  # without a laws file: says how to make one
    if console is not None:
        console.print(f"wrote {len(drawn)} ladder figure(s) to {out}: "
                      f"{', '.join(d.paths[0].name for d in drawn)}", highlight=False,
                      markup=False)
        print_laws(laws_, console)
    target = target or named_target(ladder)
    if finished_trials(target):
        return make_report(target, out, source=source, console=console, ladder=drawn)
    if console is not None:
        started = stored_study(target)  # interrupted before a trial ended: it has run
        state = ("has no finished trial yet" if started is not None and started.trials
                 else "has not run yet")
        console.print(f"the target study {target.name} {state}: its report comes once a trial "
                      f"of it has finished (scaletune ladder {source})", highlight=False,
                      markup=False)
    return {}
