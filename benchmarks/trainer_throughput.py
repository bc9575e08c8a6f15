"""Trainer throughput: tokens/s and model-FLOPs utilization against this machine's matmul peak.
The default run takes about 6 minutes on 2 cores (8 with --reference and --breakdown:
benchmarks/results/trainer_throughput.txt).

    python -m benchmarks.trainer_throughput [--steps 50] [--threads N] [--compile] [--reference DIR]
        [--rounds 30] [--breakdown [--breakdown-rounds 10]]

Trains the reference model of the project's design notes (6 layers, 8 heads, width 256, block
128, batch 32) with the real trainer: fp32 with its default oneDNN matmuls (trainer.kernels),
fp32 with torch's default matmul for comparison, then bf16 autocast (attention in float32 on CPU, as
train() does; see trainer.kernels.float32_attention). MFU = model FLOPs per token
(trainer.model.flops_per_token, the nanoGPT/PaLM count) x tokens/s / the matmul peak. The fp32
peak is the better of torch's matmul and oneDNN's (on this AMD host oneDNN's, ~12% higher), so
the library the trainer picks is measured against the best the machine does, not a slower one.

The host is shared and its speed drifts (the fp32 peak moves between ~145 and ~200 GFLOP/s within
minutes), so the peak is measured side by side with the training: the run pauses every
CHUNK_STEPS steps (the trainer's clock stops for evaluation and the report callback), the
callback measures the peak, and each chunk's tokens/s is divided by the higher of the peaks
measured right before and right after it. The first chunk (allocator and kernel warm-up) is left
out; the figure is the median over the others, with their range.

Then it times bare training steps side by side in one process, taking turns: our model with
oneDNN matmuls against the same model with torch's, and with ``--reference DIR`` (a checkout of
nanoGPT, the reference trainer of the design notes) nanoGPT's model and optimizer too; the figure
is the median of the per-round speed ratios. Then the same for bf16 autocast steps with attention in
float32 against attention in bf16.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import refuse_below_one
from scaletune.trainer import TrainConfig, kernels, train
from scaletune.trainer.config import usable_cores
from scaletune.trainer.kernels import float32_attention, onednn_available, onednn_linear
from scaletune.trainer.model import flops_per_token

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
MODEL = {"n_layer": 6, "n_head": 8, "n_embd": 256, "block_size": 128}
BATCH = 32
CHUNK_STEPS = 5
PEAK_SIZES = {"start": (1024, 2048, 3072), "pause": (2048,)}
"""Square matmul sizes of the peak at the start and at every pause (--peak-size sets both)."""


def matmul_peaks(dtype: torch.dtype, sizes: tuple[int, ...] | None = None,
                 repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """Best FLOP/s of an (n x n) @ (n x n) matmul over a few sizes, per library.

    "torch" is torch's matmul (its default BLAS, MKL on x86); for float32 also "onednn", the
    product the trainer uses on CPU (trainer.kernels). MFU divides by the higher of the two: the
    peak is what this machine reaches by either road, so the faster library in the trainer is not
    credited against the slower one's peak. (bf16 matmuls already go through oneDNN in torch.)
    On a GPU (``device`` 'cuda'), torch's matmul alone, each product timed to its end.
    """
    sizes = sizes or PEAK_SIZES["start"]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    libraries = {"torch": lambda a, b: a @ b}
    if dtype == torch.float32 and device == "cpu" and onednn_available():
        libraries["onednn"] = lambda a, b: onednn_linear(a, b.t(), None)
    peaks = dict.fromkeys(libraries, 0.0)
    for name, product in libraries.items():
        for n in sizes:
            a = torch.randn(n, n, dtype=dtype, device=device)
            b = torch.randn(n, n, dtype=dtype, device=device)
            product(a, b)  # warm-up: thread pool, packing buffers
            sync()
            for _ in range(repeats):
                t = time.perf_counter()
                product(a, b)
                sync()
                peaks[name] = max(peaks[name], 2 * n**3 / (time.perf_counter() - t))
    return peaks


def quick_peaks(dtype: torch.dtype) -> dict[str, float]:
    """The peaks at one size, in about a second: measured at every pause."""
    return matmul_peaks(dtype, sizes=PEAK_SIZES["pause"], repeats=3)


def run(dtype: str, steps: int, compile: bool, cache: str, cpu_matmul: str = "onednn",
        **overrides: Any) -> list[tuple[float, dict[str, float]]]:
    """One training run: (tokens/s, peaks measured around it) of each chunk after the first.

    The peaks are the fp32 ones for an fp32 run and the bf16 one for a bf16 run. ``overrides``
    replace fields of the training config (benchmarks.gpu_check: the model, batch and device);
    on a GPU no peaks are measured at the pauses (the dicts are empty).
    """
    data = ({"source": "text", "path": str(SHAKESPEARE)} if SHAKESPEARE.exists()
            else {"source": "builtin"})
    model, batch = overrides.get("model", MODEL), overrides.get("batch_size", BATCH)
    step_tokens = batch * model["block_size"]
    cfg = TrainConfig.model_validate({
        "model": model, "data": {**data, "cache_dir": cache, "val_windows": 8},
        "optim": {"name": "adamw", "lr": 3e-4}, "batch_size": batch, "tokens": steps * step_tokens,
        "eval_every_tokens": CHUNK_STEPS * step_tokens, "dtype": dtype, "device": "cpu",
        "compile": compile, "cpu_matmul": cpu_matmul, "progress": False,
        # --threads (torch.set_num_threads in main): train() sets its own count from the config
        # and ran on every core, whatever the flag said.
        "num_threads": torch.get_num_threads(), **overrides,
    })
    peak_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    marks = []  # (tokens, seconds of training, peaks) at each pause

    def report(tokens: int, val: float, metrics: dict) -> None:
        peaks = quick_peaks(peak_dtype) if cfg.device == "cpu" else {}
        marks.append((tokens, metrics["train_time_s"], peaks))

    train(cfg, report)
    # A chunk runs between two pauses; the one before the first pause (warm-up) is left out.
    # Each library's peak for a chunk is the higher of its readings right before and after it.
    return [((t1 - t0) / (s1 - s0), {k: max(p0[k], p1[k]) for k in p0})
            for (t0, s0, p0), (t1, s1, p1) in zip(marks, marks[1:], strict=False)]


def bare_step(onednn: bool, gelu: bool = True, bf16_attention: bool | None = None,
              model: dict[str, int] = MODEL, batch: int = BATCH,
              ) -> tuple[Callable[[], None], torch.Tensor, torch.Tensor]:
    """A bare training step of a fresh model on one fixed batch, and that batch (x, y).

    The step is the trainer's train_step: forward, backward, clip at 1.0, AdamW, zero grads.
    fp32, ``onednn`` as train() does with cpu_matmul set; ``gelu=False`` puts the identity in its
    place. With ``bf16_attention`` given, a bf16 autocast step instead, with attention in bf16
    (True) or float32 (False; see trainer.kernels.float32_attention).
    """
    import contextlib

    from scaletune.trainer.loop import keep_freed_memory, train_step
    from scaletune.trainer.model import GPT
    from scaletune.trainer.optim import build_optimizers

    keep_freed_memory()
    torch.manual_seed(0)
    x = torch.randint(0, 256, (batch, model["block_size"]))
    y = torch.randint(0, 256, (batch, model["block_size"]))
    cpu = torch.device("cpu")
    cfg = TrainConfig.model_validate({"model": model, "optim": {"name": "adamw", "lr": 3e-4}})
    gpt = GPT(cfg.model, 256)
    gpt.use_onednn(onednn and onednn_available())
    gpt.use_float32_attention(bf16_attention is False)
    if not gelu:
        for block in gpt.h:
            block.mlp.gelu = torch.nn.Identity()
    opts = build_optimizers(gpt, cfg.optim, cpu)
    autocast = (contextlib.nullcontext() if bf16_attention is None
                else torch.autocast("cpu", dtype=torch.bfloat16))
    step = functools.partial(train_step, gpt, opts, x, y, batch, 1.0, 0.0, autocast, cpu)
    return step, x, y


def side_by_side(reference: Path | None, rounds: int) -> dict[str, list[float]]:
    """Step times (s) of our model with oneDNN matmuls, with torch's, and nanoGPT's when given.

    All train on the same batch in one process, in rounds of two optimizer steps each, taking
    turns, so the host's drift falls on every side alike. Each does the same bare step (see
    bare_step; nanoGPT's the same with its own model and optimizer).
    """
    steps = {}
    for name, onednn in (("ours, onednn", True), ("ours, torch", False)):
        steps[name], x, y = bare_step(onednn)
    if reference is not None:
        steps["nanoGPT"] = nanogpt_step(reference, x, y)
    return take_turns(steps, rounds, warmup=3)


def bf16_attention_side_by_side(rounds: int) -> dict[str, list[float]]:
    """Step times (s) of bf16 autocast training with float32 attention and with bf16 attention."""
    steps = {"float32 attention": bare_step(True, bf16_attention=False)[0],
             "bf16 attention": bare_step(True, bf16_attention=True)[0]}
    return take_turns(steps, rounds, warmup=2)


def take_turns(steps: dict[str, Callable[[], None]], rounds: int,
               warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each step: rounds in which every step runs twice in turn, after warmup
    calls each, so that the host's drift falls on all of them alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            step()
            step()
            times[name].append((time.perf_counter() - t) / 2)
    return times


def nanogpt_step(reference: Path, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One bare training step of nanoGPT's model.py and its optimizer (from configure_optimizers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nanogpt_model", reference / "model.py")
    if spec is None or spec.loader is None or not (reference / "model.py").is_file():
        raise SystemExit(f"--reference: no model.py in {reference} (give a nanoGPT checkout)")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    model = ref.GPT(ref.GPTConfig(block_size=MODEL["block_size"], vocab_size=256, dropout=0.0,
                                  bias=False, n_layer=MODEL["n_layer"], n_head=MODEL["n_head"],
                                  n_embd=MODEL["n_embd"]))
    opt = model.configure_optimizers(0.1, 3e-4, (0.9, 0.95), "cpu")

    def step() -> None:
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def step_breakdown(rounds: int) -> dict[str, list[float]]:
    """Step times (s) of the default fp32 step, whole and with one part taken out at a time.

    "without attention" replaces scaled_dot_product_attention by its values input, "without GELU"
    the GELU by the identity, and "linear matmuls alone" runs only the forward and backward
    products of the model's linear layers (same shapes, same library choice) on random tensors.
    The variants take turns, two steps each per round, so the host's drift falls on all alike.
    """
    import torch.nn.functional as F

    from scaletune.trainer.kernels import linear
    from scaletune.trainer.model import GPT, Linear

    full, _, _ = bare_step(onednn=True)
    with_attention, _, _ = bare_step(onednn=True)
    without_gelu, _, _ = bare_step(onednn=True, gelu=False)

    def without_attention() -> None:
        sdpa = F.scaled_dot_product_attention  # the model looks it up here at every call
        F.scaled_dot_product_attention = lambda q, k, v, **kw: v * 1.0
        try:
            with_attention()
        finally:
            F.scaled_dot_product_attention = sdpa

    cfg = TrainConfig.model_validate({"model": MODEL})
    tokens = BATCH * MODEL["block_size"]
    layers = [m for m in GPT(cfg.model, 256).modules() if isinstance(m, Linear)]
    tensors = [(torch.randn(tokens, m.in_features, requires_grad=True),
                torch.randn(m.out_features, m.in_features, requires_grad=True),
                torch.randn(tokens, m.out_features)) for m in layers]

    def matmuls() -> None:
        for inp, weight, grad in tensors:
            out = linear(inp, weight, None) if onednn_available() else F.linear(inp, weight)
            out.backward(grad)
            inp.grad = weight.grad = None

    steps = {"full step": full, "without attention": without_attention,
             "without GELU": without_gelu, "linear matmuls alone": matmuls}
    return take_turns(steps, rounds)


def print_side_by_side(times: dict[str, list[float]], base: str, label: str, width: int) -> None:
    """Each side's median step, and how much faster ``base`` is (median of per-round ratios)."""
    ours = times[base]
    for name, ts in times.items():
        ratio = statistics.median(b / a for a, b in zip(ours, ts, strict=True))
        print(f"  {name:{width}s} {statistics.median(ts) * 1e3:5.0f} ms"
              + ("" if name == base else f"  ({label} {ratio:.3f}x as fast; median of the "
                                         "per-round ratios)"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trainer_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50,
                        help=f"optimizer steps of each training run, at least {2 * CHUNK_STEPS} "
                             f"(chunks of {CHUNK_STEPS}; the first is warm-up; default 50)")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="torch's threads (default: the cores, %(default)s here)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (fp32)")
    parser.add_argument("--reference", type=Path, metavar="DIR",
                        help="a nanoGPT checkout: time its model side by side with ours (fp32)")
    parser.add_argument("--rounds", type=int, default=30,
                        help="rounds of the side-by-side timing (default 30)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the fp32 step with attention, then GELU, taken out, and the "
                             "linear layers' matmuls alone")
    parser.add_argument("--breakdown-rounds", type=int, default=10,
                        help="rounds of --breakdown (default 10)")
    parser.add_argument("--n-layer", type=int, default=MODEL["n_layer"],
                        help="a smaller model for a quick check of the script; figures of record "
                             "use the default (%(default)s)")
    parser.add_argument("--n-embd", type=int, default=MODEL["n_embd"],
                        help=f"as --n-layer; a multiple of the {MODEL['n_head']} heads, which are "
                             "fixed (default %(default)s)")
    parser.add_argument("--peak-size", type=int, metavar="N",
                        help="measure the matmul peaks on N x N squares only (a quick check of "
                             "the script; the default takes the best of 1024-3072)")
    args = parser.parse_args(argv)
    if args.steps < 2 * CHUNK_STEPS:  # else no chunk is left to time after the warm-up
        parser.error(f"--steps must be {2 * CHUNK_STEPS} or more (chunks of {CHUNK_STEPS} steps, "
                     f"the first left out as warm-up), got {args.steps}")
    refuse_below_one(parser, {"--n-layer": args.n_layer, "--threads": args.threads,
                              "--rounds": args.rounds, "--breakdown-rounds": args.breakdown_rounds})
    if args.peak_size is not None and args.peak_size < 1:  # 0 ran the slow default
        parser.error(f"--peak-size: must be 1 or more, got {args.peak_size}")
    if args.n_embd < 1 or args.n_embd % MODEL["n_head"]:
        heads = MODEL["n_head"]
        parser.error(f"--n-embd: must be a multiple of the {heads} heads ({heads}, {2 * heads}, "
                     f"...), got {args.n_embd}")
    if args.reference is not None and not (args.reference / "model.py").is_file():
        # Said at once: found where its step is built, it came after every other run (~6 min).
        parser.error(f"--reference: no model.py in {args.reference} (give a nanoGPT checkout)")
    torch.set_num_threads(args.threads)
    MODEL.update(n_layer=args.n_layer, n_embd=args.n_embd)
    if args.peak_size is not None:
        PEAK_SIZES.update(start=(args.peak_size,), pause=(args.peak_size,))
    start_sizes = "-".join(str(n) for n in sorted({PEAK_SIZES["start"][0], PEAK_SIZES["start"][-1]}))

    print(f"torch {torch.__version__}, {args.threads} threads, {torch.backends.cpu.get_cpu_capability()}")
    fpt = flops_per_token(TrainConfig.model_validate({"model": MODEL}).model, vocab_size=256)
    print(f"model {MODEL['n_layer']}L/{MODEL['n_head']}H/{MODEL['n_embd']}d block "
          f"{MODEL['block_size']} batch {BATCH}, byte vocab: {fpt / 1e6:.2f} MFLOP per token")
    start = matmul_peaks(torch.float32)
    print("matmul peak at the start: float32 " + ", ".join(f"{v / 1e9:.1f} GFLOP/s ({k})" for k, v
                                                         in start.items())
          + f"; bfloat16 {matmul_peaks(torch.bfloat16)['torch'] / 1e9:.1f} "
          f"GFLOP/s (best of {start_sizes} squares)")
    print("MFU divides by the best peak of the libraries, measured at every pause; for float32 it "
          "is also given against torch's matmul peak alone")
    emulated = kernels.cpu_bf16_arithmetic() is False
    if emulated:  # it printed 422% (and 487-650%) of a 1.4 GFLOP/s peak
        print("note: this CPU has no bfloat16 arithmetic (its flags name neither avx512_bf16 nor "
              "amx_bf16): torch emulates it, so the bfloat16 run is slow, and no MFU is given "
              "for it: the peak it would divide by is emulation's, below what the run's float32 "
              "attention and small products reach")
    runs = [("float32", False, "onednn"), ("float32", False, "torch"), ("bfloat16", False, "onednn")]
    runs += [("float32", True, "onednn")] if args.compile else []
    with tempfile.TemporaryDirectory() as cache:
        for dtype, compile, cpu_matmul in runs:
            chunks = run(dtype, args.steps, compile, cache, cpu_matmul)
            rates = [r for r, _ in chunks]
            best = [max(p.values()) for _, p in chunks]
            mfus = [r * fpt / p for r, p in zip(rates, best, strict=True)]
            label = dtype + (" compiled" if compile else "") + (
                f" {cpu_matmul} matmul" if dtype == "float32" and not compile else "")
            mfu = (f"MFU n/a (bfloat16 emulated; median of {len(chunks)} chunks of "
                   f"{CHUNK_STEPS} steps)" if emulated and dtype == "bfloat16" else
                   f"MFU {statistics.median(mfus):.1%} of the {dtype} peak ({min(mfus):.1%}-"
                   f"{max(mfus):.1%}; peak {min(best) / 1e9:.0f}-{max(best) / 1e9:.0f} GFLOP/s; "
                   f"median of {len(chunks)} chunks of {CHUNK_STEPS} steps)")
            line = (f"train {label:23s} {statistics.median(rates):7.0f} tokens/s "
                    f"({min(rates):.0f}-{max(rates):.0f})  {mfu}")
            if len(chunks[0][1]) > 1:
                vs_torch = [r * fpt / p["torch"] for r, p in chunks]
                line += f"; {statistics.median(vs_torch):.1%} of torch's matmul peak"
            print(line)
    print(f"side by side, fp32, {args.rounds} rounds of 2 steps taking turns, median step:")
    print_side_by_side(side_by_side(args.reference, args.rounds), "ours, onednn",
                       "ours with onednn", width=13)
    chosen = "float32 attention" if float32_attention() else "bf16 attention"
    print(f"side by side, bf16 autocast, {args.rounds} rounds of 2 steps taking turns, median step "
          f"(train() picks {chosen} on this CPU):")
    print_side_by_side(bf16_attention_side_by_side(args.rounds), "float32 attention",
                       "float32 attention", width=17)
    if args.breakdown:
        rounds = args.breakdown_rounds
        parts = {k: statistics.median(v) * 1e3 for k, v in step_breakdown(rounds).items()}
        full = parts["full step"]
        attention, gelu = full - parts["without attention"], full - parts["without GELU"]
        matmuls = parts["linear matmuls alone"]
        print(f"where an fp32 step goes ({rounds} rounds taking turns, medians): full step "
              f"{full:.0f} ms = linear layers' matmuls {matmuls:.0f} ms (timed alone) + attention "
              f"{attention:.0f} ms + GELU {gelu:.0f} ms (each: the step without it, subtracted) + "
              f"the rest {full - matmuls - attention - gelu:.0f} ms")

if __name__ == "__main__":
    main()
