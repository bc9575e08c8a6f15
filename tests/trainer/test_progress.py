"""The progress bar of `scaletune train`: train loss, tokens/s, and the last validation loss."""

from __future__ import annotations

import re

from scaletune.trainer.loop import train

STEP_TOKENS = 8 * 32  # the tiny config: batch 8 x block 32


def test_the_bar_shows_the_last_validation_loss(tiny, capsys):
    result = train(tiny(steps=25, eval_every_tokens=5 * STEP_TOKENS, progress=True))
    bar = capsys.readouterr().err
    at_step_20 = next(h["val_loss"] for h in result.history if h["step"] == 20)
    # Rule: once the run has a validation loss, the bar shows the last one (3 decimals) between
    # the train loss and tokens/s. Its text is set every 10 steps, so the bar ends on the
    # evaluation of step 20.
    shown = re.findall(r"loss \d+\.\d{3} \| val (\d+\.\d{3}) \| [\d,]+ tok/s", bar)
    assert shown, bar
    assert shown[-1] == f"{at_step_20:.3f}"
