"""The live view of a running study in the terminal (plain event lines when not a terminal)."""

from __future__ import annotations

import math
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from scaletune.search import hparams
from scaletune.search.config import StudyConfig


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


class StudyProgress:
    """Counts of trials by state, the best value so far, and one progress row per running trial."""

    def __init__(self, console: Console, cfg: StudyConfig, study: optuna.Study) -> None:
        self.console = console
        self.cfg = cfg
        self.study = study
        self.running: dict[int, dict[str, Any]] = {}
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        for t in study.get_trials(deepcopy=False):
            if t.state.name in self.counts:
                self.counts[t.state.name] += 1
        self.best = _best(study)
        self.t0 = time.time()
        self._live: Live | None = None

    def __enter__(self) -> StudyProgress:
        if self.console.is_terminal:
            self._live = Live(self.render(), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.__exit__(*exc)

    def started(self, number: int, params: dict[str, Any]) -> None:
        self.running[number] = {"params": params, "tokens": 0, "value": None, "t0": time.time()}
        self._log(f"trial {number} started: {fmt_params(params)}")

    def reported(self, number: int, tokens: int, value: float, metrics: dict) -> None:
        row = self.running.get(number)
        if row is not None:
            row.update(tokens=tokens, value=value, tps=metrics.get("tokens_per_s"))

    def finished(self, number: int, state: str, value: float | None, reason: str | None) -> None:
        self.running.pop(number, None)
        self.counts[state] = self.counts.get(state, 0) + 1
        if value is not None and (self.best is None or value < self.best[1]):
            self.best = (number, value)
        detail = f"{value:.4f}" if value is not None else (reason or "")
        style = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}[state]
        self._log(f"trial {number} [{style}]{state.lower()}[/]: {detail}")

    def _log(self, line: str) -> None:
        if self._live is not None:
            self._live.console.print(line)
        else:
            self.console.print(line, highlight=False)
        self.refresh()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)

    def render(self) -> Group:
        c = self.counts
        best = f"best {self.best[1]:.4f} (trial {self.best[0]})" if self.best else "best -"
        head = (
            f"[bold]{self.cfg.name}[/]  done {c['COMPLETE']}  pruned {c['PRUNED']}  "
            f"failed {c['FAIL']}  running {len(self.running)}  of {self.cfg.n_trials}  |  {best}  "
            f"|  {time.time() - self.t0:.0f}s"
        )
        table = Table(box=None, pad_edge=False)
        for col in ("trial", "progress", "tokens", "val loss", "tok/s", "params"):
            table.add_column(col)
        total = self.cfg.tokens_per_trial
        for number, row in sorted(self.running.items()):
            value = row["value"]
            table.add_row(
                str(number),
                ProgressBar(total=total, completed=min(row["tokens"], total), width=20),
                f"{row['tokens']:,}",
                f"{value:.4f}" if value is not None and math.isfinite(value) else "-",
                f"{row.get('tps') or 0:,.0f}",
                fmt_params(row["params"]),
            )
        return Group(head, table)


def _best(study: optuna.Study) -> tuple[int, float] | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return None
    t = min(done, key=lambda t: t.value)
    return (t.number, t.value)
