"""GPU check: what the CPU tests cannot show, in under five minutes on a machine with CUDA GPUs.

    python -m benchmarks.gpu_check [--steps 50] [--micro-batch-size 8] [-o gpu_check.json]

1. Trainer throughput and MFU on GPT-2 small shapes (12 layers, 12 heads, width 768, block 1024,
   vocabulary 50304, batch 16 sequences), bf16 autocast, without and then with torch.compile
   (benchmarks.trainer_throughput.run: the median tokens/s over 5-step chunks, the first chunk
   and the compilation left out). MFU is given against the bf16 matmul peak measured on this
   GPU, and against the datasheet peak where the trainer knows the GPU (trainer.loop).
2. A study of 4 trials at ``gpus_per_trial: 0.25`` on one GPU, written to a temporary folder
   and run with ``scaletune run`` as a user runs it: Ray should place all four on the GPU at
   once, and each should train on CUDA.
3. With two GPUs or more: 2-process data parallel through ``scaletune train --nproc-per-node 2``
   (torchrun, NCCL), replicated (``parallel: ddp``) and sharded (``parallel: fsdp``), each
   against one process; and a sharded checkpoint of 2 processes resumed on one.

The data are the prose of Python's documentation (ships with Python), so nothing is downloaded.
On a machine without CUDA it exits with status 2 and says so. It is not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.trainer_throughput import CHUNK_STEPS, matmul_peaks, run
from scaletune.trainer.config import TrainConfig
from scaletune.trainer.loop import peak_flops
from scaletune.trainer.model import flops_per_token
from scaletune.trainer.record import git_revision

REPO = Path(__file__).resolve().parents[1]
GPT2_SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "vocab_size": 50304}
BATCH = 16
BUILTIN = {"source": "builtin", "builtin": "pydoc_topics", "tokenizer": "byte"}
TINY = {"n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": 128}
"""The model of the study and the data-parallel runs: they check placement and agreement."""


def no_cuda_message() -> str | None:
    """Why this machine cannot run the check, or None when it can."""
    if torch.cuda.is_available():
        return None
    build = f"torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'}"
    return (f"gpu_check needs a CUDA GPU, and torch sees none on this machine ({build}). "
            "Run it on a machine with NVIDIA GPUs and a CUDA build of torch; the CPU side is "
            "covered by the tests (bash tests/run.sh).")


def throughput(cache: str, steps: int, micro: int, compile: bool) -> dict[str, Any]:
    """Tokens/s and MFU of the trainer on GPT-2 small shapes, bf16, one GPU."""
    overrides = {"model": GPT2_SMALL, "batch_size": BATCH, "micro_batch_size": micro,
                 "device": "cuda", "data": {**BUILTIN, "cache_dir": cache, "val_windows": 8}}
    rates = [rate for rate, _ in run("bfloat16", steps, compile, cache, **overrides)]
    tokens_per_s = statistics.median(rates)
    fpt = flops_per_token(TrainConfig.model_validate({"model": GPT2_SMALL}).model)
    measured = matmul_peaks(torch.bfloat16, sizes=(4096, 8192), repeats=10, device="cuda")["torch"]
    datasheet = peak_flops(torch.device("cuda"), torch.bfloat16)
    return {"compile": compile, "tokens_per_s": tokens_per_s, "chunks": len(rates),
            "range": [min(rates), max(rates)], "flops_per_token": fpt,
            "matmul_peak_flops": measured, "mfu_of_matmul_peak": fpt * tokens_per_s / measured,
            "datasheet_peak_flops": datasheet,
            "mfu_of_datasheet_peak": fpt * tokens_per_s / datasheet if datasheet else None}


def study_file(folder: Path, device: str = "cuda", tokens: int = 16_000_000) -> Path:
    """The study of the check: 4 trials of the tiny model, a quarter GPU each (on ``device``
    'cpu', for the tests, one core each and no GPU). Each trains ``tokens``, 2,000-4,000 steps:
    long enough (seconds each, by estimate: the check has not run on a GPU yet) that the four
    overlap though their workers start one by one (a trial of 500 steps could end before the
    last had imported torch, and the check read 3 at once)."""
    path = folder / "gpu-check.yaml"
    path.write_text(yaml.safe_dump({
        "name": "gpu-check", "model": TINY, "data": BUILTIN,
        "trainer": {"device": device, "dtype": "bfloat16" if device == "cuda" else "float32"},
        "tokens_per_trial": tokens, "eval_every_tokens": tokens // 5,
        "search": {"lr": {"prior": "auto"}, "weight_decay": {"prior": "auto", "as": "tau"},
                   "dropout": {"value": 0.0}, "warmup_frac": {"prior": "auto"},
                   "batch_size": {"choices": [32, 64]}},
        "pruner": {"name": "none"}, "n_trials": 4,
        "workers": {"gpus_per_trial": 0.25 if device == "cuda" else 0, "cpus_per_trial": 1,
                    "max_concurrent": 4},
    }, sort_keys=False))
    return path


def study(path: Path) -> dict[str, Any]:
    """Run the study at ``path`` with ``scaletune run`` on this machine's first GPU alone (Ray
    could spread fractions over several): how its trials ended, where they ran and how many ran
    at once."""
    import optuna

    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or "0"
    start = time.perf_counter()
    done = _scaletune("run", str(path), env={"CUDA_VISIBLE_DEVICES": visible.split(",")[0]})
    wall = time.perf_counter() - start
    db = path.parent / "runs" / "studies.db"
    trials = (optuna.load_study(study_name="gpu-check", storage=f"sqlite:///{db}").trials
              if done.returncode == 0 else [])
    spans = [(t.user_attrs.get("worker_started_at"), t.user_attrs.get("worker_ended_at"))
             for t in trials]
    return {"exit_code": done.returncode, "wall_time_s": wall,
            "states": [t.state.name for t in trials],
            "devices": [t.user_attrs.get("worker_device") for t in trials],
            "gpu_ids": [t.user_attrs.get("worker_gpu_ids") for t in trials],
            "most_at_once": most_at_once([s for s in spans if None not in s]),
            "values": [t.value for t in trials],
            "output_tail": (done.stdout + done.stderr)[-2000:]}


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of the (start, end) intervals that overlap at one moment."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


STOP_AT = """
import sys
from scaletune.trainer.config import load_train_config
from scaletune.trainer.distributed import leave
from scaletune.trainer.loop import train

stop_at = int(sys.argv[2])
train(load_train_config(sys.argv[1]),
      report=lambda tokens, *_: "stop" if tokens >= stop_at else None)
leave(0)  # as trainer.rank's ranks do
"""


def train_file(folder: Path, name: str, parallel: str, device: str = "cuda",
               steps: int = 200) -> Path:
    """A training run of the tiny model, ``steps`` steps of 64 sequences, out_dir folder/name."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "model": TINY, "data": {**BUILTIN, "val_windows": 32}, "optim": {"lr": 2e-3},
        "tokens": 64 * 128 * steps, "batch_size": 64, "eval_every_tokens": 64 * 128 * steps // 4,
        "device": device, "dtype": "bfloat16" if device == "cuda" else "float32",
        "parallel": parallel, "progress": False, "out_dir": str(folder / name)}))
    return path


def data_parallel(folder: Path, device: str = "cuda", steps: int = 200) -> dict[str, Any]:
    """One process, then two with ddp and with fsdp, then a 2-process fsdp checkpoint resumed
    on one: the final validation losses of each (they should agree to bf16's precision) and the
    exit codes. One GPU per process; ``device`` 'cpu' (for the tests) runs gloo processes."""
    out: dict[str, Any] = {}
    for name, parallel, nproc in [("one", "ddp", 1), ("ddp", "ddp", 2), ("fsdp", "fsdp", 2)]:
        path = train_file(folder, name, parallel, device, steps)
        out[name] = _outcome(_scaletune("train", str(path), "--nproc-per-node", str(nproc)),
                             folder / name)
    script = folder / "stop_at.py"
    script.write_text(STOP_AT)
    resumed = train_file(folder, "fsdp_resumed_on_one", "fsdp", device, steps)
    stopped = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node=2", str(script), str(resumed), str(64 * 128 * steps // 2)])
    # The stopped run is judged by its checkpoint, which the resume below needs.
    if not (folder / resumed.stem / "checkpoint.pt").exists():
        out["fsdp_resumed_on_one"] = {**_outcome(stopped, folder / resumed.stem),
                                      "exit_code": stopped.returncode or 1}
    else:
        out["fsdp_resumed_on_one"] = _outcome(_scaletune("train", str(resumed), "--resume"),
                                              folder / resumed.stem)
    return out


def _outcome(done: subprocess.CompletedProcess, out_dir: Path) -> dict[str, Any]:
    """A run's exit code and final validation loss, and the end of its output if it failed."""
    outcome = {"exit_code": done.returncode or 0, "final_val_loss": _final_loss(out_dir)}
    if done.returncode:
        outcome["output_tail"] = (done.stdout + done.stderr)[-2000:]
    return outcome


def _final_loss(out_dir: Path) -> float | None:
    evals = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line] if (out_dir / "metrics.jsonl").exists() else []
    return evals[-1]["val_loss"] if evals else None


def _scaletune(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "scaletune.search.cli", *args],
                env={**os.environ, **(env or {})})


RUN_TIMEOUT_S = 240
"""The longest one of the check's commands may run: a rendezvous or collective that hangs would
hold the check for torch.distributed's 30-minute timeout, where the whole check takes five."""


def _run(command: list[str], env: dict[str, str] | None = None,
         timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``command`` run from the checkout, its output kept; past ``timeout`` seconds it is killed
    with every process it started (torchrun's workers) and ends with exit code 124, its output
    saying so."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return subprocess.CompletedProcess(command, 124, out, f"{err}\ngpu_check: killed after "
                                           f"{timeout:.0f} s (RUN_TIMEOUT_S)\n")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50,
                        help="optimizer steps per throughput run (default 50)")
    parser.add_argument("--micro-batch-size", type=int, default=8,
                        help="sequences per forward pass of GPT-2 small (lower it on a small GPU; "
                             "default 8)")
    parser.add_argument("-o", "--output", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.steps < 2 * CHUNK_STEPS:  # a StatisticsError on the GPU, minutes in, before
        parser.error(f"--steps must be {2 * CHUNK_STEPS} or more (chunks of {CHUNK_STEPS} steps, "
                     f"the first left out as warm-up), got {args.steps}")
    if args.micro_batch_size < 1:
        parser.error(f"--micro-batch-size must be 1 or more, got {args.micro_batch_size}")
    if args.output is not None:  # refused at the end, after minutes on the GPUs, it lost them
        folder = args.output.resolve().parent
        if args.output.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
            parser.error(f"-o {args.output}: cannot write a file there (a folder, or a folder "
                         "that is missing or read-only)")
    why_not = no_cuda_message()
    if why_not:
        print(why_not, file=sys.stderr)
        return 2
    n_gpus = torch.cuda.device_count()
    results: dict[str, Any] = {
        "git": git_revision(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(n_gpus)]}
    print(f"{n_gpus} GPU(s): {', '.join(results['gpus'])}; torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, code {results['git']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results["throughput"] = []
        for compile in (False, True):
            try:
                r = throughput(str(folder / "cache"), args.steps, args.micro_batch_size, compile)
            except torch.OutOfMemoryError:
                print(f"GPT-2 small, bf16{' compiled' if compile else ''}: out of GPU memory at "
                      f"--micro-batch-size {args.micro_batch_size}; run again with a smaller one")
                results["throughput"].append({"compile": compile, "error": "out of memory"})
                continue
            except Exception as e:  # noqa: BLE001 - a compile that fails: the rest still runs
                # (a failure here ended the whole check, and the results gathered before it)
                said = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                print(f"GPT-2 small, bf16{' compiled' if compile else ''}: failed ({said}); the "
                      "check goes on")
                results["throughput"].append({"compile": compile, "error": said})
                continue
            finally:  # the study and the torchrun runs after it have GPU 0 to themselves
                torch.cuda.empty_cache()
            results["throughput"].append(r)
            sheet = (f", {r['mfu_of_datasheet_peak']:.1%} of the datasheet's "
                     f"{r['datasheet_peak_flops'] / 1e12:.0f} TFLOP/s"
                     if r["mfu_of_datasheet_peak"] else "")
            print(f"GPT-2 small, bf16{' compiled' if compile else ''}: "
                  f"{r['tokens_per_s']:,.0f} tokens/s ({r['range'][0]:,.0f}-{r['range'][1]:,.0f} "
                  f"over {r['chunks']} chunks); MFU {r['mfu_of_matmul_peak']:.1%} of the measured "
                  f"bf16 matmul peak {r['matmul_peak_flops'] / 1e12:.0f} TFLOP/s{sheet}",
                  flush=True)
        s = results["study"] = study(study_file(folder))
        print(f"study of 4 trials at gpus_per_trial 0.25: exit {s['exit_code']}, states "
              f"{s['states']}, devices {s['devices']}, at most {s['most_at_once']} at once, "
              f"{s['wall_time_s']:.0f} s", flush=True)
        if s["exit_code"]:
            print(s["output_tail"])
        if n_gpus >= 2:
            dp = results["data_parallel"] = data_parallel(folder)
            for name, r in dp.items():
                loss = "-" if r["final_val_loss"] is None else f"{r['final_val_loss']:.4f}"
                print(f"data parallel {name:20s} exit {r['exit_code']}, final val loss {loss}")
                if r["exit_code"]:
                    print(r.get("output_tail", ""))
        else:
            print("data parallel: skipped (needs two GPUs)")
    ok = all_ok(results)
    results["ok"] = ok
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    print("all checks passed" if ok else "some checks FAILED: see above")
    return 0 if ok else 1


def all_ok(results: dict[str, Any]) -> bool:
    """Every run fitted and exited 0; the study's four trials completed on CUDA, on one GPU, all
    at once; the data-parallel losses agree with one GPU's to 2% (bf16)."""
    s = results["study"]
    ok = (not any("error" in r for r in results["throughput"])
          and s["exit_code"] == 0 and s["states"] == ["COMPLETE"] * 4
          and set(s["devices"]) == {"cuda"} and len({str(g) for g in s["gpu_ids"]}) == 1
          and s["most_at_once"] == 4)
    dp = results.get("data_parallel")
    if dp:
        one = dp["one"]["final_val_loss"]
        ok = ok and one is not None and all(
            r["exit_code"] == 0 and r["final_val_loss"] is not None
            and abs(r["final_val_loss"] - one) <= 0.02 * one for r in dp.values())
    return ok


if __name__ == "__main__":
    sys.exit(main())
