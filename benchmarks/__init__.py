"""The project's benchmarks: ``python -m benchmarks.NAME --help`` for each."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def refuse_below_one(parser: argparse.ArgumentParser, counts: dict[str, int]) -> None:
    """The parser's error (exit 2) for the first of ``counts`` (flag -> value) below 1: a
    count of 0 ran nothing, divided by zero or failed deep in a study's config."""
    for flag, value in counts.items():
        if value < 1:
            parser.error(f"{flag}: must be 1 or more, got {value}")


def run_main(main: Callable[[], object], name: str, after: str = "") -> None:
    """``main()`` of ``python -m benchmarks.NAME``, where a Ctrl-C is one line and exit code 130
    (``after``: what it left, such as how to resume), not the traceback of whatever it was in
    (a trial in torch, a study stopping)."""
    try:
        main()
    except KeyboardInterrupt:
        print(f"benchmarks.{name}: interrupted{'; ' + after if after else ''}", file=sys.stderr)
        sys.exit(130)
