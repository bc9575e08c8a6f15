"""`scaletune run`'s options: what people change per launch (trials, cluster, concurrency,
storage) replaces the study file's field, validated as the file is, and `--dry-run` prints the
plan without starting or writing anything."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from scaletune.search.cli import main
from scaletune.search.config import load_study
from scaletune.search.manage import with_options
from scaletune.search.progress import print_run_summary
from scaletune.trainer.errors import ConfigError
from tests.ports import free_port
from tests.search.helpers import REPO, flat, tiny_study, write_study
from tests.search.test_export import add_trial, make_study, params, study_file


def run(capsys, *args: str) -> tuple[int, str]:
    """`scaletune run ARGS` in this process: its exit code and what it printed as words (lines
    unwrapped, table borders taken out): its output, or where it failed its error, which goes
    to standard error."""
    code = main(["run", *args])
    captured = capsys.readouterr()
    return code, flat(re.sub("[│┃]", " ", captured.out if code == 0 else captured.err))


# --------------------------------------------------------------------------- the options


def test_options_replace_their_fields_and_leave_the_fingerprint(tmp_path):
    _, cfg = study_file(tmp_path)
    changed = with_options(cfg, n_trials=9, address="auto", max_concurrent=3,
                           storage="sqlite:////elsewhere/study.db")
    # Rule: each option replaces its field; the rest stays as load_study resolved it.
    assert (changed.n_trials, changed.workers.address, changed.workers.max_concurrent,
            changed.storage) == (9, "auto", 3, "sqlite:////elsewhere/study.db")
    assert changed.workers.cpus_per_trial == cfg.workers.cpus_per_trial
    assert changed.data == cfg.data and changed.source == cfg.source
    # Rule: none of them is fingerprinted, so the study resumes with them changed.
    assert changed.fingerprint() == cfg.fingerprint()


@pytest.mark.parametrize("sampler", ["gp", "random", "cmaes"])
def test_options_work_with_every_sampler(tmp_path, sampler):
    # The options are set on a dump of every field, TPE's prior_weight too, which a study file
    # may give only with TPE: that dump must not be refused for it.
    _, cfg = study_file(tmp_path, sampler={"name": sampler})
    changed = with_options(cfg, n_trials=9, max_concurrent=1)
    assert (changed.n_trials, changed.workers.max_concurrent) == (9, 1)
    assert changed.sampler == cfg.sampler


def test_no_option_leaves_the_config_as_it_is(tmp_path):
    _, cfg = study_file(tmp_path)
    # Rule: an option not given (None) keeps the file's value.
    assert with_options(cfg, n_trials=None, storage=None) is cfg


@pytest.mark.parametrize("flag, value, error", [
    ("--n-trials", "0", "--n-trials: must be in [1, 1000000] (got 0)"),
    ("--max-concurrent", "0", "--max-concurrent: must be >= 1 (got 0)"),
])
def test_a_bad_option_is_an_error_that_names_the_flag(tmp_path, capsys, flag, value, error):
    path, cfg = study_file(tmp_path)
    code, out = run(capsys, str(path), flag, value)
    # Rule: validated as the file is; one line naming the option, exit 2, nothing written.
    assert code == 2, out
    assert error in out
    assert not cfg.folder.exists()


# --------------------------------------------------------------------------- the summary


def summary_next_lines(tmp_path: Path, storage: str | None) -> list[str]:
    """The "next" rows of the end-of-run summary of a study run with ``run --storage``."""
    path, cfg = study_file(tmp_path)
    ran = with_options(cfg, storage=storage)
    study = make_study(ran.model_copy(update={"storage": f"sqlite:///{tmp_path / 'other.db'}"}))
    add_trial(study, ran, params(3e-3), 2.4)
    out = io.StringIO()
    print_run_summary(Console(file=out, width=1000), study, ran, str(path), 5.0, storage=storage)
    lines = out.getvalue().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  next"))
    return [line[11:] for line in lines[first:]]


def test_the_next_commands_name_the_storage_of_run_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    study = tmp_path / "study.yaml"
    # Rule: a study run on `run --storage` is found by the next commands with the same option.
    assert summary_next_lines(tmp_path, url)[:2] == [
        f"scaletune dashboard {study} --storage {url}",
        f"scaletune report {study} --storage {url} -o {tmp_path / 'study' / 'report'}",
    ]
    # ... and the study file's own storage needs none.
    (tmp_path / "plain").mkdir()
    assert not any("--storage" in line for line in summary_next_lines(tmp_path / "plain", None))


def test_a_detached_drivers_next_commands_give_whole_paths(tmp_path, monkeypatch):
    from scaletune.search.lease import JOB_ENV

    # Its working directory is the head node's; `scaletune logs` shows the lines anywhere.
    for where in ("here", "job"):
        (tmp_path / where).mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert "-o study/report" in summary_next_lines(tmp_path / "here", None)[1]
    monkeypatch.chdir(tmp_path / "job")
    monkeypatch.setenv(JOB_ENV, "scaletune-tiny-0a1b2c3d")
    assert f"-o {tmp_path / 'job' / 'study' / 'report'}" in summary_next_lines(tmp_path / "job",
                                                                                 None)[1]


def test_the_next_commands_never_print_a_password(tmp_path):
    url = "postgresql://me:s3cret-pw@db:5432/x"
    lines = summary_next_lines(tmp_path, url)
    # Rule: the URL goes into a shell variable whose line masks the password; the commands
    # name the variable.
    assert lines[0] == ("SCALETUNE_STORAGE='postgresql://me:***@db:5432/x'   # with the password "
                        "in place of ***")
    assert lines[1] == f'scaletune dashboard {tmp_path / "study.yaml"} --storage "$SCALETUNE_STORAGE"'
    assert not any("s3cret-pw" in line for line in lines)


# --------------------------------------------------------------------------- --dry-run


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0, out
    # Rule: no study folder, no storage.
    assert not cfg.folder.exists()
    # Rule: the plan has every part: priors, space, first trial, sampler, pruner, workers,
    # storage, budget.
    for part in ("Priors from scaling laws", "Search space", "trial 0, the priors' center: lr=",
                 "sampler tpe (multivariate, constant liar), seed 0",
                 "then draws from the priors until 3 trials have finished",
                 "then tpe weighted by the priors (prior_weight 10",
                 "pruner median: n_startup_trials=2, n_warmup_steps=8,192, interval_steps=1",
                 f"storage {cfg.storage_url} (not there yet)"):
        assert part in out, part
    # The space: a range with its scale, choices, and the value the study fixes.
    assert "lr [0.0001, 0.03] log" in out
    assert "warmup_frac [0, 0.2] linear" in out
    assert "batch_size choices 8, 16" in out
    assert "dropout fixed at 0" in out
    # Rule: the budget is n_trials x tokens_per_trial, and 6ND with N non-embedding
    # (12 * 1 layer * 32^2 = 12,288).
    assert ("budget 4 trials x 40,960 tokens = 163,840 tokens, "
            f"{6 * 12_288 * 163_840:.3g} FLOPs (6ND, N = 12,288 non-embedding params)") in out


def test_dry_run_on_a_server_says_it_did_not_read_the_study_there(tmp_path, capsys):
    # Of a study a PostgreSQL server held with its trials done, the plan read as a new one's
    # (its first trial, its whole budget), where an SQLite file's says "nothing to run".
    path, cfg = study_file(tmp_path)
    code, out = run(capsys, str(path), "--dry-run", "--storage",
                    "postgresql://scaletune:secret@127.0.0.1:1/studies")
    assert code == 0, out
    said = " ".join(out.split())
    assert ("storage postgresql://scaletune:***@127.0.0.1:1/studies (a server: the dry run does "
            "not read what it holds; `scaletune show` says whether the run resumes the study)"
            in said), said
    assert "secret" not in out


def test_a_sampler_without_start_up_trials_is_described_without_them(tmp_path):
    # "draws from the priors until 0 trials have finished (the center among them), then tpe"
    from scaletune.search.config import validate_study
    from scaletune.search.manage import describe_sampler

    _, cfg = study_file(tmp_path)
    raw = cfg.model_dump(mode="json", by_alias=True)
    raw["sampler"] = {"name": "tpe", "n_startup_trials": 0, "prior_weight": 0}
    said = describe_sampler(validate_study(raw))
    assert said.endswith(": the priors' center, then tpe"), said


def test_dry_run_with_a_job_server_says_what_the_run_would_do(tmp_path, capsys):
    path, cfg = study_file(tmp_path)
    server = "http://127.0.0.1:8265"
    # Rule: without --detach, refused as the run refuses it (the dry run printed a plan).
    code, out = run(capsys, str(path), "--dry-run", "--address", server)
    # The flag is named, as the run names it: the study file gives no address.
    assert code == 2 and (f"1 error(s) in the command line: --address: {server} is a Ray "
                          "cluster's job server") in out, out
    # Rule: with --detach, the plan says the driver goes to the cluster as a Ray job.
    code, out = run(capsys, str(path), "--dry-run", "--detach", "--address", server)
    assert code == 0, out
    # Not "submitted": a dry run reaches no server (this one listens nowhere).
    assert (f"detach the run would submit it as a Ray job to {server} (not reached by this dry "
            "run): its driver would run on the cluster") in out
    assert not cfg.folder.exists()


def test_dry_run_says_which_values_of_the_first_trial_have_no_prior(tmp_path, capsys):
    # Trial 0 was said to be the priors' center; its search.other values are the sampler's.
    search = {"lr": {"prior": "auto"}, "dropout": {"value": 0.0}, "batch_size": {"value": 8},
              "other": {"model.norm": {"choices": ["layernorm", "rmsnorm"]},
                        "optim.beta2": {"low": 0.9, "high": 0.99}}}
    path, _ = study_file(tmp_path, search=search)
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0, out
    assert re.search(r"trial 0, the priors' center: lr=\S+ .*; model\.norm, optim\.beta2 drawn "
                     r"at random \(no prior\)", out), out


def test_dry_run_says_when_a_prior_center_lies_outside_the_range(tmp_path, capsys):
    search = {"lr": {"prior": "auto"}, "dropout": {"value": 0.0},
              "weight_decay": {"prior": "auto", "as": "tau", "low": 1e-3, "high": 1e-2}}
    path, _ = study_file(tmp_path, search=search)
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0, out
    # The tau range is far below the priors' center: said, with where trial 0 starts.
    assert "note: search.weight_decay: the priors' center tau =" in out
    assert "lies above the range searched [0.001, 0.01], so the first trial starts at 0.01" in out
    assert "search.lr:" not in out  # lr's own prior range holds its center
    # Rule: the space table shows the value trial 0 takes where it is not the center itself.
    assert re.search(r"tau \[0\.001, 0\.01\] log \S+ \(trial 0: 0\.01\)", out), out
    assert re.search(r"lr \[[\d.e-]+, [\d.e-]+\] log [\d.e-]+ (?!\(trial 0)", out), out


def test_the_space_table_shows_the_choice_trial_0_takes(tmp_path, capsys):
    search = {"dropout": {"value": 0.0}, "warmup_frac": {"choices": [0.0, 0.5]}}
    path, _ = study_file(tmp_path, search=search)
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0, out
    center = float(re.search(r"warmup_frac choices 0, 0\.5 ([\d.]+) \(trial 0: (0|0\.5)\)",
                             out).group(1))
    # Rule: the nearest choice, which trial 0 takes too.
    nearest = "0" if center < 0.25 else "0.5"
    assert f"warmup_frac choices 0, 0.5 {center:g} (trial 0: {nearest})" in out
    assert f"warmup_frac={nearest} " in out
    # Without seeding there is no trial 0 at the center: the table says nothing of one.
    (tmp_path / "plain").mkdir()
    path, _ = study_file(tmp_path / "plain", search=search, seeding="none")
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0 and "(trial 0:" not in out, out


def test_dry_run_shows_the_options_and_masks_the_password(tmp_path, capsys):
    path, _ = study_file(tmp_path)
    code, out = run(capsys, str(path), "--dry-run", "--n-trials", "7", "--address", "auto",
                    "--max-concurrent", "5", "--storage", "postgresql://me:s3cret-pw@db:5432/x")
    assert code == 0, out
    assert "7 trials x 40,960 tokens" in out
    # Rule: a cluster's concurrency is its own; the cap is said.
    assert "concurrency is decided when Ray starts" in out and "at most 5" in out
    # Rule: a dry run does not connect to the storage, and never shows its password.
    assert "storage postgresql://me:***@db:5432/x" in out
    assert "s3cret-pw" not in out


@pytest.mark.parametrize("cores, cap, fits", [(8, None, 8), (8, 3, 3), (3, None, 1)])
def test_a_local_study_fits_the_cores_over_cpus_per_trial(tmp_path, capsys, monkeypatch,
                                                          cores, cap, fits):
    path, _ = study_file(tmp_path, workers={"cpus_per_trial": 2 if cores == 3 else 1,
                                            "max_concurrent": cap})
    monkeypatch.setattr("scaletune.search.manage.usable_cores", lambda: cores)
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0, out
    # Rule: this machine's cores // cpus_per_trial, capped by max_concurrent.
    assert f"{fits} trial(s) at once ({cores} cores" in out


def test_a_study_without_priors_seeding_has_no_first_trial(tmp_path, capsys):
    path, _ = study_file(tmp_path, seeding="none")
    code, out = run(capsys, str(path), "--dry-run")
    assert code == 0, out
    # Rule: the priors' center is trial 0 only under seeding: prior.
    assert "priors' center" not in out
    assert "3 start-up trials at random, then tpe (plain Optuna)" in out


def test_dry_run_refuses_a_study_whose_data_is_missing(tmp_path, capsys):
    path, _ = study_file(tmp_path)
    (tmp_path / "corpus.txt").unlink()
    code, out = run(capsys, str(path), "--dry-run")
    # Rule: what `run` would refuse for a missing file, the plan refuses too (exit 2).
    assert code == 2, out
    assert "data.path" in out and "corpus.txt" in out


def test_dry_run_starts_no_ray(tmp_path):
    path, _ = study_file(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from scaletune.search.cli import main; "
         f"code = main(['run', {str(path)!r}, '--dry-run']); print(code, 'ray' in sys.modules)"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    # Rule: planning imports no Ray, let alone starts it.
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stdout + done.stderr


# --------------------------------------------------------------------------- a new storage


def test_the_storage_option_may_name_a_new_sqlite_file(tmp_path):
    from scaletune.search.runner import preflight

    _, cfg = study_file(tmp_path)
    db = tmp_path / "new.db"
    preflight(with_options(cfg, storage=f"sqlite:///{db}"))
    # Rule: a file that is not there is a new study's storage: accepted, and not created
    # (empty, it would be refused as a cut-short study by this run and the next).
    assert not db.exists()


def test_a_storage_that_leaves_the_study_behind_is_said(tmp_path, capsys):
    # A study that ran in its default storage, launched with --storage another (or with a new
    # storage: in its file): it started from zero without a word, its trials out of view.
    path, cfg = study_file(tmp_path)
    make_study(cfg)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, out = run(capsys, str(path), "--dry-run", "--storage", other)
    assert code == 0
    assert (f"note: storage: study 'tiny' has run in {cfg.storage_url.removeprefix('sqlite:///')}, "
            f"the default storage, and this launch uses {other}: it starts it afresh there, and "
            "the trials it ran stay in the default one; leave storage (or --storage) out to "
            "resume it") in out, out
    code, out = run(capsys, str(path), "--dry-run")  # the default: it resumes, no note
    assert code == 0 and "has run in" not in out
    # The same storage written into the file: show, report and export said "run `scaletune
    # run FILE` first", which starts the study afresh there; they say where it is.
    moved = write_study(tmp_path, {**yaml.safe_load(path.read_text()), "storage": other},
                        "moved.yaml")
    default = cfg.storage_url.removeprefix("sqlite:///")
    for command, *options in (["show"], ["report"], ["export", "-o", "final.yaml"]):
        assert main([command, str(moved), *options]) == 2
        assert (f"no study 'tiny': its storage {other} does not exist; it has run in {default}, "
                "the default storage: leave storage (or --storage) out, or give --storage "
                f"sqlite:///{default}") in flat(capsys.readouterr().err)
    assert main(["show", str(moved), "--storage", cfg.storage_url]) == 0


def test_a_study_dir_that_leaves_the_study_behind_is_said(tmp_path, capsys):
    # A study_dir added to the file of a study that ran in the default folder: its storage
    # moved from runs/studies.db to study.db in that folder (runs/tiny, the same folder), and
    # the study started from zero without a word.
    (tmp_path / "text.txt").write_text("It is a truth universally acknowledged. " * 6_000)
    raw = tiny_study(tmp_path, tmp_path / "text.txt")
    raw.pop("study_dir", None)
    make_study(load_study(write_study(tmp_path, raw)))
    shared = tmp_path / "runs" / "studies.db"
    assert shared.is_file()
    moved = write_study(tmp_path, {**raw, "study_dir": "runs/tiny"}, "moved.yaml")
    for command in (["validate"], ["run", "--dry-run"]):
        assert main([*command, str(moved)]) == 0
        out = capsys.readouterr().out
        assert (f"study_dir: study 'tiny' has run in {shared}, the storage of this file without "
                f"study_dir, and study_dir puts its storage in {tmp_path / 'runs' / 'tiny'}"
                "/study.db: this launch starts it afresh there, and the trials it ran stay where "
                f"they are; leave study_dir out to resume it, or give storage: sqlite:///{shared} "
                "to keep it there") in flat(out), out
    # They said "run `scaletune run FILE` first".
    for command, *options in (["show"], ["report"], ["export", "-o", "final.yaml"]):
        assert main([command, str(moved), *options]) == 2
        assert (f"it has run in {shared}, the file's storage without study_dir: leave study_dir "
                f"out of the file, or give --storage sqlite:///{shared}"
                ) in flat(capsys.readouterr().err)
    kept = write_study(tmp_path, {**raw, "study_dir": "runs/tiny",
                                  "storage": f"sqlite:///{shared}"}, "kept.yaml")
    assert main(["validate", str(kept)]) == 0
    assert "has run in" not in capsys.readouterr().out


def test_the_storage_option_in_a_missing_folder_is_an_error(tmp_path):
    from scaletune.search.runner import preflight

    _, cfg = study_file(tmp_path)
    db = tmp_path / "nowhere" / "new.db"
    # Rule: refused before Ray starts, naming the file, rather than failing at the first write.
    with pytest.raises(ConfigError, match="storage: the folder of .*nowhere/new.db does not exist"
                       ) as e:
        preflight(with_options(cfg, storage=f"sqlite:///{db}"))
    assert not db.parent.exists()
    # The flag is named, not the study file, which gives no storage.
    assert e.value.source == "the command line" and e.value.errors[0].startswith("--storage: ")
    # A file on the way is named as one: "create it" could not be done.
    (tmp_path / "afile").touch()
    with pytest.raises(ConfigError) as e:
        preflight(with_options(cfg, storage=f"sqlite:///{tmp_path}/afile/x/new.db"))
    assert e.value.errors == [f"--storage: {tmp_path}/afile is a file, where "
                              f"{tmp_path}/afile/x/new.db needs a folder: give another path"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_the_storage_option_in_a_folder_where_no_file_can_be_made_is_an_error(tmp_path):
    # /proc passes os.access for root: the study stopped after Ray had started, saying the
    # storage file had been deleted while it ran (there never was one).
    from scaletune.search.runner import preflight

    _, cfg = study_file(tmp_path)
    with pytest.raises(ConfigError, match=re.escape("storage: cannot create /proc/x.db (")):
        preflight(with_options(cfg, storage="sqlite:////proc/x.db"))


# --------------------------------------------------------------------------- --address


@pytest.mark.parametrize("scheme", ["", "ray://"], ids=["host:port", "ray-client"])
def test_a_web_server_given_as_the_cluster_is_refused_at_once(tmp_path, capsys, scheme):
    # The job server's address (the dashboard's port, http:// left out) where the head's goes:
    # the port accepts the connection, and ray.init waited there for good, deaf to Ctrl-C.
    import http.server
    import threading

    import ray

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path, cfg = study_file(tmp_path)
        address = f"{scheme}127.0.0.1:{server.server_port}"
        code, out = run(capsys, str(path), "--address", address)
    finally:
        server.shutdown()
    assert code == 2, out
    assert (f"--address: {address} is a web server's port, as the Ray dashboard and job "
            f"server's is (http://127.0.0.1:{server.server_port}, the address that `run "
            "--detach`") in out, out
    assert "give the head's HOST:PORT (`ray start --head --port`, 6379 by default)" in out
    assert not ray.is_initialized() and not cfg.folder.exists()


@pytest.mark.parametrize("scheme", ["", "ray://"], ids=["host:port", "ray-client"])
def test_a_cluster_address_where_nothing_listens_is_refused_at_once(tmp_path, capsys, scheme):
    import ray

    port = free_port()  # nothing listens on it
    path, cfg = study_file(tmp_path)
    address = f"{scheme}127.0.0.1:{port}"
    code, out = run(capsys, str(path), "--address", address)
    # Rule: refused with what is wrong and the ways on, before Ray is asked: Ray waited without
    # end for a head that was not at host:port, and 30 s for a Ray client server.
    assert code == 2, out
    # The flag is named, not the study file, which gives no address.
    assert ("1 error(s) in the command line: --address: cannot join the Ray cluster at "
            f"{address}: nothing accepts connections there") in out
    assert "is the head node up" in out and "(`--address local`)" in out
    assert not ray.is_initialized()
    # Rule: a study refused leaves nothing behind: no storage, no study folder.
    assert not cfg.folder.exists()


def test_auto_with_a_recorded_cluster_that_is_gone_is_refused_at_once(tmp_path, capsys,
                                                                      monkeypatch):
    import ray

    port = free_port()
    # Where auto looks first; a cluster killed without `ray stop` leaves its address recorded
    # in /tmp/ray/ray_current_cluster the same way, and Ray waited for it without end.
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    path, cfg = study_file(tmp_path)
    code, out = run(capsys, str(path), "--address", "auto")
    assert code == 2, out
    assert re.search(rf"--address: auto joins the Ray cluster at [\d.]+:{port} "
                     r"\(RAY_ADDRESS, else the cluster last started on this machine\), and it "
                     r"does not answer: nothing accepts connections there", out), out
    assert "Start it again (`ray start --head`)" in out
    assert not ray.is_initialized() and not cfg.folder.exists()


def test_auto_with_a_job_server_in_ray_address_is_refused_in_a_line(tmp_path, capsys,
                                                                    monkeypatch):
    import ray

    # RAY_ADDRESS, as the README lets the job commands read it: `run --address auto` ended in
    # Ray's ValueError, a traceback.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    path, cfg = study_file(tmp_path)
    code, out = run(capsys, str(path), "--address", "auto")
    assert code == 2, out
    assert ("--address: auto joins the cluster in RAY_ADDRESS, and "
            "RAY_ADDRESS=http://127.0.0.1:8265 is a Ray job server") in out, out
    assert "Traceback" not in out
    assert not ray.is_initialized() and not cfg.folder.exists()


def test_auto_never_joins_another_studys_private_cluster(tmp_path, capsys, monkeypatch):
    import subprocess
    import sys

    import ray

    # Another study's Ray: a private cluster of this machine (as init_ray starts one), which
    # `ray start` did not record. Ray's own auto finds its gcs_server among the processes and
    # joins it; the study's trials would then die with that study.
    other = subprocess.Popen(
        [sys.executable, "-c", "import ray, sys, time\n"
         "ray.init(address='local', num_cpus=1, include_dashboard=False)\n"
         "print('up', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "up"
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        # Where `ray start` records its cluster: a folder where none was started.
        monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))
        path, cfg = study_file(tmp_path)
        code, out = run(capsys, str(path), "--address", "auto")
        joined = ray.is_initialized()
    finally:
        other.stdin.close()
        other.wait(timeout=60)
    assert code == 2, out
    assert ("--address: auto joins the Ray cluster started on this machine with `ray "
            "start` (or the one in RAY_ADDRESS), and none was recorded" in out), out
    # Where it looked: a head started with --temp-dir records itself elsewhere.
    assert f"({tmp_path / 'ray-tmp'}/ray/ray_current_cluster; a head started with --temp-dir " \
        "records itself in that folder instead: give its address, HOST:PORT)" in out, out
    assert "auto never joins another study's own cluster" in out
    assert not joined and not cfg.folder.exists()
    # validate says so too, as a note (it said ok): the file may be meant for another machine.
    raw = yaml.safe_load(path.read_text())
    raw["workers"] = {**raw.get("workers", {}), "address": "auto"}
    path.write_text(yaml.safe_dump(raw))
    assert main(["validate", str(path)]) == 0
    said = flat(capsys.readouterr().out)
    assert "note: workers.address: auto joins the Ray cluster started on this machine" in said
    assert "and none was recorded (" in said, said
    assert "(`scaletune run` refuses it on this machine now)" in said, said


def test_the_address_checks_say_what_auto_needs_and_pass_a_listening_port():
    import socket

    from scaletune.search.cluster import listening, unreachable

    said = unreachable("auto", ConnectionError("no cluster started with `ray start` is recorded"))
    assert said.startswith("workers.address: auto joins the Ray cluster started on this machine "
                           "with `ray start` (or the one in RAY_ADDRESS), and none was recorded (")
    assert "): start one (`ray start --head`)" in said
    # Rule: the port a head is asked to start on is the one given (it said 6379 for 6391).
    said = unreachable("10.1.2.3:6391", ConnectionError("Failed to connect"))
    assert "is the head node up, with Ray on that port (`ray start --head --port 6391`)?" in said
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        # Rule: a port that accepts connections passes, with or without the client's scheme.
        assert listening(f"127.0.0.1:{port}") is None
        assert listening(f"ray://127.0.0.1:{port}") is None
    assert listening("auto") is None  # Ray finds the cluster itself
    # A host that does not resolve is said so, not taken for a port that refuses.
    try:
        socket.getaddrinfo("no-such-head.invalid", None)
    except socket.gaierror:
        assert listening("no-such-head.invalid:6379").startswith(
            "the host no-such-head.invalid is not known here")


@pytest.mark.slow
def test_auto_joins_a_cluster_started_with_ray_start_under_its_token(tmp_path, shakespeare):
    import os
    import secrets
    import shutil
    import signal
    import tempfile
    import time

    from tests.search.helpers import tiny_study, write_study

    # A new process, as a user's: Ray turns on its token authentication for a process once,
    # and this test process may have started a cluster of its own already.
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    # Where `ray start` records the cluster: this test's own. A short path: Ray's sockets live
    # under it, and a socket's path may not exceed 107 bytes.
    records = Path(tempfile.mkdtemp(prefix="st-ray-"))
    env["RAY_TMPDIR"] = str(records)
    # The token `ray start` takes, where it would make one in ~/.ray/auth_token.
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "auth_token")
    (tmp_path / "auth_token").write_text(secrets.token_hex(16))
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
         "--port", str(free_port()), "--num-cpus", "2", "--include-dashboard", "false",
         "--disable-usage-stats", "--dashboard-agent-listen-port", str(free_port())],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not list(records.rglob("ray_current_cluster")):
            assert head.poll() is None and time.time() < deadline, "ray start did not start"
            time.sleep(0.5)
        path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, n_trials=1))
        joined = subprocess.run(
            [sys.executable, "-m", "scaletune.search.cli", "run", str(path), "--address", "auto"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        # SIGKILL to its process group: every process `ray start` began, at once (SIGTERM left
        # Ray's shutdown 34 s of the test's 48).
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=90)
        shutil.rmtree(records, ignore_errors=True)
    # Before: 20 s of "Authentication token is missing or incorrect", then "none was" started.
    out = flat(joined.stdout)
    assert joined.returncode == 0, out + joined.stderr
    assert "best trial 0: val loss" in out and "trials 1 complete" in out


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="Linux only")
def test_the_plan_counts_the_cores_this_process_may_run_on(tmp_path, shakespeare):
    from tests.search.helpers import tiny_study, write_study

    # Under `taskset -c 0` on 2 cores the study's Ray counted both: two trials trained at once
    # on one core.
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare, workers={"cpus_per_trial": 1}))
    code = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from scaletune.search.cli import main; sys.exit(main(['run', sys.argv[1], "
            "'--dry-run']))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 CPU and 0 GPU per trial; 1 trial(s) at once (1 cores)" in flat(done.stdout)
