"""Studies on a real PostgreSQL server on 127.0.0.1 (tests/run.sh starts one with
tests/postgres.sh and exports SCALETUNE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from scaletune.search.runner import n_finished
from scaletune.search.storage import make_storage, mask_url
from scaletune.trainer.errors import ConfigError
from tests.search.helpers import flat, scaletune_run, tiny_study, write_study

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("SCALETUNE_TEST_POSTGRES_URL")
    if url:
        return url
    why = ("no PostgreSQL server: SCALETUNE_TEST_POSTGRES_URL is not set (tests/run.sh sets it "
           "with tests/postgres.sh when the postgresql package is installed)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the PostgreSQL tests must run, but {why}", pytrace=False)
    pytest.skip(why)


@contextlib.contextmanager
def connect(url: str):
    """A connection in autocommit: each statement its own transaction, so that each read of
    pg_stat_activity is fresh. (psycopg2's `with connection` holds one transaction for the whole
    block, autocommit or not, and PostgreSQL keeps a transaction's first view of
    pg_stat_activity: the loop below saw the connections it had ended as still there, and
    ended none after its first round.)"""
    import psycopg2

    con = psycopg2.connect(url)
    con.autocommit = True
    try:
        yield con
    finally:
        con.close()


def study_states(cur, name: str) -> list[str]:
    """The states of study ``name``'s trials; none until the driver has created Optuna's tables
    (on a database no test has written yet)."""
    import psycopg2.errors

    try:
        cur.execute("SELECT t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                    "WHERE s.study_name = %s", (name,))
    except psycopg2.errors.UndefinedTable:
        return []
    return [str(row[0]) for row in cur.fetchall()]


def pg_study(tmp_path: Path, shakespeare: Path, url: str, **overrides) -> dict:
    # A new name per test: the database outlives the tests of a session.
    return tiny_study(tmp_path, shakespeare, name=f"pg-{uuid.uuid4().hex[:10]}", storage=url,
                      **overrides)


def test_study_runs_on_postgresql_and_never_shows_the_password(tmp_path, shakespeare, pg_url):
    password = make_url(pg_url).password
    raw = pg_study(tmp_path, shakespeare, pg_url, n_trials=3)
    done = subprocess.run([sys.executable, "-m", "scaletune.search.cli", "run",
                           str(write_study(tmp_path, raw))],
                          cwd=REPO, capture_output=True, text=True, timeout=400)
    out = done.stdout + done.stderr
    safe = out.replace(password, "<password>")
    assert done.returncode == 0, safe
    # The run's output names the storage, with the password masked, and never the password.
    assert mask_url(pg_url) in flat(out), safe
    assert password not in out

    study = optuna.load_study(study_name=raw["name"], storage=make_storage(pg_url))
    # The study ran end to end on the server: n_trials finished, learning curves stored.
    assert n_finished(study) == 3
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert all(t.intermediate_values for t in study.trials if t.state in
               (TrialState.COMPLETE, TrialState.PRUNED))
    with connect(pg_url) as con, con.cursor() as cur:
        assert len(study_states(cur, raw["name"])) == len(study.trials)
    # The study's attrs record the storage masked; no attr of the study or of a trial holds
    # the password.
    assert study.user_attrs["config"]["storage"] == mask_url(pg_url)
    assert password not in json.dumps(study.user_attrs, default=str)
    for t in study.trials:
        assert password not in json.dumps([t.user_attrs, t.system_attrs], default=str)
    # validate reads the stored study as it reads an SQLite file's (it said ok, and run refused).
    from scaletune.search.manage import validate_file

    raw["model"] = {**raw["model"], "n_embd": raw["model"]["n_embd"] * 2}
    with pytest.raises(ConfigError) as info:
        validate_file(str(write_study(tmp_path, raw, "changed.yaml")))
    said = " ".join(info.value.errors)
    assert "and this file changes what its trials trained with: model.n_embd: " in said, said
    assert password not in said


def test_study_survives_its_server_connections_being_dropped(tmp_path, shakespeare, pg_url):
    # Five trials of a few seconds: enough for the loop below to find one running, with the
    # driver's connections idle, more than once on a loaded machine too.
    raw = pg_study(tmp_path, shakespeare, pg_url, n_trials=5, pruner={"name": "none"},
                   tokens_per_trial=163_840)
    password = make_url(pg_url).password
    log = tmp_path / "run.log"
    dropped_mid_study = 0
    with scaletune_run(write_study(tmp_path, raw), log) as proc:
        with connect(pg_url) as con, con.cursor() as cur:
            deadline = time.time() + 400
            while proc.poll() is None and time.time() < deadline:
                time.sleep(0.3)
                states = study_states(cur, raw["name"])
                if "RUNNING" not in states or dropped_mid_study >= 4:
                    continue
                # What a server restart, a proxy or a firewall does to connections left idle
                # during a long trial: the server side of each is ended. Only idle ones: a
                # connection in the middle of a query fails that query, which is another fault.
                # And idle for a while: one the driver has just taken from its pool is idle too,
                # between the pool's ping and the driver's query, and ended there it would fail
                # the query (the likely cause of a "server closed the connection unexpectedly"
                # at the study's first trial, in CI once).
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                    "current_database() AND usename = current_user AND pid <> pg_backend_pid() "
                    "AND state = 'idle' AND state_change < now() - interval '1 second'")
                dropped_mid_study += sum(bool(row[0]) for row in cur.fetchall())
        code = proc.wait(timeout=max(1.0, deadline - time.time()))
    text = log.read_text().replace(password, "<password>")
    # The driver's connections were dropped while trials ran ...
    assert dropped_mid_study >= 2, text
    # ... and the study still finished: each dropped connection was noticed when next taken
    # from the pool (pool_pre_ping) and replaced.
    assert code == 0, text
    study = optuna.load_study(study_name=raw["name"], storage=make_storage(pg_url))
    assert n_finished(study) == 5
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 5
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_refused_login_is_said_as_the_server_says_it(tmp_path, capsys, pg_url, monkeypatch):
    from scaletune.search.cli import main

    url = make_url(pg_url)
    wrong = url.set(password="not-" + url.password).render_as_string(hide_password=False)
    assert main(["studies", "--storage", wrong]) == 2
    out = " ".join(capsys.readouterr().err.split())
    # Rule: the server's reason, the URL masked, and no question whether it is an Optuna storage
    # (it may well be one: the login failed).
    assert f"cannot list the studies in {mask_url(wrong)}: " in out
    assert "password authentication failed" in out and "Optuna storage?" not in out
    assert url.password not in out
    # Rule: a login refused for its password says where one left out of the URL is read.
    hint = "a password the URL leaves out is read from ~/.pgpass on this machine"
    assert hint not in out  # the URL gave one: the wrong one
    nopass = f"postgresql://{url.username}@{url.host}:{url.port}/{url.database}"
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))  # whatever this machine has
    study = tmp_path / "study.yaml"
    study.write_text(f"name: no-password\nstorage: {nopass}\ntokens_per_trial: 4096\n"
                     "n_trials: 1\nmodel: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    for command in ("run", "validate"):  # validate opened no server storage: "ok"
        assert main([command, str(study)]) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert "no password supplied" in out and hint in out, (command, out)
    # A wrong PGPASSWORD, which libpq reads first: it pointed to ~/.pgpass alone.
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    assert main(["validate", str(study)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "password authentication failed" in out and (
        "a password the URL leaves out is read from PGPASSWORD, which is set here") in out, out


def test_detach_refuses_a_study_whose_driver_runs_elsewhere(tmp_path, shakespeare, pg_url,
                                                            capsys):
    from scaletune.search import lease
    from scaletune.search.cli import main
    from tests.ports import free_port

    raw = pg_study(tmp_path, shakespeare, pg_url,
                   workers={"address": f"http://127.0.0.1:{free_port()}"})
    held = optuna.create_study(study_name=raw["name"], storage=make_storage(pg_url))
    now = time.time()  # a `scaletune run` of the study on another machine, as its lease shows it
    held.set_user_attr(lease.ATTR, {"token": "t", "pid": 4242, "since": now,
                                    "host": "another-machine", "heartbeat": now})
    assert main(["run", str(write_study(tmp_path, raw)), "--detach"]) == 2
    out = flat(capsys.readouterr().err)
    # Refused before the job server is asked: on a server's storage the job was submitted, and
    # failed on the lease (the lease was read from an SQLite file only).
    assert f"study {raw['name']!r} is being run by another driver (pid 4242 on " \
           "another-machine" in out, out
    assert "cannot reach" not in out


@pytest.mark.alone  # its REVOKE is of the tables every PostgreSQL test writes: a study run beside
# it was refused ("this login may read but not write table trial_heartbeats")
def test_validate_reads_and_checks_writes_as_run_does(tmp_path, shakespeare, pg_url, capsys):
    # A login that may connect but not use Optuna's tables: validate said ok (it ran SELECT 1),
    # and run refused ("permission denied for table version_info").
    from scaletune.search.cli import main

    optuna.create_study(study_name=f"pg-{uuid.uuid4().hex[:10]}", storage=make_storage(pg_url))
    path = str(write_study(tmp_path, pg_study(tmp_path, shakespeare, pg_url)))
    assert main(["validate", path]) == 0, capsys.readouterr().err
    with connect(pg_url) as con, con.cursor() as cur:
        cur.execute("REVOKE INSERT ON trial_heartbeats FROM CURRENT_USER")
        try:
            assert main(["validate", path]) == 2
            out = " ".join(capsys.readouterr().err.split())
            assert "this login may read but not write table trial_heartbeats" in out, out
            cur.execute("REVOKE SELECT ON trial_heartbeats FROM CURRENT_USER")
            assert main(["validate", path]) == 2
            out = " ".join(capsys.readouterr().err.split())
            assert "permission denied for table trial_heartbeats" in out, out
            assert "Optuna storage?" not in out and make_url(pg_url).password not in out
            cur.execute("GRANT ALL ON trial_heartbeats TO CURRENT_USER")
            # The tables, and not the sequences that number their rows: validate said ok, and
            # run stopped after Ray had started, saying to bring the server back.
            cur.execute("REVOKE USAGE, UPDATE ON SEQUENCE studies_study_id_seq FROM CURRENT_USER")
            assert main(["validate", path]) == 2
            out = " ".join(capsys.readouterr().err.split())
            assert ("this login may write the study tables but not use sequence "
                    "studies_study_id_seq, which numbers their new rows: GRANT USAGE ON ALL "
                    "SEQUENCES IN SCHEMA public to it") in out, out
        finally:
            cur.execute("GRANT ALL ON trial_heartbeats TO CURRENT_USER")
            cur.execute("GRANT ALL ON SEQUENCE studies_study_id_seq TO CURRENT_USER")
    assert main(["validate", path]) == 0


def test_identity_columns_need_no_grant_of_their_sequences(tmp_path, shakespeare, pg_url,
                                                           capsys):
    # Tables whose ids are identity columns (a database migrated so): a login may add rows
    # without USAGE of their sequences, and validate refused it as it would a serial's.
    from scaletune.search.cli import main

    schema = f"ident_{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}?options=-csearch_path%3D{schema}"
    with connect(pg_url) as con, con.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        optuna.create_study(study_name="made", storage=make_storage(url))
        cur.execute(f"SET search_path TO {schema}")
        cur.execute("SELECT t.relname, a.attname, s.relname FROM pg_class s "
                    "JOIN pg_depend d ON d.objid = s.oid AND d.deptype = 'a' "
                    "JOIN pg_class t ON t.oid = d.refobjid "
                    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
                    f"WHERE s.relkind = 'S' AND s.relnamespace = '{schema}'::regnamespace")
        for table, column, sequence in cur.fetchall():  # serial -> identity
            cur.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT")
            cur.execute(f"DROP SEQUENCE {sequence}")
            cur.execute(f"ALTER TABLE {table} ALTER COLUMN {column} ADD GENERATED BY DEFAULT "
                        f"AS IDENTITY (START WITH 1000)")
        cur.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM CURRENT_USER")
    path = str(write_study(tmp_path, pg_study(tmp_path, shakespeare, url)))
    try:
        assert main(["validate", path]) == 0, capsys.readouterr().err
    finally:
        with connect(pg_url) as con, con.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")


def test_validate_refuses_a_login_that_may_not_create_the_study_tables(tmp_path, shakespeare,
                                                                       pg_url, capsys):
    # No study tables yet, where this login may not create them: validate said ok, and run
    # refused ("permission denied for schema public"). A search_path of a schema the test's
    # login may not create in stands for another login's database.
    from scaletune.search.cli import main

    url = f"{pg_url}?options=-csearch_path%3Dinformation_schema"
    assert main(["validate", str(write_study(tmp_path, pg_study(tmp_path, shakespeare, url)))]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert ("the database holds no study tables yet, and this login may not create them in "
            "schema information_schema, as the first run does: GRANT CREATE ON SCHEMA "
            "information_schema to it") in out, out
    assert make_url(pg_url).password not in out


def test_mlflow_is_not_let_into_the_studys_database_nor_another_ones(tmp_path, shakespeare,
                                                                      pg_url, capsys):
    # validate opened the study's own database with MLflow, which created its tables beside
    # Optuna's (one alembic_version table for both) and failed halfway; a database MLflow
    # cannot reach said so with the URI's password in clear.
    from scaletune.search.cli import main

    optuna.create_study(study_name=f"pg-{uuid.uuid4().hex[:10]}", storage=make_storage(pg_url))
    password = make_url(pg_url).password
    for storage, says in ((pg_url, "is the study's own storage"),
                          (None, "holds the tables of something else (")):
        raw = pg_study(tmp_path, shakespeare, pg_url, tracking={"mlflow": {"tracking_uri": pg_url}})
        raw["storage"] = storage
        path = str(write_study(tmp_path, raw))
        assert main(["validate", path]) == 2
        out = " ".join(capsys.readouterr().err.split())
        assert f"tracking.mlflow: tracking_uri: {mask_url(pg_url)} {says}" in out, out
    with connect(pg_url) as con, con.cursor() as cur:
        cur.execute("SELECT to_regclass('experiments')")
        assert cur.fetchone()[0] is None  # MLflow created nothing
    wrong = pg_url.replace(f":{password}@", ":not-the-password@")
    raw["tracking"] = {"mlflow": {"tracking_uri": wrong}}
    assert main(["validate", str(write_study(tmp_path, raw))]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "tracking.mlflow: tracking_uri: " in out and "cannot read it" in out, out
    assert "not-the-password" not in out and password not in out


RACER = """
import sys
import optuna
from scaletune.search import lease
from scaletune.search.storage import make_storage
url, name = sys.argv[1], sys.argv[2]
held = lease.DriverLease(optuna.load_study(study_name=name, storage=make_storage(url)))
print("ready", flush=True)
sys.stdin.readline()  # "go", written to the four at once
try:
    held.acquire()
except Exception as e:
    print("refused", type(e).__name__, flush=True)
else:
    print("holds", flush=True)
    sys.stdin.readline()  # held until the test has read the others' answers
    held.release()
"""


def _said(racer: subprocess.Popen, *starts: str) -> str:
    """The racer's next line that starts with one of ``starts``, past any other (a library's
    warning on its stderr, which goes the same way)."""
    other = []
    while line := racer.stdout.readline():
        if line.startswith(starts):
            return line.strip()
        other.append(line)
    raise AssertionError(f"the racer ended without saying {starts}: {''.join(other)}")


@pytest.mark.parametrize("before", ["none", "a dead driver's"])
def test_of_drivers_that_start_at_once_one_holds_the_study(pg_url, before):
    # Each driver's write of the lease is a compare-and-set on what it read: of four processes
    # that read the same lease at once, one write lands and three find it changed.
    name = f"pg-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(study_name=name, storage=make_storage(pg_url))
    if before != "none":
        study.set_user_attr("driver", {"host": "node-gone", "pid": 7, "since": 0.0,
                                       "heartbeat": 0.0, "token": "dead"})
    racers = [subprocess.Popen([sys.executable, "-c", RACER, pg_url, name],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, cwd=REPO) for _ in range(4)]
    # A racer that hangs is killed, and its read ends (readline has no timeout of its own).
    stuck = threading.Timer(120, lambda: [p.kill() for p in racers])
    stuck.start()
    try:
        # Go when the four have imported and opened the study (a start time on the clock,
        # 4 s ahead, was too soon for one of them on a busy machine).
        for p in racers:
            _said(p, "ready")
        for p in racers:
            p.stdin.write("go\n")
            p.stdin.flush()
        said = sorted(_said(p, "holds", "refused") for p in racers)
        for p in racers:  # the holder releases the lease
            p.stdin.close()
        assert all(p.wait(timeout=120) == 0 for p in racers)
    finally:
        stuck.cancel()
        for p in racers:
            if p.poll() is None:
                p.kill()
    assert said == ["holds"] + ["refused SetupError"] * 3, said
    assert study.user_attrs["driver"] is None  # released by the one that held it
