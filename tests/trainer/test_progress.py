"""The progress of `scaletune train`: on a terminal a bar with train loss, tokens/s and the last
validation loss; written to a file or a pipe, one line per evaluation."""

from __future__ import annotations

import re
import sys

from scaletune.trainer.loop import train

STEP_TOKENS = 8 * 32  # the tiny config: batch 8 x block 32


def test_the_bar_shows_the_last_validation_loss(tiny, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
    result = train(tiny(steps=25, eval_every_tokens=5 * STEP_TOKENS, progress=True))
    bar = capsys.readouterr().err
    # Rule: once the run has a validation loss, the bar shows the last one (3 decimals) between
    # the train loss and tokens/s, from the evaluation on: the bar ends on the last step's
    # (it ended on step 20's, the one before, as its text was set only every tenth step).
    shown = re.findall(r"loss \d+\.\d{3} \| val (\d+\.\d{3}) \| [\d,]+ tok/s", bar)
    assert shown, bar
    assert result.history[-1]["step"] == 25
    assert shown[-1] == f"{result.history[-1]['val_loss']:.3f}"
    assert f"{result.history[-2]['val_loss']:.3f}" != shown[-1]  # which the old bar ended on
    # Rule: the tokens per second are the run's, as its summary says them (tqdm's pace, which
    # takes the evaluations in, said half as many), and the bar leaves out tqdm's steps per
    # second, which cut the postfix short on an 80-column terminal.
    rates = re.findall(r"\| ([\d,]+) tok/s", bar)
    assert rates[-1] == f"{result.tokens_per_s:,.0f}"
    assert "step/s" not in bar and "it/s" not in bar


def test_off_a_terminal_each_evaluation_is_one_line_and_no_bar(tiny, capsys):
    # capsys's stderr is not a terminal, as a file, a pipe or a cluster's job log is not.
    result = train(tiny(steps=25, eval_every_tokens=5 * STEP_TOKENS, progress=True))
    err = capsys.readouterr().err
    # No bar: its redraws (carriage returns) would pile up in a log.
    assert "\r" not in err and "step/s" not in err
    first, *lines = err.splitlines()
    # A first line says what comes and when: the first evaluation may be minutes away.
    assert re.fullmatch(rf"training 25 steps of {STEP_TOKENS:,} tokens on cpu, \d+ threads?; a "
                        r"line at each evaluation, every 5 steps", first), first
    assert len(lines) == len(result.history) == 5  # steps 5, 10, ..., 25
    for line, h in zip(lines, result.history, strict=True):
        assert line.startswith(f"step {h['step']}/25 ({h['step'] / 25:.0%})  tokens "
                               f"{h['tokens']:,}  val loss {h['val_loss']:.4f}  train loss "
                               f"{h['train_loss']:.4f}  "), line
        assert re.search(r"  [\d,]+ tok/s  \d+ s elapsed", line), line
    # An estimate of the time left while steps are left; none on the last line.
    assert all(re.search(r"elapsed, ETA (~\d+|<10) s$", line) for line in lines[:-1]), lines
    assert lines[-1].endswith(" elapsed")


def test_the_first_line_names_the_run_folder_and_the_eta_is_the_steps_pace(tiny, tmp_path,
                                                                          capsys, monkeypatch):
    import scaletune.trainer.loop as loop

    out = tmp_path / "run"
    train(tiny(steps=10, eval_every_tokens=5 * STEP_TOKENS, progress=True, out_dir=str(out)))
    first, *lines = capsys.readouterr().err.splitlines()
    assert f" thread into {out}; a line at each evaluation" in first or \
        f" threads into {out}; a line at each evaluation" in first, first
    # Rule: the ETA comes from the steps' pace, not from the set-up before them (it counted the
    # data's preparation as steps' time, and said ~3 min for ~75 s after a resume).
    real = loop.time.perf_counter
    clock = {"set-up": 0.0}

    def later() -> float:  # ten minutes of set-up before the first step, none after
        return real() + clock["set-up"]

    monkeypatch.setattr(loop.time, "perf_counter", later)
    monkeypatch.setattr(loop, "_run_steps", _after_set_up(loop._run_steps, clock))
    train(tiny(steps=10, eval_every_tokens=5 * STEP_TOKENS, progress=True))
    first, *lines = capsys.readouterr().err.splitlines()
    assert "elapsed, ETA <10 s" in lines[0], lines


def _after_set_up(run_steps, clock):
    def wrapped(*args, **kwargs):
        clock["set-up"] = 600.0
        return run_steps(*args, **kwargs)
    return wrapped


def test_the_eta_leaves_out_the_step_that_compiled(tiny, capsys, monkeypatch):
    import scaletune.trainer.loop as loop

    # Ten minutes to compile, in the first step's forward; the others take no time.
    real, clock = loop.time.perf_counter, {"compiled": 0.0}

    def compiling(model):
        def first_forward(*_):
            clock["compiled"] = 600.0
        handle = model.register_forward_pre_hook(first_forward)
        model.register_forward_hook(lambda *_: handle.remove())
        return model

    monkeypatch.setattr(loop, "compiler_missing", lambda: None)
    monkeypatch.setattr(loop.torch, "compile", compiling)
    monkeypatch.setattr(loop.time, "perf_counter", lambda: real() + clock["compiled"])
    train(tiny(steps=10, eval_every_tokens=5 * STEP_TOKENS, progress=True, compile=True))
    first, *lines = capsys.readouterr().err.splitlines()
    # It said ~10 min: the compile time over 5 steps, times the 5 left.
    assert "elapsed, ETA <10 s" in lines[0], lines
    # The first evaluation compiles again (no gradients: another graph); nor is that a step's.
    evaluate = loop._evaluate_and_report

    def compiling_evaluation(*args, **kwargs):
        if not args[4].history:  # progress: the first evaluation
            clock["compiled"] += 600.0
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "_evaluate_and_report", compiling_evaluation)
    train(tiny(steps=10, eval_every_tokens=5 * STEP_TOKENS, progress=True, compile=True))
    first, *lines = capsys.readouterr().err.splitlines()
    assert "elapsed, ETA <10 s" in lines[0], lines


def test_progress_off_prints_nothing(tiny, capsys):
    train(tiny(steps=10, eval_every_tokens=5 * STEP_TOKENS, progress=False))
    assert capsys.readouterr().err == ""


def test_an_eta_is_rounded_as_coarsely_as_it_is_known():
    from scaletune.trainer.record import fmt_eta

    # Under 10 s it says so, rather than a "~10 s" that stays while the run ends.
    assert [fmt_eta(s) for s in (0.4, 9.9)] == ["ETA <10 s", "ETA <10 s"]
    assert [fmt_eta(s) for s in (10, 44, 89)] == ["ETA ~10 s", "ETA ~40 s", "ETA ~90 s"]
    assert [fmt_eta(s) for s in (90, 150, 5399)] == ["ETA ~2 min", "ETA ~2 min", "ETA ~90 min"]
    assert fmt_eta(5400) == "ETA ~1.5 h"
