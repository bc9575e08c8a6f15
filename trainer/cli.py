"""`scaletune train CONFIG.yaml`: read the config, train, print a summary."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scaletune.trainer.checkpoint import CHECKPOINT, run_in_the_way
from scaletune.trainer.config import TrainConfig, load_train_config
from scaletune.trainer.distributed import device_for, local_batch
from scaletune.trainer.errors import ConfigError, DataError, SetupError
from scaletune.trainer.interrupt import (
    PEER_LOST,
    STOP_SIGNALS,
    DeferredInterrupt,
    PromptInterrupt,
    stopped_by,
)
from scaletune.trainer.loop import Result, train
from scaletune.trainer.record import last_checkpoint
from scaletune.trainer.runlock import check_free, out_dir_problem

FLAGS = ("--resume", "--overwrite")  # how run_in_the_way names them to a command's user


def train_main(path: str, resume: bool = False, overwrite: bool = False) -> int:
    """Exit code: 0 completed (or stopped), 1 diverged, 2 the config or the data is unusable,
    3 (interrupt.PEER_LOST) stopped because another process of the run stopped or was lost, 128 + the
    signal when stopped by one: 130 for Ctrl-C, 143 for SIGTERM (one line says where the last
    checkpoint is).

    A run whose out_dir already holds a checkpoint starts only with ``resume`` (continue it) or
    ``overwrite`` (train from scratch and replace it): a repeated command never loses a run.
    """
    config = startable(path, resume, overwrite)
    if config is None:
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        from scaletune.trainer.data import unread_note

        # validate gave the note of data fields the source does not read; train trained silently
        for note in [*config.notes(), unread_note(config.data)]:
            if note:
                print(f"note: {note}", file=sys.stderr, flush=True)
    # One process stops between two steps, wherever the signal came; torchrun's processes stop
    # where it finds them (it signals them all), as a step of one waits for the others.
    one_process = int(os.environ.get("WORLD_SIZE", "1")) == 1
    interrupt = DeferredInterrupt() if one_process else PromptInterrupt()
    try:
        # --overwrite clears the earlier run once the new one has passed its set-up (device,
        # data, batch over the processes): a run that cannot start leaves the old one as it was.
        result = train(config, resume=resume, interrupt=interrupt, overwrite=overwrite)
    except (DataError, SetupError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The output was closed (`scaletune train F.yaml 2>&1 | head` once head has its lines, a
        # log reader that died): the run stops at its next line, as `scaletune run` does, and
        # says so where it still can (it ended with exit code 1 and nothing said).
        closed_output_said(f"{path}: the output was closed (a broken pipe): the run stopped; "
                           f"{resume_hint(config.out_dir)}")
        return 1
    except OSError as e:  # the metrics log or TensorBoard's in out_dir: a full disk, read-only
        if e.filename is None or not config.out_dir:
            raise
        if not Path(e.filename).resolve().is_relative_to(Path(config.out_dir).resolve()):
            # Elsewhere (the token cache, say): not out_dir's, and maybe no write at all.
            print(f"{path}: {e.filename}: {e.strerror}; {resume_hint(config.out_dir)}",
                  file=sys.stderr)
            return 2
        print(f"{path}: out_dir: writing {e.filename} failed ({e.strerror}; a full disk or a "
              f"folder that became read-only?); {resume_hint(config.out_dir)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{path}: {stopped_by(signum)}; {resume_hint(config.out_dir)}",
                  file=sys.stderr)
        return 128 + signum
    except RuntimeError as e:
        if one_process or not peer_lost(e):
            raise
        # Another node was stopped (a signal to it alone) or lost: this node's ranks found its
        # processes gone at their next collective, and ended on gloo's or NCCL's traceback.
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # one line per node
            print(f"{path}: stopped: another process of this run stopped or was lost (a node "
                  f"signalled alone, or gone); {resume_hint(config.out_dir)}", file=sys.stderr)
        return PEER_LOST
    if int(os.environ.get("RANK", "0")) == 0:
        try:
            print(summary(result, config.out_dir), flush=True)
        except BrokenPipeError:  # `... | true`: the run is done, its summary has no reader
            closed_output_said(f"{path}: the output was closed before the summary (a broken "
                               f"pipe); the run {result.status}")
    return 1 if result.status == "diverged" else 0


def startable(path: str, resume: bool, overwrite: bool, world: int = 1,
              nodes: int = 1) -> TrainConfig | None:
    """The run's config, or None once it has printed why the run cannot start: an error in the
    file, an out_dir that is a file (or lies under one), a batch that does not split over the
    ``world`` processes of a launch on one node (of ``nodes``), or a checkpoint in out_dir that
    neither ``resume`` nor ``overwrite`` says what to do with (a repeated command never loses a
    run)."""
    try:
        config = load_train_config(path)
    except ConfigError as e:
        print(f"{len(e.errors)} error(s) in {e.source}:", file=sys.stderr)  # as the others say it
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        return None
    if resume and overwrite:
        print(f"scaletune train: {run_in_the_way(None, True, True, FLAGS)}", file=sys.stderr)
        return None
    if config.out_dir:
        out_dir = Path(os.path.normpath(config.out_dir))
        if problem := out_dir_problem(out_dir):
            print(f"{path}: out_dir {out_dir}: {problem}", file=sys.stderr)
            return None
        try:
            check_free(out_dir)  # another run trains there now
        except SetupError as e:
            print(f"{path}: {e}", file=sys.stderr)
            return None
    if world > 1 and config.device == "mps":
        # gloo, the backend of a run without CUDA, has no MPS tensors: the ranks failed at
        # their first collective (DDP's broadcast of the weights).
        print(f"{path}: device: mps trains in one process: torch's process groups (gloo, nccl) "
              "take no MPS tensors; run it in one process (no --nproc-per-node or --nnodes), or "
              f"give device: cpu for {world} gloo processes", file=sys.stderr)
        return None
    # What every rank would refuse as it sets up, said once here: each printed it, and torchrun
    # a line of each one's exit. Not on one node of several: refused before the rendezvous, it
    # left the others waiting there, and the others' processes are not known before they meet
    # (1 + 2 split a batch of 6, refused as one of 4); the ranks check it after.
    if world > 1 and nodes == 1:
        problems = config.data.missing_files()
        try:
            device_for(config.device)
        except SetupError as e:
            problems.append(str(e))
        try:
            local_batch(config.batch_size, config.micro_batch_size or config.batch_size, world)
        except SetupError as e:
            problems.append(f"{e} (the {world} processes of this launch)")
        if problems:
            for problem in problems:
                print(f"{path}: {problem}", file=sys.stderr)
            return None
    if why := run_in_the_way(config.out_dir, resume, overwrite, FLAGS,
                             config=config.model_dump(mode="json")):
        print(f"{path}: {why}", file=sys.stderr)
        return None
    return config


def peer_lost(e: BaseException) -> bool:
    """Whether ``e`` is a collective's failure because another process of the run went away:
    its connection reset or closed (gloo), or its communicator aborted or timed out (NCCL)."""
    text = str(e)
    return any(words in text for words in (
        "Connection reset by peer", "Connection closed by peer", "Broken pipe",
        "communicator was aborted", "Watchdog caught collective operation timeout"))


def closed_output_said(line: str) -> None:
    """Say ``line`` on stderr where it is still open, then point both outputs at /dev/null, so
    that the interpreter's last flush of the closed one is no second error."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def resume_hint(out_dir: str | None) -> str:
    """Where an interrupted run can continue from, and how."""
    if not out_dir:
        return "the run had no out_dir, so there is no checkpoint to resume from"
    ckpt = Path(os.path.normpath(out_dir)) / CHECKPOINT
    if not ckpt.exists():
        return (f"no checkpoint was written yet in {ckpt.parent}; run the command again to "
                "start over")
    at = last_checkpoint(ckpt.parent)
    at = (f" (step {at['step']:,} of {at['steps']:,}, {at['tokens']:,} tokens)"
          if at and {"step", "steps", "tokens"} <= at.keys() else "")
    return (f"the last checkpoint is {ckpt}{at}; run the command again with --resume to "
            "continue from it")


def torchrun_command(path: str, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     rdzv_endpoint: str | None = None) -> list[str]:
    """The torchrun command that trains ``path`` on ``nproc`` processes of this machine, one of
    ``nnodes`` machines (``node_rank`` 0 to nnodes - 1) that meet at ``rdzv_endpoint``
    (host:port of node 0, which holds rank 0: it logs and writes the checkpoints).

    Rendezvous is torchrun's static one: every node runs the same command but for its
    ``--node-rank``, and the run starts when all have joined. The module is torchrun that ends
    on a signal without a traceback (``trainer.torchrun``); its arguments are torchrun's.
    """
    cmd = [sys.executable, "-m", "scaletune.trainer.torchrun", f"--nproc-per-node={nproc}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}",
                f"--rdzv-endpoint={rdzv_endpoint}"]
    return cmd + ["-m", "scaletune.trainer.rank", path]


def check_launch(nproc: int, nnodes: int, node_rank: int, rdzv_endpoint: str | None) -> list[str]:
    """What is wrong with a launch's options, one line each, naming the option."""
    errors = []
    if nproc < 1:
        errors.append(f"--nproc-per-node must be 1 or more, got {nproc}")
    if nnodes < 1:
        errors.append(f"--nnodes must be 1 or more, got {nnodes}")
    if not 0 <= node_rank < max(nnodes, 1):
        errors.append(f"--node-rank must be in 0..{max(nnodes, 1) - 1} (--nnodes {nnodes}), "
                      f"got {node_rank}")
    if nnodes > 1 and rdzv_endpoint is None:
        errors.append("--rdzv-endpoint is needed with --nnodes above 1: host:port of node 0, "
                      "which every node can reach (e.g. --rdzv-endpoint node0:29500)")
    if rdzv_endpoint is not None:
        host, _, port = rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            errors.append(f"--rdzv-endpoint must be host:port with a port in 1-65535, "
                          f"got {rdzv_endpoint!r}")
        elif nnodes == 1:
            errors.append("--rdzv-endpoint is for runs over several machines: add --nnodes N")
    return errors


def unknown_host(rdzv_endpoint: str) -> list[str]:
    """The error of a rendezvous host that this machine cannot resolve: torchrun would retry it
    for its whole rendezvous timeout (minutes) while printing socket warnings. A host that
    resolves but does not answer yet is waited for: node 0 may start later than this one."""
    import socket

    host = rdzv_endpoint.rpartition(":")[0].strip("[]")
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        return [f"--rdzv-endpoint: the host {host} is not known on this machine ({e.strerror}): "
                "give node 0's name or address as every node resolves it"]
    return []


def port_taken(rdzv_endpoint: str) -> list[str]:
    """The error of node 0's rendezvous port in use on this machine (another node 0 waits there,
    or a second machine started without its --node-rank, which is 0 then): torchrun failed on
    EADDRINUSE in a traceback of 46 lines, exit 1. A port that a run closed a moment ago is free
    to take (SO_REUSEADDR, as torch's store binds)."""
    import errno
    import socket

    port = rdzv_endpoint.rpartition(":")[2]
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("", int(port)))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            return []
        return [f"--rdzv-endpoint: port {port} is in use on this machine, where this node 0 "
                "listens for the others: another node 0 waits there (a machine started without "
                "its own --node-rank is node 0), or another program holds it; give each other "
                "machine its --node-rank, or every node another free port"]
    return []


def _own_group_ending_with_parent() -> Callable[[], None]:
    """What torchrun's process runs before it starts: a process group of its own (a Ctrl-C on
    the terminal reaches it once, from ``launch``), and on Linux a SIGTERM when ``launch``'s
    process dies, whatever kills it: a SIGKILL (a batch system's, the OOM killer) cannot be
    passed on, and left torchrun and its ranks training a run that a --resume then trained
    beside them. libc's prctl is looked up here, in the parent: the child between fork and exec
    only calls it."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def in_child() -> None:
        os.setpgrp()
        if prctl is not None:
            prctl(pr_set_pdeathsig, sigterm)

    return in_child


PASSED_ON = STOP_SIGNALS
"""The signals ``launch`` passes on to torchrun, which passes them on to its ranks."""


def launch(path: str, nproc: int, resume: bool = False, overwrite: bool = False,
           nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None) -> int:
    """Data-parallel training (DDP, or FSDP2 with ``parallel: fsdp``) on ``nproc`` processes of
    this machine, one of ``nnodes`` machines, through torchrun.

    One process per GPU on a GPU machine; gloo processes on a CPU. torchrun handles rendezvous
    and restarts; every rank runs ``train_main``. The command is printed first, so that it can
    be run by hand or put in a batch script.
    """
    import shlex
    import subprocess

    errors = check_launch(nproc, nnodes, node_rank, rdzv_endpoint)
    if not errors and rdzv_endpoint is not None:
        errors = unknown_host(rdzv_endpoint) or (port_taken(rdzv_endpoint) if node_rank == 0
                                                 else [])
    if errors:
        for err in errors:
            print(f"scaletune train: {err}", file=sys.stderr)
        return 2
    # torchrun runs in a process group of its own, so a Ctrl-C on the terminal reaches it once,
    # from here, and it passes it on to its ranks: they stop where they are and say how to
    # resume. A SIGTERM (a batch system's, a kill) or a SIGHUP (the terminal closed) takes the
    # same road instead of leaving torchrun and its ranks training without this process; a
    # signal ignored here (nohup) is not passed on. The signals are taken before the checks
    # below: a signal in them ends the launch in one line, and no moment is left between
    # torchrun's start and the handlers (one there ended this process alone).
    taken: list[int] = []  # the signals this process got, in order
    passed: list[int] = []  # how many of them went on to torchrun
    started: list[subprocess.Popen] = []

    def pass_on() -> None:
        while started and len(passed) < len(taken):
            passed.append(taken[len(passed)])
            with contextlib.suppress(ProcessLookupError):
                if len(passed) == 1:
                    os.kill(started[0].pid, passed[0])
                else:  # a second: the first did not end it, and the user means it
                    os.killpg(started[0].pid, signal.SIGKILL)

    def forward(signum: int, _frame: Any) -> None:
        taken.append(signum)
        pass_on()

    handlers = {sig: signal.signal(sig, forward) for sig in PASSED_ON
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        # A file the ranks would refuse is refused here, once, before torchrun starts them:
        # each would print the same errors and torchrun its own traceback of their exit.
        if startable(path, resume, overwrite, world=nproc * nnodes, nodes=nnodes) is None:
            return 2
        if taken:
            print(f"scaletune train: {stopped_by(taken[0])} before torchrun started; nothing "
                  "was written", file=sys.stderr, flush=True)
            return 128 + taken[0]
        flags = (["--resume"] if resume else []) + (["--overwrite"] if overwrite else [])
        cmd = torchrun_command(path, nproc, nnodes, node_rank, rdzv_endpoint) + flags
        print(f"launching: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        if nnodes > 1:  # torchrun says nothing while it waits for the other machines
            print(f"node {node_rank} of {nnodes} waits at {rdzv_endpoint} until all {nnodes} "
                  "nodes have joined (each runs this command with its own --node-rank)",
                  file=sys.stderr, flush=True)
        # torchrun sets OMP_NUM_THREADS=1 where it is unset, with a four-line warning to tune
        # it; each rank sets its own threads (trainer.loop: num_threads, else its share of the
        # cores), so the same value is given here, without the warning.
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        started.append(subprocess.Popen(cmd, env=env,
                                        preexec_fn=_own_group_ending_with_parent()))
        pass_on()  # a signal that came as it was started
        code = started[0].wait()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if len(taken) > 1:
        # torchrun waiting at its rendezvous for nodes that never came lets a Ctrl-C go
        # (torch's store client retries through it): two, three, left it waiting for minutes.
        print("scaletune train: a second signal: torchrun and its ranks were killed; a "
              "checkpoint written before is kept (run the command again with --resume)",
              file=sys.stderr, flush=True)
        return 128 + taken[0]
    return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


def summary(result: Result, out_dir: str | None = None) -> str:
    def loss(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    lines = [
        f"status          {result.status}: {result.reason}",
        f"val loss        final {loss(result.final_val_loss)}, best {loss(result.best_val_loss)}",
        f"trained         {result.tokens_seen:,} tokens in {result.steps:,} steps",
        f"time            {result.train_time_s:.1f} s training, {result.wall_time_s:.1f} s in all",
        # PaLM's count (6N with norms and the head, plus attention), not the study's 6ND of
        # non-embedding parameters: the 2 differ by a third at small widths.
        f"throughput      {result.tokens_per_s:,.0f} tokens/s, {result.flops_per_s / 1e9:.1f} GFLOP/s"
        " (PaLM's count: all weights and attention)"
        + (f", MFU {result.mfu:.1%}" if result.mfu is not None else ""),
        f"grad norm       mean {result.grad_norm['mean']:.3g}, max {result.grad_norm['max']:.3g}, "
        f"{result.grad_norm['n_spikes']} spikes" if not math.isnan(result.grad_norm["mean"])
        # "mean nan, max 0": a run that diverged at its first step counts no step's norm
        else "grad norm       - (no step counted: the run ended at its first)",
    ]
    if out_dir:
        lines.append(f"run folder      {os.path.normpath(out_dir)}")
    return "\n".join(lines)


if __name__ == "__main__":
    from scaletune.trainer.rank import main

    sys.exit(main(prog="python -m scaletune.trainer.cli"))
