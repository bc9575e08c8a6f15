"""What a long final run needs: data parallel (torchrun, gloo on the CPU) that matches one
process, replicated (DDP) or sharded (FSDP2), on one machine or several; checkpoints that resume
on another number of processes; and TensorBoard scalars.

Every run here is on the CPU with gloo. NCCL on GPUs, and machines that are really apart, are
left to benchmarks/gpu_check.py and to the person running it. The tests of a run's numbers start
its processes forked from one that imported torch once (tests/forked.py, ~2 CPU seconds saved per
process); the tests of the launch (`scaletune train --nproc-per-node`, torchrun, signals, the
rendezvous) start them for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import forked
from tests.ports import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, text: Path, name: str, **fields) -> Path:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_bytes(text.read_bytes()[:100_000])
    cfg = {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.0},
        "data": {"source": "text", "path": str(corpus), "tokenizer": "byte", "val_windows": 16,
                 "cache_dir": str(tmp_path / "cache")},
        "optim": {"lr": 3e-3, "warmup_frac": 0.1},
        "tokens": 8 * 32 * 12,
        "batch_size": 8,
        "micro_batch_size": 4,
        "eval_every_tokens": 8 * 32 * 4,
        "num_threads": 1,
        "progress": False,
        "device": "cpu",  # on gloo, as the module says, on a machine with GPUs too
        "out_dir": str(tmp_path / name),
        **fields,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _evals(out_dir: Path) -> list[float]:
    lines = [json.loads(ln) for ln in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in lines if r["event"] == "eval"]


def test_two_process_data_parallel_matches_one_process(tmp_path, shakespeare):
    single = _config(tmp_path, shakespeare, "single")
    ddp = _config(tmp_path, shakespeare, "ddp")
    env = {**os.environ, "SCALETUNE_PEAK_FLOPS": "1e9"}  # one device's
    one = forked.run("-m", "scaletune.search.cli", "train", str(single), env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "scaletune.search.cli", "train", str(ddp), "--nproc-per-node", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert two.returncode == 0, two.stdout + two.stderr
    # torchrun's warning to tune OMP_NUM_THREADS is not shown: each rank sets its threads.
    assert "OMP_NUM_THREADS" not in two.stderr, two.stderr
    a, b = _evals(tmp_path / "single"), _evals(tmp_path / "ddp")
    # Same evaluations, and the same losses up to float reduction order: two ranks with 4
    # sequences each, gradients averaged by DDP, take the step one process takes on all 8.
    assert len(a) == len(b) == 3
    assert a[-1] < a[0]
    assert b == pytest.approx(a, abs=2e-4)
    # One process (rank 0) writes the run folder's log: one start and one end record.
    events = [json.loads(ln)["event"] for ln in (tmp_path / "ddp" / "metrics.jsonl").read_text()
              .splitlines()]
    assert events.count("start") == 1 and events.count("end") == 1
    # MFU divides the FLOP/s of every process's tokens by every process's peak: it divided by
    # one device's, and read 2x too high here (8x on 8 GPUs).
    for name, processes in (("single", 1), ("ddp", 2)):
        end = [json.loads(ln) for ln in (tmp_path / name / "metrics.jsonl").read_text()
               .splitlines() if json.loads(ln)["event"] == "end"][0]
        assert end["mfu"] == pytest.approx(end["flops_per_s"] / (1e9 * processes)), (name, end)


def _train(config: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaletune.search.cli", "train", str(config),
                           *flags], cwd=REPO, capture_output=True, text=True, timeout=300)


def _forked(config: Path, *flags: str, nproc: int = 1) -> subprocess.CompletedProcess:
    """`scaletune train CONFIG FLAGS` in one process, or its ``nproc`` ranks as `--nproc-per-node`
    starts them (``python -m scaletune.trainer.rank``), forked (tests/forked.py): the output of
    every process in ``stdout``."""
    if nproc == 1:
        return forked.run("-m", "scaletune.search.cli", "train", str(config), *flags,
                          merged=True)
    return forked.run("-m", "scaletune.trainer.rank", str(config), *flags, nproc=nproc,
                      merged=True)


SINGLE: dict[str, list[float]] = {}
"""The validation losses of one-process runs this test process trained, by their fields."""


def _single(tmp_path_factory, text: Path, **fields) -> list[float]:
    """The validation losses of a run of ``fields`` in one process: the run the tests hold
    their runs of several processes to, trained once per test process (four tests compare
    with the default config's, two with SGD's)."""
    tmp = tmp_path_factory.mktemp("single")
    config = _config(tmp, text, "single", **fields)
    run = yaml.safe_load(config.read_text())
    for where, key in (("out_dir", None), ("data", "path"), ("data", "cache_dir")):
        run.pop(where) if key is None else run[where].pop(key)
    key = json.dumps(run, sort_keys=True)  # the run, wherever its files are
    if key not in SINGLE:
        done = _forked(config)
        assert done.returncode == 0, done.stdout
        SINGLE[key] = _evals(tmp / "single")
    return SINGLE[key]


def _one_and_two_sharded(tmp_path: Path, tmp_path_factory, text: Path,
                         **fields) -> tuple[list[float], list[float]]:
    """The validation losses of a run of ``fields`` in one process, and in two sharded ones."""
    fsdp = _config(tmp_path, text, "fsdp", parallel="fsdp", **fields)
    two = _forked(fsdp, nproc=2)
    assert two.returncode == 0, two.stdout
    return _single(tmp_path_factory, text, **fields), _evals(tmp_path / "fsdp")


@pytest.mark.parametrize("optim", [{"lr": 3e-3, "warmup_frac": 0.1},
                                   {"name": "sgd", "lr": 0.5, "warmup_frac": 0.1}],
                         ids=["adamw", "sgd"])
def test_two_sharded_processes_learn_as_one_process_does(tmp_path, tmp_path_factory, shakespeare,
                                                         optim):
    # SGD's fused kernel has no rule for sharded tensors: every fsdp run of it failed at its
    # first step.
    a, b = _one_and_two_sharded(tmp_path, tmp_path_factory, shakespeare, optim=optim)
    # FSDP2 gathers each block's weights, and reduce-scatters the gradients as a mean over the
    # ranks: the step is the single-process step on the whole batch, and the loss goes down.
    assert len(b) == 3 and b[-1] < b[0]
    assert b == pytest.approx(a, abs=2e-4)


ON_GLOO = """
import torch, torch.distributed as dist
from scaletune.trainer.config import TrainConfig
from scaletune.trainer.distributed import data_parallel, leave
from scaletune.trainer.model import GPT

dist.init_process_group("gloo")
torch.set_num_threads(1)
torch.manual_seed(0)
"""
"""What the scripts below, each a rank of two, start with."""

EVAL_SHARES = ON_GLOO + """
from scaletune.trainer.loop import evaluate

cfg = TrainConfig.model_validate({"model": {"n_layer": 2, "n_head": 2, "n_embd": 32,
                                            "block_size": 16}})
model = GPT(cfg.model, 256)
windows = torch.randint(0, 256, (5, 17), generator=torch.Generator().manual_seed(1))
args = (torch.device("cpu"), torch.autocast("cpu", enabled=False))
alone = evaluate(model, windows, 2, *args)  # this process, every window
model = data_parallel(model, 2, "fsdp")
seen = []  # the windows of each forward pass
model.register_forward_pre_hook(lambda m, inputs: seen.append(len(inputs[0])))
rank = dist.get_rank()
shared = evaluate(model, windows, 2, *args, rank, 2)
print(f"rank {rank} forwards {seen} loss {shared!r} alone {alone!r}", flush=True)
leave(0)
"""


def test_the_ranks_share_the_validation_windows_and_agree_on_their_loss(tmp_path):
    # Every rank evaluated every window: 8 processes did 8 times the work for one number.
    script = tmp_path / "shares.py"
    script.write_text(EVAL_SHARES)
    done = forked.run(str(script), nproc=2, merged=True)
    assert done.returncode == 0, done.stdout
    said = {int(line.split()[1]): line.split() for line in done.stdout.splitlines()
            if line.startswith("rank ")}
    # 5 windows, micro-batches of 2: rank 0 evaluates 3 (2 + 1), rank 1 the other 2, and then
    # the first window again, not counted, so that both take as many sharded forward passes.
    assert " ".join(said[0][3:5]) == "[2, 1]" and " ".join(said[1][3:5]) == "[2, 1]", said
    loss = [float(said[rank][said[rank].index("loss") + 1]) for rank in (0, 1)]
    alone = float(said[0][said[0].index("alone") + 1])
    assert loss[0] == loss[1] == pytest.approx(alone, rel=1e-5), said


SAVED_WEIGHTS = ON_GLOO + """
cfg = TrainConfig.model_validate({"model": {"n_layer": 4, "n_head": 2, "n_embd": 64,
                                            "block_size": 32}})
model = data_parallel(GPT(cfg.model, 256), 2, "fsdp", torch.bfloat16)
held = []  # the whole (unsharded) weight matrices the forward pass saves for the backward
WEIGHTS = {(3 * 64, 64), (64, 64), (4 * 64, 64), (64, 4 * 64), (256, 64)}
def pack(t):
    if tuple(t.shape) in WEIGHTS:
        held.append(t)
    return t
x = torch.randint(0, 256, (5, 32))
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(x, x)
alive = sum(t.untyped_storage().nbytes() for t in held)
held.clear()
loss.backward()
if dist.get_rank() == 0:
    print("alive", alive, "loss", float(loss.detach()), flush=True)
leave(0)  # as trainer.rank's ranks do
"""


def test_sharded_bf16_holds_no_block_weights_whole_between_forward_and_backward(
        tmp_path, tmp_path_factory, shakespeare):
    # Gathered in float32 and cast by autocast, the casts were saved for the backward pass: every
    # block's weights stayed whole (in bf16) on every rank, 327,680 bytes here, all four blocks'.
    script = tmp_path / "saved.py"
    script.write_text(SAVED_WEIGHTS)
    done = forked.run(str(script), nproc=2, merged=True)
    assert done.returncode == 0, done.stdout
    alive = int(done.stdout.split("alive ")[1].split()[0])
    assert alive <= 256 * 64 * 2  # the head's bf16 cast of the tied embedding alone
    # And a run trains sharded in bf16 as one process does (the norms take float32 input).
    a, b = _one_and_two_sharded(tmp_path, tmp_path_factory, shakespeare, dtype="bfloat16")
    assert len(b) == 3 and b[-1] < b[0]
    assert b == pytest.approx(a, abs=5e-3)


COUNT_SYNCS = """
import os, pathlib, sys
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from scaletune.trainer import distributed
from scaletune.trainer.config import load_train_config
from scaletune.trainer.loop import train

syncs = []


class Counted(distributed.DistributedDataParallel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_comm_hook(None, lambda _, bucket: syncs.append(1) or allreduce_hook(None, bucket))


distributed.DistributedDataParallel = Counted
train(load_train_config(sys.argv[1]))
pathlib.Path(sys.argv[1]).with_name(f"syncs-{os.environ['RANK']}.txt").write_text(str(len(syncs)))
distributed.leave(0)  # as trainer.rank's ranks do
"""


def test_data_parallel_accumulation_averages_gradients_once_per_step(tmp_path, shakespeare):
    # Two micro-batches per rank: DDP averaged the gradients over the ranks after each one's
    # backward, twice the traffic of one average per optimizer step (with 8 micro-batches, 8x).
    single = _config(tmp_path, shakespeare, "single", micro_batch_size=2)
    ddp = _config(tmp_path, shakespeare, "ddp", micro_batch_size=2)
    assert _forked(single).returncode == 0
    script = tmp_path / "count_syncs.py"
    script.write_text(COUNT_SYNCS)
    two = forked.run(str(script), str(ddp), nproc=2, merged=True)
    assert two.returncode == 0, two.stdout
    # 12 steps of a model small enough for one bucket of gradients: one average per step.
    assert [(tmp_path / f"syncs-{rank}.txt").read_text() for rank in (0, 1)] == ["12", "12"]
    a, b = _evals(tmp_path / "single"), _evals(tmp_path / "ddp")
    assert len(b) == 3 and b[-1] < b[0]
    assert b == pytest.approx(a, abs=2e-4)

TRAIN_UNTIL = """
import sys
from scaletune.trainer.config import load_train_config
from scaletune.trainer.distributed import leave
from scaletune.trainer.loop import train

stop_at = int(sys.argv[2])
train(load_train_config(sys.argv[1]),
      report=lambda tokens, *_: "stop" if tokens >= stop_at else None)
"""
STOP_AT = TRAIN_UNTIL + "leave(0)  # as trainer.rank's ranks do\n"


def test_a_checkpoint_of_two_sharded_processes_resumes_on_one(tmp_path, tmp_path_factory,
                                                              shakespeare):
    fsdp = _config(tmp_path, shakespeare, "fsdp", parallel="fsdp")
    script = tmp_path / "stop_at.py"
    script.write_text(STOP_AT)
    stopped = forked.run(str(script), str(fsdp), "2048", nproc=2, merged=True)
    assert (tmp_path / "fsdp" / "checkpoint.pt").exists(), stopped.stdout
    assert len(_evals(tmp_path / "fsdp")) == 2
    resumed = _forked(fsdp, "--resume")  # one process, not sharded
    assert resumed.returncode == 0, resumed.stdout
    # The shards were gathered into one file; one process takes all of it and ends where the
    # uninterrupted single-process run ends.
    a, b = _single(tmp_path_factory, shakespeare), _evals(tmp_path / "fsdp")
    assert len(b) == 3 and b[-1] < b[1]
    assert b == pytest.approx(a, abs=2e-4)


def test_an_sgd_checkpoint_of_one_process_resumes_on_two_sharded_ones(tmp_path, tmp_path_factory,
                                                                      shakespeare):
    # One process steps SGD with its fused kernel, which has no rule for sharded tensors; the
    # checkpoint's param groups said fused, and the resume under fsdp failed its first step.
    sgd = {"name": "sgd", "lr": 0.5, "warmup_frac": 0.1}
    fsdp = _config(tmp_path, shakespeare, "fsdp", parallel="fsdp", optim=sgd)
    script = tmp_path / "stop_at.py"
    script.write_text(STOP_AT)
    forked.run(str(script), str(fsdp), "2048", merged=True)
    assert len(_evals(tmp_path / "fsdp")) == 2
    resumed = _forked(fsdp, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stdout
    a, b = _single(tmp_path_factory, shakespeare, optim=sgd), _evals(tmp_path / "fsdp")
    assert len(b) == 3 and b[-1] < b[1]
    assert b == pytest.approx(a, abs=2e-4)


def test_each_process_draws_its_own_dropout_masks_and_resumes_them(tmp_path, shakespeare):
    import torch

    from scaletune.trainer.checkpoint import read_checkpoint

    # Every process drew the same masks, each on its own slice of the batch: one mask where
    # there should be two. And a resume restored rank 0's RNG state on every rank.
    model = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "dropout": 0.2}
    whole = _config(tmp_path, shakespeare, "whole", model=model)
    assert _forked(whole, nproc=2).returncode == 0
    parts = _config(tmp_path, shakespeare, "parts", model=model)
    script = tmp_path / "stop_at.py"
    script.write_text(STOP_AT)
    stopped = forked.run(str(script), str(parts), "2048", nproc=2, merged=True)
    assert stopped.returncode == 0, stopped.stdout
    # The two processes' streams after the same steps, as the checkpoint keeps them. (The state
    # after train() returns is the caller's again: torch.random.fork_rng.)
    ranks = read_checkpoint(tmp_path / "parts" / "checkpoint.pt")["rng"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    resumed = _forked(parts, "--resume", nproc=2)
    assert resumed.returncode == 0, resumed.stdout
    a, b = _evals(tmp_path / "whole"), _evals(tmp_path / "parts")
    assert len(a) == len(b) == 3 and a[-1] < a[0]
    assert b == pytest.approx(a, abs=1e-6)  # each rank went on with its own stream


def _two_nodes(config: Path, stderr: int, second: Path | None = None
               ) -> tuple[int, list[subprocess.Popen]]:
    """`scaletune train --nnodes 2` of ``config`` as two "machines" on loopback (one process
    each, its own --node-rank), meeting at a free port: (the port, the two launches).
    ``second``: the file node 1 reads, where it is another (each node reads its own copy)."""
    port = free_port()
    return port, [subprocess.Popen(
        [sys.executable, "-m", "scaletune.search.cli", "train", str(path), "--nnodes", "2",
         "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
        for rank, path in ((0, config), (1, second or config))]


def test_two_machines_meet_at_the_rendezvous_endpoint(tmp_path, tmp_path_factory, shakespeare):
    # Two "machines" on loopback, one process each: what --nnodes 2 runs on every node, with
    # its own --node-rank. Node 0 holds rank 0, which writes the run folder.
    nodes = _config(tmp_path, shakespeare, "nodes")
    port, launches = _two_nodes(nodes, stderr=subprocess.STDOUT)
    outputs = [p.communicate(timeout=300)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], outputs
    assert "--nnodes=2 --node-rank=0 --rdzv-endpoint=127.0.0.1:" in outputs[0]
    # Each node says it waits for the others (torchrun itself is silent until they join).
    assert f"node 1 of 2 waits at 127.0.0.1:{port} until all 2 nodes have joined" in outputs[1]
    assert _evals(tmp_path / "nodes") == pytest.approx(_single(tmp_path_factory, shakespeare),
                                                       abs=2e-4)
    start = json.loads((tmp_path / "nodes" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["processes"] == 2


def test_nodes_that_read_other_configs_are_refused_before_they_train(tmp_path, shakespeare):
    # One node's copy of the file edited (lr 0.001 there): the nodes trained together, each
    # with its own lr, both ended 0, and the run recorded rank 0's config alone.
    nodes = _config(tmp_path, shakespeare, "nodes")
    edited = yaml.safe_load(nodes.read_text())
    edited["optim"]["lr"] = 1e-3
    edited["num_threads"] = 2  # a node's own: not a difference
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(edited))
    _, launches = _two_nodes(nodes, stderr=subprocess.STDOUT, second=other)
    outputs = [" ".join(p.communicate(timeout=300)[0].split()) for p in launches]
    assert [p.returncode for p in launches] == [2, 2], outputs
    for out in outputs:
        assert ("1 of the 2 processes of this run read a training config other than the first "
                "process's (each node reads its own copy of the file): give every node the same "
                "file") in out, out
        assert "Traceback" not in out, out
    assert not (tmp_path / "nodes" / "metrics.jsonl").exists()
    # A node's own threads are no difference: the same file but num_threads trains.
    edited["optim"]["lr"] = yaml.safe_load(nodes.read_text())["optim"]["lr"]
    other.write_text(yaml.safe_dump(edited))
    _, launches = _two_nodes(nodes, stderr=subprocess.STDOUT, second=other)
    outputs = [p.communicate(timeout=300)[0] for p in launches]
    assert [p.returncode for p in launches] == [0, 0], outputs


def test_a_node_signalled_alone_leaves_the_others_a_line_not_a_traceback(tmp_path, shakespeare):
    # SIGTERM to node 1 alone: it stopped cleanly (exit 143), and node 0's ranks ended at their
    # next collective on gloo's "Connection reset by peer" traceback and torchrun's, exit 1.
    path = _config(tmp_path, shakespeare, "nodes", tokens=8 * 32 * 20_000,
                   checkpoint_every_tokens=8 * 32 * 4)
    _, launches = _two_nodes(path, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "nodes" / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert time.monotonic() < deadline, [p.poll() for p in launches]
            time.sleep(0.2)
        launches[1].send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=120) for p in launches]
    finally:
        for p in launches:
            if p.poll() is None:
                p.kill()
        if shutil.which("pkill"):
            subprocess.run(["pkill", "-KILL", "-f", str(path)], check=False)
    (out0, err0), (_, err1) = outputs
    assert launches[1].returncode == 143, err1
    assert launches[0].returncode == 3, err0
    assert ("nodes.yaml: stopped: another process of this run stopped or was lost (a node "
            "signalled alone, or gone); the last checkpoint is") in " ".join(err0.split()), err0
    assert "Traceback" not in err0, err0


def test_a_second_ctrl_c_ends_a_node_that_waits_for_the_others(tmp_path, shakespeare):
    # Node 0 of 2, and node 1 never comes: torchrun waits at its rendezvous, where torch lets
    # a SIGINT go. Two, three Ctrl-C left it waiting for minutes.
    nodes = _config(tmp_path, shakespeare, "nodes")
    port = free_port()
    # As from a terminal (SIGINT is ignored in the test processes a background job starts).
    alone = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys; from scaletune.search.cli import main; "
         "signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(main())",
         "train", str(nodes), "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint",
         f"127.0.0.1:{port}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):  # torchrun holds the rendezvous: it waits for node 1
            assert alone.poll() is None and time.monotonic() < deadline, alone.communicate()
            time.sleep(0.2)
        time.sleep(1)
        for _ in range(2):
            alone.send_signal(signal.SIGINT)
            time.sleep(1)
        _, err = alone.communicate(timeout=30)
    finally:
        if alone.poll() is None:
            alone.kill()
    assert alone.returncode == 130, err
    assert ("scaletune train: a second signal: torchrun and its ranks were killed; a checkpoint "
            "written before is kept (run the command again with --resume)") in err, err
    assert "Traceback" not in err, err


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_tensorboard_scalars_are_written_per_evaluation(tmp_path, shakespeare):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from scaletune.trainer.config import load_train_config
    from scaletune.trainer.loop import train

    path = _config(tmp_path, shakespeare, "board")
    cfg = load_train_config(path).model_copy(update={"tensorboard": True})
    train(cfg)
    acc = EventAccumulator(str(tmp_path / "board" / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("val_loss")]
    # One val_loss point per evaluation, keyed by tokens seen.
    assert steps == [1024, 2048, 3072]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_to_a_launched_run_stops_every_rank_and_says_how_to_resume(
        tmp_path, shakespeare, signum):
    # What a terminal's Ctrl-C or a batch system's SIGTERM does to `scaletune train
    # --nproc-per-node 2`: the signal reaches the launcher, which passes it to torchrun, which
    # passes it to its ranks; rank 0 says where to resume, and nothing prints a traceback.
    path = _config(tmp_path, shakespeare, "long", tokens=8 * 32 * 20_000,
                   checkpoint_every_tokens=8 * 32 * 4)
    # As from a terminal: a script that starts the tests in the background (`cmd &` without job
    # control) leaves SIGINT ignored in every process it starts, and an ignored signal is never
    # delivered, Ctrl-C's included.
    launch = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys; from scaletune.search.cli import main; "
         "signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(main())",
         "train", str(path), "--nproc-per-node", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "long" / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():  # written whole, then renamed into place
            assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
            time.sleep(0.2)
        launch.send_signal(signum)
        out, err = launch.communicate(timeout=120)  # ends when every rank has closed its pipes
    finally:  # a rank left training by a failure here would hold a CPU for the next tests
        if launch.poll() is None:
            launch.kill()
        if shutil.which("pkill"):
            subprocess.run(["pkill", "-KILL", "-f", str(path)], check=False)
    assert launch.returncode == 128 + signum, out + err
    what = "interrupted" if signum == signal.SIGINT else "stopped by SIGTERM"
    assert f"long.yaml: {what}; the last checkpoint is" in err
    assert "run the command again with --resume" in err
    assert "Traceback" not in err, err
    assert "completed" not in out  # stopped long before its 20,000 steps
    assert _evals(tmp_path / "long")


def _end(launch: subprocess.Popen, path: Path) -> None:
    """Kill ``launch`` where it still runs, and every process of the run of ``path``."""
    if launch.poll() is None:
        launch.kill()
    if shutil.which("pkill"):
        subprocess.run(["pkill", "-KILL", "-f", str(path)], check=False)


def _processes(*words: str, loading: str | None = None,
               unless: str | None = None) -> list[int]:
    """The pids of this machine's processes whose command line holds every one of ``words``
    (and not ``unless``); with ``loading``, only those that have mapped a file whose name holds
    it (a library)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not (entry.name.isdigit() and all(word in cmdline for word in words)
                    and (unless is None or unless not in cmdline)):
                continue
            if loading is None or loading in (entry / "maps").read_text(errors="replace"):
                pids.append(int(entry.name))
        except OSError:  # not a process, or one that just ended
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
@pytest.mark.parametrize("ranks", [False, True], ids=["as-torchrun-starts", "as-the-ranks-start"])
def test_a_ctrl_c_as_a_launched_run_starts_ends_it_in_a_line(tmp_path, shakespeare, ranks):
    # A Ctrl-C in the first seconds of `scaletune train --nproc-per-node 2`, as torchrun or its
    # ranks import torch: each printed a KeyboardInterrupt traceback (torchrun's, then one per
    # rank), and a rank interrupted inside torch's lazy imports of its set-up ended on a
    # RecursionError.
    path = _config(tmp_path, shakespeare, "early", tokens=8 * 32 * 20_000)
    launch = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys; from scaletune.search.cli import main; "
         "signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(main())",
         "train", str(path), "--nproc-per-node", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # It imports torch (for a second or two after its library is loaded). The ranks start
        # one after the other: both are waited for, where a rank still in the interpreter's own
        # start-up (site's imports, before any of this code runs) prints the traceback of it.
        while len(_processes("-m", str(path), loading="libtorch",
                             unless="scaletune.trainer.torchrun") if ranks else
                  _processes("-m", "scaletune.trainer.torchrun", str(path),
                             loading="libtorch")) < (2 if ranks else 1):
            assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
            time.sleep(0.02)
        launch.send_signal(signal.SIGINT)
        out, err = launch.communicate(timeout=120)
    finally:
        _end(launch, path)
    assert launch.returncode == 130, out + err
    assert "Traceback" not in err, err
    said = [line for line in err.splitlines()
            if not line.startswith(("launching: ", "W"))]  # W: torchrun's own log lines
    # One line: before the ranks, torchrun's; as they start, rank 0's (or, where the signal
    # came after their imports, where the run stands).
    assert len(said) == 1 and said[0] in (
        "scaletune train: interrupted before the run's processes started; nothing was written",
        f"{path}: interrupted as the run started; nothing was written",
        f"{path}: interrupted; no checkpoint was written yet in {tmp_path / 'early'}; run the "
        "command again to start over"), err
    assert not (tmp_path / "early" / "checkpoint.pt").exists()
    assert not _processes("-m", str(path))  # neither torchrun nor a rank is left


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_a_rank_killed_from_outside_is_one_line_and_where_to_resume_not_a_traceback(
        tmp_path, shakespeare):
    # SIGKILL to rank 0 (the out-of-memory killer's): the launch ended on torchrun's
    # ChildFailedError traceback, exit 1, and nothing said where the run could resume.
    path = _config(tmp_path, shakespeare, "long", tokens=8 * 32 * 20_000,
                   checkpoint_every_tokens=8 * 32 * 4)
    launch = subprocess.Popen([sys.executable, "-m", "scaletune.search.cli", "train", str(path),
                               "--nproc-per-node", "2"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "long" / "checkpoint.pt").exists():
            assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
            time.sleep(0.2)
        lead = [pid for pid in _processes("scaletune.trainer.rank", str(path),
                                          unless="scaletune.trainer.torchrun")
                if b"\0RANK=0\0" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes()]
        assert len(lead) == 1, lead
        os.kill(lead[0], signal.SIGKILL)
        out, err = launch.communicate(timeout=120)
    finally:
        _end(launch, path)
    assert launch.returncode == 128 + signal.SIGKILL, err
    assert "Traceback" not in err and "ChildFailedError" not in err, err
    assert (f"scaletune train: process 0 of the run (pid {lead[0]}) was killed by SIGKILL (the "
            "kernel's out-of-memory killer sends it") in err, err
    assert (f"scaletune train: the last checkpoint is {tmp_path / 'long' / 'checkpoint.pt'} "
            "(step ") in err, err
    assert err.count("the last checkpoint is") == 1, err


def test_a_diverged_run_of_two_processes_ends_as_one_process_does(tmp_path, shakespeare):
    # Each rank exits 1 on a divergence, as a crash's traceback does: the launch said "process
    # 0 of the run ended with exit code 1 (its error is above)" under the run's own summary.
    path = _config(tmp_path, shakespeare, "blown", optim={"lr": 50.0, "warmup_frac": 0.0})
    two = _train(path, "--nproc-per-node", "2")
    assert two.returncode == 1, two.stdout + two.stderr
    assert "status          diverged" in two.stdout, two.stdout
    assert "ended with exit code" not in two.stderr and "Traceback" not in two.stderr, two.stderr
    # The ranks' program run as a process of its own ends as `scaletune train` does: 1 (it
    # gave the ranks' 4).
    one = forked.run("-m", "scaletune.trainer.cli", str(path), "--overwrite")
    assert one.returncode == 1 and "status          diverged" in one.stdout, one.stdout


def test_data_every_rank_would_refuse_is_refused_once_before_they_start(tmp_path, shakespeare):
    # Each rank said it, and torchrun a line of each one's exit (8 copies on 8 GPUs).
    path = _config(tmp_path, shakespeare, "gone")
    raw = yaml.safe_load(path.read_text())
    raw["data"]["path"] = str(tmp_path / "nothere.txt")
    path.write_text(yaml.safe_dump(raw))
    two = _train(path, "--nproc-per-node", "2")
    assert two.returncode == 2, two.stdout + two.stderr
    assert two.stderr.count("file not found") == 1, two.stderr
    assert "launching:" not in two.stderr and "exitcode" not in two.stderr, two.stderr
    from scaletune.trainer.cli import startable

    # Not on one node of several: refused before the rendezvous, it left the others waiting.
    assert startable(str(path), False, False, world=4, nodes=2) is not None
    # Validation files among the training ones: a run's set-up does not refuse them (one process
    # trained), and neither does the launch (it did, in a study's words).
    (tmp_path / "texts").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "texts" / name).write_bytes(shakespeare.read_bytes()[:50_000])
    raw["data"].update(path=str(tmp_path / "texts" / "*.txt"),
                       val_path=str(tmp_path / "texts" / "b.txt"))
    path.write_text(yaml.safe_dump(raw))
    assert startable(str(path), False, False, world=2) is not None


def test_nodes_may_start_different_numbers_of_processes(tmp_path, shakespeare, capsys):
    from scaletune.trainer.cli import startable

    # 1 + 2 processes split a batch of 6: each node refused it as one of 2 x 2 = 4 processes
    # (and the other waited at the rendezvous for it).
    path = _config(tmp_path, shakespeare, "uneven", batch_size=6, micro_batch_size=None)
    assert startable(str(path), False, False, world=2 * 2, nodes=2) is not None
    assert startable(str(path), False, False, world=4) is None  # on one node: 4 processes
    assert "batch_size=6 must split into 4 equal parts" in capsys.readouterr().err


def test_a_refusal_of_the_ranks_ends_the_launch_with_2_not_torchruns_traceback(tmp_path,
                                                                               shakespeare):
    # A damaged checkpoint (as a changed config on resume, or a device the machine lacks) is
    # refused by every rank, after torchrun started them: the launch ended with exit 1 and
    # torchrun's ChildFailedError traceback, where one process says it in a line, exit 2.
    path = _config(tmp_path, shakespeare, "run")
    assert _forked(path).returncode == 0
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    one = forked.run("-m", "scaletune.search.cli", "train", str(path), "--resume")
    two = _train(path, "--resume", "--nproc-per-node", "2")
    assert one.returncode == two.returncode == 2, two.stdout + two.stderr
    assert "is damaged" in one.stderr and "is damaged" in two.stderr
    assert "Traceback" not in two.stderr and "ChildFailedError" not in two.stderr, two.stderr


def test_ranks_stop_when_their_launcher_is_killed(tmp_path, shakespeare):
    # SIGKILL (a batch system's, the OOM killer) cannot be passed on: torchrun and its ranks
    # went on training, and a --resume then trained the same run beside them.
    from scaletune.trainer.runlock import check_free

    path = _config(tmp_path, shakespeare, "long", tokens=8 * 32 * 20_000,
                   checkpoint_every_tokens=8 * 32 * 4)
    launch = subprocess.Popen([sys.executable, "-m", "scaletune.search.cli", "train", str(path),
                               "--nproc-per-node", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "long" / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert launch.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        launch.kill()
        launch.wait()
        # torchrun got SIGTERM with its parent's death and stopped its ranks: the run's lock
        # is free for a --resume within seconds.
        deadline = time.monotonic() + 60
        while True:
            try:
                check_free(tmp_path / "long")
                break
            except Exception:
                assert time.monotonic() < deadline, "the ranks still hold the run"
                time.sleep(0.5)
        # Then they and torchrun end: rank 0 frees the lock before its last line and its
        # process group's teardown, which take seconds on a busy machine.
        deadline = time.monotonic() + 60
        while left := subprocess.run(["pgrep", "-f", str(path)], capture_output=True,
                                     text=True).stdout.strip():
            assert time.monotonic() < deadline, f"still running: {left}"
            time.sleep(0.5)
    finally:
        if shutil.which("pkill"):
            subprocess.run(["pkill", "-KILL", "-f", str(path)], check=False)


def test_ranks_wait_for_each_other_as_long_on_nccl_as_on_gloo(monkeypatch):
    # NCCL's default is 10 minutes: ranks waiting at the next collective while rank 0 wrote a
    # large checkpoint to a slow shared file system were ended by its watchdog.
    import datetime

    import torch.distributed as dist

    from scaletune.trainer import distributed

    joined = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, timeout=None: joined.append((backend, timeout)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    assert distributed.rank_and_world("auto") == (1, 2)
    assert joined == [("nccl", datetime.timedelta(minutes=30))]


def _count_blind(rank: int, store_path: str, sees: bool, out) -> None:
    import torch
    import torch.distributed as dist

    from scaletune.trainer.distributed import ranks_without

    store = dist.FileStore(store_path, 2)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    out.put((rank, ranks_without(sees, 2, torch.device("cpu"))))
    dist.destroy_process_group()


def test_ranks_count_alike_those_that_do_not_see_a_shared_file(tmp_path):
    # A resume was decided rank by rank: a node that saw no checkpoint in an out_dir it did not
    # share started afresh beside the resumed ones. Every rank now counts the ranks that see no
    # checkpoint, the same number on each (trainer.loop refuses the resume where it is not 0).
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # torch imported once, in this process
    out = ctx.Queue()
    ranks = [ctx.Process(target=_count_blind, args=(rank, str(tmp_path / "store"), rank == 0,
                                                     out)) for rank in (0, 1)]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(60)
    assert sorted(out.get(timeout=10) for _ in ranks) == [(0, 1), (1, 1)]
    assert [p.exitcode for p in ranks] == [0, 0]
