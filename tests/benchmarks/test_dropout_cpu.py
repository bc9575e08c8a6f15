import re
import subprocess
import sys

from tests.search.helpers import REPO


def test_benchmark_prints_both_sides_and_their_ratio_for_each_shape():
    # One round of each comparison: the plumbing, not the figures.
    out = subprocess.run([sys.executable, "-m", "benchmarks.dropout_cpu", "--rounds", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dropout 0.054 on CPU, 1 thread(s), fp32; median of 1 rounds")
    for shape in ("quickstart: batch 4 x 64 tokens", "reference: batch 32 x 128 tokens"):
        assert shape in out.stdout
    rows = re.findall(r"^  (.+?)\s{2,}(torch|fused, no dropout)\s+(\d+) us\s+scaletune\s+(\d+) us"
                      r"\s+(\d+\.\d\d)x", out.stdout, re.M)
    assert [r[0] for r in rows] == ["dropout of (4, 64, 256)", "attention, dropout on its weights",
                                    "attention, dropout against none", "dropout of (32, 128, 1024)",
                                    "attention, dropout on its weights",
                                    "attention, dropout against none"]
    assert all(int(r[2]) > 0 and int(r[3]) > 0 for r in rows)
