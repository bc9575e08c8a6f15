"""Processes as ``python ...`` or ``torchrun --nproc-per-node N ...`` starts them, forked from a
server that has imported torch, Ray, Optuna and scaletune once (multiprocessing's forkserver).

A process started afresh imports its libraries before it does anything: ~1.5 CPU seconds for a
`scaletune` command that reaches Ray, ~2 for a run that trains, more than the tiny runs and the
short commands of the tests take themselves, and a torchrun of two ranks starts three such
processes. The CI machine has 2 cores, and the tests are bound by their CPU.

So tests whose subject is not how a process starts (the numbers of a run of several processes
held to one process's, a command's output and exit code) start their processes here: each is
its own process, with the caller's environment (and, as a rank, the environment torchrun gives
one: RANK, WORLD_SIZE, MASTER_ADDR...), its own working folder, argv, stdout and stderr, and
runs the module or script as ``__main__``, its atexit functions at its end, as the interpreter
runs them. The tests of a start itself (`scaletune train --nproc-per-node`, torchrun, a signal
as a command starts, what a command imports, standard input) start their processes for real.

The server is forked from nothing the tests ran, so no thread pool, process group or Ray
connection is inherited; it reads the environment once, when it starts, and so a call that sets
variables Ray, torch or OpenMP read as they are imported starts a fresh process (``run``).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
PRELOAD = ["torch", "torch.distributed", "torch.distributed.checkpoint.state_dict", "ray",
           "optuna", "scaletune.trainer.cli", "scaletune.trainer.loop", "scaletune.search.cli",
           "scaletune.search.runner", "scaletune.search.manage"]
READ_AT_IMPORT = ("RAY_", "TORCH", "OMP_", "MKL_", "CUDA_", "PYTHON")
"""Prefixes of the variables that a call may not change from the server's: read as the libraries
are imported (ray_constants, torch's and OpenMP's settings, the interpreter's own)."""
SET_BY_SCALETUNE = ("OMP_WAIT_POLICY", "RAY_COLOR_PREFIX")
"""Variables of that kind that scaletune sets in a test's own process (trainer.threads.quiet_waits,
search.cluster.start), which then stay set for the later tests of that process: how OpenMP's
idle threads wait and whether Ray colours its log lines, nothing a forked process's test checks.
Compared, they made every call after an in-process study or run start afresh."""
SERVER_ENV: dict[str, str] = {}
"""The environment the server started with (it starts at the first call, with this process's)."""


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _main(env: dict[str, str], cwd: str, out: str, err: str, argv: list[str]) -> None:
    """Run ``argv`` (``-m MODULE ARGS`` or ``SCRIPT ARGS``) as its own ``__main__``."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    for path, fd in ((out, 1), (err, 2)):
        opened = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.dup2(opened, fd)
        os.close(opened)
    with contextlib.suppress(ImportError):
        import threading

        from tqdm import tqdm

        # tqdm's lock is a semaphore of the machine's, which a process that ends in os._exit
        # (a rank, trainer.distributed.leave) leaves for the resource tracker to warn of.
        tqdm.set_lock(threading.RLock())
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:  # as the interpreter: SystemExit("a message") prints it, exit 1
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException:  # as the interpreter: the traceback, exit code 1
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # a multiprocessing child skips them; the interpreter runs them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def forkable(env: dict[str, str]) -> bool:
    """Whether a process of environment ``env`` may be forked from the server: the variables
    read at import are the server's."""
    server = SERVER_ENV or os.environ
    return not any(key.startswith(READ_AT_IMPORT) and key not in SET_BY_SCALETUNE
                   and env.get(key) != server.get(key) for key in {*env, *server})


def run(*argv: str, nproc: int = 1, env: dict[str, str] | None = None, cwd: Path = REPO,
        timeout: float = 300, merged: bool = False) -> subprocess.CompletedProcess:
    """``python *argv`` (``nproc`` 1), or ``torchrun --nproc-per-node nproc *argv`` on one
    machine, waited for: the exit code (of ranks, torchrun's: 1 where any failed, else 0), and
    the processes' stdout and stderr, rank after rank (with ``merged``, both in ``stdout``, as
    ``stderr=subprocess.STDOUT`` gives them). An environment that ``forkable`` refuses runs
    in fresh processes, started by ``python`` or by torchrun."""
    base = {**os.environ, **(env or {})}
    if not forkable(base):
        launch = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone",
                                        f"--nproc-per-node={nproc}"]
        return subprocess.run([sys.executable, *launch, *argv], cwd=cwd, env=base,
                              capture_output=not merged, text=True, timeout=timeout,
                              **({"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
                                 if merged else {}))
    ctx = _context()
    SERVER_ENV.update(SERVER_ENV or os.environ)
    port = free_port()
    files, processes = [], []
    with tempfile.TemporaryDirectory(prefix="forked-") as folder:
        for rank in range(nproc):
            ranked = dict(base)
            if nproc > 1:
                ranked.update(RANK=str(rank), LOCAL_RANK=str(rank), GROUP_RANK="0",
                              ROLE_RANK=str(rank), WORLD_SIZE=str(nproc),
                              LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(port))
            out = Path(folder) / f"{rank}.out"
            err = out if merged else Path(folder) / f"{rank}.err"
            out.touch()
            err.touch()
            files.append((out, err))
            p = ctx.Process(target=_main, args=(ranked, str(cwd), str(out), str(err), list(argv)))
            p.start()
            processes.append(p)
        timed_out = False
        try:
            for p in processes:
                p.join(timeout)
                timed_out = timed_out or p.is_alive()
        finally:
            for p in processes:
                if p.is_alive():
                    p.kill()
                    p.join()
        stdout = "".join(out.read_text(errors="replace") for out, _ in files)
        stderr = "" if merged else "".join(err.read_text(errors="replace") for _, err in files)
    if timed_out:
        raise subprocess.TimeoutExpired(list(argv), timeout, stdout, stderr)
    code = processes[0].exitcode if nproc == 1 else int(any(p.exitcode for p in processes))
    return subprocess.CompletedProcess(list(argv), code, stdout, stderr)
