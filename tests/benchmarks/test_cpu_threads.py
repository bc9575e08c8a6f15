import re
import subprocess
import sys
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
