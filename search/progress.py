"""The live view of a running study in the terminal (plain event lines when not a terminal),
and the summary ``scaletune run`` prints at the end."""

from __future__ import annotations

import math
import os
import shlex
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from scaletune.search import hparams
from scaletune.search.config import StudyConfig
from scaletune.search.plan import ENDED
from scaletune.search.storage import mask_url
from scaletune.search.summary import (
    best_trial,
    diverged,
    frequencies_note,
    loss_said,
    pruning_saved,
    summarize,
    trials_said,
)
from scaletune.trainer.record import fmt_duration, fmt_eta


def fmt_params(params: dict[str, Any]) -> str:
    """``lr=0.00523 tau=2.58 ...``: registered hyperparameters as the registry shows them."""
    parts = []
    for k, v in params.items():
        hp = hparams.get(k)
        if hp is not None:
            parts.append(f"{k}={hp.show(v)}")
        elif isinstance(v, float):
            parts.append(f"{k}={v:.3g}")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


HEAD_SEP = "  |  "
"""Between the headline's parts (the tally, the best, the time, the ETA)."""
SHOWN_ROWS = 24
"""Running trials the live view shows a row for; the others are counted below the table."""
REDRAW_S = 0.25
"""Shortest time between two redraws of the live view."""
REDRAW_SHARE = 0.1
"""At most this share of the driver's time goes to redrawing the live view: the next redraw
waits ten times as long as the last one took, if that is longer than REDRAW_S."""


QUEUED = " (queued again)"
"""How the reason of a FAIL trial that runs again ends (search.runner._finish)."""


class StudyProgress:
    """Counts of trials by state, the best value so far, and one progress row per running trial.

    The counts are those of ``n_trials``: a FAIL trial whose params were queued again (user attr
    ``retried``) is not counted, because its re-run is. In a terminal the view is live, with an
    ETA; elsewhere (a file, a pipe) every event and every evaluation is one plain line.
    ``total``: the finished trials the run ends with (default ``n_trials``; more with repeats).
    """

    def __init__(self, console: Console, cfg: StudyConfig, study: optuna.Study,
                 total: int | None = None) -> None:
        self.console = console
        self.cfg = cfg
        self.total = cfg.n_trials if total is None else total
        self.study = study
        self.running: dict[int, dict[str, Any]] = {}
        self.counts, self.durations = _tally(study)
        # The most trials seen running at once, for the ETA: the driver fills every slot it has.
        self.slots = 0
        # For the ETA, the times trials of this run ended (time.time), and the first one began.
        self.ended_at: list[float] = []
        self.first_started: float | None = None
        self.best = _best(study)
        self.t0 = time.time()
        self._live: Live | None = None
        self._drawn = -math.inf  # when the live view was last redrawn (time.monotonic)
        self._every = REDRAW_S  # the time until the next redraw (REDRAW_SHARE)
        self._lines: list[str] = []  # event lines printed with the next redraw

    def __enter__(self) -> StudyProgress:
        # A dumb terminal (TERM=dumb: an editor's shell, some CI runners) draws no live view:
        # it showed no evaluation and no tally; it gets the lines a pipe gets.
        if self.console.is_terminal and not self.console.is_dumb_terminal:
            self._live = Live(self.render(), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._redraw()
            self._live.__exit__(*exc)

    def started(self, number: int, params: dict[str, Any]) -> None:
        self.running[number] = {"params": params, "tokens": 0, "value": None, "t0": time.time()}
        if self.first_started is None:
            self.first_started = self.running[number]["t0"]
        self.slots = max(self.slots, len(self.running))
        # A study that fixes every hyperparameter draws none: it read "trial 0 started: ".
        self._log(f"trial {number} started: {fmt_params(params)}" if params else
                  f"trial {number} started (nothing searched: the study fixes every value)")

    def reported(self, number: int, tokens: int, value: float, metrics: dict) -> None:
        row = self.running.get(number)
        if row is not None:
            row.update(tokens=tokens, value=value, tps=metrics.get("tokens_per_s"), at=time.time())
        if self._live is None:  # the live view shows it in the trial's row
            self.console.print(f"trial {number} at {tokens:,} tokens: val loss {value:.4f}",
                               highlight=False)

    def finished(self, number: int, state: str, value: float | None, reason: str | None) -> None:
        """Trial ``number`` ended in ``state``; the study has been told (its storage counts)."""
        self.running.pop(number, None)
        before = sum(self.counts.values())
        self.counts, self.durations = _tally(self.study)
        # An end for each trial the tally gained (not a failure queued again: it runs again):
        # the storage may hold the ends of trials this is told of next, and counts them now.
        self.ended_at += [time.time()] * max(0, sum(self.counts.values()) - before)
        if value is not None and (self.best is None or value < self.best[1]):
            self.best = (number, value)
        detail = f"{value:.4f}" if value is not None else (reason or "")
        if value is not None and reason:  # a COMPLETE told outside the driver, say
            detail += f" ({reason})"
        style = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}[state]
        said = state.lower()
        if state == "FAIL" and detail.endswith(QUEUED):
            # Its worker died: it runs again, and the tally below does not count it as failed
            # ("trial 3 fail: ... (queued again)" above "failed 0").
            style, said, detail = "yellow", "interrupted and queued again", detail[:-len(QUEUED)]
        self._log(f"trial {number} [{style}]{said}[/]: {detail}")
        if self._live is None:  # the tally a log reader (`scaletune jobs`) shows as progress
            self.console.print(self.headline(), highlight=False)

    def _log(self, line: str) -> None:
        if self._live is None:
            self.console.print(line, highlight=False)
            return
        # Above the live view, with its next redraw: each print redraws the view (rich), which
        # had cost the driver 50-70 ms an event on a large study where trials start and end
        # several times a second (benchmarks/driver_scale.py --pruner hyperband).
        self._lines.append(line)
        self.refresh()

    def refresh(self) -> None:
        """Redraw the live view, with the event lines since the last redraw above it, at most
        every ``REDRAW_S`` (longer where a redraw takes long: ``REDRAW_SHARE``): the driver calls
        this after every batch of reports, hundreds a second on a large cluster."""
        if self._live is not None and time.monotonic() - self._drawn >= self._every:
            self._redraw()

    def _redraw(self) -> None:
        assert self._live is not None
        start = time.monotonic()
        render = self.render()
        self._live.update(render, refresh=not self._lines)
        if self._lines:  # printed above the view, which this print redraws below them
            lines, self._lines = self._lines, []
            # The view a print redraws is rich's live render, which update() without a
            # refresh leaves as it was: the counts under a trial's end were the ones before it.
            live_render = getattr(self._live, "_live_render", None)
            if live_render is not None:
                live_render.set_renderable(render)
            self._live.console.print("\n".join(lines))
            if live_render is None:
                self._live.refresh()
        self._drawn = time.monotonic()
        self._every = max(REDRAW_S, (self._drawn - start) / REDRAW_SHARE)

    def headline(self) -> str:
        """``tiny  done 3  pruned 1  failed 0  running 2  of 10  |  best 2.8123 (trial 2)  |
        41s  |  ETA ~80 s``: the study's tally (search.jobs reads it back from a job's log)."""
        c = self.counts
        best = f"best {self.best[1]:.4f} (trial {self.best[0]})" if self.best else "best -"
        blown = f"diverged {c['DIVERGED']}  " if c["DIVERGED"] else ""
        head = (
            f"[bold]{self.cfg.name}[/]  done {c['COMPLETE']}  pruned {c['PRUNED']}  "
            f"failed {c['FAIL']}  {blown}running {len(self.running)}  of {self.total}{HEAD_SEP}"
            f"{best}{HEAD_SEP}{time.time() - self.t0:.0f}s"
        )
        eta = self.eta()
        if eta is not None and (self.running or sum(c.values()) < self.total):
            head += f"{HEAD_SEP}{fmt_eta(eta)}"  # until the last trial has ended
        return head

    def render(self) -> Group:
        head = _fitted(self.headline(), self.console.width)
        if not self.running:  # the study's end, or a pause between trials: no empty header
            return Group(head)
        table = Table(box=None, pad_edge=False)
        for col in ("trial", "progress", "tokens", "val loss", "tok/s", "params"):
            table.add_column(col)
        total = self.cfg.tokens_per_trial
        # The trials furthest along first: a terminal shows a few dozen rows, and each row drawn
        # costs the driver time that its trials wait for their answers.
        shown = sorted(self.running.items(), key=lambda kv: (-kv[1]["tokens"], kv[0]))
        for number, row in sorted(shown[:SHOWN_ROWS]):
            value = row["value"]
            table.add_row(
                str(number),
                ProgressBar(total=total, completed=min(row["tokens"], total), width=20),
                f"{row['tokens']:,}",
                f"{value:.4f}" if value is not None and math.isfinite(value) else "-",
                f"{row.get('tps') or 0:,.0f}",
                fmt_params(row["params"]),
            )
        if len(shown) > SHOWN_ROWS:
            return Group(head, table, f"... and {len(shown) - SHOWN_ROWS} more trials running")
        return Group(head, table)

    def eta(self) -> float | None:
        """Seconds until ``n_trials`` have finished: the trials still to start at what a trial
        costs, plus what each running trial has left, spread over the slots. None before any
        trial has finished.

        A trial costs the mean wall time of the finished ones, or, once this run has seen
        ``2 * slots`` trials end, the slot time it spent per trial that ended (slots x the time
        from the first start to the last end, over the ends) where that is more: it counts what
        wall times leave out (handing trials to the workers: an ETA of 150 trials of 0.2 s said
        "<10 s" with 14 s left). A running trial has left its pace so far (the time to its last
        report, over the tokens it had trained) times the tokens still to train; before its
        first report, the cost less its time so far. Nothing here grows while no trial ends:
        an ETA from the rate of the last few ends rose by the second while none ended, and fell
        to half the time left after a burst of pruned trials."""
        if not self.durations:
            return None
        now = time.time()
        done = sum(self.counts.values())
        slots = max(1, self.slots)
        cost = sum(self.durations) / len(self.durations)
        if len(self.ended_at) >= 2 * slots and self.first_started is not None:
            cost = max(cost, slots * (self.ended_at[-1] - self.first_started) / len(self.ended_at))
        left = max(0, self.total - done - len(self.running)) * cost
        for row in self.running.values():
            if row["tokens"] and row.get("at"):
                pace = (row["at"] - row["t0"]) / row["tokens"]
                rest = pace * max(0, self.cfg.tokens_per_trial - row["tokens"]) - (now - row["at"])
            else:
                rest = cost - (now - row["t0"])
            left += max(0.0, rest)
        return left / slots


def _fitted(headline: str, width: int) -> Text:
    """The headline on as many lines as ``width`` needs, broken at its ``|``: the terminal broke
    it wherever it ran out (``best 2.0585 (trial`` / ``14)``) at 80 columns."""
    lines: list[str] = []
    for part in headline.split(HEAD_SEP):
        if lines and Text.from_markup(lines[-1] + HEAD_SEP + part).cell_len <= width:
            lines[-1] += HEAD_SEP + part
        else:
            lines.append(part)
    return Text.from_markup("\n".join(lines))


def _tally(study: optuna.Study) -> tuple[dict[str, int], list[float]]:
    """Finished trials by state, and their wall times in seconds, as ``n_trials`` counts them:
    FAIL trials queued again are left out."""
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "DIVERGED": 0}
    durations = []
    # The ended trials only: the driver's study keeps them, where a read of every trial re-reads
    # the running ones from the storage (0.26 s at 256 running; search.plan.DriverStudy).
    for t in study.get_trials(deepcopy=False, states=ENDED):
        if t.user_attrs.get("retried", False):
            continue
        counts["DIVERGED" if diverged(t) else t.state.name] += 1  # not the pruner's stops
        if t.datetime_start and t.datetime_complete:
            durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    return counts, durations


def _best(study: optuna.Study) -> tuple[int, float] | None:
    t = best_trial(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return None if t is None else (t.number, t.value)


def print_run_summary(console: Console, study: optuna.Study, cfg: StudyConfig, source: str,
                      wall_s: float, storage: str | None = None,
                      more: list[tuple[str, str]] | None = None,
                      summary: dict[str, Any] | None = None,
                      ladder: bool = False) -> dict[str, Any]:
    """Print what ``scaletune run`` shows at the end: the best trial, trials by state, time,
    compute and what pruning saved, where the study lives and the commands that come next.
    ``source`` is the study file as the user named it; ``storage`` the URL of ``run --storage``,
    which the next commands then name too; ``more`` rows (key, text) follow the compute row;
    ``summary``, the study's summarize() where the caller has it already; ``ladder``: the study
    is a ladder's target, and the run's time covers its rungs too. Returns the numbers,
    those of ``scaletune report``'s summary.json (search.summary.summarize)."""
    s = summary if summary is not None else summarize(study, cfg)
    best, compute, pruning = s["best"], s["compute"], s["pruning"]
    rows = []
    console.print()
    if best is None:
        console.print("[red]no trial completed[/] (none trained its whole budget)")
        if why := _why_none_completed(study):
            console.print(f"note: {why}", style="yellow", highlight=False, markup=False)
    else:
        console.print(f"[bold green]best trial {best['number']}[/]: "
                      f"{loss_said(best['value'], s.get('unigram_loss'))}")
        derived = {k: v for k, v in best["derived"].items() if k not in best["params"]}
        rows.append(("params", fmt_params(best["params"])))
        if derived:
            rows.append(("derived", fmt_params(derived)))
        if seeds := seeds_of_best(study.get_trials(deepcopy=False), best["number"], cfg.seed):
            rows.append(("seeds", seeds))
    run_scope, trials_scope = (", rungs and target", "target's ") if ladder else ("", "")
    rows += [
        ("trials", trials_said(s)),
        ("time", f"{fmt_duration(wall_s)} this run{run_scope}; "
                 f"{fmt_duration(compute['trial_wall_time_s'])} of training summed over the "
                 f"{trials_scope}trials"),
        ("compute", f"{compute['tokens_trained']:,} tokens, {compute['flops_6nd']:.3g} FLOPs "
                    f"(6ND); {pruning_saved(pruning)}"),
        *(more or []),
        ("study", f"{s['study']} in {s['storage']}"),
    ]
    report_dir = _near(cfg.folder / "report")
    registered = [f"search.{name}" for name, p in cfg.search.params.items()
                  if p is not None and name not in hparams.BUILT_IN]
    if registered or not cfg.from_file:
        # The command line knows the built-in hyperparameters only: its commands refused the
        # study file ("search.beta2: unknown key"); and a config built in code has no file for
        # them to read (they named a file "study"). Python, then, and the dashboard, which
        # needs only the storage.
        why = (f"the command line does not know {', '.join(registered)}, registered in Python"
               if registered else "the study was built in Python, with no study file")
        storage_flag, setting = _study_and_storage(None, storage or cfg.storage_url)
        commands = [*setting, f"make_report(cfg, {str(report_dir)!r})   # in Python: {why}",
                    *([f"export_study(cfg, 'final.yaml', tokens={10 * cfg.tokens_per_trial:_})"]
                      if best else []),
                    f"scaletune dashboard {storage_flag}"]
    else:
        study_file, setting = _study_and_storage(source, storage)
        commands = [
            *setting,
            f"scaletune dashboard {study_file}",
            f"scaletune report {study_file} -o {shlex.quote(str(report_dir))}",
        ] + ([f"scaletune export {study_file} --tokens "
              f"{_short_tokens(10 * cfg.tokens_per_trial)} -o final.yaml   # a final run of 10x "
              "a trial's tokens"] if best else [])
    rows += [("next" if i == 0 else "", command) for i, command in enumerate(commands)]
    for key, text in rows:  # soft: a command a terminal wraps still pastes whole
        console.print(f"  {key:<8} {text}", highlight=False, markup=False, soft_wrap=True)
    notes = [frequencies_note(best["value"], s.get("unigram_loss")), *best["at_edges"]] \
        if best else []
    for note in filter(None, notes):
        console.print(f"note: {note}", style="yellow", highlight=False, markup=False)
    return s


def _why_none_completed(study: optuna.Study) -> str | None:
    """What a study none of whose trials completed should be told: every trial diverged (the
    learning rates tried, too high), or every trial failed (where to read why); None otherwise
    (some were stopped by the pruner, which needs a completed trial to compare with first)."""
    ended = [t for t in study.get_trials(deepcopy=False, states=ENDED)
             if not t.user_attrs.get("retried", False)]
    if not ended:
        return None
    blown = [t for t in ended if diverged(t)]
    if len(blown) == len(ended):
        lrs = sorted(float(t.params["lr"]) for t in blown if "lr" in t.params)
        if not lrs:  # lr fixed by the study file
            return ("every trial diverged (its loss rose above trainer.max_loss); the learning "
                    "rate the study fixes is likely too high for this model: give a lower one "
                    "(search.lr) in a new study")
        tried = f" ({lrs[0]:.3g} to {lrs[-1]:.3g})" if len(lrs) > 1 else f" ({lrs[0]:.3g})"
        return (f"every trial diverged (its loss rose above trainer.max_loss); the learning "
                f"rates tried{tried} are likely too high for this model: search lower ones "
                "(search.lr) in a new study")
    if all(t.state == TrialState.FAIL for t in ended):
        return "every trial failed: `scaletune show` gives each reason"
    return None


STORAGE_VARIABLE = "SCALETUNE_STORAGE"
"""The shell variable by which the next commands name a storage whose URL has a password: the
summary never prints a password."""


def _study_and_storage(source: str | None, url: str | None) -> tuple[str, list[str]]:
    """How the next commands name the study: its file (None: no file), and ``--storage URL``
    when it ran on the storage of ``run --storage``; a URL with a password as a shell variable,
    with the command that sets it (password masked) to go first."""
    study_file = "" if source is None else shlex.quote(source) + " "
    if url is None:
        return study_file.strip(), []
    shown = mask_url(url)
    if shown == url:
        return f"{study_file}--storage {shlex.quote(url)}", []
    return (f'{study_file}--storage "${STORAGE_VARIABLE}"',
            [f"{STORAGE_VARIABLE}={shlex.quote(shown)}   # with the password in place of ***"])


def seeds_of_best(trials: list[FrozenTrial], number: int, study_seed: int) -> str | None:
    """Where the best trial (``number``, of a study's ``trials``) had its config run with other
    training seeds (``run --repeat-best``): its runs and their mean, since the best of several
    seeds of one config is partly the luck of its seed. None when its config was not repeated."""
    from scaletune.search.noise import root, seed_groups, seed_of

    best = next(t for t in trials if t.number == number)
    first = root(best)
    group = next((g for g in seed_groups(trials, study_seed) if g.trial == first), None)
    if group is None:
        return None
    whose = f"trial {first}'s config, " if first != number else ""
    return (f"{whose}training seed {seed_of(best, study_seed)}; its {len(group.values)} seeds: "
            f"{group.runs_said()}")


def _near(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it, as a user types it;
    whole for a driver run as a Ray job, whose working directory is the head node's, read by
    `scaletune logs` from anywhere."""
    from scaletune.search.lease import JOB_ENV

    if os.environ.get(JOB_ENV):
        return path.resolve()
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def _short_tokens(n: int) -> str:
    """A token count as the CLI takes it: ``3e6``, ``1.64e6``; ``81_920`` where three digits
    would round it (the horizon rules scale with the exact ratio)."""
    mantissa, exponent = f"{n:.2e}".split("e")
    short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return short if float(short) == n else f"{n:_}"
