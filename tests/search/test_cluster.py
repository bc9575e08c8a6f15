"""A study on a Ray cluster of two nodes on this machine (loopback only): trials spread over
both nodes, and losing a node mid-study costs only the trial that ran there."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import ray
from optuna.trial import TrialState
from ray.cluster_utils import Cluster

from scaletune.search.config import validate_study
from scaletune.search.runner import n_finished, run_study
from tests.search.helpers import act_when, tiny_study, trial_attr_rows

pytestmark = pytest.mark.slow

# Ray replaces 127.0.0.1 by the host's network address; any other loopback address keeps every
# connection of the cluster on the loopback interface.
LOOPBACK = "127.0.0.2"
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2, "node_ip_address": LOOPBACK}


@pytest.fixture
def two_nodes():
    """A head node and a second node, one CPU each; the study's driver joins by address."""
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    second = cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    yield cluster, second
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def trial_nodes(db: Path) -> list[tuple[int, str, str | None]]:
    """(number, state, worker node id) of every trial."""
    return trial_attr_rows(db, "worker_node_id")


def test_a_trial_no_single_node_holds_is_refused_and_fractions_count_node_by_node(
        tmp_path, shakespeare, two_nodes):
    from scaletune.search.runner import concurrency
    from scaletune.trainer.errors import ConfigError

    cluster, _ = two_nodes
    ray.init(address=cluster.address)

    def cfg(**workers):
        return validate_study(tiny_study(tmp_path, shakespeare,
                                         workers={"address": cluster.address, **workers}))

    # Two CPUs in all, one a node: a trial of two fit the totals, was launched, and waited in
    # Ray's queue for ever.
    with pytest.raises(ConfigError) as refused:
        concurrency(cfg(cpus_per_trial=2))
    assert refused.value.errors == [
        "workers: a trial asks for 2 CPUs and 0 GPUs on one machine, and no node of the cluster "
        "has them (the cluster's 2 nodes hold 2 CPUs and 0 GPUs in all; the largest, 1 CPUs and "
        "0 GPUs): ask for at most what one node has"]
    # 0.6 of a CPU: one trial a node, two in all (it said 3, and the third waited).
    assert concurrency(cfg(cpus_per_trial=0.6)) == 2
    assert concurrency(cfg(cpus_per_trial=0.5)) == 4


def test_trials_spread_over_two_nodes_and_survive_losing_one(tmp_path, shakespeare, two_nodes):
    cluster, second = two_nodes
    # (The driver joins the cluster on loopback, by the address a study gives.)
    assert cluster.address.startswith(LOOPBACK + ":")
    # Trials of several seconds: the node must go while the watched trial still trains (noticing
    # it, settling and removing a node take a second or two; a 2-second trial could finish first).
    raw = tiny_study(tmp_path, shakespeare, n_trials=4, pruner={"name": "none"},
                     tokens_per_trial=245_760,
                     workers={"address": cluster.address, "cpus_per_trial": 1,
                              "max_concurrent": 2})
    cfg = validate_study(raw)
    db = cfg.folder / "study.db"

    def running_on_second():
        # A trial running on the second node after one has finished there.
        mine = [(n, s) for n, s, node in trial_nodes(db) if node == second.node_id]
        if any(s == "COMPLETE" for _, s in mine):
            return next((n for n, s in mine if s == "RUNNING"), None)
        return None

    watcher, removed = act_when(running_on_second, lambda _: cluster.remove_node(second),
                                timeout=300)
    run_study(cfg)
    watcher.join(timeout=5)
    # (The node was removed while one of its trials ran.)
    assert removed, "the second node never ran two trials"

    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    nodes = {t.user_attrs.get("worker_node_id") for t in study.trials}
    # Trials ran on both nodes.
    assert nodes == {cluster.head_node.node_id, second.node_id}
    victim = study.trials[removed["seen"]]
    # The trial on the lost node is FAIL, with the reason, and its params ran again elsewhere.
    assert victim.state == TrialState.FAIL
    assert victim.user_attrs["fail_reason"].startswith("worker died: ")
    assert victim.user_attrs["retried"] is True
    reruns = [t for t in study.trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(reruns) == 1 and reruns[0].params == victim.params
    assert reruns[0].state == TrialState.COMPLETE
    assert reruns[0].user_attrs["worker_node_id"] == cluster.head_node.node_id
    # The study completes with n_trials finished trials and nothing left RUNNING.
    assert n_finished(study) == cfg.n_trials
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == cfg.n_trials
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_local_study_starts_a_cluster_of_its_own_beside_a_running_one(tmp_path, shakespeare,
                                                                        two_nodes):
    """Another Ray cluster on this machine (`ray start`, a job server) is not joined by a study
    whose workers.address is local: Ray would join it by default and refuse the study's
    num_cpus ("When connecting to an existing cluster, num_cpus ... must not be provided")."""
    cluster, second = two_nodes
    cfg = validate_study(tiny_study(tmp_path, shakespeare, n_trials=2, pruner={"name": "none"}))
    assert cfg.workers.address is None
    run_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
    assert n_finished(study) == 2
    theirs = {cluster.head_node.unique_id, second.unique_id}
    ours = {node for _, _, node in trial_nodes(cfg.folder / "study.db")}
    assert ours and not ours & theirs
    # In the same process (a notebook), a study that names the running cluster is refused while
    # the study's own runs: it ran on the first one, without a word.
    from scaletune.search.cluster import init_ray
    from scaletune.trainer.errors import SetupError

    joins = cfg.model_copy(update={"workers": cfg.workers.model_copy(
        update={"address": cluster.address})})
    with pytest.raises(SetupError, match=rf"workers.address: {cluster.address}: Ray runs in this "
                                         "process on a cluster of this machine already"):
        init_ray(joins)
    init_ray(cfg)  # the same cluster: kept
    ray.shutdown()
    init_ray(joins)
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == [LOOPBACK, LOOPBACK]  # theirs
