"""Run again the rungs of ladder_v5_prior's 18 ladders (not their targets), into OUT (argv[2]),
keeping their studies there for table.py: argv[1] lists task:seed pairs, comma-separated.

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/run_rungs.py \
        shakespeare-bpe:0,shakespeare-byte:0,... /tmp/rungs
"""
import re
import shutil
import sys
from pathlib import Path

from rich.console import Console

from benchmarks.suite import bpe_file, corpus_file
from scaletune.search.ladder import load_ladder, with_data_sized
from scaletune.search.runner import run_study

SRC = Path(__file__).resolve().parent.parent / "ladder_v5_prior"
OUT = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/rungs")
BPE = {"shakespeare-bpe": ("shakespeare", 1024), "code-bpe": ("stdlib_code", 2048)}
for key in sys.argv[1].split(","):
    task, seed = key.split(":")
    d = OUT / task / f"s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    for f in ("ladder.yaml", "target.yaml"):
        shutil.copy(SRC / task / f"s{seed}" / f, d / f)
    t = (d / "target.yaml").read_text()
    t = re.sub(r"storage: .*", f"storage: sqlite:///{d}/studies.db", t)
    m = re.search(r"path: .*/corpora/(\w+)\.txt", t)
    if m:
        t = t.replace(m.group(0), f"path: {corpus_file(m.group(1), OUT)}")
    if task in BPE:
        tok = bpe_file(*BPE[task], OUT)
        t = re.sub(r"tokenizer: .*", f"tokenizer: {tok}", t)
    (d / "target.yaml").write_text(t)
    lad = with_data_sized(load_ladder(d / "ladder.yaml"))
    for rung in lad.rungs:
        run_study(rung.cfg, Console(quiet=True), summary=False)
    print("done", task, seed, flush=True)
