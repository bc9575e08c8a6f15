import math

import pytest
import torch
import torch.nn.functional as F

from scaletune.trainer.config import ModelConfig
from scaletune.trainer.model import (
    GPT,
    CausalSelfAttention,
    apply_rope,
    flops_per_token,
    padded_vocab_size,
    param_counts,
    rope_cache,
)

VARIANTS = [
    {},
    {"positions": "rope", "norm": "rmsnorm"},
    {"bias": True, "qkv_bias": True, "tie_weights": False},
    {"positions": "rope", "bias": True, "tie_weights": False, "norm": "rmsnorm", "qkv_bias": True},
]


def small(**kw) -> ModelConfig:
    return ModelConfig(**{"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, **kw})


@pytest.mark.parametrize("switches", VARIANTS)
def test_shapes_and_initial_loss(switches):
    torch.manual_seed(0)
    model = GPT(small(**switches), vocab_size=100)
    idx, targets = torch.randint(0, 100, (2, 3, 16))
    logits, loss = model(idx, targets)
    # The rule: logits are (B, T, padded V); an untrained model predicts about uniformly, so its
    # loss is near ln(V).
    assert logits.shape == (3, 16, 128)
    assert loss.shape == ()
    assert abs(loss.item() - math.log(128)) < 0.3
    logits, loss = model(idx[:, :5])
    assert logits.shape == (3, 5, 128) and loss is None


def test_label_smoothing_spreads_over_the_tokenizers_tokens_only():
    # The rule: smoothing puts eps / V on each of the tokenizer's V tokens, none on the rows
    # the vocabulary is padded with (no target ever names them); the softmax is over every
    # row, padding included, so that training pushes the padding's logits down.
    torch.manual_seed(0)
    model = GPT(small(), vocab_size=100)
    idx, targets = torch.randint(0, 100, (2, 3, 16))
    logits, loss = model(idx, targets, label_smoothing=0.3)
    assert logits.shape[-1] == 128
    logp = F.log_softmax(logits.reshape(-1, 128), dim=-1)
    nll = -logp.gather(1, targets.reshape(-1, 1)).squeeze(1)
    by_hand = (0.7 * nll - 0.3 * logp[:, :100].mean(dim=-1)).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    for other in (F.cross_entropy(logits.reshape(-1, 128), targets.reshape(-1), label_smoothing=0.3),
                  F.cross_entropy(logits[..., :100].reshape(-1, 100), targets.reshape(-1),
                                  label_smoothing=0.3)):
        assert abs(loss.item() - other.item()) > 1e-4
    # Without padding it is PyTorch's own smoothed cross-entropy.
    model = GPT(small(), vocab_size=128)
    logits, loss = model(idx, targets, label_smoothing=0.3)
    assert loss.item() == F.cross_entropy(logits.reshape(-1, 128), targets.reshape(-1),
                                          label_smoothing=0.3).item()


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_future_tokens_never_change_past_logits(positions):
    torch.manual_seed(0)
    model = GPT(small(positions=positions), vocab_size=64).eval()
    idx = torch.randint(0, 64, (2, 16))
    changed = idx.clone()
    changed[:, 9:] = torch.randint(0, 64, (2, 7))
    a, _ = model(idx)
    b, _ = model(changed)
    # The rule: position t sees tokens <= t only.
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_rope_dot_product_depends_only_on_offset():
    cos, sin = rope_cache(head_size=8, max_len=64, theta=10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> float:
        # apply_rope rotates a (B, nh, T, hs) tensor position by position; put q at m, k at n.
        x = torch.stack([q, k]).view(1, 1, 2, 8).expand(1, 1, 2, 8)
        qm = apply_rope(x[:, :, :1], cos[m : m + 1], sin[m : m + 1])[0, 0, 0]
        kn = apply_rope(x[:, :, 1:], cos[n : n + 1], sin[n : n + 1])[0, 0, 0]
        return (qm @ kn).item()

    # The rule: q_m . k_n is a function of m - n: shifting both positions changes nothing ...
    assert score(5, 2) == pytest.approx(score(40, 37), abs=1e-5)
    assert score(3, 3) == pytest.approx(score(50, 50), abs=1e-5)
    assert score(3, 3) == pytest.approx((q @ k).item(), abs=1e-5)  # offset 0: no rotation
    # ... while a different offset gives a different score.
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)


@pytest.mark.parametrize("switches", VARIANTS)
def test_param_counts_match_the_built_model(switches):
    cfg = small(**switches)
    model = GPT(cfg, vocab_size=100)
    counts = param_counts(cfg, 100)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    embedding = model.wte.weight.numel() + (model.wpe.weight.numel() if model.wpe is not None else 0)
    head = 0 if cfg.tie_weights else model.lm_head.weight.numel()
    assert counts["non_embedding"] == counts["total"] - embedding - head


def test_flops_per_token_counts_every_matmul():
    cfg = ModelConfig(n_layer=6, n_head=8, n_embd=256, block_size=128)
    model = GPT(cfg, vocab_size=256)
    matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = 12 * 6 * 256 * 128
    # The rule (PaLM / nanoGPT): 6 FLOPs per weight per token plus the attention term; the only
    # difference to the matmul weights is the handful of norm gains.
    assert flops_per_token(cfg, 256) == pytest.approx(6 * matmul_weights + attention, rel=1e-3)
    with pytest.raises(ValueError, match="vocab_size"):
        flops_per_token(cfg)


def test_vocab_padding():
    assert padded_vocab_size(ModelConfig(), 50257) == 50304
    assert padded_vocab_size(ModelConfig(), 256) == 256
    assert padded_vocab_size(ModelConfig(vocab_size=300), 256) == 300
    with pytest.raises(ValueError, match="vocab_size=200"):
        padded_vocab_size(ModelConfig(vocab_size=200), 256)


def test_gpt2_init_scales_residual_projections():
    cfg = ModelConfig(n_layer=8, n_head=4, n_embd=256, block_size=16)
    model = GPT(cfg, vocab_size=256)
    block = model.h[0]
    assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


@pytest.mark.parametrize("site", ["embd", "attn", "resid", "mlp"])
def test_each_dropout_site_is_active_in_training_only(site):
    cfg = small(**{f"{site}_dropout": 0.5})
    assert cfg.rate(site) == 0.5 and all(cfg.rate(s) == 0.0 for s in {"embd", "attn", "resid", "mlp"} - {site})
    torch.manual_seed(0)
    model = GPT(cfg, vocab_size=64)
    idx = torch.randint(0, 64, (2, 16))
    # The rule: a dropout site makes two training passes differ; evaluation is deterministic.
    assert not torch.allclose(model(idx)[0], model(idx)[0])
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0], rtol=0, atol=0)


def test_tied_head_shares_the_embedding():
    model = GPT(small(), vocab_size=64)
    assert model.lm_head.weight is model.wte.weight
    untied = GPT(small(tie_weights=False), vocab_size=64)
    assert untied.lm_head.weight is not untied.wte.weight


def test_float32_attention_takes_bf16_qkv_under_autocast_and_keeps_the_gradient():
    torch.manual_seed(0)
    attn = CausalSelfAttention(small())
    x = torch.randn(2, 16, 32)

    def run(float32: bool) -> torch.Tensor:
        attn.float32 = float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return attn(x, None)

    # The same layer by hand: bf16 linear layers, the attention itself in float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = (t.view(2, 16, 4, 8).transpose(1, 2) for t in attn.c_attn(x).split(32, dim=2))
    y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = attn.c_proj(y.transpose(1, 2).reshape(2, 16, 32))
    on, off = run(True), run(False)
    assert on.dtype == off.dtype == torch.bfloat16
    assert torch.equal(on, expected)
    assert not torch.equal(on, off)  # bf16 attention rounds differently
    torch.testing.assert_close(on.float(), off.float(), rtol=0.05, atol=0.02)
    run(True).float().square().sum().backward()
    assert attn.c_attn.weight.grad is not None and attn.c_attn.weight.grad.abs().sum() > 0


def test_float32_attention_leaves_float32_runs_unchanged():
    torch.manual_seed(0)
    model = GPT(small(), 64)
    idx = torch.randint(0, 64, (2, 16))
    plain = model(idx)[0]
    model.use_float32_attention()
    assert all(b.attn.float32 for b in model.h)
    assert torch.equal(model(idx)[0], plain)
