import json

import pytest
import torch
import torch.nn.functional as F

from scaletune.trainer import kernels
from scaletune.trainer.config import TrainConfig
from scaletune.trainer.kernels import OneDNNLinear, cpu_vendor, linear, onednn_available, resolve
from scaletune.trainer.loop import train
from scaletune.trainer.model import GPT
from scaletune.trainer.record import METRICS

pytestmark = pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN")


def through_onednn(out: torch.Tensor) -> bool:
    return type(out.grad_fn).__name__ == "OneDNNLinearBackward"


@pytest.fixture
def every_size(monkeypatch):
    """Send products of any size through oneDNN, so tiny layers exercise the path."""
    monkeypatch.setattr(kernels, "MIN_MACS", 0)


def test_small_products_stay_with_torch_and_large_ones_take_onednn():
    w = torch.randn(512, 512, requires_grad=True)
    assert not through_onednn(linear(torch.randn(4, 512), w, None))
    assert through_onednn(linear(torch.randn(2, 512, 512), w, None))  # 2^28 multiply-adds


@pytest.mark.parametrize("case", ["3d_bias", "2d_no_bias", "strided_input"])
def test_onednn_linear_matches_f_linear_forward_and_backward(case, every_size):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 24, generator=g) if case == "3d_bias" else torch.randn(24, 10, generator=g)
    if case == "strided_input":
        x = x.t()  # (10, 24), not contiguous
    elif case == "2d_no_bias":
        x = x.t().contiguous()
    w = torch.randn(16, 24, generator=g) / 5
    b = torch.randn(16, generator=g) if case == "3d_bias" else None
    leaves = [t.detach().clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    refs = [t.detach().clone().requires_grad_() for t in leaves]
    ours = linear(leaves[0], leaves[1], leaves[2] if b is not None else None)
    ref = F.linear(refs[0], refs[1], refs[2] if b is not None else None)
    assert through_onednn(ours) and (case != "strided_input" or not leaves[0].is_contiguous())
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn(ref.shape, generator=g)
    if case == "strided_input":  # and a strided incoming gradient
        grad = torch.randn(ref.shape[::-1], generator=g).t()
    ours.backward(grad)
    ref.backward(grad)
    for a, r in zip(leaves, refs, strict=True):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-5, atol=1e-5)


def test_only_float32_cpu_outside_autocast_takes_the_onednn_path(every_size):
    x, w = torch.randn(3, 8, requires_grad=True), torch.randn(5, 8, requires_grad=True)
    assert through_onednn(linear(x, w, None))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear(x, w, None)
    assert out.dtype == torch.bfloat16 and not through_onednn(out)
    assert not through_onednn(linear(x.double(), w.double(), None))
    with torch.no_grad():  # evaluation: plain forward, nothing saved
        torch.testing.assert_close(OneDNNLinear.apply(x, w, None), x @ w.t())


def test_model_with_onednn_matches_the_default_model(every_size):
    cfg = TrainConfig.model_validate(
        {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "bias": True}}
    ).model
    torch.manual_seed(0)
    plain = GPT(cfg, 256)
    torch.manual_seed(0)
    fast = GPT(cfg, 256)
    fast.use_onednn()
    idx, targets = torch.randint(0, 256, (4, 16)), torch.randint(0, 256, (4, 16))
    (logits, loss), (ref_logits, ref_loss) = fast(idx, targets), plain(idx, targets)
    assert through_onednn(logits) and not through_onednn(ref_logits)
    loss.backward()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_training_with_either_cpu_matmul_gives_the_same_run(tiny, tmp_path, every_size):
    runs = {}
    for choice in ("onednn", "torch"):
        out = tmp_path / choice
        runs[choice] = train(tiny(steps=8, cpu_matmul=choice, out_dir=str(out)))
        start = json.loads((out / METRICS).read_text().splitlines()[0])
        assert start["hardware"]["matmul"] == choice
    fast, plain = ([h["val_loss"] for h in runs[c].history] for c in ("onednn", "torch"))
    assert fast == pytest.approx(plain, rel=1e-4)
    assert fast[-1] < fast[0]


def test_unknown_cpu_matmul_is_an_error_that_lists_the_choices():
    with pytest.raises(ValueError, match=r"cpu_matmul[\s\S]*'auto', 'onednn' or 'torch'"):
        TrainConfig.model_validate({"cpu_matmul": "mkl"})


def test_cpu_vendor_is_read_from_cpuinfo():
    amd = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
    assert cpu_vendor(amd) == "AuthenticAMD"
    assert cpu_vendor("vendor_id : GenuineIntel\n") == "GenuineIntel"
    assert cpu_vendor("processor : 0\n") == ""
    assert kernels.cpuinfo_field("model name", amd + "model name\t: AMD EPYC 9R14\n") == "AMD EPYC 9R14"


def test_bfloat16_arithmetic_is_read_from_the_cpus_flags():
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma {}\n"
    assert kernels.cpu_bf16_arithmetic(flags.format("avx512f")) is False
    assert kernels.cpu_bf16_arithmetic(flags.format("avx512f avx512_bf16")) is True
    assert kernels.cpu_bf16_arithmetic(flags.format("amx_tile amx_bf16")) is True
    assert kernels.cpu_bf16_arithmetic("processor : 0\n") is None  # not known: never noted
    avx2 = flags.format("")
    assert kernels.cpu_bf16_note("dtype", "cpu", avx2).startswith(
        "dtype: bfloat16 on this machine's CPU, which has no bfloat16 arithmetic")
    assert kernels.cpu_bf16_note("dtype", "cuda", avx2) is None
    assert kernels.cpu_bf16_note("dtype", "cpu", flags.format("amx_bf16")) is None


def test_auto_picks_onednn_exactly_on_amd_x86():
    import platform

    amd = platform.machine().lower() in ("x86_64", "amd64") and cpu_vendor() == "AuthenticAMD"
    assert resolve("auto") == ("onednn" if amd else "torch")
    assert (resolve("onednn"), resolve("torch")) == ("onednn", "torch")
