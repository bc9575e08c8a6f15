"""The project's benchmarks: ``python -m benchmarks.NAME --help`` for each."""

from __future__ import annotations

import argparse


def refuse_below_one(parser: argparse.ArgumentParser, counts: dict[str, int]) -> None:
    """The parser's error (exit 2) for the first of ``counts`` (flag -> value) below 1: a
    count of 0 ran nothing, divided by zero or failed deep in a study's config."""
    for flag, value in counts.items():
        if value < 1:
            parser.error(f"{flag}: must be 1 or more, got {value}")
