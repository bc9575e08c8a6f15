import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaletune.trainer.config import usable_cores

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(usable_cores() < 2, reason="one core: no threads to compare")
def test_the_benchmark_prints_each_setting_quiet_and_beside_a_busy_process():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu_threads", "--models", "tiny", "--rounds", "1",
         "--seconds", "0.05", "--extra", "GOMP_SPINCOUNT=1000"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    n = re.search(r"^(\d+) usable cores", out, re.M)
    assert n, out
    rows = re.findall(r"^ {4}(.+?) +([\d,]+) tokens/s .+ ([\d.]+)x of (\d+) threads$", out, re.M)
    names = ["1 thread", f"{n[1]} threads", f"{n[1]} threads, passive",
             f"{n[1]} threads, GOMP_SPINCOUNT=1000"]
    assert [r[0] for r in rows] == names * 2, out  # quiet, then beside a busy process
    assert "beside 1 busy process" in out
    for name, speed, ratio, base in rows:
        assert int(speed.replace(",", "")) > 0 and base == n[1]
        if name == f"{n[1]} threads":
            assert ratio == "1.00"


def test_a_bad_extra_setting_is_refused_with_what_it_takes():
    done = subprocess.run([sys.executable, "-m", "benchmarks.cpu_threads", "--extra", "SPIN"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--extra: 'SPIN' is not NAME=VALUE" in done.stderr


def test_nothing_to_time_is_refused():
    done = subprocess.run([sys.executable, "-m", "benchmarks.cpu_threads", "--no-quiet",
                           "--busy", "0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--no-quiet with --busy 0 leaves nothing to time" in done.stderr


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:  # ended since
        return b""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(usable_cores() < 2 or not Path("/proc/self/task").is_dir(),
                    reason="one core, or no /proc to find the benchmark's processes in")
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_kill_of_the_benchmark_alone_stops_its_busy_processes_too(kill):
    # Beside the busy processes only: the quiet rounds, 2 threads spinning on a machine the
    # other tests keep busy, took 40 s of the test's 50 under the test suite.
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cpu_threads", "--models", "tiny", "--rounds", "100",
         "--seconds", "0.005", "--no-quiet"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120  # three processes that import torch, then the busy ones
        while len(spinners := [c for c in children(proc.pid) if b"getppid" in
                               cmdline(c)]) < 1:
            assert time.time() < deadline, "no busy process started"
            time.sleep(0.1)
        started = children(proc.pid)
        proc.send_signal(kill)
        # SIGTERM: through its clean-up; SIGKILL: the spinners see their parent gone.
        assert proc.wait(timeout=60) == (143 if kill == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.time() + 10
        while any(alive(c) for c in started) and time.time() < deadline:
            time.sleep(0.1)
        assert not [c for c in started if alive(c)], spinners
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_busy_process_whose_parent_is_already_gone_ends_at_once():
    # A kill of the benchmark that lands while a spinner starts: its parent is gone before it
    # runs a line (it had read its parent then, init, and spun on).
    from benchmarks.cpu_threads import SPIN

    gone = subprocess.Popen(["true"])
    gone.wait()
    spinner = subprocess.Popen([sys.executable, "-c", SPIN, str(gone.pid)])
    try:
        assert spinner.wait(timeout=60) == 0
    finally:
        spinner.kill()
