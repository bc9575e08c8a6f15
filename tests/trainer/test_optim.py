import json
import math
import subprocess
import sys

import pytest
import torch

from scaletune.trainer.config import ModelConfig, OptimConfig
from scaletune.trainer.loop import train
from scaletune.trainer.model import GPT
from scaletune.trainer.optim import (
    POLICY,
    build_optimizers,
    group_of,
    lr_at,
    set_lr,
    step_optimizer,
)

CPU = torch.device("cpu")


def curve(total: int = 100, **kw) -> list[float]:
    cfg = OptimConfig(**kw)
    return [lr_at(s, total, cfg) for s in range(total)]


def test_cosine_warms_up_then_decays_to_min_lr():
    lr = curve(schedule="cosine", warmup_frac=0.1, min_lr_ratio=0.1)
    # The rule: linear warmup over 10 steps reaching the peak on its last step ...
    assert lr[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    # ... then a half cosine, falling every step, halfway at mid-decay, to min_lr_ratio at the end.
    assert all(a > b for a, b in zip(lr[10:], lr[11:], strict=False))
    assert lr[10 + 45] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)
    assert lr[-1] == pytest.approx(0.1, abs=0.01)
    assert lr_at(100, 100, OptimConfig(min_lr_ratio=0.1)) == pytest.approx(0.1)


def test_linear_goes_straight_to_zero():
    lr = curve(schedule="linear", warmup_frac=0.0)
    assert lr[0] == 1.0
    diffs = [a - b for a, b in zip(lr, lr[1:], strict=False)]
    assert diffs == pytest.approx([0.01] * 99)
    assert lr[-1] == pytest.approx(0.01)


def test_wsd_is_stable_then_decays_in_the_final_fraction():
    lr = curve(schedule="wsd", warmup_frac=0.05, decay_frac=0.2)
    assert lr[4] == 1.0 and lr[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lr[5:80] == [1.0] * 75
    assert lr[80] == 1.0 and lr[90] == pytest.approx(0.5) and lr[99] == pytest.approx(0.05)


def test_wsd_decays_in_short_runs_too():
    # decay_frac 0.1 of 10 steps rounds to one step, which the decay takes at the peak: the run
    # trained as `constant`. Two steps at least, so the last is below the peak.
    assert curve(10, schedule="wsd", warmup_frac=0.0, decay_frac=0.1)[-2:] == [1.0, 0.5]
    assert curve(4, schedule="wsd", warmup_frac=0.0, decay_frac=0.05) == [1.0, 1.0, 1.0, 0.5]


def test_constant_and_no_warmup():
    assert curve(schedule="constant", warmup_frac=0.2)[20:] == [1.0] * 80
    assert curve(schedule="cosine", warmup_frac=0.0)[0] == 1.0


def model_and_opts(**optim):
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, bias=True, qkv_bias=True,
                            tie_weights=False), vocab_size=32)
    return model, build_optimizers(model, OptimConfig(**optim), CPU)


def groups(optimizers):
    return {g["group"]: (type(opt).__name__, g) for opt in optimizers for g in opt.param_groups}


def test_biases_and_norm_gains_never_decay():
    model, opts = model_and_opts(weight_decay=0.1)
    decay = {id(p): g["weight_decay"] for opt in opts for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        # The rule: 1-D parameters (biases, norm gains) and embeddings get no decay; matrices do.
        expected = 0.0 if p.ndim == 1 or name.startswith(("wte", "wpe")) else 0.1
        assert decay[id(p)] == expected, name
    assert sum(len(g["params"]) for o in opts for g in o.param_groups) == len(list(model.parameters()))
    _, opts = model_and_opts(weight_decay=0.1, decay_embeddings=True)
    assert groups(opts)["embedding"][1]["weight_decay"] == 0.1


def test_every_parameter_has_a_policy_row():
    model, _ = model_and_opts()
    assert {group_of(n, p) for n, p in model.named_parameters()} == set(POLICY)


def test_qkv_lr_multiplier_is_applied():
    model, opts = model_and_opts(name="sgd", lr=0.1, beta1=0.0, weight_decay=0.0, qkv_lr_mult=2.0)
    g = groups(opts)
    assert g["qkv"][1]["lr"] == pytest.approx(0.2) and g["qkv_bias"][1]["lr"] == pytest.approx(0.2)
    assert g["hidden"][1]["lr"] == pytest.approx(0.1)
    # Behaviour: plain SGD moves Q/K/V by 2 x lr x grad, the other matrices by lr x grad.
    set_lr(opts, 0.5)
    qkv, fc = model.h[0].attn.c_attn.weight, model.h[0].mlp.c_fc.weight
    before = qkv.detach().clone(), fc.detach().clone()
    idx = torch.randint(0, 32, (4, 8))
    model(idx, idx)[1].backward()
    grads = qkv.grad.clone(), fc.grad.clone()
    opts[0].step()
    torch.testing.assert_close(qkv.detach(), before[0] - 0.5 * 0.2 * grads[0])
    torch.testing.assert_close(fc.detach(), before[1] - 0.5 * 0.1 * grads[1])


def test_muon_takes_hidden_matrices_adamw_the_rest():
    model, opts = model_and_opts(name="muon", muon_lr=0.02, lr=1e-3, qkv_lr_mult=2.0)
    g = groups(opts)
    assert {k for k, (opt, _) in g.items() if opt == "Muon"} == {"qkv", "hidden"}
    assert {k for k, (opt, _) in g.items() if opt == "AdamW"} == {"embedding", "head", "bias", "norm", "qkv_bias"}
    assert g["hidden"][1]["lr"] == pytest.approx(0.02) and g["qkv"][1]["lr"] == pytest.approx(0.04)
    assert g["head"][1]["lr"] == pytest.approx(1e-3)
    assert all(p.ndim == 2 for p in g["hidden"][1]["params"])


@pytest.mark.parametrize(
    "optim",
    [
        {"name": "adamw", "lr": 3e-3},
        {"name": "sgd", "lr": 0.3, "nesterov": True},
        {"name": "muon", "lr": 3e-3, "muon_lr": 0.02},
    ],
)
def test_each_optimizer_lowers_the_loss(tiny, optim):
    result = train(tiny(steps=40, optim=optim, eval_every_tokens=20 * 8 * 32))
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert result.status == "completed"
    # The rule: training starts at ln(256) = 5.55 (uniform guessing over bytes) and goes down.
    assert last < math.log(256) - 1.5 and last < first, result.history


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd", "constant"])
def test_each_schedule_is_followed_and_lowers_the_loss(tiny, schedule):
    optim = {"schedule": schedule, "warmup_frac": 0.2, "lr": 3e-3}
    cfg = tiny(steps=30, optim=optim, eval_every_tokens=5 * 8 * 32)
    result = train(cfg)
    # The lr logged at each evaluation is the schedule's value for the step just taken.
    logged = [h["lr"] for h in result.history]
    expected = [3e-3 * lr_at(h["step"] - 1, 30, cfg.optim) for h in result.history]
    assert logged == pytest.approx(expected)
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


@pytest.mark.parametrize("name", ["adamw", "muon", "sgd"])
def test_steps_without_torch_compile_loaded_are_torchs_own_steps(name):
    # While torch._dynamo is not loaded the trainer builds and steps its optimizers without it
    # (trainer/optim.py); once anything loads it, torch.optim's own path runs. Both, from the
    # same start, in a new process (where nothing has loaded it yet), must give the same weights.
    code = f"""
import json, sys
import torch
from scaletune.trainer.config import ModelConfig, OptimConfig
from scaletune.trainer.model import GPT
from scaletune.trainer.optim import build_optimizers, step_optimizer

def weights():
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16), vocab_size=64)
    start = [p.detach().clone() for p in model.parameters()]
    opts = build_optimizers(model, OptimConfig(name={name!r}, lr=0.01, weight_decay=0.1),
                            torch.device("cpu"))
    for _ in range(3):
        x = torch.randint(0, 64, (4, 16))
        model(x, x)[1].backward()
        for opt in opts:
            step_optimizer(opt)
        for p in model.parameters():
            p.grad = None
    end = [p.detach().clone() for p in model.parameters()]
    return end, opts, sum(not torch.equal(a, b) for a, b in zip(start, end, strict=True))

plain, opts, moved = weights()
loaded_after = "torch._dynamo" in sys.modules
import torch._dynamo
own, _, _ = weights()
print(json.dumps({{"loaded": loaded_after, "kinds": [type(o).__name__ for o in opts],
                  "moved": moved, "tensors": len(plain),
                  "same": all(torch.equal(a, b) for a, b in zip(plain, own, strict=True))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] is False  # built and stepped without torch._dynamo
    assert got["moved"] == got["tensors"]  # every parameter was trained
    assert got["same"] is True
    assert got["kinds"] == {"adamw": ["AdamW"], "muon": ["Muon", "AdamW"], "sgd": ["SGD"]}[name]


def test_a_step_hook_still_runs_on_the_trainers_step():
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=16), vocab_size=64)
    (opt,) = build_optimizers(model, OptimConfig(lr=0.01), CPU)
    calls = []
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    x = torch.randint(0, 64, (2, 16))
    model(x, x)[1].backward()
    step_optimizer(opt)
    assert calls == ["post"]
