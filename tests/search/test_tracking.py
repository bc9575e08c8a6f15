"""Tracking: each trial's curve and config in TensorBoard, and Optuna's W&B / MLflow callbacks,
all written by the driver (search.tracking, hooked into search.runner)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import warnings

import optuna
import pytest
import ray
from optuna.trial import TrialState
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from scaletune.search import tracking
from scaletune.search.cli import main
from scaletune.search.config import validate_study
from scaletune.search.runner import preflight, run_study
from scaletune.search.tracking import Integration, Tracker, missing_packages
from scaletune.trainer.errors import ConfigError
from tests.search.helpers import tiny_study, write_study


def study_cfg(tmp_path, shakespeare, **tracking_section):
    return validate_study(tiny_study(tmp_path, shakespeare, tracking=tracking_section))


def board(cfg, number: int) -> EventAccumulator:
    acc = EventAccumulator(str(cfg.folder / "tensorboard" / f"trial-{number}"))
    acc.Reload()
    return acc


def curve(acc: EventAccumulator, tag: str = "val_loss") -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def hparams_row(acc: EventAccumulator) -> dict[str, object]:
    """The HPARAMS values a run holds, as TensorBoard's hparams plugin reads them."""
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    info = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG])
    return {k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


def ask(study: optuna.Study, lr: float, tracker: Tracker | None = None) -> optuna.Trial:
    """A trial as SearchPlan.ask leaves it (params suggested, derived values as user attrs),
    started as the driver starts it, then given the worker's attrs."""
    trial = study.ask()
    trial.suggest_float("lr", lr, lr)
    trial.suggest_categorical("batch_size", [8, 16])
    trial.set_user_attr("weight_decay", 0.01)
    trial.set_user_attr("steps", 80)
    if tracker is not None:
        tracker.started(trial)
    trial.set_user_attr("worker_hostname", "node-1")
    trial.set_user_attr("worker_pid", 4242)
    return trial


# --------------------------------------------------------------------------- the study file


def test_tracking_is_off_unless_the_study_file_turns_it_on(tmp_path, shakespeare):
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    assert not cfg.tracking.tensorboard and cfg.tracking.wandb is None and cfg.tracking.mlflow is None
    assert not Tracker(cfg).enabled


def test_tracking_does_not_change_the_study_fingerprint(tmp_path, shakespeare):
    # A study resumes with tracking turned on or off: it does not change what trials train.
    plain = validate_study(tiny_study(tmp_path, shakespeare))
    tracked = study_cfg(tmp_path, shakespeare, tensorboard=True, mlflow={"experiment": "x"})
    assert tracked.fingerprint() == plain.fingerprint()


def test_an_unknown_tracking_key_is_refused_by_name(tmp_path, shakespeare):
    with pytest.raises(ConfigError) as e:
        study_cfg(tmp_path, shakespeare, tensorbord=True)
    assert "tracking" in str(e.value) and "tensorbord" in str(e.value)


def test_wandb_needs_a_project(tmp_path, shakespeare):
    with pytest.raises(ConfigError, match="tracking.wandb.project"):
        study_cfg(tmp_path, shakespeare, wandb={"entity": "me"})
    # A name W&B refuses, and an empty MLflow URI (its file store): validate said ok, and no
    # trial was logged.
    with pytest.raises(ConfigError, match=re.escape(
            "tracking.wandb.project: a W&B project name cannot hold '#', '%', '/', '?'")):
        study_cfg(tmp_path, shakespeare, wandb={"project": "my/proj#?% x"})
    with pytest.raises(ConfigError, match="tracking.wandb.project: a W&B project name has at most "
                                          "128 characters, and this one 200"):
        study_cfg(tmp_path, shakespeare, wandb={"project": "p" * 200})
    with pytest.raises(ConfigError, match="tracking.mlflow.tracking_uri: must not be empty"):
        study_cfg(tmp_path, shakespeare, mlflow={"tracking_uri": ""})
    assert study_cfg(tmp_path, shakespeare, wandb={"project": "gpt-2 small_v1.0"}).tracking
    # A study's record that ran with them still reads (show, report, export of that study).
    ran = tiny_study(tmp_path, shakespeare, tracking={"wandb": {"project": "team/proj"},
                                                      "mlflow": {"tracking_uri": ""}})
    record = validate_study(ran, recorded=True)
    assert record.tracking.wandb.project == "team/proj"
    assert record.tracking.mlflow.tracking_uri == ""


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name, section, packages", [
    ("wandb", {"project": "p"}, ("optuna_integration", "wandb")),
    ("mlflow", {}, ("optuna_integration", "mlflow")),
])
def test_an_integration_whose_packages_are_missing_is_refused_with_its_extra(
        tmp_path, shakespeare, monkeypatch, name, section, packages):
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    cfg = study_cfg(tmp_path, shakespeare, **{name: section})
    # The rule: one line naming the key and the extra to install.
    [line] = missing_packages(cfg.tracking)
    assert line.startswith(f"tracking.{name}: ") and "\n" not in line
    assert line.endswith(f'pip install "scaletune[{name}]"')


def test_tensorboard_missing_is_refused_with_its_extra(tmp_path, shakespeare, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    assert missing_packages(cfg.tracking) == [
        'tracking.tensorboard: tensorboard is not installed: pip install "scaletune[tensorboard]"']


def test_a_study_with_a_missing_tracker_is_refused_before_ray_starts(tmp_path, shakespeare,
                                                                    monkeypatch):
    monkeypatch.setitem(tracking.INTEGRATIONS, "wandb",
                        Integration(("scaletune_no_such_module",), lambda *a: None))
    cfg = study_cfg(tmp_path, shakespeare, wandb={"project": "p"})
    if ray.is_initialized():
        pytest.skip("Ray already runs in this process")
    with pytest.raises(ConfigError, match=r'pip install "scaletune\[wandb\]"'):
        run_study(cfg)
    assert not ray.is_initialized()
    assert not cfg.folder.exists()  # a refused study leaves nothing behind
    with pytest.raises(ConfigError, match=r"tracking\.wandb: scaletune-no-such-module is not"):
        preflight(cfg)


def test_a_callback_that_cannot_be_built_refuses_the_study_naming_its_key(tmp_path, shakespeare,
                                                                         monkeypatch):
    def unreachable(section, study_name):
        raise ConnectionError("no server at http://mlflow:5000")

    monkeypatch.setitem(tracking.INTEGRATIONS, "mlflow", Integration((), unreachable))
    cfg = study_cfg(tmp_path, shakespeare, mlflow={"tracking_uri": "http://mlflow:5000"})
    with pytest.raises(ConfigError, match="tracking.mlflow: ConnectionError: no server"):
        Tracker(cfg)


def test_the_real_mlflow_refuses_a_server_that_does_not_answer_and_a_plain_folder(
        tmp_path, shakespeare, monkeypatch, capsys):
    import os
    import socket
    import time

    for name in ("MLFLOW_ALLOW_FILE_STORE", *tracking.MLFLOW_PATIENCE):  # restored after
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for uri, says in [(f"http://127.0.0.1:{port}", "Connection refused"),
                      (str(tmp_path / "mlruns"), "filesystem tracking backend")]:
        cfg = study_cfg(tmp_path, shakespeare, mlflow={"tracking_uri": uri})
        start = time.perf_counter()
        with pytest.raises(ConfigError) as err:
            Tracker(cfg)
        # Rule: refused before the study, on one line naming the key and MLflow's reason (with
        # MLflow's defaults a dead server held the driver for minutes at every trial's end).
        [line] = err.value.errors
        assert line.startswith("tracking.mlflow: MlflowException: ") and says in line, line
        assert time.perf_counter() - start < 60
    # Rule: validate and the dry run find it too, without logging anything (both said ok).
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare,
                                            tracking={"mlflow": {"tracking_uri": "mlruns"}}))
    for command in (["validate", str(path)], ["run", str(path), "--dry-run"]):
        assert main(command) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert "tracking.mlflow: MlflowException: " in out and "filesystem tracking" in out, out
    assert not (tmp_path / "mlruns").exists()
    # An SQLite database MLflow creates at the first trial: validate made it (and its tables).
    path = write_study(tmp_path, tiny_study(
        tmp_path, shakespeare, tracking={"mlflow": {"tracking_uri": "sqlite:///mlflow.db"}}))
    assert main(["validate", str(path)]) == 0
    assert not (tmp_path / "mlflow.db").exists()
    # The study's own calls get MLflow's retries and timeouts cut, unless the user set them.
    Tracker(study_cfg(tmp_path, shakespeare, mlflow={"tracking_uri": "sqlite:///mlflow.db"}))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == tracking.MLFLOW_PATIENCE[
        "MLFLOW_HTTP_REQUEST_TIMEOUT"]


def test_mlflow_without_a_tracking_uri_checks_mlflows_own(tmp_path, shakespeare, monkeypatch,
                                                          capsys):
    # tracking_uri left out is MLflow's own (MLFLOW_TRACKING_URI): validate said
    # "AttributeError: 'NoneType' object has no attribute 'startswith'".
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, tracking={"mlflow": {}}))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    # ... and that one is checked as a given one is: a folder MLflow 3 refuses.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert main(["validate", str(path)]) == 2
    assert "filesystem tracking" in " ".join(capsys.readouterr().err.split())
    # An empty experiment name, which MLflow refuses at the first trial, is refused up front.
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare,
                                            tracking={"mlflow": {"experiment": ""}}))
    assert main(["validate", str(path)]) == 2
    assert "tracking.mlflow.experiment: must not be empty" in capsys.readouterr().err


def test_an_mlflow_database_is_checked_without_writing_it(tmp_path, shakespeare, capsys):
    import sqlite3

    def validate(uri: str) -> tuple[int, str]:
        path = write_study(tmp_path, tiny_study(
            tmp_path, shakespeare, tracking={"mlflow": {"tracking_uri": uri}}))
        code = main(["validate", str(path)])
        return code, " ".join(capsys.readouterr().err.split())

    # A database of something else: MLflow's probe wrote its 70 tables (1 MB) into it.
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    before = other.read_bytes()
    code, err = validate(f"sqlite:///{other}")
    assert code == 2, err
    assert f"tracking.mlflow: tracking_uri: {other} holds the tables of something else (t)" in err
    assert other.read_bytes() == before
    # The study's own storage: every trial's log failed, and MLflow's tables went into it.
    study_db = tmp_path / "study" / "study.db"
    code, err = validate(f"sqlite:///{study_db}")
    assert code == 2 and f"tracking_uri: {study_db} is the study's own storage" in err, err
    # A folder the launch makes (the study's): validate refused what run accepted.
    code, err = validate(f"sqlite:///{tmp_path / 'study' / 'mlflow.db'}")
    assert code == 0, err
    assert not (tmp_path / "study").exists()


# --------------------------------------------------------------------------- TensorBoard


def test_each_trial_is_a_run_with_its_curve_by_tokens_and_its_hparams(tmp_path, shakespeare):
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    tracker = Tracker(cfg)
    study = optuna.create_study()
    trial = ask(study, lr=3e-3, tracker=tracker)
    for tokens, loss in ((8_192, 3.0), (16_384, 2.5), (24_576, 2.2)):
        tracker.reported(trial.number, tokens, loss, {"train_loss": loss + 0.1, "lr": 1e-3})
    trial.set_user_attr("tokens_seen", 24_576)
    trial.set_user_attr("tokens_per_s", 1e5)
    study.tell(trial, 2.2)
    tracker.finished(study, trial.number)

    acc = board(cfg, 0)
    # The x axis is tokens seen; every report is a point.
    assert curve(acc) == [(8_192, 3.0), (16_384, 2.5), (24_576, pytest.approx(2.2))]
    assert [s for s, _ in curve(acc, "train_loss")] == [8_192, 16_384, 24_576]
    # The objective and what the trial did are scalars at its last tokens: metric columns.
    assert curve(acc, "value") == [(24_576, pytest.approx(2.2))]
    assert curve(acc, "tokens_per_s") == [(24_576, 1e5)]
    assert "lr" not in acc.Tags()["scalars"]  # the lr column is the searched one
    row = hparams_row(acc)
    # Params, derived values and the state are columns; what the trial did is not.
    assert row == {"lr": pytest.approx(3e-3), "batch_size": row["batch_size"],
                   "weight_decay": pytest.approx(0.01), "steps": 80, "state": "COMPLETE"}
    assert row["batch_size"] in (8, 16)
    text = acc.Tensors("trial/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| worker_hostname | node-1 |" in text and "| state | COMPLETE |" in text


def test_a_pruned_trial_has_its_state_and_no_final_loss(tmp_path, shakespeare):
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    tracker = Tracker(cfg)
    study = optuna.create_study()
    trial = ask(study, lr=3e-2, tracker=tracker)
    tracker.reported(trial.number, 8_192, 4.0, {})
    tracker.reported(trial.number, 16_384, math.inf, {})  # diverged: no point off the chart
    trial.set_user_attr("final_val_loss", math.inf)
    trial.set_user_attr("prune_reason", "diverged: non-finite validation loss")
    study.tell(trial, state=TrialState.PRUNED)
    tracker.finished(study, trial.number)

    acc = board(cfg, 0)
    assert curve(acc) == [(8_192, 4.0)]
    assert {"value", "final_val_loss"}.isdisjoint(acc.Tags()["scalars"])
    assert hparams_row(acc)["state"] == "PRUNED"


def test_a_trial_that_failed_before_reporting_still_gets_its_run(tmp_path, shakespeare):
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    tracker = Tracker(cfg)
    study = optuna.create_study()
    trial = ask(study, lr=1e-3, tracker=tracker)
    trial.set_user_attr("fail_reason", "worker died: WorkerCrashedError")
    study.tell(trial, state=TrialState.FAIL)
    tracker.finished(study, trial.number)
    assert hparams_row(board(cfg, 0))["state"] == "FAIL"


def test_runs_close_when_their_trial_ends_and_the_rest_when_the_study_stops(tmp_path, shakespeare):
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    tracker = Tracker(cfg)
    study = optuna.create_study()
    first, second = ask(study, lr=1e-3, tracker=tracker), ask(study, lr=2e-3, tracker=tracker)
    tracker.reported(first.number, 8_192, 3.0, {})
    tracker.reported(second.number, 8_192, 3.1, {})
    study.tell(first, 3.0)
    tracker.finished(study, first.number)
    # The rule: a trial's writer lives from its first report to its end, no longer.
    assert list(tracker._writers) == [second.number]
    tracker.close()  # the study stopped (Ctrl-C) while the second trial ran
    assert tracker._writers == {}
    assert curve(board(cfg, second.number)) == [(8_192, pytest.approx(3.1))]


def test_reports_are_buffered_not_flushed_each_time(tmp_path, shakespeare, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    flushes = []
    monkeypatch.setattr(SummaryWriter, "flush", lambda self: flushes.append(self))
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    tracker = Tracker(cfg)
    for i in range(20):
        tracker.reported(0, 8_192 * (i + 1), 3.0 - i / 100, {})
    assert flushes == []
    tracker.close()


# --------------------------------------------------------------------------- W&B and MLflow


class FakeCallback:
    """Stands in for an optuna_integration callback: records what the driver hands it."""

    def __init__(self, section, study_name: str, calls: list) -> None:
        self.section, self.study_name, self.calls = section, study_name, calls

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        stored = study.get_trials(deepcopy=False)[trial.number].state  # what the storage says
        self.calls.append((self.study_name, study, trial, stored))


class FailingCallback:
    """A callback whose server cannot be reached."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        raise ConnectionError("api.wandb.ai unreachable")


def fake_integrations(monkeypatch, calls: list, fail: str | None = None) -> dict:
    """Both integrations replaced, through the table the Tracker builds them from, by fakes that
    need no package; ``fail`` names one whose calls raise."""
    built = {}

    def factory(name):
        def build(section, study_name):
            if name == fail:
                return FailingCallback()
            built[name] = FakeCallback(section, study_name, calls)
            return built[name]
        return build

    for name in ("wandb", "mlflow"):
        monkeypatch.setitem(tracking.INTEGRATIONS, name, Integration((), factory(name)))
    return built


def test_callbacks_get_the_study_and_each_trial_as_told(tmp_path, shakespeare, monkeypatch):
    calls: list = []
    built = fake_integrations(monkeypatch, calls)
    cfg = study_cfg(tmp_path, shakespeare, wandb={"project": "gpt", "entity": "me"},
                    mlflow={"experiment": "sweeps"})
    tracker = Tracker(cfg)
    # Each callback is built from its own section and the study's name.
    assert built["wandb"].section.project == "gpt" and built["wandb"].study_name == "tiny"
    assert built["mlflow"].section.experiment == "sweeps"
    study = optuna.create_study(study_name="tiny")
    trial = ask(study, lr=3e-3)
    study.tell(trial, 2.5)
    tracker.finished(study, trial.number)
    # As study.optimize calls them: (study, frozen_trial), after the trial is told, once each.
    assert len(calls) == 2
    for _, seen_study, frozen, stored in calls:
        assert seen_study is study
        assert isinstance(frozen, optuna.trial.FrozenTrial) and frozen.number == trial.number
        assert frozen.state == stored == TrialState.COMPLETE and frozen.value == 2.5
        assert frozen.params["lr"] == pytest.approx(3e-3)
        assert frozen.user_attrs["weight_decay"] == 0.01


def test_a_failing_callback_is_reported_and_the_study_goes_on(tmp_path, shakespeare, monkeypatch):
    calls: list = []
    fake_integrations(monkeypatch, calls, fail="wandb")
    cfg = study_cfg(tmp_path, shakespeare, wandb={"project": "gpt"}, mlflow={})
    out = io.StringIO()
    tracker = Tracker(cfg, Console(file=out, width=200))
    study = optuna.create_study()
    trial = ask(study, lr=3e-3)
    study.tell(trial, 2.5)
    tracker.finished(study, trial.number)
    assert "tracking.wandb: trial 0 was not logged: ConnectionError" in out.getvalue()
    assert len(calls) == 1  # mlflow's still ran


def test_a_tensorboard_run_that_cannot_be_written_is_reported_and_the_study_goes_on(
        tmp_path, shakespeare):
    # A file where the trials' runs go (a full disk, a read-only folder alike): the driver
    # stopped on a NotADirectoryError traceback at the first evaluation, though tracking is
    # not to stop a study.
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    cfg.folder.mkdir(parents=True)
    (cfg.folder / "tensorboard").write_text("not a folder\n")
    out = io.StringIO()
    tracker = Tracker(cfg, Console(file=out, width=300))
    study = optuna.create_study()
    trial = ask(study, lr=3e-3, tracker=tracker)
    for tokens in (8_192, 16_384):
        tracker.reported(trial.number, tokens, 3.0, {})
    study.tell(trial, 2.5)
    tracker.finished(study, trial.number)
    tracker.close()
    # A trial that ends before it reported: its run is first made at its end, and fails there.
    quiet = ask(study, lr=2e-3, tracker=tracker)
    study.tell(quiet, state=TrialState.FAIL)
    tracker.finished(study, quiet.number)
    said = out.getvalue()
    assert said.count("tracking.tensorboard: trial 0 was not logged: NotADirectoryError") == 1
    assert said.count("tracking.tensorboard: trial 1 was not logged: NotADirectoryError") == 1
    # Once the folder is there again, the next trial is logged.
    (cfg.folder / "tensorboard").unlink()
    trial = ask(study, lr=1e-3, tracker=tracker)
    tracker.reported(trial.number, 8_192, 2.9, {})
    study.tell(trial, 2.9)
    tracker.finished(study, trial.number)
    assert curve(board(cfg, 2)) == [(8_192, pytest.approx(2.9))]


def test_a_new_study_sets_aside_the_tensorboard_runs_of_a_deleted_one_of_its_name(
        tmp_path, shakespeare):
    # After `scaletune delete`, a new study of the same name wrote its trial 0 into the old
    # trial-0 run: two curves, and the old trial's HPARAMS row.
    cfg = study_cfg(tmp_path, shakespeare, tensorboard=True)
    old = Tracker(cfg)
    study = optuna.create_study()
    trial = ask(study, lr=3e-3, tracker=old)
    old.reported(trial.number, 8_192, 3.0, {})
    study.tell(trial, 3.0)
    old.finished(study, trial.number)
    out = io.StringIO()
    again = Tracker(cfg, Console(file=out, width=300))
    again.opened(study)  # the same study, resumed: its runs stay
    assert (cfg.folder / "tensorboard" / "trial-0").is_dir() and out.getvalue() == ""
    fresh = optuna.create_study()
    fresh.enqueue_trial({"lr": 1e-3})  # a new study's first trial, queued
    again.opened(fresh)
    kept = cfg.folder / "tensorboard.earlier-1"
    assert (kept / "trial-0").is_dir() and not (cfg.folder / "tensorboard").exists()
    assert (f"tracking.tensorboard: the runs in {cfg.folder / 'tensorboard'} are of an earlier "
            f"study of this name (deleted); kept as {kept}") in " ".join(out.getvalue().split())
    trial = ask(fresh, lr=1e-3, tracker=again)
    again.reported(trial.number, 8_192, 2.5, {})
    fresh.tell(trial, 2.5)
    again.finished(fresh, trial.number)
    assert curve(board(cfg, 0)) == [(8_192, pytest.approx(2.5))]  # its own curve alone


# --------------------------------------------------------------------------- a real study


@pytest.mark.slow
def test_a_study_writes_each_trial_to_tensorboard_and_calls_back_in_order(
        tmp_path, shakespeare, monkeypatch):
    calls: list = []
    fake_integrations(monkeypatch, calls)
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=3,
                                    tracking={"tensorboard": True, "wandb": {"project": "gpt"}}))
    try:
        study = run_study(cfg, Console(file=io.StringIO()))
    finally:
        ray.shutdown()
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)
    # One run per trial, no other.
    runs = sorted(p.name for p in (cfg.folder / "tensorboard").iterdir())
    assert runs == [f"trial-{t.number}" for t in trials]
    every = cfg.eval_interval
    for t in trials:
        acc = board(cfg, t.number)
        points = curve(acc)
        assert points, f"trial {t.number} has no curve"
        # The curve's points are the reports the pruner saw: the same values, each at the tokens
        # the trial had seen, which the study puts on its grid of eval_every_tokens.
        assert {s // every * every for s, _ in points} == set(t.intermediate_values)
        for s, v in points:
            assert v == pytest.approx(t.intermediate_values[s // every * every], rel=1e-6)
        row = hparams_row(acc)
        assert row["state"] == t.state.name
        assert row["lr"] == pytest.approx(t.params["lr"])
        assert row["weight_decay"] == pytest.approx(t.user_attrs["weight_decay"])
        assert row["steps"] == t.user_attrs["steps"]
        if t.state == TrialState.COMPLETE:
            assert curve(acc, "value")[0][1] == pytest.approx(t.value, rel=1e-6)
    # The driver calls back once per trial, in the order it told them, each already told.
    assert [frozen.number for _, _, frozen, _ in calls] == [
        t.number for t in sorted(trials, key=lambda t: t.datetime_complete)]
    assert all(stored.is_finished() and frozen.state == stored for *_, frozen, stored in calls)
    assert all(seen.study_name == cfg.name for _, seen, _, _ in calls)


def test_the_real_wandb_and_mlflow_log_each_trial_offline_without_optunas_warnings(
        tmp_path, shakespeare, monkeypatch):
    # The installed packages, no fakes: W&B in offline mode (runs kept on disk), MLflow on a
    # SQLite database (MLflow 3 refuses a plain folder).
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = study_cfg(tmp_path, shakespeare, wandb={"project": "gpt"},
                    mlflow={"tracking_uri": uri, "experiment": "sweeps"})
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        tracker = Tracker(cfg, Console(file=out, width=200))
    # optuna-integration's notice that it deprecated its callbacks is not the study's business.
    assert not [w for w in shown if issubclass(w.category, FutureWarning)], shown
    study = optuna.create_study(study_name="tiny")
    # A study deleted and made again under its name logs into the same group and experiment,
    # its trial 0 beside the first one's: each run is tagged with when its study was created.
    study.set_user_attr(tracking.CREATED, "2026-12-06T00:20:00+00:00")
    for lr, loss in [(3e-3, 2.5), (1e-2, 2.25)]:
        trial = ask(study, lr=lr, tracker=tracker)
        study.tell(trial, loss)
        tracker.finished(study, trial.number)
    pruned = ask(study, lr=3e-2, tracker=tracker)
    pruned.report(4.0, 1000)
    study.tell(pruned, state=TrialState.PRUNED)
    tracker.finished(study, pruned.number)
    failed = ask(study, lr=5e-2, tracker=tracker)
    study.tell(failed, state=TrialState.FAIL)
    tracker.finished(study, failed.number)
    # No callback failed, and W&B said nothing of its own (~26 lines at each trial's end, more
    # than the study's), but where its runs are, once.
    assert " ".join(out.getvalue().split()) == (
        f"tracking.wandb: each trial a run in W&B project gpt, kept on disk in "
        f"{tmp_path / 'wandb'} (W&B is offline): `wandb sync {tmp_path / 'wandb'}/offline-run-*` "
        "uploads them"), out.getvalue()

    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["sweeps"]).sort_values("metrics.val_loss")
    assert list(runs["metrics.val_loss"])[:3] == [2.25, 2.5, 4.0]
    assert [float(v) for v in runs["params.lr"]] == [1e-2, 3e-3, 3e-2, 5e-2]
    assert set(runs["tags.study_created"]) == {"2026-12-06T00:20:00+00:00"}
    # MLflow's own status says which failed (every run was FINISHED; the state tag said FAIL).
    assert list(runs["status"]) == ["FINISHED"] * 3 + ["FAILED"]
    # W&B: one offline run per trial, grouped by the study, holding the metric, and tagged
    # with the trial's state (a pruned trial's value is its last report: its run looked
    # complete).
    logs = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"), key=lambda f: f.stat().st_mtime)
    assert len(logs) == 4
    logs = logs[:3]
    assert all(b"val_loss" in f.read_bytes() and b"tiny" in f.read_bytes() for f in logs)
    # Named after the study (W&B's own run name, which the callback puts there, is None offline).
    assert [f"trial/{n}/tiny".encode() in f.read_bytes() for n, f in enumerate(logs)] == [True] * 3
    assert b"/None" not in logs[0].read_bytes()
    assert [b"PRUNED" in f.read_bytes() for f in logs] == [False, False, True]
    assert all(b"COMPLETE" in f.read_bytes() for f in logs[:2])
    assert all(b"study created 2026-12-06T00:20:00+00:00" in f.read_bytes() for f in logs)


def test_online_wandb_without_an_api_key_is_refused_before_the_study(tmp_path, shakespeare):
    # A fresh process (W&B keeps its settings per process), a home without credentials: it
    # failed at every trial's end ("trial N was not logged: UsageError: No API key configured").
    code = ("import json, sys\n"
            "from scaletune.search.config import validate_study\n"
            "from scaletune.search.tracking import Tracker\n"
            "from scaletune.trainer.errors import ConfigError\n"
            "try:\n"
            "    Tracker(validate_study(json.loads(sys.argv[1])))\n"
            "except ConfigError as e:\n"
            "    print(e)\n"
            "else:\n"
            "    print('built')\n")
    study = json.dumps(tiny_study(tmp_path, shakespeare, tracking={"wandb": {"project": "gpt"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"HOME": str(tmp_path), "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}

    def tracker(**more: str) -> str:
        out = subprocess.run([sys.executable, "-c", code, study], env=env | more,
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        return out.stdout + out.stderr

    out = tracker()
    assert "tracking.wandb: no W&B API key here (WANDB_API_KEY or `wandb login`)" in out, out
    assert "set WANDB_MODE=offline" in out
    # Rule: validate finds it too (it said ok, and the run refused the study).
    path = write_study(tmp_path, json.loads(study))
    done = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "validate", str(path)],
                          env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "tracking.wandb: no W&B API key here" in done.stderr, done
    # Offline, or with a key (not checked against the server), it is built.
    assert tracker(WANDB_MODE="offline").strip().endswith("built")
    # A mode W&B does not have: "ValidationError: 1 validation error for Settings", no more.
    out = tracker(WANDB_MODE="bogus")
    assert ("tracking.wandb: W&B's settings, read from the WANDB_* environment variables (such "
            "as WANDB_MODE), are not valid: mode: Input should be 'online'") in out, out
    # With a key, the server must answer: one that does not held the driver about 110 s at
    # each trial's end, and logged none. A server on loopback that answers (any status).
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        answers = f"http://127.0.0.1:{server.server_port}"
        assert tracker(WANDB_API_KEY="k" * 40, WANDB_BASE_URL=answers).strip().endswith("built")
    finally:
        server.shutdown()
        server.server_close()
    out = tracker(WANDB_API_KEY="k" * 40, WANDB_BASE_URL=answers)
    assert f"tracking.wandb: the W&B server {answers} does not answer (" in out, out
    assert "set WANDB_MODE=offline" in out
