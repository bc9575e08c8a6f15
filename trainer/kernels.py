"""CPU kernel choices: oneDNN for the linear layers' forward and input-gradient products,
float32 attention under bfloat16 autocast on CPU (float32_attention), and dropout
masks drawn 16 bits at a time (dropout and causal_attention, at the end).

On CPU, torch's matmul goes to its default BLAS (MKL on x86). On AMD CPUs MKL runs float32
matmuls well below the machine's peak (measured on a 2-core AVX-512 EPYC: ~185 GFLOP/s for a
2048-cube matmul against ~215 through oneDNN, the CPU library torch ships for its own fused CPU
kernels). ``linear`` sends the forward product (x @ W.T) and the input gradient (dy @ W) through
oneDNN and leaves the weight gradient (dy.T @ x, a long reduction over tokens, where oneDNN's
copy of the transposed operand costs more than it gains) to torch. The results match F.linear up
to float32 summation order.

oneDNN pays a fixed cost per call, so small products stay with F.linear: below MIN_MACS
multiply-adds per product (tokens x in x out) it was as fast or slower (0.55x at 256 tokens through
a 32 -> 128 layer, 0.94x at 4096 tokens through 64 -> 256), above it faster (1.04x at 4096 tokens
through 128 -> 512, 1.11x through 256 -> 1024; forward and backward, 2 threads).

Used for float32 CPU training only (TrainConfig.cpu_matmul); CUDA, bf16 autocast and
torch.compile keep F.linear. By default (cpu_matmul: auto) only on AMD x86 CPUs, where the gap was
measured; on Intel CPUs MKL is at peak, and Apple's Accelerate or ARM's BLAS may well beat oneDNN.
The choice is fixed per machine, not timed per run, so the same config gives the same run.
"""

from __future__ import annotations

import functools
import math
import platform

import torch
import torch.nn.functional as F

MIN_MACS = 1 << 28
"""Smallest product (tokens x in_features x out_features) sent through oneDNN."""


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias through oneDNN: x (..., in), weight (out, in), strided views allowed."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """F.linear with oneDNN for the forward and input-gradient matmuls."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_linear(grad, weight.t(), None)  # (..., out) @ (out, in)
        flat = grad.reshape(-1, grad.size(-1))  # (tokens, out)
        if ctx.needs_input_grad[1]:
            grad_w = flat.t() @ x.reshape(-1, x.size(-1))  # (out, tokens) @ (tokens, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        return grad_x, grad_w, grad_b


@functools.cache
def onednn_available() -> bool:
    """Does this torch build run oneDNN linear products on CPU, and agree with F.linear?"""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*s, generator=g) for s in ((2, 5, 16), (24, 16), (24,)))
        return torch.allclose(onednn_linear(x, w, b), F.linear(x, w, b), rtol=1e-4, atol=1e-5)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def cpuinfo_field(name: str, cpuinfo: str | None = None) -> str:
    """A field of the first CPU in /proc/cpuinfo ('vendor_id', 'model name', ...); '' if unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return ""
    for line in cpuinfo.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return ""


def cpu_vendor(cpuinfo: str | None = None) -> str:
    """The CPU's vendor id ('AuthenticAMD', 'GenuineIntel', ...); '' if unknown."""
    return cpuinfo_field("vendor_id", cpuinfo)


def cpu_bf16_arithmetic(cpuinfo: str | None = None) -> bool | None:
    """Does this machine's x86 CPU compute in bfloat16 (avx512_bf16 or AMX tiles)? None where
    that is not known (no /proc/cpuinfo, another architecture)."""
    if cpuinfo is None and platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = cpuinfo_field("flags", cpuinfo).split()
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) if flags else None


def cpu_bf16_note(key: str, device: str = "cpu", cpuinfo: str | None = None) -> str | None:
    """The note for bfloat16 autocast (``key``: its dtype field) of a run on ``device`` ('auto':
    the CPU where torch sees no CUDA GPU), where this machine's CPU trains it and has no
    bfloat16 arithmetic: torch emulates it, and a run trained several times slower than in
    float32 without a word (5.6x fewer tokens/s, `scaletune train` of a 2-layer, 64-wide
    byte-level model, batch 16, on a 2-core AVX2 AMD EPYC; its bfloat16 matmuls of 256-squares
    reached 1.4 GFLOP/s against float32's 111, benchmarks/trainer_throughput.py)."""
    if device not in ("auto", "cpu") or (device == "auto" and torch.cuda.is_available()):
        return None
    if cpu_bf16_arithmetic(cpuinfo) is not False:
        return None
    return (f"{key}: bfloat16 on this machine's CPU, which has no bfloat16 arithmetic (its flags "
            "name neither avx512_bf16 nor amx_bf16): torch emulates it, and training may run "
            "several times slower than in float32 (5.6x for a 2-layer, 64-wide model on an AVX2 "
            "CPU); dtype: auto trains in float32 on a CPU")


def resolve(choice: str) -> str:
    """'onednn' or 'torch': what TrainConfig.cpu_matmul means on this machine.

    auto is onednn on AMD x86 CPUs; onednn becomes torch where this build has no oneDNN.
    """
    if choice == "auto":
        amd = platform.machine().lower() in ("x86_64", "amd64") and cpu_vendor() == "AuthenticAMD"
        choice = "onednn" if amd else "torch"
    return "onednn" if choice == "onednn" and onednn_available() else "torch"


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear, through oneDNN for large float32 CPU products outside autocast and compile."""
    if (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and x.numel() // max(1, x.size(-1)) * weight.numel() >= MIN_MACS
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()):
        return OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def float32_attention() -> bool:
    """Under bfloat16 autocast on CPU, should attention run in float32? Yes, on every CPU measured.

    torch's CPU flash attention backward is slow in bfloat16. 6L/8H/256d, batch 32 x 128,
    side by side (benchmarks/trainer_throughput.py prints it): on a 2-core AVX-512 EPYC
    (avx512_bf16, no AMX) its backward took 229 ms per step in bfloat16 against 86 ms in float32
    (forward 41 against 48 ms), and the bfloat16 training step ran 1.22x and 1.31x as fast with
    float32 attention; on a 2-core Intel Xeon with AMX tiles, where bfloat16 attention had been
    kept unmeasured, 2.00x and 1.98x (benchmarks/results/attention_amx/). The float32 product of
    the bfloat16 q, k, v is also the more precise one. One place to decide it, should a CPU
    be found where bfloat16 attention wins.
    """
    return True


# Dropout on CPU. torch draws each element of a CPU dropout mask as its own double from mt19937
# (two 32-bit draws), except on Intel CPUs, where MKL draws them; on the 2-core EPYC that was 19%
# of a quickstart trial's time (bernoulli_: 2.2 s of 11.3 s, dropout 0.054). Here one 64-bit draw
# makes four mask elements, each a 16-bit number compared with the drop threshold: 2.3x as fast,
# forward and backward (benchmarks/dropout_cpu.py: 190 against 436 us for 65,536 elements, one
# thread). The rate is rounded to 1/65,536 and the kept values scaled by the rounded rate's
# inverse, so in float32 the output's expectation is still the input. The masks come from
# torch's default generator, so a seeded run repeats them, and on every CPU alike.
MASK_LEVELS = 1 << 16
"""Dropout rates on CPU are multiples of 1/MASK_LEVELS (one 16-bit draw per element)."""


def dropped_levels(p: float) -> int:
    """The rate ``p`` in 1/MASK_LEVELS: the 16-bit draws below it drop their element."""
    return round(p * MASK_LEVELS)


def eager_cpu(x: torch.Tensor) -> bool:
    """Is x a CPU tensor outside torch.compile? There dropout draws its masks here."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def dropout_noise(x: torch.Tensor, p: float) -> torch.Tensor:
    """The CPU dropout noise for x: 0 where an element is dropped, else 1 / the keep rate.

    Each element is dropped with probability p rounded to 1/MASK_LEVELS, and the scale is the
    inverse of that rounded keep rate, so x * noise keeps x's expectation.
    """
    drop = dropped_levels(p)
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
    noise = torch.empty(x.shape, dtype=x.dtype)
    # Compared straight into x's dtype: ~3x as fast as through a bool mask.
    torch.ge(words.view(torch.int16)[: x.numel()].view(x.shape), drop - MASK_LEVELS // 2, out=noise)
    return noise.mul_(MASK_LEVELS / (MASK_LEVELS - drop))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training), with CPU masks from dropout_noise outside torch.compile."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if not eager_cpu(x):
        return F.dropout(x, p, training)
    drop = dropped_levels(p)
    if drop == 0:  # below 1/(2 * MASK_LEVELS): nothing is dropped
        return x
    if drop == MASK_LEVELS:
        return F.dropout(x, p, training)
    return x * dropout_noise(x, p)


@functools.lru_cache(maxsize=8)
def _causal_bias(T: int, dtype: torch.dtype) -> torch.Tensor:
    """(T, T): 0 where a query may see the key, -inf above the diagonal (its future)."""
    return torch.full((T, T), float("-inf"), dtype=dtype).triu_(1)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    """Causal softmax(q k^T / sqrt(hs)) v with dropout p on the weights; q, k, v (B, nh, T, hs).

    Fused SDPA, unless the weights are dropped on CPU outside torch.compile: then SDPA takes its
    unfused path anyway, so the same steps run here, with the noise from dropout_noise. (SDPA's path
    also spent 0.4 s of the 11.3 s trial above checking its own causal mask.)
    """
    if p == 0.0 or not eager_cpu(q):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
    if dropped_levels(p) == 0:  # a rate that drops nothing on CPU (dropout): no dropout
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if q.dtype in (torch.float16, torch.bfloat16):  # in float32, as SDPA's unfused path on CPU
        with torch.autocast("cpu", enabled=False):
            return causal_attention(q.float(), k.float(), v.float(), p).to(q.dtype)
    T = q.size(-2)
    att = (q @ k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, T)
    # Adding the mask costs nothing in the backward pass; masked_fill's costs a pass.
    att = att.add_(_causal_bias(T, att.dtype)).softmax(dim=-1)
    return dropout(att, p) @ v  # (B, nh, T, hs)
