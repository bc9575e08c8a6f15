"""Where scaletune writes what it has to say: rich's console on a terminal, and elsewhere one
that never wraps a line. The CLI's and, by default, run_study's, run_ladder's, serve's and
print_priors's."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

WIDTH_NOT_A_TERMINAL = 200
"""Columns for tables written to a file or a pipe, where rich would take 80 and cut cells."""


def make_console(stderr: bool = False) -> Console:
    """rich's console in a terminal; elsewhere (a file, a pipe, a scheduler's log, a notebook's
    captured output) and in a dumb terminal (TERM=dumb: an editor's shell, which has its own
    way with long lines) one whose lines are never wrapped and whose tables are not cut at 80
    columns. ``stderr``: one that writes to standard error."""
    console = Console(stderr=stderr)
    if console.is_terminal and not console.is_dumb_terminal:
        return console
    # A height with the width: rich takes 80 x 25 for a dumb terminal whatever width it is given.
    return Console(stderr=stderr, soft_wrap=True, width=WIDTH_NOT_A_TERMINAL, height=25)


def given_console(console: Any, where: str) -> Console | None:
    """``console`` as a function of the Python API takes it: a rich Console, or None; anything
    else (``sys.stdout``, a file) is a TypeError here, where ``where`` would fail at its first
    line with an AttributeError, Ray started and the study written by then."""
    if console is None or isinstance(console, Console):
        return console
    raise TypeError(f"{where}: console takes a rich Console (rich.console.Console(file=...) "
                    f"writes to a file), or None for the terminal; not a "
                    f"{type(console).__name__}")


def whole_cells(table: Table) -> Table:
    """``table`` with cells that do not fit its column wrapped onto more lines, not cut short
    with "…": on an 80-column terminal a study's name, a token count or an exponent was cut
    (``120,0…``, ``1.42e…``, two rungs alike), and a terminal whose encoding is not UTF-8 could
    not print the "…" at all (UnicodeEncodeError)."""
    for column in table.columns:
        column.overflow = "fold"
    return table
