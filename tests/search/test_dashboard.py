"""`scaletune dashboard`: read-only unless --allow-writes, one line for a port it cannot use, and
nothing created for a study that never ran. Served for real on 127.0.0.1, in a thread."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from rich.console import Console

import scaletune.search.dashboard as dashboard
from scaletune.search.cli import main
from scaletune.search.config import validate_study
from scaletune.search.plan import SearchPlan
from scaletune.search.storage import make_storage
from scaletune.trainer.errors import SetupError
from tests.ports import free_port
from tests.search.helpers import dashboard_api, tiny_study, write_study


def ran_study(tmp_path: Path, shakespeare: Path) -> tuple[Path, str]:
    """A study file whose study has two finished trials; and its storage URL."""
    raw = tiny_study(tmp_path, shakespeare)
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True)
    study = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    study.set_user_attr("config", {"name": cfg.name})
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=2)
    return write_study(tmp_path, raw), cfg.storage_url


@contextlib.contextmanager
def served(path: Path | None, monkeypatch, *options: str) -> Iterator[str]:
    """`scaletune dashboard PATH OPTIONS` served in a thread (no PATH where None); yields its
    base URL."""
    servers = []
    bind = dashboard.bind

    def keep(*args):
        servers.append(bind(*args))
        return servers[-1]

    monkeypatch.setattr(dashboard, "bind", keep)
    port = free_port()
    thread = threading.Thread(
        target=main, args=(["dashboard", *([str(path)] if path else []), "--port", str(port),
                            *options],), daemon=True,
    )
    thread.start()
    for _ in range(300):
        if servers or not thread.is_alive():
            break
        time.sleep(0.05)
    assert servers, "the dashboard did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        servers[0].shutdown()
        thread.join(timeout=10)


def call(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_dashboard_is_read_only_by_default(tmp_path, shakespeare, monkeypatch):
    path, url = ran_study(tmp_path, shakespeare)
    with served(path, monkeypatch) as base:
        status, listing = call("GET", f"{base}/api/studies")
        study_id = json.loads(listing)["study_summaries"][0]["study_id"]
        attempts = {
            "delete the study": call("DELETE", f"{base}/api/studies/{study_id}"),
            "rename it": call("POST", f"{base}/api/studies/{study_id}/rename",
                              {"study_name": "other"}),
            "write a note": call("PUT", f"{base}/api/studies/{study_id}/note",
                                 {"version": 1, "body": "hi"}),
            "create a study": call("POST", f"{base}/api/studies",
                                   {"study_name": "new", "directions": ["minimize"]}),
            "upgrade the schema": call("POST", f"{base}/incompatible-rdb-schema"),
        }
        pages = {page: call("GET", f"{base}{page}")[0] for page in [
            "/dashboard", "/api/meta", f"/api/studies/{study_id}", f"/csv/{study_id}"]}
        detail = json.loads(call("GET", f"{base}/api/studies/{study_id}")[1])
    # Every request that would change the storage is refused with 405, and a reason the UI shows.
    assert {what: code for what, (code, _) in attempts.items()} == dict.fromkeys(attempts, 405)
    reason = json.loads(attempts["delete the study"][1])["reason"]
    assert reason == "the dashboard is read-only; start it with --allow-writes to change the study"
    # The study is still there, untouched, and no other study appeared.
    assert optuna.get_all_study_names(url) == ["tiny"]
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2
    # What the UI reads still answers: the page, the study list, the study with its trials, CSV.
    assert status == 200
    assert pages == dict.fromkeys(pages, 200)
    assert [t["number"] for t in detail["trials"]] == [0, 1]
    assert detail["user_attrs"] == [{"key": "config", "value": '{"name": "tiny"}'}]


def test_the_dashboard_serves_the_storage_given_on_the_command_line(tmp_path, shakespeare,
                                                                  monkeypatch):
    path, _ = ran_study(tmp_path, shakespeare)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    moved = optuna.create_study(study_name="tiny", storage=elsewhere)
    moved.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=3)
    with served(path, monkeypatch, "--storage", elsewhere) as base:
        study_id = json.loads(call("GET", f"{base}/api/studies")[1])["study_summaries"][0][
            "study_id"]
        detail = json.loads(call("GET", f"{base}/api/studies/{study_id}")[1])
    # Rule: `--storage` serves the storage that `run --storage` used, not the file's.
    assert len(detail["trials"]) == 3


def test_a_storage_alone_is_served_without_a_study_file(tmp_path, shakespeare, monkeypatch,
                                                       capsys):
    # A machine that has the storage's URL and no study file: it was "the following arguments
    # are required: study".
    _, url = ran_study(tmp_path, shakespeare)
    with served(None, monkeypatch, "--storage", url) as base:
        listing = json.loads(call("GET", f"{base}/api/studies")[1])["study_summaries"]
        refused = call("DELETE", f"{base}/api/studies/{listing[0]['study_id']}")[0]
    assert [s["study_name"] for s in listing] == ["tiny"]
    assert refused == 405  # read-only as with a study file
    assert f"dashboard (read-only) for {url} at" in " ".join(capsys.readouterr().out.split())
    # A storage that does not exist is not created; with neither, the command says what it needs.
    missing = tmp_path / "nowhere.db"
    assert main(["dashboard", "--storage", f"sqlite:///{missing}"]) == 2
    assert (f"storage: {missing} does not exist: no study has run there (`scaletune run "
            "STUDY.yaml`, or `scaletune ladder LADDER.yaml`, creates it)") in " ".join(
        capsys.readouterr().err.split())
    assert not missing.exists()
    assert main(["dashboard"]) == 2
    assert "give a study YAML, or the storage to serve with --storage URL" in " ".join(
        capsys.readouterr().err.split())


def test_a_study_is_served_by_its_name_as_show_and_report_take_it(tmp_path, shakespeare,
                                                                  monkeypatch, capsys):
    # It was "1 error(s) in tiny: file not found", where show, best and report take the name.
    _, url = ran_study(tmp_path, shakespeare)
    with served("tiny", monkeypatch, "--storage", url) as base:
        listing = json.loads(call("GET", f"{base}/api/studies")[1])["study_summaries"]
        # The line gives the study's own page (it gave the storage's list), and it answers.
        study_id = listing[0]["study_id"]
        said = " ".join(capsys.readouterr().out.split())
        assert f"at {base}/dashboard/studies/{study_id}" in said, said
        assert call("GET", f"{base}/dashboard/studies/{study_id}")[0] == 200
    assert [s["study_name"] for s in listing] == ["tiny"]
    assert main(["dashboard", "other", "--storage", url]) == 2
    assert "no such study file, and no study of that name in" in capsys.readouterr().err


def test_allow_writes_lets_the_dashboard_delete_the_study(tmp_path, shakespeare, monkeypatch):
    path, url = ran_study(tmp_path, shakespeare)
    with served(path, monkeypatch, "--allow-writes") as base:
        study_id = json.loads(call("GET", f"{base}/api/studies")[1])["study_summaries"][0][
            "study_id"]
        status, _ = call("DELETE", f"{base}/api/studies/{study_id}",
                         {"remove_associated_artifacts": False})
    # With --allow-writes the dashboard does what it offers: the study is deleted.
    assert status == 204
    assert optuna.get_all_study_names(url) == []


def test_allow_writes_leaves_a_study_that_a_driver_runs_alone(tmp_path, shakespeare,
                                                              monkeypatch):
    # Deleted from the dashboard while it ran, the study stopped its driver at the next write
    # with two tracebacks (exit 1); `scaletune delete` refuses such a study.
    from scaletune.search import lease

    path, url = ran_study(tmp_path, shakespeare)
    study = optuna.load_study(study_name="tiny", storage=url)
    running = study.ask()
    held = {"host": "another-host", "pid": 4321, "since": time.time(), "heartbeat": time.time(),
            "token": "theirs"}
    study.set_user_attr(lease.ATTR, held)
    with served(path, monkeypatch, "--allow-writes") as base:
        study_id = json.loads(call("GET", f"{base}/api/studies")[1])["study_summaries"][0][
            "study_id"]
        refused = {
            "delete": call("DELETE", f"{base}/api/studies/{study_id}",
                           {"remove_associated_artifacts": False}),
            "rename": call("POST", f"{base}/api/studies/{study_id}/rename",
                           {"study_name": "renamed"}),
        }
        for what, (status, body) in refused.items():
            assert status == 409, (what, status, body)
            reason = json.loads(body)["reason"]
            assert reason.startswith("study 'tiny' is being run by a driver (pid 4321 on "
                                     "another-host"), reason
        assert optuna.get_all_study_names(url) == ["tiny"]
        # Its running trial may still be ended there (the driver stops its worker), and a
        # note written: the driver writes neither.
        told = call("POST", f"{base}/api/trials/{running._trial_id}/tell", {"state": "Fail"})
        note = call("PUT", f"{base}/api/studies/{study_id}/note", {"version": 1, "body": "hi"})
        assert (told[0], note[0]) == (204, 204), (told, note)
        # Once its driver is done, the study is the user's to delete.
        study.set_user_attr(lease.ATTR, None)
        deleted = call("DELETE", f"{base}/api/studies/{study_id}",
                       {"remove_associated_artifacts": False})
    assert deleted[0] == 204
    assert optuna.get_all_study_names(url) == []


def output_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def test_a_storage_that_stops_answering_is_said_in_a_line_per_request(tmp_path, shakespeare,
                                                                     monkeypatch, capfd, caplog):
    # A PostgreSQL server stopped under a running dashboard: optuna-dashboard printed the stack
    # of each failed API request, and bottle a 60-line traceback of each failed page. (Here the
    # SQLite file is overwritten, which fails the same way: StorageInternalError, and a
    # DatabaseError where the page reads the schema's version.)
    import logging

    path, url = ran_study(tmp_path, shakespeare)
    caplog.set_level(logging.ERROR, logger="optuna_dashboard")
    with served(path, monkeypatch) as base:
        assert call("GET", f"{base}/api/studies")[0] == 200
        with open(url.removeprefix("sqlite:///"), "r+b") as db:  # the open connections' file
            db.write(b"\0" * 4096)
        assert call("GET", f"{base}/api/studies")[0] == 500
        assert call("GET", f"{base}/dashboard/studies/1")[0] == 500
    err = capfd.readouterr().err
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("optuna_dashboard")]
    assert logged == [dashboard.STORAGE_DOWN_LINE], logged
    assert err.count(dashboard.STORAGE_DOWN_LINE) == 1, err  # the page's, from bottle
    assert "Traceback" not in err and 'File "' not in err, err


def test_a_port_in_use_is_one_line(tmp_path, shakespeare, capsys):
    path, _ = ran_study(tmp_path, shakespeare)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dashboard", str(path), "--port", str(port)])
    lines = output_lines(capsys)
    # Exit 2 and one error line that names the port and what to do; no traceback.
    assert code == 2
    assert lines == [
        f"error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose another with --port",
    ]


def test_an_address_it_cannot_bind_is_refused_without_the_exposure_warning(tmp_path, shakespeare,
                                                                           capsys):
    # The warning that anyone at the address can read every study came first, then the refusal.
    path, _ = ran_study(tmp_path, shakespeare)
    assert main(["dashboard", str(path), "--host", "192.0.2.1", "--port", "8080"]) == 2
    lines = output_lines(capsys)
    assert lines[0].startswith("error: --host 192.0.2.1: cannot listen on 192.0.2.1:8080 ")
    assert not [line for line in lines if "warning" in line]


@pytest.mark.parametrize("bad", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_refused_by_the_command_line(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as done:
        main(["dashboard", str(tmp_path / "study.yaml"), "--port", bad])
    errors = [line for line in output_lines(capsys) if "error" in line]
    # argparse's exit 2: its usage line and one error, naming the value and the range.
    assert done.value.code == 2
    assert errors == [f"scaletune dashboard: error: argument --port: expected a port 1-65535, "
                      f"got {bad!r}"]


def test_serve_turns_a_port_out_of_range_into_one_line(tmp_path, shakespeare):
    path, _ = ran_study(tmp_path, shakespeare)
    # Called from Python, past argparse, the overflow is still one line, not a traceback.
    with pytest.raises(SetupError, match=r"^--port 99999: not a TCP port; choose one "
                                                   r"of 1-65535 with --port$"):
        dashboard.serve(str(path), port=99999, console=Console(file=io.StringIO()))


@pytest.mark.parametrize("folder_exists", [False, True])
def test_a_study_that_never_ran_is_one_line_and_creates_no_storage(tmp_path, shakespeare, capsys,
                                                                   folder_exists):
    raw = tiny_study(tmp_path, shakespeare)
    cfg = validate_study(raw)
    if folder_exists:
        cfg.folder.mkdir(parents=True)
    path = write_study(tmp_path, raw)
    code = main(["dashboard", str(path), "--port", str(free_port())])
    lines = output_lines(capsys)
    # One line: no study has run there, and the command that runs it ...
    assert code == 2
    assert len(lines) == 2 and lines[0] == f"1 error(s) in {path}:"
    assert "no study 'tiny'" in lines[1] and "does not exist" in lines[1]
    assert f"run `scaletune run {path}` first" in lines[1]
    # ... and no storage was created: no study.db, and no folder where there was none.
    assert not (cfg.folder / "study.db").exists()
    assert cfg.folder.exists() == folder_exists


# --------------------------------------------------------------------------- what it shows


def opened(tmp_path: Path, shakespeare: Path, **overrides) -> tuple[str, optuna.Study]:
    """A study opened by its driver, with two complete trials, as `scaletune run` leaves it; and
    its storage URL."""
    raw = tiny_study(tmp_path, shakespeare, **overrides)
    cfg = validate_study(raw)
    cfg.folder.mkdir(parents=True, exist_ok=True)
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))
    for value in (2.5, 2.4):
        study.tell(plan.ask(study, 1).trial, value)
    plan.lease.release()
    return cfg.storage_url, study


def shown(url: str, study: optuna.Study) -> dict:
    """The study as the dashboard's study page reads it."""
    listing = dashboard_api(url, "/api/studies")["study_summaries"]
    study_id = next(s["study_id"] for s in listing if s["study_name"] == study.study_name)
    return dashboard_api(url, f"/api/studies/{study_id}")


def test_the_study_note_says_the_step_axis_is_tokens_seen(tmp_path, shakespeare):
    url, study = opened(tmp_path, shakespeare, description="Baseline for the 4-layer model.\n")
    note = shown(url, study)["note"]["body"]
    # Rule: the study file's description heads the note (it was accepted and shown nowhere).
    assert note.startswith("Baseline for the 4-layer model.\n\n**Objective**")
    # Rule: the dashboard titles the intermediate values' x axis "Step"; the study's note, on
    # its page, says a step is tokens seen, on the study's grid.
    assert "the x axis, which the dashboard calls *Step*, is **tokens seen**" in note
    # ... filed at the grid point below the step that passed it (the trial's log and user
    # attrs say more tokens than the axis).
    assert ("on a grid of 8,192: every trial reports its validation loss at the first step past "
            "each grid point, filed at that point") in note
    # Rule: the config every trial shares reads as YAML, without the keys left unset.
    config = yaml.safe_load(note.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert config["tokens_per_trial"] == 40_960
    assert config["search"]["batch_size"] == {"choices": [8, 16]}
    assert "vocab_size" not in config["model"]
    # Rule: the priors' table gives the study's own choices beside the laws' range (which it
    # showed alone, as if searched).
    row = next(line for line in note.splitlines() if line.startswith("| batch_size |"))
    assert row.endswith(" | choices 8, 16 |"), row
    assert "| the laws' range | this study searches |" in note


def test_a_repeats_note_gives_the_training_seed_it_takes(tmp_path, shakespeare):
    from scaletune.search.space import fixed_values, trial_config

    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    params = {"lr": 3e-3, "tau": 1.0, "warmup_frac": 0.1, "batch_size": 8}
    fixed = fixed_values(cfg)
    run, derived = trial_config(cfg, params, fixed, 1, seed=2)
    note = dashboard.trial_note(5, params, fixed, run, derived, repeat_of=1)
    # Rule: a repeat (--repeat-best) says its seed: the note said every other setting was the
    # study's, whose seed is 0.
    assert ("| `seed` | 2 | training seed; a repeat of trial 1's config (--repeat-best)") in note
    assert "`seed`" not in dashboard.trial_note(5, params, fixed, *trial_config(
        cfg, params, fixed, 1))


def test_each_trial_note_gives_its_values_as_trainer_fields(tmp_path, shakespeare):
    url, study = opened(tmp_path, shakespeare)
    trial = study.trials[0]
    note = shown(url, study)["trials"][0]["note"]["body"]
    attrs, p = trial.user_attrs, trial.params
    # Rule: a row per value the study searches or fixes, as the trainer field it sets, shown as
    # the hyperparameter table shows it; weight decay with the tau it came from.
    assert f"| `optim.lr` | {format(p['lr'], '.3g')} | peak learning rate; searched |" in note
    assert (f"| `optim.weight_decay` | {format(attrs['weight_decay'], '.3g')} | AdamW weight "
            f"decay lambda; searched, as tau = {format(p['tau'], '.3g')} |") in note
    assert f"| `batch_size` | {p['batch_size']} | batch size in sequences; searched |" in note
    assert "| `model.dropout` | 0 | dropout rate; fixed by the study |" in note
    assert (f"{attrs['steps']:,} steps of {attrs['tokens_per_step']:,} tokens, the first "
            f"{attrs['warmup_steps']:,} of them warmup") in note


@pytest.mark.parametrize("batch_size, expected", [
    ({"choices": [16, 8, 32, 128]}, ["8", "16", "32", "128"]),
    ({"low": 1, "high": 32}, ["1", "2", "4", "8", "16", "32"]),
], ids=["choices", "range"])
def test_batch_sizes_reach_the_dashboard_in_ascending_order(tmp_path, shakespeare, batch_size,
                                                            expected):
    search = {**tiny_study(tmp_path, shakespeare)["search"], "batch_size": batch_size}
    url, study = opened(tmp_path, shakespeare, search=search, tokens_per_trial=131_072)
    detail = shown(url, study)
    # Rule: every trial searches the choices in numeric order; a trial's value is its index.
    for trial in detail["trials"]:
        param = next(p for p in trial["params"] if p["name"] == "batch_size")
        assert [c["value"] for c in param["distribution"]["choices"]] == expected
        assert expected[param["param_internal_value"]] == param["param_external_value"]
    # Rule: so does the study's search space, which optuna-dashboard merges from its trials'
    # through a set (the trial table's filters list it), in the union and the intersection.
    for key in ("union_search_space", "intersection_search_space"):
        space = {d["name"]: d["distribution"] for d in detail[key]}
        assert [c["value"] for c in space["batch_size"]["choices"]] == expected, key


def test_a_note_written_in_the_dashboard_is_kept_on_resume(tmp_path, shakespeare):
    from optuna_dashboard import get_note, save_note

    _, study = opened(tmp_path, shakespeare)
    save_note(study, "lr above 0.01 diverges on this data")
    cfg = validate_study(tiny_study(tmp_path, shakespeare))
    plan = SearchPlan.build(cfg)
    resumed, _ = plan.open_study(make_storage(cfg.storage_url))
    plan.lease.release()
    # Rule: the driver writes the study's note only where there is none.
    assert get_note(resumed) == "lr above 0.01 diverges on this data"


def test_a_description_changed_in_the_study_file_heads_the_note_on_resume(tmp_path,
                                                                          shakespeare):
    from optuna_dashboard import get_note, save_note

    _, study = opened(tmp_path, shakespeare, description="Baseline.")
    raw = tiny_study(tmp_path, shakespeare, description="Baseline, with the new tokenizer.")
    cfg = validate_study(raw)
    plan = SearchPlan.build(cfg)
    resumed, _ = plan.open_study(make_storage(cfg.storage_url))
    plan.lease.release()
    # Rule: the note is written again with the file's description (the edit was taken, and
    # shown nowhere), the rest as it was.
    note = get_note(resumed)
    assert note.startswith("Baseline, with the new tokenizer.\n\n**Objective**"), note[:80]
    # Rule: a note a user wrote in the dashboard is not replaced by a description's change.
    save_note(resumed, "lr above 0.01 diverges on this data")
    cfg = validate_study({**raw, "description": "Baseline again."})
    plan = SearchPlan.build(cfg)
    again, _ = plan.open_study(make_storage(cfg.storage_url))
    plan.lease.release()
    assert get_note(again) == "lr above 0.01 diverges on this data"


def test_a_new_trials_note_is_stored_as_the_dashboards_own_save_note_stores_it(tmp_path):
    from optuna_dashboard import get_note, save_note

    from scaletune.search.dashboard import write_first_note

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'notes.db'}")
    ours, theirs = study.ask(), study.ask()
    text = "## trial\n\n" + "a long line of the note " * 200  # more than one chunk
    write_first_note(ours, text)
    save_note(theirs, text)
    attrs = study._storage.get_study_system_attrs(study._study_id)

    def stored(trial: optuna.Trial) -> dict[str, object]:
        mark = f"dashboard:{trial._trial_id}:"
        return {k.removeprefix(mark): v for k, v in attrs.items() if k.startswith(mark)}

    # Rule: the note of a trial just asked reads back as written, under the same keys and
    # version as optuna-dashboard's save_note writes, without reading the study's other notes.
    assert get_note(ours) == text
    assert stored(ours) == stored(theirs) and len(stored(ours)) > 2
