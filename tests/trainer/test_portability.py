"""What macOS and Windows lack, taken away from this Linux machine's Python: a run trains and
the commands import without it (``os.sched_getaffinity`` ended every trial on a Mac; naming
``signal.SIGHUP`` stopped every import of the trainer on Windows)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, signal, sys
del os.sched_getaffinity   # macOS, Windows
del signal.SIGHUP          # Windows
del os.getuid              # Windows
import scaletune.search.runner, scaletune.search.cli, scaletune.trainer.cli, scaletune.trainer.torchrun
from pathlib import Path
from scaletune.search.cluster import private_token
from scaletune.trainer.config import TrainConfig
from scaletune.trainer.loop import train

token = Path(sys.argv[2]) / "auth_token"
token.write_text("secret")
assert private_token(token, existed=False) is None
cfg = TrainConfig.model_validate({
    "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "data": {"source": "text", "path": sys.argv[1], "cache_dir": sys.argv[2] + "/cache",
             "val_windows": 4},
    "optim": {"lr": 3e-3, "warmup_frac": 0.0}, "batch_size": 4, "tokens": 4 * 32 * 4,
    "progress": False})
print("status", train(cfg).status)
"""


def test_a_run_trains_without_what_macos_and_windows_lack(shakespeare, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_bytes(shakespeare.read_bytes()[:50_000])
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(text), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("status completed"), done.stdout
