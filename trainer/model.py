"""A GPT decoder in the nanoGPT layout, with the switches the seeds discuss.

Reading order: rotary embeddings, attention, MLP, block, the model, then the counting functions
that the search uses for scaling laws and MFU. Shape comments use B batch, T time, C channels
(n_embd), nh heads, hs head size, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaletune.trainer import kernels
from scaletune.trainer.config import ModelConfig
from scaletune.trainer.errors import SetupError


def padded_vocab_size(cfg: ModelConfig, vocab_size: int) -> int:
    """The model's vocabulary for a tokenizer of ``vocab_size`` tokens.

    ModelConfig.vocab_size wins when set; otherwise the vocabulary is rounded up to a multiple of
    64 (gpt2's 50257 -> 50304, a tokenizer file's 1000 -> 1024) so the head's matmul hits fast
    kernel shapes. Byte level (256) already is one.
    """
    if cfg.vocab_size is not None:
        if cfg.vocab_size < vocab_size:
            raise SetupError(
                f"model.vocab_size must cover the tokenizer's {vocab_size} tokens, "
                f"got vocab_size={cfg.vocab_size}"
            )
        return cfg.vocab_size
    return -(-vocab_size // 64) * 64


def rope_cache(head_size: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of rotary embeddings (Su et al. 2021), each (max_len, head_size // 2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (first half, second half) pair of x by its position's angle.

    x is (B, nh, T, hs); cos, sin are (T, hs // 2). Rotating q at position m and k at position n
    makes q.k depend on m - n only: attention sees relative positions, with no parameters.
    """
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.type_as(x)


class Linear(nn.Linear):
    """nn.Linear that can run its float32 CPU matmuls through oneDNN (see trainer.kernels).

    Off by default; GPT.use_onednn switches it on for the whole model. Parameters, init and
    state_dict are nn.Linear's.
    """

    onednn = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.onednn:
            return kernels.linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU masks are drawn 16 bits at a time (trainer.kernels.dropout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.dropout(x, self.p, self.training)


class CausalSelfAttention(nn.Module):
    float32 = False
    """Run attention in float32 under autocast (GPT.use_float32_attention)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        # Q, K and V in one matmul; the optimizer policy finds it by name for its lr multiplier.
        self.c_attn = Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.qkv_bias)
        self.c_proj = Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.attn_dropout = cfg.rate("attn")
        self.resid_dropout = Dropout(cfg.rate("resid"))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        dropout = self.attn_dropout if self.training else 0.0
        # Fused kernel where it can: the (T, T) attention matrix is not stored for the backward.
        if self.float32 and q.dtype != torch.float32:
            with torch.autocast(q.device.type, enabled=False):
                y = kernels.causal_attention(q.float(), k.float(), v.float(), dropout)
        else:
            y = kernels.causal_attention(q, k, v, dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        # The exact (erf) GELU, as nanoGPT: on CPU its forward is ~3x faster than GPT-2's tanh form.
        self.gelu = nn.GELU()
        self.dropout = Dropout(cfg.rate("mlp"))
        self.c_proj = Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = Dropout(cfg.rate("resid"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.gelu(self.c_fc(x)))  # (B, T, 4C)
        return self.resid_dropout(self.c_proj(h))


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        # No re-centering, no bias (Zhang & Sennrich 2019): one gain per channel.
        return nn.RMSNorm(cfg.n_embd, eps=1e-5)
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        """``vocab_size`` is the tokenizer's; the embedding size follows padded_vocab_size."""
        super().__init__()
        self.cfg = cfg
        self.vocab_size = padded_vocab_size(cfg, vocab_size)
        self.n_tokens = vocab_size  # the tokenizer's; ids at and above it are padding
        self.wte = nn.Embedding(self.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.positions == "learned" else None
        self.drop = Dropout(cfg.rate("embd"))
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = Linear(cfg.n_embd, self.vocab_size, bias=False)
        if cfg.tie_weights:
            # One matrix reads tokens in and writes logits out (Press & Wolf 2017). It is
            # registered as wte.weight, so the optimizer policy sees it as the embedding.
            self.lm_head.weight = self.wte.weight
        if cfg.positions == "rope":
            cos, sin = rope_cache(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta)
            # Not persistent: recomputed from the config, so checkpoints hold parameters only.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

        self.apply(self._init_weights)
        # GPT-2: scale the init of the projections that write into the residual stream by
        # 1/sqrt(2 * n_layer), since 2 * n_layer of them add up along the stream.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def use_onednn(self, enabled: bool = True) -> None:
        """Run every linear layer's float32 CPU matmuls through oneDNN (trainer.kernels)."""
        for module in self.modules():
            if isinstance(module, Linear):
                module.onednn = enabled

    def use_float32_attention(self, enabled: bool = True) -> None:
        """Compute attention in float32 when autocast hands it bfloat16 q, k, v.

        For CPUs where the bfloat16 attention kernels are the slower ones
        (trainer.kernels.float32_attention). The linear layers stay in autocast's dtype.
        """
        for module in self.modules():
            if isinstance(module, CausalSelfAttention):
                module.float32 = enabled

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, label_smoothing: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for token ids idx (B, T); and the mean cross-entropy if targets given."""
        B, T = idx.size()
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.cfg.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (T, C) broadcasts over B
        else:
            rope = (self.rope_cos[:T], self.rope_sin[:T])
        x = self.drop(x)
        for block in self.h:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        flat, targets = logits.view(-1, logits.size(-1)), targets.reshape(-1)
        if label_smoothing and self.n_tokens < flat.size(-1):
            # Smoothing spreads its mass over the tokenizer's tokens, not over the padding rows
            # no target ever names (padded_vocab_size); the softmax still takes in the padding,
            # so training pushes its logits down as without smoothing. (A loss over the
            # tokenizer's logits alone left them untrained: the evaluation, over every logit,
            # put 16% of its mass there, 0.18 nats of loss with 47 padding ids.)
            logp = F.log_softmax(flat.float(), dim=-1)
            nll = -logp.gather(1, targets[:, None]).squeeze(1)
            spread = -logp[:, : self.n_tokens].mean(dim=-1)
            loss = ((1 - label_smoothing) * nll + label_smoothing * spread).mean()
        else:
            loss = F.cross_entropy(flat, targets, label_smoothing=label_smoothing)
        return logits, loss


def param_counts(cfg: ModelConfig, vocab_size: int) -> dict[str, int]:
    """Parameters of GPT(cfg, vocab_size), counted from the config without building it.

    non_embedding follows Kaplan et al. (2020): everything except the token and position
    embeddings and the output head (~12 * n_layer * n_embd**2); total counts every distinct tensor
    once (a tied head adds nothing).
    """
    d, V = cfg.n_embd, padded_vocab_size(cfg, vocab_size)
    norm = d if cfg.norm == "rmsnorm" else d * (2 if cfg.bias else 1)
    bias = 1 if cfg.bias else 0
    attn = 3 * d * d + (3 * d if cfg.qkv_bias else 0) + d * d + bias * d
    mlp = 4 * d * d + bias * 4 * d + 4 * d * d + bias * d
    non_embedding = cfg.n_layer * (2 * norm + attn + mlp) + norm
    embedding = V * d + (cfg.block_size * d if cfg.positions == "learned" else 0)
    head = 0 if cfg.tie_weights else V * d
    return {"non_embedding": non_embedding, "total": non_embedding + embedding + head}


def flops_per_token(cfg: ModelConfig, vocab_size: int | None = None) -> int:
    """Training FLOPs per token (forward + backward), as in PaLM (Chowdhery et al. 2022, App. B).

    6 * N for the weight matmuls, N = non-embedding parameters plus the output head (a lookup
    costs nothing, the head is a matmul), plus 12 * n_layer * n_embd * block_size for the
    attention scores and their weighted sum. nanoGPT's estimate_mfu uses the same count, so MFU
    figures compare. ``vocab_size`` is the tokenizer's; it may be omitted when cfg.vocab_size is set.
    """
    if vocab_size is None:
        if cfg.vocab_size is None:
            raise ValueError("flops_per_token needs vocab_size when model.vocab_size is None")
        vocab_size = cfg.vocab_size
    n = param_counts(cfg, vocab_size)["non_embedding"] + padded_vocab_size(cfg, vocab_size) * cfg.n_embd
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
