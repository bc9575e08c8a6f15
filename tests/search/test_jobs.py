"""A study handed to a Ray cluster as a Ray job (`run --detach`), followed, stopped and resumed
from outside it (`jobs`, `logs`, `stop`), against a real cluster whose job server listens on
loopback; and the refusals that need no cluster."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from scaletune.search import lease
from scaletune.search.cli import main
from scaletune.search.config import validate_study
from scaletune.search.jobs import entrypoint
from scaletune.search.plan import n_finished
from tests.ports import free_port
from tests.search.helpers import REPO, flat, tiny_study, trial_attr_rows, write_study


def scaletune(*args: str) -> subprocess.CompletedProcess:
    """The command as a user on another machine types it: a process of its own, which reaches
    the cluster only through its job server."""
    return subprocess.run([sys.executable, "-m", "scaletune.search.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_an_unreachable_job_server_is_one_line_that_names_it(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["jobs", "--address", url]) == 2
    out = flat(capsys.readouterr().err)
    # One error, naming the address and what to check.
    assert out.startswith(f"error: cannot reach the Ray job server at {url}")
    assert "is the cluster up" in out
    # A job server behind a proxy's basic auth: its password is masked, as a storage's is.
    port = free_port()
    for command in (["jobs"], ["logs", "my-study"], ["stop", "my-study"]):
        assert main([*command, "--address", f"http://ju:JobPw9Secret@127.0.0.1:{port}"]) == 2
        out = flat(capsys.readouterr().err)
        assert f"cannot reach the Ray job server at http://ju:***@127.0.0.1:{port}" in out
        assert "JobPw9Secret" not in out, out


def test_a_command_on_a_job_needs_a_job_server(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    # A study that joins a cluster by its Ray address was told to set workers.address.
    from tests.search.test_export import study_file

    path, _ = study_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["workers"] = {"address": "10.0.0.5:6379"}
    path.write_text(yaml.safe_dump(raw))
    assert main(["jobs", str(path)]) == 2
    assert ("(workers.address 10.0.0.5:6379 is the cluster the study joins, not its job server)"
            in flat(capsys.readouterr().err))
    assert main(["logs", "scaletune-tiny-0a1b2c3d"]) == 2
    # A job id says nothing about its cluster: the error says how to name one.
    assert "no Ray job server: give --address http://HEAD:8265" in flat(capsys.readouterr().err)
    # The id Ray gives a job submitted by other means is a job too, not a study file.
    assert main(["logs", "raysubmit_XYZ123abc"]) == 2
    assert "no Ray job server: give --address http://HEAD:8265" in flat(capsys.readouterr().err)
    assert main(["stop", "scaletune-tiny-0a1b2c3d", "--address", "ray://head:10001"]) == 2
    # A Ray Client address is not a job server.
    assert "--address: ray://head:10001 is not a Ray job server" in flat(capsys.readouterr().err)
    # Neither a file nor a job's id nor a name: said so ("1 error(s) in ...: file not found").
    assert main(["logs", "no/such.yaml", "--address", "http://127.0.0.1:8265"]) == 2
    assert ("no/such.yaml: no such study file, and not a job's id (scaletune-NAME-HEX, as "
            "`scaletune run --detach` and `scaletune jobs` print it, or raysubmit_...) nor a "
            "study's name") in flat(capsys.readouterr().err)
    # A study's name, as `scaletune jobs` lists it, is looked up on the job server (it was
    # refused as neither a file nor a job's id, so a job had to be named by its id).
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["logs", "my-study", "--address", url]) == 2
    assert f"cannot reach the Ray job server at {url}" in flat(capsys.readouterr().err)
    # `jobs` takes it too (it said "file not found").
    assert main(["jobs", "my-study", "--address", url]) == 2
    assert f"cannot reach the Ray job server at {url}" in flat(capsys.readouterr().err)
    # One that came from RAY_ADDRESS is named so: the error blamed an --address never given.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert main(["jobs"]) == 2
    assert ("RAY_ADDRESS: 127.0.0.1:6379 is not a Ray job server: give the cluster's dashboard "
            "address, http://HEAD:8265 (with --address, or in RAY_API_SERVER_ADDRESS, which is "
            "read first)") in flat(capsys.readouterr().err)


def test_a_job_server_address_is_refused_without_detach(tmp_path, shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare, workers={"address": "http://127.0.0.1:8265"})
    path = write_study(tmp_path, study)
    assert main(["run", str(path)]) == 2
    out = flat(capsys.readouterr().err)
    # The driver would run here, where Ray cannot join a cluster by its job server's URL.
    assert "workers.address: http://127.0.0.1:8265 is a Ray cluster's job server" in out
    assert "`scaletune run --detach`" in out
    # Refused before anything was written.
    assert not (tmp_path / "study").exists()
    # validate says so (it said ok), as a note: the file is right for `run --detach`.
    assert main(["validate", str(path)]) == 0
    assert ("workers.address: http://127.0.0.1:8265 is a Ray cluster's job server: `scaletune "
            "run --detach` hands the driver to that cluster; to drive the study from here, give "
            "auto, HOST:6379 (the head's address, as `ray start --address` takes it) or "
            "ray://HOST:10001 (`scaletune run` without --detach refuses it)") in flat(
        capsys.readouterr().out)


def test_detach_names_an_address_that_is_no_job_server(tmp_path, shakespeare, capsys,
                                                       monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    # It said "no Ray job server: give --address ...", to a user who gave one.
    for address in ("127.0.0.1:6379", "auto"):
        assert main(["run", str(path), "--detach", "--address", address]) == 2
        out = flat(capsys.readouterr().err)
        assert (f"--address: {address} is not a Ray job server: give the cluster's dashboard "
                "address, http://HEAD:8265") in out, out
    assert not (tmp_path / "study").exists()


def test_a_port_of_rays_own_given_as_the_job_server_is_said_not_a_traceback(capsys):
    # http:// in front of the head's port: a BadStatusLine traceback, exit 1, of every command.
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def answer_as_grpc() -> None:  # the HTTP/2 settings frame a gRPC port sends back
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x18\x04\x00\x00\x00\x00\x00\x00\x04\x00@\x00\x00")

    threading.Thread(target=answer_as_grpc, daemon=True).start()
    address = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        for command in (["jobs"], ["logs", "some-study"], ["stop", "some-study"]):
            assert main([*command, "--address", address]) == 2
            out = flat(capsys.readouterr().err)
            assert (f"{address} does not answer as a Ray job server (no HTTP there): the head's "
                    "own port (6379) or Ray's client server (10001)? The job server is the "
                    "dashboard's address, http://HEAD:8265") in out, out
            assert "Traceback" not in out
    finally:
        server.close()
    # One that accepts and closes unanswered (a tunnel to a dashboard that is down) is no port
    # of Ray's own: it was told it was.
    closing = socket.create_server(("127.0.0.1", 0))

    def close_at_once() -> None:
        while True:
            try:
                conn, _ = closing.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=close_at_once, daemon=True).start()
    try:
        assert main(["jobs", "--address", f"http://127.0.0.1:{closing.getsockname()[1]}"]) == 2
        out = flat(capsys.readouterr().err)
        assert "cannot reach the Ray job server at" in out and "no HTTP there" not in out, out
    finally:
        closing.close()


def test_a_storage_password_is_refused_before_it_reaches_the_job_command_line(tmp_path,
                                                                             shakespeare, capsys):
    study = tiny_study(tmp_path, shakespeare,
                       workers={"address": f"http://127.0.0.1:{free_port()}"})
    path = write_study(tmp_path, study)
    url = "postgresql://tuner:s3cret-pw@db.example:5432/studies"
    assert main(["run", str(path), "--detach", "--storage", url]) == 2
    out = flat(capsys.readouterr().err)
    # Refused before the job server is asked: `ray job list` would show the command line.
    assert "--storage postgresql://tuner:***@db.example:5432/studies" in out
    assert "~/.pgpass" in out
    assert "s3cret-pw" not in out
    assert "cannot reach" not in out
    # Its dry run refuses it as well (it printed the plan and "would submit it").
    assert main(["run", str(path), "--detach", "--storage", url, "--dry-run"]) == 2
    out = flat(capsys.readouterr().err)
    assert "--storage postgresql://tuner:***@db.example:5432/studies" in out
    assert "s3cret-pw" not in out


class _JobServer:
    """Ray's job client to a server that holds ``jobs`` (``submitted`` adds to them), whose
    drivers have all opened their studies."""

    def __init__(self, jobs=()) -> None:
        self.jobs, self.submitted = list(jobs), []

    def list_jobs(self):
        return self.jobs

    def submit_job(self, **job):
        self.submitted.append(job)
        return job["submission_id"]

    def get_job_info(self, job_id):
        for job in self.jobs:
            if job.submission_id == job_id:
                return job
        raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")

    def get_job_status(self, job_id):
        return next((j.status for j in self.jobs if j.submission_id == job_id), "RUNNING")

    def get_job_logs(self, job_id):
        return "study tiny on sqlite:////x/studies.db: 0/2 trials finished, up to 1 at once\n"


def test_a_password_in_the_job_servers_address_is_neither_stored_nor_printed(tmp_path, shakespeare,
                                                                           capsys, monkeypatch):
    from scaletune.search import jobs

    server = _JobServer()
    monkeypatch.setattr(jobs, "client", lambda url: server)
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    assert main(["run", str(path), "--detach", "--address",
                 "http://admin:Sekr1t@127.0.0.1:8265"]) == 0
    out = flat(capsys.readouterr().out)
    # The commands that follow the job name the server with the password masked; the job's
    # environment, which `ray job list` shows and the driver's lease stores, holds it masked.
    assert f"scaletune stop {path} --address 'http://admin:***@127.0.0.1:8265'" in out, out
    assert "Sekr1t" not in out
    (job,) = server.submitted
    assert job["runtime_env"]["env_vars"][lease.JOB_SERVER_ENV] == (
        "http://admin:***@127.0.0.1:8265")
    assert "Sekr1t" not in str(job)
    # The dry run says where it would submit the study, masked too.
    assert main(["run", str(path), "--detach", "--dry-run", "--address",
                 "http://admin:Sekr1t@127.0.0.1:8265"]) == 0
    out = flat(capsys.readouterr().out)
    assert "as a Ray job to http://admin:***@127.0.0.1:8265" in out and "Sekr1t" not in out
    # Its workers line names the job server as one (it read "the Ray cluster at http://...").
    assert ("workers the Ray cluster whose job server is at http://admin:***@127.0.0.1:8265 "
            "(the driver runs there, a Ray job)") in out, out


def test_ctrl_c_while_the_job_server_answers_leaves_the_job_running_and_says_how_to_follow_it(
        tmp_path, shakespeare, capsys, monkeypatch):
    # Ctrl-C during a request (not the pause between two) ended in "interrupted; the next run
    # of the same command recovers", as for a study run here, though the job runs on.
    from scaletune.search import jobs

    class Interrupted(_JobServer):
        def get_job_logs(self, job_id):
            raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "client", lambda url: Interrupted())
    path = write_study(tmp_path, tiny_study(tmp_path, shakespeare))
    assert main(["run", str(path), "--detach", "--address", "http://127.0.0.1:8265"]) == 0
    out = flat(capsys.readouterr().out)
    assert "the job is RUNNING; the driver has not opened the study yet" in out, out
    assert f"scaletune logs {path} --address http://127.0.0.1:8265 --follow" in out


def test_a_study_named_as_a_job_is_found_by_its_name(monkeypatch):
    # `scaletune logs scaletune-x` of study scaletune-x: "no Ray job scaletune-x", though
    # `scaletune jobs` listed its job.
    from types import SimpleNamespace

    from scaletune.search import jobs
    from scaletune.trainer.errors import SetupError

    job = SimpleNamespace(submission_id="scaletune-scaletune-x-0a1b2c3d", status="RUNNING",
                          start_time=1, metadata={jobs.METADATA: "scaletune-x"})
    monkeypatch.setattr(jobs, "client", lambda url: _JobServer([job]))
    assert jobs.find_job("http://127.0.0.1:8265", "scaletune-x")[1] == job.submission_id
    # Neither a job nor a study's: the job id named.
    with pytest.raises(SetupError, match="no Ray job scaletune-y on http://127.0.0.1:8265"):
        jobs.find_job("http://127.0.0.1:8265", "scaletune-y")


def test_stop_of_a_study_whose_job_ended_names_the_one_running_in_another_storage(monkeypatch,
                                                                                 capsys):
    # `stop` of the study found its latest job in the file's storage, ended, and said "nothing
    # to stop" while the study ran as another job on the cluster (run --detach --storage).
    from types import SimpleNamespace

    from scaletune.search import jobs
    from scaletune.trainer.console import make_console

    def job(hex_id, status, storage):
        return SimpleNamespace(submission_id=f"scaletune-tiny-{hex_id}", status=status,
                               start_time=1, metadata={jobs.METADATA: "tiny",
                                                       jobs.STORAGE: storage})

    ended = job("0a1b2c3d", "SUCCEEDED", "sqlite:////a/studies.db")
    running = job("4e5f6a7b", "RUNNING", "sqlite:////b/studies.db")
    monkeypatch.setattr(jobs, "client", lambda url: _JobServer([ended, running]))
    assert jobs.stop("http://127.0.0.1:8265", "tiny", make_console(),
                     storage="sqlite:////a/studies.db") == 0
    assert ("Ray job scaletune-tiny-0a1b2c3d is not running (SUCCEEDED); nothing to stop; study "
            "'tiny' runs as Ray job scaletune-tiny-4e5f6a7b in sqlite:////b/studies.db (`scaletune "
            "stop scaletune-tiny-4e5f6a7b --address http://127.0.0.1:8265` stops it)"
            ) in flat(capsys.readouterr().out)


def test_jobs_of_a_study_run_in_another_storage_says_where_they_are(monkeypatch, capsys):
    # `jobs STUDY.yaml` said "no scaletune jobs of study tiny" of a study running as a job with
    # --storage, where `stop` said to give that --storage.
    from types import SimpleNamespace

    from scaletune.search import jobs
    from scaletune.trainer.console import make_console

    running = SimpleNamespace(submission_id="scaletune-tiny-4e5f6a7b", status="RUNNING",
                              start_time=1, metadata={jobs.METADATA: "tiny",
                                                      jobs.STORAGE: "postgresql://u@h/db"})
    monkeypatch.setattr(jobs, "client", lambda url: _JobServer([running]))
    assert jobs.list_jobs("http://127.0.0.1:8265", "tiny", make_console(),
                          storage="sqlite:////a/studies.db") == 0
    assert ("no scaletune jobs of study tiny on http://127.0.0.1:8265 in sqlite:////a/studies.db; "
            "its jobs there are in postgresql://u@h/db: give --storage as `run --detach` was "
            "given it") in flat(capsys.readouterr().out)


@pytest.mark.parametrize("job", [None, "scaletune-tiny-4e5f6a7b"],
                         ids=["a local driver", "a job's driver, its storage written otherwise"])
def test_detach_refuses_a_study_another_driver_holds(tmp_path, shakespeare, monkeypatch, capsys,
                                                     job):
    # A local `scaletune run` of the study: refused before the job server is asked (it was
    # submitted, and the job failed on the lease). A job's driver whose storage this server's
    # jobs name otherwise (localhost for 127.0.0.1, the same database): the job of one spelling
    # was not found by the other's --detach, which was submitted and failed on the lease.
    from scaletune.search import jobs
    from scaletune.search.config import load_study

    server = _JobServer()
    if job:
        monkeypatch.setattr(jobs, "client", lambda url: server)
    study = tiny_study(tmp_path, shakespeare,
                       workers={"address": f"http://127.0.0.1:{free_port()}"})
    path = write_study(tmp_path, study)
    cfg = load_study(path)
    cfg.folder.mkdir(parents=True)
    held = optuna.create_study(study_name=cfg.name, storage=cfg.storage_url)
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # the driver, as its lease shows it
        now = time.time()
        held.set_user_attr(lease.ATTR, {"token": "t", "pid": driver.pid, "since": now,
                                        "host": socket.gethostname(), "heartbeat": now,
                                        **({"job": job, "job_server": "http://127.0.0.1:8265"}
                                           if job else {})})
        assert main(["run", str(path), "--detach"]) == 2
        out = flat(capsys.readouterr().err)
    finally:
        driver.kill()
        driver.wait()
    assert f"study 'tiny' is being run by another driver (pid {driver.pid} on " in out, out
    assert "cannot reach" not in out and server.submitted == []
    if job:
        assert f"scaletune stop {job} --address http://127.0.0.1:8265" in out, out


def test_the_job_runs_the_study_file_at_its_path_joined_to_its_cluster():
    command = entrypoint(Path("/shared/my studies/s.yaml"),
                         {"--n-trials": 6, "--max-concurrent": None, "--storage": None})
    # The same `scaletune run`, quoted for the shell, with `auto` for the cluster it runs on.
    assert command == "scaletune run '/shared/my studies/s.yaml' --address auto --n-trials 6"
    # Rule: the command that resumes a stopped job repeats its trials and storage (it dropped
    # --n-trials, and the job it submitted had nothing to run).
    from scaletune.search.jobs import _launch_flags

    command = entrypoint(Path("/s.yaml"), {"--n-trials": 10, "--max-concurrent": 4,
                                            "--storage": "postgresql://u@db host:5432/s"})
    assert _launch_flags(command) == (" --n-trials 10 --max-concurrent 4 --storage "
                                      "'postgresql://u@db host:5432/s'")
    assert _launch_flags(None) == ""


class _StartingHead:
    """Ray's job client as a head node just started answers it: its job agent is not up for
    the first ``refusals`` submissions (the message is Ray 2.60's)."""

    def __init__(self, refusals: int) -> None:
        self.refusals, self.submitted = refusals, []

    def submit_job(self, **job) -> str:
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("Request failed with status code 500: No available agent to "
                               "submit job, please try again later..")
        self.submitted.append(job)
        return job["submission_id"]


def test_a_job_is_offered_again_while_the_clusters_job_agent_starts(monkeypatch):
    from scaletune.search import jobs
    from scaletune.trainer.errors import SetupError

    slept = []
    monkeypatch.setattr(jobs.time, "sleep", slept.append)
    head = _StartingHead(refusals=3)
    jobs._submit(head, "http://127.0.0.1:8265", submission_id="scaletune-s-1", entrypoint="x")
    # Rule: refused three times while the agent starts, submitted on the fourth, once.
    assert [j["submission_id"] for j in head.submitted] == ["scaletune-s-1"]
    assert slept == [1.0, 1.0, 1.0]
    # Rule: a cluster whose agent never comes is one clear error, after AGENT_WAIT_S.
    monkeypatch.setattr(jobs, "AGENT_WAIT_S", 0.0)
    with pytest.raises(SetupError, match=r"the Ray job server at http://127.0.0.1:8265 refused "
                                         r"the study's job \(for 0 s\): .*No available agent"):
        jobs._submit(_StartingHead(refusals=1), "http://127.0.0.1:8265", submission_id="b")


def test_the_lease_of_a_detached_driver_names_its_job(monkeypatch):
    monkeypatch.setenv(lease.JOB_ENV, "scaletune-tiny-0a1b2c3d")
    study = optuna.create_study()
    held = lease.DriverLease(study)
    held.acquire()
    record = study.user_attrs[lease.ATTR]
    # Whoever is refused learns which job to stop.
    assert record["job"] == "scaletune-tiny-0a1b2c3d"
    assert "as Ray job scaletune-tiny-0a1b2c3d, running since" in lease.describe(record)
    assert "`scaletune stop STUDY.yaml` for a Ray job" in str(lease.busy("tiny", record))
    held.release()
    # Submitted by `run --detach`, it knows its job server too: the command is named whole.
    monkeypatch.setenv(lease.JOB_SERVER_ENV, "http://127.0.0.1:8265")
    held.acquire()
    record = study.user_attrs[lease.ATTR]
    assert ("stop it (`scaletune stop scaletune-tiny-0a1b2c3d --address http://127.0.0.1:8265`)"
            in str(lease.busy("tiny", record)))
    held.release()


CLUSTER = """
import os
import shutil
import sys
import tempfile
from ray.cluster_utils import Cluster

# A folder of the cluster's own, short (Ray's sockets live under it), in which it records its
# address as `ray start` does: Ray gives a job's driver the cluster recorded in the head's
# folder, or where none is, any cluster running on the machine (another test's).
records = tempfile.mkdtemp(prefix="st-job-")
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 2, "object_store_memory": 80 * 1024**2, "node_ip_address": "127.0.0.2",
    "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": int(sys.argv[1]),
    # The job agent's own port (Ray's default, 52365, is every node's: another cluster on this
    # machine, another test's, may hold it, and then no job can be submitted).
    "dashboard_agent_listen_port": int(sys.argv[2]), "temp_dir": records,
})
with open(os.path.join(records, "ray_current_cluster"), "w") as f:
    f.write(cluster.address)
print("http://" + cluster.head_node.address_info["webui_url"], flush=True)
sys.stdin.read()  # until the test closes it
cluster.shutdown()
shutil.rmtree(records, ignore_errors=True)
"""
"""A one-node Ray cluster with its job server (the dashboard) on loopback, in a process of its
own: Ray reads RAY_AUTH_MODE once, when it is imported, and this test process imported it
before the cluster's token was chosen."""


@pytest.fixture
def job_server(monkeypatch):
    """The job server's URL of a cluster under a token of its own; the test's `scaletune`
    commands hold the token, as a user's machine would."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    # The job's `scaletune run` is found on the PATH the cluster was started with.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER, str(free_port()), str(free_port())],
                            cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), "the cluster did not start"
        yield url
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def job_status(path: Path, job: str, address: str | None = None) -> str:
    said = scaletune("jobs", str(path), *(["--address", address] if address else []))
    found = re.search(rf"{job}\s*│\s*\S+\s*│\s*(\w+)", said.stdout)
    return found.group(1) if found else said.stdout + said.stderr


@pytest.mark.slow
def test_a_detached_study_is_followed_stopped_and_resumed_from_outside(tmp_path, shakespeare,
                                                                      job_server):
    # Trials of a few seconds, one at a time: the study is still running when it is stopped.
    raw = tiny_study(tmp_path, shakespeare, n_trials=30, tokens_per_trial=245_760,
                     pruner={"name": "none"},
                     workers={"address": job_server, "cpus_per_trial": 1, "max_concurrent": 1})
    path = write_study(tmp_path, raw)
    cfg = validate_study(raw)
    db = cfg.folder / "study.db"

    submitted = scaletune("run", str(path), "--detach")
    out = flat(submitted.stdout)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = re.search(r"as Ray job (scaletune-tiny-\w+)", out).group(1)
    # The command returns once the driver holds the study on the cluster, with what follows it.
    assert f"submitted study tiny as Ray job {job} to {job_server}" in out
    assert "the driver runs on the cluster: study tiny on sqlite:///" in out
    assert f"scaletune stop {path}" in out

    # A second job of the same study is refused before it is submitted.
    second = scaletune("run", str(path), "--detach")
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"study 'tiny' is being run by Ray job {job} (RUNNING" in flat(second.stderr)
    # A local driver of the same study is refused with the lease's message, naming the job.
    local = scaletune("run", str(path), "--address", "local")
    assert local.returncode == 2
    assert "is being run by another driver (pid " in flat(local.stderr)
    assert f"as Ray job {job}" in flat(local.stderr)
    # Copied as it is, the command it names stops the job.
    assert f"(`scaletune stop {job} --address {job_server}`)" in flat(local.stderr)

    deadline = time.time() + 180
    while not any(s == "COMPLETE" for _, s, _ in trial_attr_rows(db, "x")):
        assert time.time() < deadline, "no trial completed on the cluster"
        time.sleep(1)
    listed = scaletune("jobs", str(path))
    # Progress from the driver's log: the tally after each finished trial.
    assert job in listed.stdout and "RUNNING" in listed.stdout
    assert re.search(r"tiny  done [1-9]\d*  pruned 0  failed 0  running \d  of 30", listed.stdout)
    assert job in scaletune("jobs", "tiny", "--address", job_server).stdout  # by its name
    # A study of the same name in a storage of its own is another study: its jobs were this
    # one's, and `stop` of its file stopped this job.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = write_study(elsewhere, {**raw, "study_dir": str(elsewhere / "runs")})
    assert "no scaletune jobs of study tiny" in scaletune("jobs", str(other)).stdout
    stopped_other = scaletune("stop", str(other))
    assert stopped_other.returncode == 2 and "no Ray job of study 'tiny'" in flat(
        stopped_other.stderr), stopped_other.stdout + stopped_other.stderr
    # It says where the study's jobs are, and --storage (as `run --detach --storage` was
    # given it) finds them from any file of the study's name: they found none.
    assert f"its jobs there are in {cfg.storage_url}: give --storage" in flat(stopped_other.stderr)
    assert job in scaletune("jobs", str(other), "--storage", cfg.storage_url).stdout

    # Stopped while a trial trains: one that a worker began after the last one ended. (Between
    # trials there is nothing running to stop; a trial of a few seconds leaves time to stop it.)
    deadline = time.time() + 60
    while not [n for n, s, pid in trial_attr_rows(db, "worker_pid")
               if s == "RUNNING" and pid is not None]:
        assert time.time() < deadline, "no trial started on the cluster"
        time.sleep(0.2)
    stopped = scaletune("stop", str(path))
    out = flat(stopped.stdout)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # Ray's SIGTERM stopped the driver as Ctrl-C does: its running trial is queued again.
    said = re.search(rf"Ray job {job}: STOPPED; the driver: stopped \(SIGTERM\): (\d) running "
                     r"trial\(s\) stopped and queued again", out)
    assert said, out
    assert f"resume it with scaletune run {path} --detach" in out
    study = optuna.load_study(study_name="tiny", storage=cfg.storage_url)
    stopped_trials = [t for t in study.trials if t.state == TrialState.FAIL
                      and t.user_attrs.get("fail_reason") == "stopped (SIGTERM)"]
    # The count the driver said is the trials it marked stopped, each queued again. One unless
    # the trial ended in the second the stop took to arrive.
    assert int(said.group(1)) == len(stopped_trials) <= 1
    assert all(t.user_attrs["retried"] for t in stopped_trials)
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.user_attrs["retry_of"] for t in waiting] == [t.number for t in stopped_trials]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [t.params for t in stopped_trials]
    done = n_finished(study)
    assert 1 <= done < 30
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # The lease was released: the next driver starts at once.
    assert study.user_attrs.get(lease.ATTR) is None
    logs = scaletune("logs", job, "--address", job_server)
    assert "stopped (SIGTERM)" in logs.stdout
    # The driver's own line says how a job is resumed: its "run the same command" was the
    # job's command, which drives the study from the cluster's head.
    assert "queued again; resume it with `scaletune run --detach`, as `scaletune stop` says" in \
        flat(logs.stdout), logs.stdout
    # By the study's name, as `scaletune jobs` lists it: its latest job.
    assert scaletune("logs", raw["name"], "--address", job_server).stdout == logs.stdout
    # Followed, the log of an ended job is the driver's, to its end: Ray's "WebSocket closed"
    # line came after it.
    followed = scaletune("logs", job, "--follow", "--address", job_server)
    assert "stopped (SIGTERM)" in followed.stdout
    assert "WebSocket" not in followed.stdout + followed.stderr, followed.stderr
    # A job that did not succeed ends its log with how it ended and how to resume it, and exit
    # code 1: its log just stopped, exit code 0, with a driver killed or a study stopped.
    assert followed.returncode == 1, followed.stdout + followed.stderr
    assert f"Ray job {job} ended STOPPED" in flat(followed.stdout)
    assert flat(followed.stdout).endswith(f"resume it with scaletune run {path} --detach")

    # Submitted again, the study resumes to the number of trials asked for; here the job
    # server is given on the command line (the file names none, as workers may change on a
    # resume), and the commands that follow the job name it too.
    raw["workers"].pop("address")
    path = write_study(tmp_path, raw)
    # (--storage here names the file's own: the commands that follow the job carry it.)
    resumed = scaletune("run", str(path), "--detach", "--n-trials", str(done + 2),
                        "--address", job_server, "--storage", cfg.storage_url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"study tiny on sqlite:///{db.resolve()}: {done}/{done + 2} trials finished" \
           in flat(resumed.stdout)
    assert (f"scaletune stop {path} --address {job_server} --storage {cfg.storage_url}"
            in flat(resumed.stdout))
    again = re.search(r"as Ray job (scaletune-tiny-\w+)", resumed.stdout).group(1)
    # The refusal of a second job names the stop command with the server, as it must be run.
    second = scaletune("run", str(path), "--detach", "--address", job_server, "--storage",
                       cfg.storage_url)
    assert second.returncode == 2
    assert (f"(`scaletune stop {path} --address {job_server} --storage {cfg.storage_url}`)"
            in flat(second.stderr))
    # A job id the server does not hold: one line, not Ray's 404 traceback.
    for command in ("stop", "logs"):
        unknown = scaletune(command, "scaletune-tiny-nope1234", "--address", job_server)
        assert unknown.returncode == 2, unknown.stdout + unknown.stderr
        assert f"no Ray job scaletune-tiny-nope1234 on {job_server}" in flat(unknown.stderr)
        assert "Traceback" not in unknown.stderr
    deadline = time.time() + 180
    while (status := job_status(path, again, job_server)) != "SUCCEEDED":
        assert status in ("PENDING", "RUNNING") and time.time() < deadline, status
        time.sleep(2)
    study = optuna.load_study(study_name="tiny", storage=cfg.storage_url)
    assert n_finished(study) == done + 2
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == done + 2
    followed = scaletune("logs", again, "--follow", "--address", job_server)
    assert followed.returncode == 0 and " ended " not in followed.stdout, followed.stdout
    # Once more: the driver on the cluster finds the trials finished, and the command says so
    # instead of naming commands to follow a job that has ended.
    ended = scaletune("run", str(path), "--detach", "--n-trials", str(done + 2),
                      "--address", job_server)
    out = flat(ended.stdout)
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert (f"the driver on the cluster: nothing to run: {done + 2} trials have finished and "
            f"the study asks for {done + 2};") in out
    assert "this machine may go now" not in out

    # A file the study names that the cluster lacks: the job fails and the command says which.
    broken = write_study(tmp_path, {**raw, "name": "broken",
                                    "data": {**raw["data"], "path": str(tmp_path / "gone.txt")}},
                         "broken.yaml")
    failed = scaletune("run", str(broken), "--detach", "--address", job_server)
    out = flat(failed.stdout)
    assert failed.returncode == 2
    assert "the job FAILED; its log ends:" in out
    assert f"data.path: file not found: '{tmp_path / 'gone.txt'}'" in out


def test_the_progress_of_an_ended_job_has_no_time_left():
    # A job whose driver was killed read "running 0 of 31 ... ETA ~60 s" in `scaletune jobs`.
    from scaletune.search.jobs import _progress

    logs = ("trial 3 complete: 2.5000\n"
            "tiny  done 3  pruned 1  failed 0  running 1  of 31  |  best 2.5000 (trial 3)  |  "
            "41s  |  ETA ~60 s\n")
    tally = ("tiny  done 3  pruned 1  failed 0  running 1  of 31  |  best 2.5000 (trial 3)  |  "
             "41s")
    assert _progress(logs, "RUNNING") == tally + "  |  ETA ~60 s"
    assert _progress(logs, "FAILED") == tally


def test_a_job_server_that_asks_for_a_token_says_where_this_machine_keeps_one(tmp_path):
    import http.server
    import threading

    class Refuses(http.server.BaseHTTPRequestHandler):  # what a head under token auth answers
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    token = tmp_path / "auth_token"
    # A process of its own: Ray reads its authentication mode once, and this one's may be on.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_AUTH_TOKEN_PATH"] = str(token)
    code = (f"from scaletune.search.jobs import client\ntry:\n    client({url!r})\n"
            "except Exception as e:\n    print(e)\n")

    def said() -> str:
        return flat(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, timeout=120).stdout)

    try:
        # Rule: on the head's machine (the token stored here), the one variable missing is named.
        token.write_text(secrets.token_hex(16))
        assert (f"a token is stored here ({token}), which Ray presents only under "
                "RAY_AUTH_MODE=token: export RAY_AUTH_MODE=token") in said()
        # Elsewhere, where the token comes from.
        token.unlink()
        assert "set RAY_AUTH_MODE=token and the token in RAY_AUTH_TOKEN" in said()
        # A token sent and refused is not the cluster's: it was told to set what was set.
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        assert (f"the Ray job server at {url} refused the token in RAY_AUTH_TOKEN: it is not "
                "this cluster's") in said(), said()
        # A user:password in the address goes in the header the token would: it is not the
        # token that was refused (said so with the token right, as the server cannot tell).
        code = code.replace(url, url.replace("http://", "http://admin:Sekr1t@"))
        assert ("asks for the cluster's token, which the user and password in the address "
                "replace") in said(), said()
        assert "Sekr1t" not in said()
    finally:
        server.shutdown()


def test_the_progress_of_a_job_before_its_first_trial_ends_is_where_the_study_stands():
    # It showed the log's last line: a trial's evaluation, or for a finished study the
    # summary's export command, as the job's progress.
    from scaletune.search.jobs import _progress

    started = ("study tiny on sqlite:////tmp/x/studies.db: 4/10 trials finished, up to 2 at once\n"
               "trial 9 started: lr=0.003\n"
               "trial 9 at 301,056 tokens: val loss 2.4137\n")
    assert _progress(started, "RUNNING") == "4/10 trials finished"
    stopped = started + ("stopped (SIGTERM): 1 running trial(s) stopped and queued again; run "
                         "the same command to resume\n")
    assert _progress(stopped, "STOPPED") == ("4/10 trials finished; stopped (SIGTERM): 1 running "
                                             "trial(s) stopped and queued again")
    finished = ("study tiny on sqlite:////tmp/x/studies.db: 4/4 trials finished\n"
                "nothing to run: 4 trials have finished\n"
                "  next     scaletune export tiny.yaml --tokens 6e5 -o final.yaml\n")
    assert _progress(finished, "SUCCEEDED") == "nothing to run: 4 trials have finished"


def test_a_drivers_first_line_is_found_in_a_study_that_holds_repeats_of_its_best():
    # With --repeat-best, the line says which trials are repeats, in brackets: `run --detach`
    # did not see its driver start and waited for the job's end (up to 180 s), and `jobs` lost
    # the study's progress.
    from scaletune.search.jobs import STARTED, _progress
    from scaletune.search.noise import REPEAT_OF, TRAIN_SEED, finished_of

    study = optuna.create_study()
    for x in (0.1, 0.2, 0.3, 0.1):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        if x == 0.1 and trial.number:
            trial.set_user_attr(REPEAT_OF, 0)
            trial.set_user_attr(TRAIN_SEED, 1)
        study.tell(trial, 2.0 + x)
    finished = finished_of(study.get_trials(deepcopy=False), 3, 3)
    assert "repeat" in finished
    line = f"study tiny on sqlite:////tmp/x/studies.db: {finished}, up to 2 at once"
    started = STARTED.search(f"{line}\ntrial 4 started: lr=0.003\n")
    assert started and started.groups() == ("3", "4"), line
    assert _progress(f"{line}\n", "RUNNING") == "3/4 trials finished"
    searched = study.get_trials()[:3]  # and n_trials lowered to 2 since they ran
    lowered = f"study tiny on sqlite:////tmp/x/studies.db: {finished_of(searched, 3, 2)}"
    assert "earlier launch" in lowered and STARTED.search(lowered).groups() == ("3", "3")


def test_a_job_server_that_never_answers_is_said_not_waited_for(monkeypatch):
    # A server that accepts the connection and never answers (a stuck dashboard, a half-open
    # tunnel): Ray's client waited without a time limit, every job command without a word.
    from scaletune.search import jobs
    from scaletune.trainer.errors import SetupError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    monkeypatch.setattr(jobs, "JOB_SERVER_TIMEOUT_S", 1.0)
    try:
        with pytest.raises(SetupError, match=re.escape(
                f"the Ray job server at {url} did not answer within 1 s")):
            jobs.client(url)
    finally:
        server.close()
