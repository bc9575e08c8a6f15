"""The everyday CLI: it starts without torch, says its version, writes whole lines to a file or
a pipe, and a study's progress and end-of-run summary say what a user needs."""

from __future__ import annotations

import datetime
import importlib.metadata
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from scaletune.search.config import load_study, validate_study
from scaletune.search.progress import SHOWN_ROWS, StudyProgress, fmt_params
from scaletune.search.storage import mask_url
from scaletune.search.summary import frequencies_only, summarize
from tests.search.helpers import tiny_study, write_study

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "studies" / "quickstart.yaml"
HEAVY = ("torch", "ray", "optuna")


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def scaletune(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``scaletune ARGS`` with its output to a pipe, as under nohup, CI or a scheduler."""
    return subprocess.run([sys.executable, "-m", "scaletune.search.cli", *args], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


# --------------------------------------------------------------------------- start-up


def test_building_the_parser_imports_no_torch_ray_or_optuna():
    loaded = python(
        "import sys; from scaletune.search.cli import build_parser; build_parser(); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    # Rule: `scaletune --help` costs the parser alone; each command imports what it needs.
    assert loaded == "[]"


def test_validate_imports_no_torch():
    loaded = python(
        "import sys; from scaletune.search.cli import main; "
        f"assert main(['validate', {str(QUICKSTART)!r}]) == 0; "
        "print('torch' in sys.modules)"
    )
    # Rule: checking a study file needs its schemas only.
    assert loaded.splitlines()[-1] == "False"


def test_package_names_load_on_first_use():
    import scaletune.heuristics
    import scaletune.search
    import scaletune.trainer
    from scaletune.trainer import TrainConfig, train

    # Rule: the lazy packages keep their public names, each the object its module defines.
    from scaletune.trainer.config import TrainConfig as Defined
    from scaletune.trainer.loop import train as defined_train

    assert (TrainConfig, train) == (Defined, defined_train)
    from scaletune.search import run_study
    from scaletune.search.runner import run_study as defined_run_study

    assert run_study is defined_run_study
    for package in (scaletune.trainer, scaletune.heuristics, scaletune.search):
        for name in package.__all__:
            assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        scaletune.trainer.nothing  # noqa: B018
    # Rule: the errors the functions raise are caught by the names the packages give them.
    from scaletune.search import ConfigError, load_study
    from scaletune.trainer import ConfigError as TrainerConfigError

    assert ConfigError is TrainerConfigError
    with pytest.raises(ConfigError, match="does-not-exist.yaml"):
        load_study("does-not-exist.yaml")


def test_version_names_the_installed_version():
    done = scaletune("--version")
    # Rule: `scaletune --version` prints the package's version (and the code revision in git).
    assert done.returncode == 0, done.stdout
    assert re.fullmatch(
        rf"scaletune {re.escape(importlib.metadata.version('scaletune'))}( \(revision \S+\))?\n",
        done.stdout,
    ), done.stdout


# --------------------------------------------------------------------------- output to a pipe


def test_a_long_line_comes_out_whole_through_a_pipe(tmp_path):
    deep = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "my-study.yaml"
    deep.parent.mkdir(parents=True)
    deep.write_text(QUICKSTART.read_text())
    done = scaletune("validate", str(deep))
    # Rule: a file or a pipe gets each line whole, however long, never wrapped at 80 columns.
    assert done.returncode == 0, done.stdout
    assert len(f"{deep}: ok") > 80
    assert f"{deep}: ok\n" in done.stdout


def test_run_study_called_from_python_writes_whole_lines_to_a_pipe():
    # run_study's, run_ladder's and serve's default console: a trial's line from a script or a
    # notebook was wrapped at 80 columns, where `scaletune run` writes it whole.
    code = ("from scaletune.search import runner\n"
            "runner.make_console().print('trial 1 started: ' + 'lr=0.00496 ' * 12)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "trial 1 started: " + "lr=0.00496 " * 12 + "\n"


def test_the_priors_table_is_not_cut_through_a_pipe():
    done = scaletune("priors", str(QUICKSTART))
    assert done.returncode == 0, done.stdout
    # Rule: no table cell is cut short ("hyperparame…"); every source line is whole.
    assert "…" not in done.stdout
    assert "hyperparameter" in done.stdout and "Step Law eta_opt(N, D)" in done.stdout
    # Rule: what the study searches stands beside the laws' range (a column "search range" gave
    # the laws' own, whatever the study's ranges, choices or fixed values).
    assert "laws' range" in done.stdout and "this study searches" in done.stdout
    assert "choices 1, 2, 4, 8, 16, 32" in done.stdout and "from tau" in done.stdout
    # Rule: so from Python, where print_priors's console was rich's own, cut at 80 columns.
    code = ("from scaletune.heuristics import ModelShape, print_priors, priors_for\n"
            "print_priors(priors_for(ModelShape(n_layer=12, n_head=12, n_embd=768, "
            "block_size=1024, vocab_size=50257), tokens=2.5e9))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "…" not in done.stdout and "Step Law eta_opt(N, D)" in done.stdout


# --------------------------------------------------------------------------- the live view


def finished_trial(number: int, state: TrialState, seconds: float, value: float | None = None,
                   **attrs: object) -> FrozenTrial:
    start = datetime.datetime(2026, 1, 1, 12, 0, 0)
    return FrozenTrial(
        number=number, trial_id=number, state=state, value=value,
        datetime_start=start, datetime_complete=start + datetime.timedelta(seconds=seconds),
        params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-4, 1.0, log=True)},
        user_attrs=dict(attrs), system_attrs={},
        intermediate_values={30_000: value} if value is not None else {},
    )


def a_study(*trials: FrozenTrial) -> optuna.Study:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    for t in trials:
        study.add_trial(t)
    return study


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, soft_wrap=True), out


def test_plain_output_has_a_line_per_evaluation():
    console, out = plain_console()
    progress = StudyProgress(console, load_study(QUICKSTART), a_study())
    with progress:
        progress.started(3, {"lr": 0.00523, "batch_size": 8})
        progress.reported(3, 40_960, 2.87301, {"tokens_per_s": 5000.0})
    # Rule: without a terminal every evaluation is one line: trial, tokens seen, val loss.
    assert "trial 3 at 40,960 tokens: val loss 2.8730\n" in out.getvalue()
    progress.started(4, {})  # a study that fixes every value: it read "trial 4 started: "
    assert ("trial 4 started (nothing searched: the study fixes every value)\n"
            in out.getvalue()), out.getvalue()


def test_failed_trials_queued_again_are_not_counted_as_failed():
    study = a_study(
        finished_trial(0, TrialState.COMPLETE, 60, 2.5),
        finished_trial(1, TrialState.FAIL, 10, retried=True, fail_reason="interrupted (Ctrl-C)"),
        finished_trial(2, TrialState.FAIL, 10, retried=False, fail_reason="out of memory"),
        finished_trial(3, TrialState.PRUNED, 30, 3.1),
    )
    console, out = plain_console()
    progress = StudyProgress(console, load_study(QUICKSTART), study)
    # Rule: a resumed study counts as failed only the failures that count toward n_trials;
    # those queued again will run again.
    assert "done 1  pruned 1  failed 1  running 0" in str(progress.render().renderables[0])

    trial = study.ask()
    trial.set_user_attr("retried", True)
    study.tell(trial, state=TrialState.FAIL)
    progress.finished(trial.number, "FAIL", None, "worker died (queued again)")
    # The same rule for a failure queued again while the study runs, and its line says what
    # became of it (it read "trial 3 fail: worker died (queued again)" above "failed 1").
    assert progress.counts["FAIL"] == 1
    assert f"trial {trial.number} interrupted and queued again: worker died\n" in out.getvalue()


def test_the_live_view_shows_an_eta_once_a_trial_has_finished():
    cfg = load_study(QUICKSTART)  # 16 trials
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    progress = StudyProgress(terminal, cfg, a_study())
    progress.started(0, {"lr": 0.01})
    progress.started(1, {"lr": 0.02})
    # Rule: no ETA before a trial has finished: there is nothing to estimate from.
    assert "ETA" not in str(progress.render().renderables[0])

    study = a_study(finished_trial(0, TrialState.COMPLETE, 60, 2.5),
                    finished_trial(1, TrialState.PRUNED, 120, 3.0))
    progress = StudyProgress(terminal, cfg, study)
    progress.started(2, {"lr": 0.01})
    progress.started(3, {"lr": 0.02})
    # Rule: the trials left (14, two of them just started) at the mean wall time of the
    # finished ones (90 s), over the slots the driver fills (2): 14 * 90 / 2 = 630 s.
    assert progress.eta() == pytest.approx(630, abs=2)
    assert "ETA ~10 min" in str(progress.render().renderables[0])


@pytest.mark.parametrize("stored", ["one by one", "in pairs"])
def test_the_eta_follows_the_rate_trials_end_at_once_enough_have(monkeypatch, stored):
    # Trials of 0.2 s each, handed to their workers in 0.25 s more: an ETA from the trials'
    # own wall times alone said "<10 s" with 14 s left (150 short trials on 2 workers).
    # In pairs: the driver stores results on its own thread and tells the view after; two
    # trials stored before the view heard of the first counted as one end.
    cfg = load_study(QUICKSTART)  # 16 trials
    clock = [1000.0]
    monkeypatch.setattr("scaletune.search.progress.time.time", lambda: clock[0])
    study = a_study()
    progress = StudyProgress(plain_console()[0], cfg, study)
    for number in range(0, 6, 2):  # two at a time, a pair ending every 0.9 s
        progress.started(number, {"lr": 0.01})
        progress.started(number + 1, {"lr": 0.01})
        clock[0] += 0.9
        if stored == "in pairs":
            for n in (number, number + 1):
                study.add_trial(finished_trial(n, TrialState.PRUNED, 0.2, 3.0))
        for n in (number, number + 1):
            if stored == "one by one":
                study.add_trial(finished_trial(n, TrialState.PRUNED, 0.2, 3.0))
            progress.finished(n, "PRUNED", 3.0, "median pruner")
    # Rule: with 2 slots, the last 4 ends (from the end before them: 1.8 s) set the rate, so
    # the 10 trials left take 10 * 1.8 / 4 = 4.5 s; by their wall times, 10 * 0.2 / 2 = 1 s.
    # Rule: once 2 x slots trials have ended, a trial costs the slot time spent per end where
    # that is more than the mean wall time: 2 slots x 2.7 s over 6 ends, 0.9 s, so the 10
    # trials left take 10 * 0.9 / 2 = 4.5 s; by their wall times, 10 * 0.2 / 2 = 1 s.
    assert len(progress.ended_at) == 6
    assert progress.eta() == pytest.approx(4.5)
    # Rule: the ETA does not grow while no trial ends (from the rate of the last ends, it rose
    # by the second).
    clock[0] += 1.0
    assert progress.eta() == pytest.approx(4.5)
    # A failure queued again is not an end that counts: the cost is the same.
    retried = finished_trial(6, TrialState.FAIL, 0.1, retried=True)
    study.add_trial(retried)
    progress.finished(6, "FAIL", None, "worker died (queued again)")
    assert progress.eta() == pytest.approx(4.5)


def test_a_running_trials_eta_follows_its_pace_and_shows_until_it_ends(monkeypatch):
    cfg = load_study(QUICKSTART)  # 16 trials of 300,000 tokens
    clock = [1000.0]
    monkeypatch.setattr("scaletune.search.progress.time.time", lambda: clock[0])
    study = a_study(*(finished_trial(n, TrialState.PRUNED, 10, 3.0) for n in range(15)))
    progress = StudyProgress(plain_console()[0], cfg, study)
    progress.started(15, {"lr": 0.01})
    clock[0] += 30  # a trial slower than the others: 10 s each
    progress.reported(15, 100_000, 2.6, {})
    # Rule: a running trial that has reported has left its pace so far (30 s for 100,000
    # tokens) times the tokens it has still to train: 60 s.
    assert progress.eta() == pytest.approx(60)
    clock[0] += 20  # no report since: it counts down
    assert progress.eta() == pytest.approx(40)
    assert progress.headline().endswith("|  ETA ~40 s")
    # Rule: an ETA is shown until the last trial has ended, even where its estimate has run
    # out (the line of the last running trial had none).
    clock[0] += 100
    assert progress.eta() == 0
    assert progress.headline().endswith("|  ETA <10 s")
    study.add_trial(finished_trial(15, TrialState.COMPLETE, 150, 2.5))
    progress.finished(15, "COMPLETE", 2.5, None)
    assert "ETA" not in progress.headline()


def test_the_live_view_of_hundreds_of_trials_draws_a_screenful():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    progress = StudyProgress(terminal, load_study(QUICKSTART), a_study())
    for number in range(256):
        progress.started(number, {"lr": 0.01})
        progress.reported(number, 1_000 * number, 3.0, {})
    table, more = progress.render().renderables[1:]
    # Rule: a row for each of the SHOWN_ROWS trials furthest along, the others counted below:
    # redrawing 256 rows after every batch of reports kept the trials waiting for answers.
    assert table.row_count == SHOWN_ROWS
    assert table.columns[0]._cells[0] == str(256 - SHOWN_ROWS)
    assert more == f"... and {256 - SHOWN_ROWS} more trials running"


def test_the_live_view_prints_a_burst_of_events_with_one_redraw(monkeypatch):
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=200)
    progress = StudyProgress(terminal, load_study(QUICKSTART), a_study())
    renders = []
    render = progress.render

    class Counted:  # the view as drawn: rich draws it again at every print above it
        def __init__(self) -> None:
            self.view = render()

        def __rich_console__(self, console, options):
            renders.append(1)
            yield self.view

    monkeypatch.setattr(progress, "render", Counted)
    with progress:
        for number in range(40):  # trials starting at once, as on a large cluster
            progress.started(number, {"lr": 0.01})
        during = len(renders)
    # Rule: a burst of events redraws the view once, not once an event (each redraw of a
    # large study's view had held its reports 50-70 ms), and every event line is printed, in
    # order, by the time the view closes.
    assert during <= 2
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # the terminal's styles
    printed = re.findall(r"trial (\d+) started", text)
    assert [int(n) for n in printed] == list(range(40))


def test_the_view_drawn_under_an_event_line_is_the_one_after_that_event():
    # The tally printed under "trial 0 complete" read "done 0 ... best -" until the next report,
    # minutes away on a real model: rich redrew the view it had before the event.
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=200, color_system=None)
    study = a_study()
    with StudyProgress(terminal, load_study(QUICKSTART), study) as progress:
        progress.started(0, {"lr": 0.01})
        time.sleep(0.3)  # the next redraw is due
        study.tell(study.ask(), 3.21)
        progress.finished(0, "COMPLETE", 3.21, None)
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    after = text.split("trial 0 complete: 3.2100", 1)[1]
    assert "done 1  pruned 0  failed 0  running 0" in after.splitlines()[1], after


def test_the_driver_says_why_a_trial_it_did_not_end_is_complete():
    console = Console(file=io.StringIO(), width=300, soft_wrap=True)
    study = optuna.create_study()
    progress = StudyProgress(console, load_study(QUICKSTART), study)
    progress.started(3, {"lr": 0.01})
    study.add_trial(optuna.trial.create_trial(value=1.5))
    progress.finished(3, "COMPLETE", 1.5, "ended outside the driver as COMPLETE (the dashboard)")
    # Rule: the reason follows the value (the line said "complete: 1.5000" and nothing more).
    assert ("trial 3 complete: 1.5000 (ended outside the driver as COMPLETE (the dashboard))"
            in console.file.getvalue())


def test_a_dumb_terminal_gets_the_lines_a_pipe_gets(monkeypatch):
    # TERM=dumb (an editor's shell): rich draws no live view there, and the study showed no
    # evaluation and no tally while it ran.
    monkeypatch.setenv("TERM", "dumb")
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=200, color_system=None)
    assert terminal.is_dumb_terminal
    with StudyProgress(terminal, load_study(QUICKSTART), a_study()) as progress:
        progress.started(0, {"lr": 0.01})
        progress.reported(0, 4_096, 3.5, {})
    assert "trial 0 at 4,096 tokens: val loss 3.5000" in out.getvalue()


def test_a_dumb_terminal_gets_a_console_that_never_wraps_a_line(monkeypatch):
    # TERM=dumb got rich's terminal console, which broke each line at 80 columns (the README
    # promises a dumb terminal the lines a pipe gets).
    from scaletune.trainer.console import WIDTH_NOT_A_TERMINAL, make_console

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setenv("TERM", "dumb")
    console = make_console(stderr=True)
    assert console.is_dumb_terminal
    assert console.soft_wrap and console.width == WIDTH_NOT_A_TERMINAL
    monkeypatch.setenv("TERM", "xterm-256color")
    assert not make_console(stderr=True).soft_wrap


def test_the_live_view_breaks_its_headline_between_parts_and_draws_no_empty_table():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    study = a_study(finished_trial(0, TrialState.COMPLETE, 60, 2.0585))
    progress = StudyProgress(terminal, load_study(QUICKSTART), study)
    progress.started(1, {"lr": 0.01})
    head, table = progress.render().renderables
    # Rule: a headline wider than the terminal is broken at its "|" (the terminal broke it
    # inside "best 2.0585 (trial" / "0)").
    lines = str(head).splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("quickstart  done 1  pruned 0") and lines[0].endswith("of 16")
    assert lines[1].startswith("best 2.0585 (trial 0)  |  ")
    # Rule: with no trial running (the study's end) the view is the headline alone: the
    # table's header stayed on screen above the summary, with no row under it.
    study.add_trial(finished_trial(1, TrialState.PRUNED, 30, 3.0))
    progress.finished(1, "PRUNED", 3.0, "pruned")
    assert len(progress.render().renderables) == 1


# --------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_a_study_ends_with_a_summary_through_a_pipe(tmp_path, shakespeare):
    raw = tiny_study(tmp_path, shakespeare, n_trials=3)
    # 20,000 held-out tokens, fewer than 640 windows of 33 cover: the run says so first.
    raw["data"]["val_windows"] = 640
    path = write_study(tmp_path, raw)
    done = scaletune("run", str(path), timeout=600)
    out = done.stdout
    assert done.returncode == 0, out
    cfg = validate_study(raw)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    best = study.best_trial
    summary = summarize(study, cfg)
    lines = out.splitlines()

    notes = [ln for ln in lines if ln.startswith("note: data: the validation split holds 20,000 "
                                                 "tokens")]
    assert len(notes) == 1 and lines.index(notes[0]) < lines.index(
        next(ln for ln in lines if ln.startswith("trial 0 started"))), out
    # Rule: no notices from the libraries: Optuna's study creation, Ray's token authentication.
    assert "A new study created" not in out
    assert "Token authentication is enabled" not in out
    # Rule: every evaluation of a trial is a line (a complete trial reports at every grid point).
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            evals = [ln for ln in lines if ln.startswith(f"trial {t.number} at ")]
            assert len(evals) == len(t.intermediate_values), out
    # Rule: the summary names the best trial (the line the README shows), its params as the
    # hyperparameter table prints them, the trials by state, compute and what pruning saved,
    # where the study lives (masked) and the commands that come next; no 16-digit floats.
    # And what token frequencies alone score: a loss to read it against.
    assert (f"best trial {best.number}: val loss {best.value:.4f} (token frequencies alone: "
            f"{summary['unigram_loss']:.4f})") in lines
    # This tiny study's trials barely learn more than those (about 3.32 against 3.32): the
    # summary says so exactly where its best loss is within 3% of them.
    assert ("note: the best loss is" in out) == frequencies_only(best.value,
                                                               summary["unigram_loss"]), out
    assert f"  params   {fmt_params(best.params)}" in lines
    n_complete = sum(t.state == TrialState.COMPLETE for t in study.trials)
    assert any(ln.startswith(f"  trials   {n_complete} complete") for ln in lines), out
    assert f"{summary['compute']['tokens_trained']:,} tokens" in out
    assert f"pruning saved {summary['pruning']['tokens_saved']:,} tokens" in out
    # Long lines (the storage URL in a deep temporary folder) come out whole.
    assert f"  study    {cfg.name} in {mask_url(cfg.storage_url)}" in lines
    assert f"scaletune dashboard {path}" in out
    assert f"scaletune report {path} -o {cfg.folder / 'report'}" in out
    assert f"scaletune export {path} --tokens " in out
    # Rule: the export it suggests carries exactly 10x a trial's tokens (8.19e4 was 9.9976x).
    from scaletune.trainer.config import whole_count
    suggested = re.search(r"scaletune export \S+ --tokens (\S+)", out).group(1)
    assert whole_count(suggested) == 10 * cfg.tokens_per_trial, suggested
    assert not re.search(r"\d\.\d{8,}", out), out


@pytest.mark.parametrize("command", ["run", "show", "report"])
def test_a_training_config_given_to_a_study_command_says_to_train_it(tmp_path, command, capsys):
    from scaletune.search.cli import main

    # What `scaletune export` writes: a token budget, no trials.
    path = tmp_path / "final.yaml"
    path.write_text("model: {n_layer: 2, n_head: 2, n_embd: 32, block_size: 32}\n"
                    "optim: {lr: 0.003}\ntokens: 2M\nbatch_size: 8\n")
    assert main([command, str(path)] + (["-o", str(tmp_path / "r")] if command == "report"
                                        else [])) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "1 error(s)" in out and "unknown key" not in out and "Field required" not in out
    assert (f"a training config (optim, tokens, batch_size; no n_trials or tokens_per_trial), "
            f"not a study file: train it with `scaletune train {path}`") in out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r").exists()
    # validate tells the two apart and checks each as what it is.
    assert main(["validate", str(path), str(QUICKSTART)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ok (training config)" in out and f"{QUICKSTART}: ok" in out
    # A training config with its budget misspelt is one: its one error, not a study's 19.
    typo = tmp_path / "typo.yaml"
    typo.write_text(path.read_text().replace("tokens:", "tokenz:"))
    assert main(["validate", str(typo)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert f"1 error(s) in {typo}: tokenz: unknown key" in out and "did you mean tokens?" in out
    # A study file that names its budget as a training config does is a study with a bad key.
    study = tmp_path / "study.yaml"
    study.write_text(QUICKSTART.read_text().replace("tokens_per_trial:", "tokens:"))
    assert main([command, str(study)] + (["-o", str(tmp_path / "r")] if command == "report"
                                         else [])) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "tokens: unknown key" in out and "tokens_per_trial: Field required" in out
    assert "scaletune train" not in out


def test_a_validation_split_too_small_for_its_windows_is_noted_before_a_run(
        tmp_path, shakespeare, capsys):
    from scaletune.search.cli import main

    # 3,000 bytes: 300 held out, where 64 windows of 65 tokens would cover 4,160.
    raw = tiny_study(tmp_path, shakespeare, model={"n_layer": 1, "n_head": 2, "n_embd": 32,
                                                   "block_size": 64})
    (tmp_path / "corpus.txt").write_bytes(shakespeare.read_bytes()[:3_000])
    raw["data"]["val_windows"] = 64
    path = write_study(tmp_path, raw)
    note = ("note: data: the validation split holds 300 tokens (val_fraction 0.1 of the data), "
            "fewer than its 64 windows of block_size + 1 = 65 tokens would cover (4,160)")
    assert main(["validate", str(path)]) == 0
    assert note in " ".join(capsys.readouterr().out.split())
    assert main(["run", str(path), "--dry-run"]) == 0
    assert note in " ".join(capsys.readouterr().out.split())
    # The quickstart's 46,627 held-out tokens cover its 64 windows of 65: no note.
    assert main(["validate", str(QUICKSTART)]) == 0
    assert "validation split" not in capsys.readouterr().out
    # A train_tokens above the 2,700 training tokens caps nothing: said too (it was silent).
    raw["data"]["train_tokens"] = 5_000
    assert main(["validate", str(write_study(tmp_path, raw))]) == 0
    assert ("note: data.train_tokens: 5,000 is more than the data's 2,700 training tokens" in
            " ".join(capsys.readouterr().out.split()))


def test_an_export_says_how_to_train_on_one_machine_or_several():
    from scaletune.search.cli import run_commands

    lines = run_commands("my runs/final.yaml")
    # The path is quoted for a shell; every node runs the same command but for its node rank.
    assert lines[0] == "train it with:  scaletune train 'my runs/final.yaml'"
    assert lines[1].endswith("scaletune train 'my runs/final.yaml' --nproc-per-node N")
    assert lines[3].strip() == ("scaletune train 'my runs/final.yaml' --nproc-per-node N --nnodes M "
                                "--node-rank R --rdzv-endpoint NODE0:29500")
    # The processes share the batch in equal parts: the lines say so, and a batch of 1, which
    # no launch of several processes takes, gets no such command (it was told to run on N GPUs).
    lines = run_commands("final.yaml", batch_size=48)
    assert lines[1].endswith("--nproc-per-node N   # N divides batch_size 48")
    assert "N x M divides batch_size 48" in lines[2]
    lines = run_commands("final.yaml", batch_size=1)
    assert not any("--nproc-per-node" in line for line in lines)
    assert "batch_size 1 cannot be shared between processes" in lines[1]


def test_a_ctrl_c_after_the_command_is_done_quits_at_once_without_a_traceback(tmp_path):
    # A second Ctrl-C landed while the interpreter joined the threads a study left (the storage
    # thread's last write) and printed a KeyboardInterrupt traceback from threading.
    import signal
    import subprocess

    code = (
        "import os, signal, sys, threading, time\n"
        "from scaletune.search.cli import entry\n"
        "threading.Thread(target=time.sleep, args=(3,)).start()  # joined at exit\n"
        f"sys.argv = ['scaletune', 'validate', {str(tmp_path / 'missing.yaml')!r}]\n"
        "code = entry()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(1)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGINT, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


def test_a_ctrl_c_as_the_command_starts_is_a_line_not_a_traceback(tmp_path):
    # A Ctrl-C in the first half second, as the parser's imports ran, printed the traceback of
    # the import it landed in (45 lines), the process killed by SIGINT.
    import subprocess

    code = (
        "import sys\n"
        "import scaletune.search.cli as cli\n"
        "def build_parser():\n"
        "    raise KeyboardInterrupt  # a Ctrl-C's, in the middle of its imports\n"
        "cli.build_parser = build_parser\n"
        f"sys.argv = ['scaletune', 'run', {str(tmp_path / 'study.yaml')!r}]\n"
        "sys.exit(cli.entry())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "scaletune run: interrupted\n", done.stderr


def test_the_exit_leaves_the_commands_objects_to_the_process_end(tmp_path):
    # The interpreter's last garbage collections walked every object torch, Ray and optuna had
    # made: 0.5 s at the end of `scaletune run`. The command's output still arrives whole.
    import subprocess

    code = (
        "import gc, sys\n"
        "import torch  # what a study's command holds\n"
        "from scaletune.search.cli import entry\n"
        f"sys.argv = ['scaletune', 'validate', {str(tmp_path / 'missing.yaml')!r}]\n"
        "code = entry()\n"
        "print('frozen', gc.get_freeze_count() > 10_000, flush=True)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "missing.yaml" in done.stderr and "frozen True" in done.stdout, done.stdout


def test_a_terminal_that_is_not_utf8_gets_the_message_not_a_unicode_error(tmp_path):
    # PYTHONIOENCODING=ascii (or a latin-1 locale): a character it cannot print crashed the
    # command with UnicodeEncodeError, where it had a message to give.
    import os
    import subprocess

    missing = tmp_path / "étude.yaml"
    done = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "validate", str(missing)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 2, done.stderr
    assert "UnicodeEncodeError" not in done.stderr
    assert f"{tmp_path}/?tude.yaml:" in done.stderr and "file not found" in done.stderr


@pytest.mark.parametrize("argv, refused, meant", [
    (["rnu", "study.yaml"], "invalid choice: 'rnu' (choose from 'run', ", "run"),
    (["run", "--dryrun", "study.yaml"], "unrecognized arguments: --dryrun", "--dry-run"),
    (["export", "--modle", "n_embd=64", "study.yaml", "-o", "final.yaml"],
     "unrecognized arguments: --modle", "--model"),
    # Before the command: argparse took it as the command's and said "required: command".
    (["--verison"], "scaletune: error: unrecognized arguments: --verison", "--version"),
])
def test_a_misspelt_command_or_option_is_answered_with_the_one_meant(argv, refused, meant,
                                                                     capsys):
    # argparse (Python 3.11) names what it refused and lists the commands, but suggests none,
    # where a study file's misspelt key gets "did you mean".
    from scaletune.search.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and refused in err, err
    assert err.endswith(f"; did you mean {meant}?"), err
    with pytest.raises(SystemExit):
        main(["zzzz"])
    assert "did you mean" not in capsys.readouterr().err  # nothing close: nothing suggested


@pytest.mark.parametrize("argv, said", [
    (["run", ""], "argument study: an empty string (\"\"), where the command reads a file's path"),
    (["show", ""], "argument study: an empty string (\"\"), where the command reads a file's "
     "path or a study's name"),
    (["validate", "a.yaml", ""], "argument studies: an empty string"),
    (["train", ""], "argument config: an empty string"),
])
def test_an_empty_path_is_refused_by_name(argv, said, capsys, tmp_path, monkeypatch):
    # An empty argument (a shell variable never set) read as the current folder: "1 error(s)
    # in .: cannot read the file: Is a directory".
    from scaletune.search.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = " ".join(capsys.readouterr().err.split())
    assert e.value.code == 2 and f"scaletune {argv[0]}: error: {said}" in err, err
    assert not list(tmp_path.iterdir())  # nothing written


def test_output_to_a_device_that_takes_nothing_is_one_line(tmp_path, shakespeare):
    # `> /dev/full`: a 29-line traceback from rich, from every command.
    import subprocess
    import sys

    from tests.search.helpers import tiny_study, write_study

    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "validate",
                               str(path)], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert done.returncode == 1
    assert done.stderr == ("scaletune validate: cannot write its output: No space left on device "
                           "(its standard output is a full disk, or a device that takes "
                           "nothing)\n")


def test_options_are_taken_by_a_prefix_and_where_they_go_is_said(tmp_path, capsys):
    from scaletune.search.cli import build_parser, main

    # A prefix of an option with two spellings (--nproc-per-node, --nproc_per_node) is that
    # option: argparse (3.11) refused it as ambiguous between them.
    args = build_parser().parse_args(["train", "final.yaml", "--nproc", "2"])
    assert args.nproc_per_node == 2
    with pytest.raises(SystemExit) as e:  # a prefix of two options stays ambiguous
        build_parser().parse_args(["train", "final.yaml", "--r"])
    assert e.value.code == 2 and "ambiguous option: --r could match" in capsys.readouterr().err
    # --version after a command: where it goes.
    with pytest.raises(SystemExit):
        main(["show", "study.yaml", "--version"])
    assert capsys.readouterr().err.strip().endswith(
        "unrecognized arguments: --version; --version goes before the command: "
        "scaletune --version")
    with pytest.raises(SystemExit) as e:  # a prefix of --version before the command is it
        main(["--vers"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("scaletune ")


def test_a_storage_that_failed_is_said_in_its_own_lines_not_as_errors_in_a_file(capsys):
    from scaletune.search.cli import _errors
    from scaletune.trainer.errors import StorageError

    # A study stopped as it ran read "1 error(s) in sqlite:///...:", as a file that does not
    # validate does.
    assert _errors(StorageError("sqlite:////x/study.db", ["the study stopped: ..."])) == 2
    assert capsys.readouterr().err == "sqlite:////x/study.db: the study stopped: ...\n"
    assert _errors(StorageError("storage", ["storage: foo.db is not a storage URL"])) == 2
    assert capsys.readouterr().err == "storage: foo.db is not a storage URL\n"


def test_validate_says_of_a_training_config_what_train_refuses_or_notes(tmp_path, shakespeare,
                                                                        capsys):
    import torch

    from scaletune.search.cli import main

    corpus = tmp_path / "small.txt"
    corpus.write_bytes(shakespeare.read_bytes()[:20_000])
    path = tmp_path / "final.yaml"
    path.write_text("model: {n_layer: 1, n_head: 2, n_embd: 32, block_size: 32}\n"
                    f"data: {{source: text, path: {corpus}, tokenizer: byte, val_windows: 5000}}\n"
                    "optim: {lr: 0.003}\ntokens: 2M\nbatch_size: 8\n"
                    + ("device: cuda\n" if not torch.cuda.is_available() else ""))
    # Each said "ok" alone: train then refused the device, and noted the split.
    assert main(["validate", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("note: data: the validation split holds 2,000 tokens (val_fraction 0.1 of the data), "
            "fewer than its 5000 windows") in out, out
    assert "the val loss of each evaluation rests on those 2,000 tokens alone" in out
    if not torch.cuda.is_available():
        assert ("note: device: cuda, but torch sees no CUDA GPU here" in out
                and "(`scaletune train` refuses it on this machine)" in out), out
