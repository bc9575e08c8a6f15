"""shakespeare-bpe: the loss against lr at the rungs' tokens and the target's, the other
hyperparameters fixed near the target's best trials (dropout 0.02, warmup 0.28, tau 100, batch 8
sequences). argv: tokens, lrs, seeds (each comma-separated), the BPE file (benchmarks.suite.bpe_file
of shakespeare at 1024). One JSON line per run; sweep.jsonl holds this run's:

    PYTHONPATH=. python benchmarks/results/ladder_frequencies/sweep.py 81920,20480 \
        0.002,0.0035,0.006,0.01,0.017 0,1 /tmp/corpora/shakespeare-bpe1024.json
    ... 163840 (same lrs) 0,1 ...;  ... 327680 (same lrs) 0 ...
"""
import itertools
import json
import sys

from scaletune.trainer import train, validate_train_config

tokens = [int(x) for x in sys.argv[1].split(",")]
lrs = [float(x) for x in sys.argv[2].split(",")]
seeds = [int(x) for x in sys.argv[3].split(",")]
bpe = sys.argv[4]
warm = 0.28
tau = 100.0
for tok, lr, seed in itertools.product(tokens, lrs, seeds):
    B = 8 * 128
    cfg = validate_train_config({
        "model": {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 128,
                  "tie_weights": False, "dropout": 0.02},
        "data": {"source": "text", "path": "../shared/data/tinyshakespeare.txt",
                 "tokenizer": bpe, "val_windows": 64},
        "optim": {"lr": lr, "weight_decay": B / (lr * tau * tok), "warmup_frac": warm},
        "tokens": tok, "batch_size": 8, "seed": seed, "device": "cpu", "dtype": "float32",
        "num_threads": 1, "progress": False})
    r = train(cfg)
    print(json.dumps({"tokens": tok, "lr": lr, "seed": seed, "warm": warm,
                      "val": r.final_val_loss}), flush=True)
