"""Dropout on CPU: masks drawn 16 bits at a time (trainer.kernels.dropout, causal_attention)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from scaletune.trainer import kernels
from scaletune.trainer.config import TrainConfig
from scaletune.trainer.model import GPT


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_cpu_dropout_drops_at_its_rate_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    n = 400_000
    out = kernels.dropout(torch.ones(n), p)
    kept = out[out != 0]
    drop = round(p * kernels.MASK_LEVELS)
    assert kept.unique().tolist() == [pytest.approx(kernels.MASK_LEVELS / (kernels.MASK_LEVELS - drop))]
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept.numel() - n * (1 - p)) < 5 * sigma
    assert out.mean().item() == pytest.approx(1.0, abs=5 * sigma / n / (1 - p))


def test_the_gradient_through_cpu_dropout_is_its_noise():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    out = kernels.dropout(x, 0.25)
    grad = torch.randn(64, 32)
    out.backward(grad)
    kept = out != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(out[kept], x[kept] * 4 / 3)
    torch.testing.assert_close(x.grad, torch.where(kept, grad * 4 / 3, 0.0))


def test_a_seed_repeats_the_masks_and_evaluation_drops_nothing():
    x = torch.randn(1000)

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return kernels.dropout(x, 0.5)

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))
    assert kernels.dropout(x, 0.5, training=False) is x
    assert kernels.dropout(x, 0.0) is x
    assert kernels.dropout(x, 1e-6) is x  # rounds to no drop at all (MASK_LEVELS)
    assert torch.equal(kernels.dropout(x, 1.0), torch.zeros(1000))
    with pytest.raises(ValueError, match="between 0 and 1, but got -0.1"):
        kernels.dropout(x, -0.1)


def attention_inputs(dtype=torch.float32):
    torch.manual_seed(2)
    return [torch.randn(2, 3, 16, 8, dtype=dtype, requires_grad=True) for _ in range(3)]


def reference_attention(q, k, v, p, seed):
    """softmax(q k^T / sqrt(hs)) masked to the past, times the noise drawn from ``seed``, @ v."""
    torch.manual_seed(seed)
    T = q.size(-2)
    noise = kernels.dropout_noise(torch.empty(*q.shape[:-1], T, dtype=q.dtype), p)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return (scores.masked_fill(future, float("-inf")).softmax(-1) * noise) @ v


def test_attention_with_dropout_drops_the_softmax_weights_by_the_noise():
    q, k, v = attention_inputs()
    torch.manual_seed(3)
    out = kernels.causal_attention(q, k, v, 0.2)
    out.sum().backward()
    got = [t.grad for t in (q, k, v)]

    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    expected = reference_attention(q2, k2, v2, 0.2, seed=3)
    expected.sum().backward()
    torch.testing.assert_close(out, expected)
    for g, t in zip(got, (q2, k2, v2), strict=True):
        torch.testing.assert_close(g, t.grad)


def test_attention_without_dropout_is_sdpa_and_bf16_runs_in_float32():
    q, k, v = attention_inputs()
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(kernels.causal_attention(q, k, v, 0.0), fused)
    assert torch.equal(kernels.causal_attention(q, k, v, 1e-6), fused)
    q, k, v = attention_inputs(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(4)
        out = kernels.causal_attention(q, k, v, 0.1)
    torch.manual_seed(4)
    ref = kernels.causal_attention(q.float(), k.float(), v.float(), 0.1)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=1e-2, atol=1e-2)


def test_float64_attention_with_dropout_stays_in_float64():
    q, k, v = attention_inputs(torch.float64)
    torch.manual_seed(5)
    out = kernels.causal_attention(q, k, v, 0.3)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, reference_attention(q, k, v, 0.3, seed=5), rtol=1e-12, atol=1e-12)


def test_a_cpu_training_step_draws_its_masks_in_16_bit_words():
    """torch's per-element bernoulli_ was a fifth of a small trial's time (kernels.dropout)."""
    cfg = TrainConfig.model_validate(
        {"model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.1}}
    ).model
    model = GPT(cfg, 256).train()
    idx = torch.randint(0, 256, (4, 16))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _, loss = model(idx, idx)
        loss.backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::bernoulli_" not in ops and "aten::random_" in ops
    # each of the 9 sites (embeddings; per layer attention weights, MLP, 2 residual) draws once
    assert next(e.count for e in prof.key_averages() if e.key == "aten::random_") == 9


def test_a_cpu_run_with_dropout_learns_and_records_its_masks(tiny, tmp_path):
    from scaletune.trainer.loop import train
    from scaletune.trainer.record import METRICS

    out = tmp_path / "run"
    result = train(tiny(steps=20, model={"dropout": 0.2}, out_dir=str(out)))
    start = json.loads((out / METRICS).read_text().splitlines()[0])
    assert start["hardware"]["dropout"] == "16-bit masks"
    losses = [h["val_loss"] for h in result.history]
    assert losses[-1] < losses[0]
