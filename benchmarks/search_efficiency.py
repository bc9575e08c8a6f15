"""Search efficiency: the best validation loss each search strategy finds for a given compute.
The default run takes about 45 minutes on 2 cores (the first six strategies took 27).

The project's issue 6. On one fixed task (a small byte-level GPT on Tiny Shakespeare, a fixed
number of tokens per trial, validation every tenth of it), six strategies search the same five
hyperparameters over the same ranges:

    defaults               seed 000's recommended values (Table 4), one run per seed
    random                 random search, no pruning
    tpe_median             what a user writes by hand: TPESampler() and MedianPruner() defaults
    scaletune              the product: prior-seeded sampler (seeding: prior), median pruner
    scaletune_no_priors    the product's sampler and median pruner with seeding: none
    scaletune_no_pruning   the product's prior-seeded sampler, no pruner
    scaletune_no_prior_weight  the product without the priors' weight on TPE after start-up
    scaletune_predicted    the product with the pruner on the predicted final loss (its default)
    scaletune_gp           scaletune_predicted with the GP sampler, which sees pruned trials at
                           their predicted final loss and diverged ones at the worst loss
                           (sampler.pruned_trials: predicted)
    scaletune_gp_ignore    the same GP without them (pruned_trials: ignore, Optuna's behaviour)

Compute is counted in TOKENS trained over all trials (a pruned trial counts what it trained), in
units of one full trial ("full-trial equivalents"). Each (strategy, seed) study runs once up to
the largest budget; the best loss at a smaller budget is read off the same study. A study stops
asking for trials once it has used its budget, so it overshoots by less than one trial.

Every strategy is a study file (``study_config``) run through the product's own search plan
(search.plan): the plan opens or resumes the study, asks each trial, reports its evaluations on
the study's token grid to the pruner and ends it from the trainer's result, exactly as
``scaletune run`` does; only here the trial trains in this process, on one torch thread,
instead of on a Ray worker. Studies run in parallel processes (``--workers``) and are stored one
SQLite file each under ``<out>/studies``: re-running the same command skips finished studies and
finishes the others (a trial that was running when the process died is re-queued with the same
parameters, as the product's resume does).

    python -m benchmarks.search_efficiency --budget 16 --seeds 3 [--workers 2] [--out DIR]
    python -m benchmarks.search_efficiency --analyze-only      # tables and plot from the studies

Weight decay: random and tpe_median search lambda (PyTorch AdamW weight_decay) directly; the
scaletune strategies search the AdamW timescale tau = B/(lr*lambda*D) (B tokens per step, D
tokens per trial) and derive lambda. The tau range is the lambda range mapped at the typical lr
and batch size, the geometric centers of their ranges:
tau_low = B_typ/(lr_typ*lambda_high*D), tau_high = B_typ/(lr_typ*lambda_low*D).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import refuse_below_one, run_main
from scaletune.trainer.config import usable_cores

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

STRATEGIES = (
    "defaults",
    "random",
    "tpe_median",
    "scaletune",
    "scaletune_no_priors",
    "scaletune_no_pruning",
    "scaletune_no_prior_weight",
    "scaletune_predicted",
    "scaletune_gp",
    "scaletune_gp_ignore",
)
LABELS = {
    "defaults": "seed-000 defaults",
    "random": "random search",
    "tpe_median": "Optuna TPE + median (defaults)",
    "scaletune": "scaletune (priors + median pruner)",
    "scaletune_no_priors": "scaletune without priors",
    "scaletune_no_pruning": "scaletune without pruning",
    "scaletune_no_prior_weight": "scaletune, TPE not weighted by the priors",
    "scaletune_predicted": "scaletune, pruning on the predicted final loss (the default)",
    "scaletune_gp": "scaletune with GP, taught by pruned trials' predicted final losses",
    "scaletune_gp_ignore": "scaletune with GP, pruned trials unseen (Optuna's GP)",
}

# The search space, defined once for every strategy.
LR = (1e-4, 5e-2)
"""Peak learning rate, log scale."""
WEIGHT_DECAY = (1e-3, 3.0)
"""AdamW lambda, log scale: from practice (0.1 and below, 1e-3 ~ no decay in a short run) to the
value Power Lines implies for a run this short (lambda ~ 0.4 at the priors' lr and batch)."""
DROPOUT = (0.0, 0.3)
"""Seed 000, Table 4."""
WARMUP_FRAC = (0.0, 0.3)
"""Fraction of the optimizer steps; Table 4 recommends 5-15%."""
BATCH_SIZES = (8, 16, 32, 64)
"""Sequences per step (powers of two: 60 to 480 optimizer steps per trial at the default size)."""
DEFAULTS = {"lr": 3e-4, "weight_decay": 0.1, "dropout": 0.1, "warmup_frac": 0.1, "batch_size": 32}
"""Seed 000, Table 4 (AdamW 3e-4, wd 0.1, dropout 0.1, 10% warmup); batch 32 as in the project's
studies/seed000_recommended.yaml and the trainer's default."""


@dataclass(frozen=True)
class Bench:
    """One benchmark run: the task, the budget and where results go."""

    data: Path = DEFAULT_DATA
    """Text file of the task."""
    corpus: str = "Tiny Shakespeare"
    """What the text is, as the results name it."""
    tokenizer: str = "byte"
    """The study's data.tokenizer: 'byte' or a path to a tokenizer file."""
    tokenizer_label: str = "bytes"
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    """Batch size choices (sequences per step), for every strategy."""
    out: Path = Path("benchmarks/results")
    """Results folder: CSVs, the plot, and one SQLite study per (strategy, seed) in studies/."""
    budget: int = 16
    """Largest compute budget, in full-trial equivalents."""
    tpe_budget: int = 0
    """Budget of TPE + median when larger than ``budget``: where it does not get within 1% of the
    best loss in ``budget``, its compute to get there is only a lower bound, and a longer run
    decides the ratio to scaletune's."""
    seeds: int = 3
    workers: int = field(default_factory=usable_cores)
    strategies: tuple[str, ...] = STRATEGIES
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 64
    tie_weights: bool = False
    """Untied head: with tied weights this tiny model has transient early loss spikes that the
    trainer's divergence guard (1.5 ln V) ends runs on, which makes the landscape erratic."""
    tokens_per_trial: int = 163_840
    """160 steps at batch 16; a tenth of it is a whole number of steps at every batch size."""
    val_windows: int = 128
    train_seed: int = 0
    """Every trial of every study trains with this seed (init, data order, dropout), so the task
    is one deterministic function of the hyperparameters and "the best loss any strategy found"
    means the same thing for every seed. The benchmark's seeds move only the search."""

    def limit(self, strategy: str) -> int:
        """The compute budget (full-trial equivalents) of one strategy's studies."""
        if strategy == "defaults":
            return 1
        return max(self.budget, self.tpe_budget) if strategy == "tpe_median" else self.budget

    @property
    def eval_every(self) -> int:
        return self.tokens_per_trial // 10

    @property
    def budgets(self) -> list[int]:
        """Reported budgets: 4, 8, 16, 32 ... up to ``budget`` (plus ``budget`` itself)."""
        marks = [b for b in (4, 8, 16, 32, 64, 128) if b <= self.budget]
        if not marks or marks[-1] != self.budget:
            marks.append(self.budget)
        return marks

    def tau_range(self) -> tuple[float, float]:
        """The lambda range as tau = B/(lr*lambda*D) at the typical lr and batch size."""
        lr_typ = math.sqrt(LR[0] * LR[1])
        batch_typ = math.exp(sum(math.log(b) for b in self.batch_sizes) / len(self.batch_sizes))
        steps = self.tokens_per_trial / (batch_typ * self.block_size)
        return 1.0 / (lr_typ * WEIGHT_DECAY[1] * steps), 1.0 / (lr_typ * WEIGHT_DECAY[0] * steps)


# --------------------------------------------------------------------------- one study


def study_config(bench: Bench, strategy: str, seed: int) -> Any:
    """The product's StudyConfig of this task and strategy: every strategy is a study file.

    Every trial trains with ``bench.train_seed``; the benchmark's ``seed`` seeds the sampler
    (``sampler.seed``), so all studies search one and the same function.
    """
    from scaletune.search.config import StudyConfig

    # What a user of plain Optuna writes: lambda searched directly, the ranges of the task.
    plain = {
        "lr": {"low": LR[0], "high": LR[1], "log": True},
        "weight_decay": {"low": WEIGHT_DECAY[0], "high": WEIGHT_DECAY[1], "log": True,
                         "as": "lambda"},
        "dropout": {"low": DROPOUT[0], "high": DROPOUT[1]},
        "warmup_frac": {"low": WARMUP_FRAC[0], "high": WARMUP_FRAC[1]},
        "batch_size": {"choices": list(bench.batch_sizes)},
    }
    tau_low, tau_high = bench.tau_range()
    seeded = {
        "lr": {"prior": "auto", "low": LR[0], "high": LR[1]},
        "weight_decay": {"prior": "auto", "as": "tau", "low": tau_low, "high": tau_high},
        "dropout": {"prior": "auto", "low": DROPOUT[0], "high": DROPOUT[1]},
        "warmup_frac": {"prior": "auto", "low": WARMUP_FRAC[0], "high": WARMUP_FRAC[1]},
        "batch_size": {"prior": "auto", "low": bench.batch_sizes[0],
                       "high": bench.batch_sizes[-1]},
    }
    fixed = {k: {"value": v} for k, v in DEFAULTS.items()}
    fixed["batch_size"]["value"] = min(bench.batch_sizes, key=lambda b: abs(math.log(b / 32)))
    fixed["weight_decay"]["as"] = "lambda"
    # Optuna's TPESampler() and MedianPruner() as a user constructs them: their defaults (TPE in
    # Optuna 5: 10 start-up trials, multivariate for one objective, constant liar).
    tpe_defaults = {"name": "tpe", "n_startup_trials": 10, "multivariate": True,
                    "constant_liar": True}
    median_defaults = {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 0,
                       "interval_steps": 1}
    median = {"name": "median"}  # scaletune's median pruner: 25% warmup, 4 start-up trials
    strategies = {
        "defaults": {"search": fixed, "sampler": {"name": "random"}, "pruner": {"name": "none"},
                     "seeding": "none"},
        "random": {"search": plain, "sampler": {"name": "random"}, "pruner": {"name": "none"},
                   "seeding": "none"},
        "tpe_median": {"search": plain, "sampler": tpe_defaults, "pruner": median_defaults,
                       "seeding": "none"},
        # The median pruner is named: it was the product's default when these ran, and the
        # stored studies stay what their label says now that the default is the predicted one.
        "scaletune": {"search": seeded, "pruner": median},
        "scaletune_no_priors": {"search": seeded, "seeding": "none", "pruner": median},
        "scaletune_no_pruning": {"search": seeded, "pruner": {"name": "none"}},
        "scaletune_no_prior_weight": {"search": seeded, "sampler": {"prior_weight": 0},
                                      "pruner": median},
        "scaletune_predicted": {"search": seeded, "pruner": {"name": "predicted"}},
        "scaletune_gp": {"search": seeded, "sampler": {"name": "gp"},
                         "pruner": {"name": "predicted"}},
        "scaletune_gp_ignore": {"search": seeded,
                                "sampler": {"name": "gp", "pruned_trials": "ignore"},
                                "pruner": {"name": "predicted"}},
    }
    name = f"{strategy}-s{seed}"
    folder = bench.out / "studies"
    study: dict[str, Any] = {
        "name": name,
        "study_dir": str(folder),
        "storage": f"sqlite:///{(folder / f'{name}.db').resolve()}",
        "model": {"n_layer": bench.n_layer, "n_head": bench.n_head, "n_embd": bench.n_embd,
                  "block_size": bench.block_size, "tie_weights": bench.tie_weights},
        "data": {"source": "text", "path": str(bench.data.resolve()),
                 "tokenizer": bench.tokenizer,
                 "val_windows": bench.val_windows},
        "trainer": {"device": "cpu", "dtype": "float32"},
        "tokens_per_trial": bench.tokens_per_trial,
        "eval_every_tokens": bench.eval_every,
        "n_trials": 10 * bench.limit(strategy),
        "seed": bench.train_seed,
        **strategies[strategy],
    }
    study["sampler"] = {**study.get("sampler", {}), "seed": seed}
    return StudyConfig.model_validate(study)


def _used_tokens(study: Any) -> int:
    from scaletune.search.plan import FINISHED

    return sum(int(t.user_attrs.get("tokens_seen", 0))
               for t in study.get_trials(deepcopy=False, states=FINISHED))


def run_study(bench: Bench, strategy: str, seed: int) -> dict[str, Any]:
    """Run (or resume) one (strategy, seed) study until it has used its token budget.

    The study is the product's: its plan (search.plan.SearchPlan) opens or resumes it, asks each
    trial, and ends it from the trainer's result; the trial trains here on one torch thread with
    search.plan.train_trial, reporting on the study's token grid. Only the stopping rule (a
    compute budget rather than a number of trials) is the benchmark's.
    """
    import optuna
    import torch

    from scaletune.search.plan import SearchPlan, n_finished, train_trial
    from scaletune.search.storage import make_storage

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = study_config(bench, strategy, seed)
    cfg.folder.mkdir(parents=True, exist_ok=True)
    plan = SearchPlan.build(cfg)
    study, _ = plan.open_study(make_storage(cfg.storage_url))

    limit = bench.tokens_per_trial * bench.limit(strategy)
    max_trials = 1 if strategy == "defaults" else None
    tag = f"{bench.out.name}: {strategy} s{seed}"
    try:
        while _used_tokens(study) < limit and (max_trials is None
                                               or n_finished(study) < max_trials):
            plan.lease.refresh()
            run = plan.ask(study, num_threads=1)
            result = train_trial(run.config,
                                 lambda tokens, value, _, run=run: run.report(tokens, value))
            state, value, reason = run.tell(study, result)
            shown = f"loss {value:.4f}" if state == "COMPLETE" else f"{state.lower()}: {reason}"
            used = _used_tokens(study) / bench.tokens_per_trial
            print(f"[{tag}] trial {run.number}: {shown} ({result.get('wall_time_s', 0):.1f} s); "
                  f"compute {used:.2f}/{limit / bench.tokens_per_trial:g}", flush=True)
    finally:
        plan.lease.release()
    return {"strategy": strategy, "seed": seed, "used": _used_tokens(study) / bench.tokens_per_trial,
            "trials": n_finished(study)}


def _run_task(args: tuple[Bench, str, int]) -> dict[str, Any]:
    bench, strategy, seed = args
    return run_study(bench, strategy, seed)


def run_all(bench: Bench) -> None:
    """Every (strategy, seed) study, ``bench.workers`` at a time (unpruned strategies first)."""
    order = {"random": 0, "scaletune_no_pruning": 1, "tpe_median": 2, "scaletune": 3,
             "scaletune_no_prior_weight": 3, "scaletune_predicted": 3, "scaletune_gp": 3,
             "scaletune_gp_ignore": 3,
             "scaletune_no_priors": 4, "defaults": 5}
    tasks = sorted(
        ((bench, st, seed) for st in bench.strategies for seed in range(bench.seeds)),
        key=lambda t: (order[t[1]], t[2]),
    )
    start = time.perf_counter()
    done = map_jobs(_run_task, tasks, bench.workers)
    print(f"{len(done)} studies done in {time.perf_counter() - start:.0f} s", flush=True)


def map_jobs(fn: Callable[[Any], Any], jobs: list[Any], workers: int,
             ordered: bool = False) -> list[Any]:
    """``fn`` of every job: in this process when ``workers`` <= 1, else ``workers`` spawned
    processes at a time, each for one job; results in the jobs' order when ``ordered``, else as
    they finish. The benchmarks' jobs train on one torch thread each: the BLAS pools are kept
    from oversubscribing the cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if workers <= 1:
        return [fn(j) for j in jobs]
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        return list((pool.imap if ordered else pool.imap_unordered)(fn, jobs))


# --------------------------------------------------------------------------- analysis


def strategy_seed(path: Path) -> tuple[str, int] | None:
    """The strategy and seed of a study file ``<strategy>-s<seed>.db`` (``study_config``'s
    names); None for another file."""
    strategy, _, seed = path.stem.rpartition("-s")
    return (strategy, int(seed)) if strategy in STRATEGIES and seed.isdigit() else None


def with_stored(bench: Bench) -> Bench:
    """``bench`` widened to every strategy and seed whose study its folder holds, so that the
    tables compare all of them: a run of some strategies or seeds (a longer TPE + median, one
    more seed) would otherwise drop the others' trials, and "the best loss any strategy found"
    would be the best of this run's."""
    found: dict[str, set[int]] = {}
    for path in (bench.out / "studies").glob("*-s*.db"):
        if (named := strategy_seed(path)) is not None:
            found.setdefault(named[0], set()).add(named[1])
    strategies = tuple(s for s in STRATEGIES if s in bench.strategies or s in found)
    seeds = max([bench.seeds] + [max(v) + 1 for v in found.values()])
    return replace(bench, strategies=strategies, seeds=seeds)


def widened(before: Bench, after: Bench) -> str | None:
    """What ``with_stored`` added, said where the tables are written; None if nothing."""
    added = [s for s in after.strategies if s not in before.strategies]
    parts = ([f"the studies of {', '.join(added)}"] if added else []) + (
        [f"seed {before.seeds}" if after.seeds == before.seeds + 1
         else f"seeds {before.seeds}-{after.seeds - 1}"] if after.seeds > before.seeds else [])
    if not parts:
        return None
    return (f"the tables of {after.out} also read {' and '.join(parts)} stored there (an "
            "earlier run's): they compare every study the folder holds")


def load_trials(bench: Bench) -> Any:
    """One row per finished trial of every study, in the order the study ran them."""
    import optuna
    import pandas as pd

    from scaletune.search.plan import FINISHED
    from scaletune.search.space import fixed_values

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for strategy in bench.strategies:
        for seed in range(bench.seeds):
            cfg = study_config(bench, strategy, seed)
            path = bench.out / "studies" / f"{cfg.name}.db"
            if not path.exists():
                continue
            study = optuna.load_study(study_name=cfg.name, storage=cfg.storage_url)
            if not cfg.fingerprint_matches(study.user_attrs.get("fingerprint")):
                raise SystemExit(f"{path} holds a study of another task or search space; use "
                                 "another --out folder")
            priors = study.user_attrs.get("priors") or {}
            finished = sorted(study.get_trials(deepcopy=False, states=FINISHED),
                              key=lambda t: t.number)
            searched = finished[0].params if finished else {}
            centers = ({k: priors[k]["center"] for k in searched if k in priors}
                       if strategy.startswith("scaletune") else None)
            fixed = fixed_values(cfg)
            cum = 0
            for t in finished:
                tokens = int(t.user_attrs.get("tokens_seen", 0))
                cum += tokens
                params = {**fixed, **t.params}
                rows.append({
                    "strategy": strategy, "seed": seed, "number": t.number,
                    "state": t.state.name, "value": t.value, "status": _status(t),
                    "tokens": tokens, "compute": cum / bench.tokens_per_trial,
                    "train_time_s": t.user_attrs.get("train_time_s"),
                    "wall_time_s": t.user_attrs.get("wall_time_s"),
                    **{f"param_{k}": v for k, v in params.items()},
                    "weight_decay": t.user_attrs.get("weight_decay", params.get("weight_decay")),
                    "prior_centers": json.dumps(centers),
                    "curve": json.dumps({int(k): v for k, v in t.intermediate_values.items()}),
                })
    return pd.DataFrame(rows)


def completed_within_budget(bench: Bench, trials: Any) -> Any:
    """The complete trials of ``trials`` that each strategy finished within its own budget."""
    return trials[(trials["compute"] <= trials["strategy"].map(bench.limit) + 1e-9)
                  & (trials["state"] == "COMPLETE")]


def _status(t: Any) -> str:
    """How the trainer ended a finished trial: completed, stopped (pruned) or diverged."""
    if t.state.name == "COMPLETE":
        return "completed"
    return "diverged" if str(t.user_attrs.get("prune_reason", "")).startswith("diverged") else \
        "stopped"


def best_at(trials: Any, budget: float) -> float:
    """Best complete-trial loss among the trials that finished within ``budget``."""
    done = trials[(trials["compute"] <= budget + 1e-9) & (trials["state"] == "COMPLETE")]
    return float(done["value"].min()) if len(done) else math.nan


def _reached(trials: Any, strategy: str, budget: float) -> bool:
    return strategy == "defaults" or (len(trials) and trials["compute"].max() >= budget - 1e-9)


def budget_table(bench: Bench, trials: Any) -> Any:
    """Best loss per (strategy, seed, budget): NaN where a study has not yet used that budget."""
    import pandas as pd

    rows = []
    for (strategy, seed), t in trials.groupby(["strategy", "seed"]):
        for b in bench.budgets:
            ok = _reached(t, strategy, b)
            rows.append({"strategy": strategy, "seed": seed, "budget": b,
                         "best_loss": best_at(t, b) if ok else math.nan,
                         "trials": int((t["compute"] <= b + 1e-9).sum()) if ok else None})
    return pd.DataFrame(rows)


def summarize(per_seed: Any) -> Any:
    g = per_seed.groupby(["strategy", "budget"])["best_loss"]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    return out.rename(columns={"count": "n_seeds"})


def compute_to_target(bench: Bench, trials: Any, targets: dict[int, float]) -> Any:
    """Compute (full-trial equivalents) each study needed to reach its seed's target (NaN: never)."""
    import pandas as pd

    rows = []
    for (strategy, seed), t in trials.groupby(["strategy", "seed"]):
        t = t[t["compute"] <= bench.limit(strategy) + 1e-9]
        hit = t[(t["state"] == "COMPLETE") & (t["value"] <= targets[seed])]
        rows.append({"strategy": strategy, "seed": seed, "target": targets[seed],
                     "compute": float(hit["compute"].iloc[0]) if len(hit) else math.nan,
                     "studied_up_to": float(t["compute"].max()) if len(t) else 0.0})
    return pd.DataFrame(rows)


def pruning_table(bench: Bench, trials: Any) -> Any:
    """scaletune (pruned) against scaletune_no_pruning: compute saved and loss given up."""
    import pandas as pd

    rows = []
    for seed in range(bench.seeds):
        p = trials[(trials["strategy"] == "scaletune") & (trials["seed"] == seed)]
        n = trials[(trials["strategy"] == "scaletune_no_pruning") & (trials["seed"] == seed)]
        if p.empty or n.empty:
            continue
        p = p[p["compute"] <= bench.budget + 1e-9]
        n = n[n["compute"] <= bench.budget + 1e-9]
        k = min(len(p), len(n))  # equal number of trials
        pk, nk = p.iloc[:k], n.iloc[:k]
        rows.append({
            "seed": seed,
            "trials_pruned": int((p["state"] == "PRUNED").sum()), "trials": len(p),
            "trials_no_pruning": len(n),
            "mean_trial_fraction": float(p["tokens"].mean() / bench.tokens_per_trial),
            "equal_trials": k,
            "compute_pruned": float(pk["tokens"].sum() / bench.tokens_per_trial),
            "compute_no_pruning": float(nk["tokens"].sum() / bench.tokens_per_trial),
            "best_pruned": float(pk.loc[pk["state"] == "COMPLETE", "value"].min()),
            "best_no_pruning": float(nk.loc[nk["state"] == "COMPLETE", "value"].min()),
            "best_pruned_at_budget": best_at(p, bench.budget),
            "best_no_pruning_at_budget": best_at(n, bench.budget),
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["compute_saved_frac"] = 1 - out["compute_pruned"] / out["compute_no_pruning"]
        out["loss_given_up"] = out["best_pruned"] - out["best_no_pruning"]
    return out


def pruner_audit(bench: Bench, trials: Any) -> Any:
    """Replay median pruning on the full curves of the unpruned studies (pain 6 of peers.md).

    For each study that trained every trial to the end (random, scaletune_no_pruning), Optuna's
    MedianPruner, with scaletune's settings and with Optuna's defaults, is replayed on the
    complete trials' curves in trial order (search.pruners.replay, as `scaletune report` does).
    Counted: trials stopped, compute saved (in full trials), and stopped trials that would have
    ended within 1% of their study's best (the mistakes that cost a search).
    """
    import optuna
    import pandas as pd

    from scaletune.search.config import MedianPrunerConfig
    from scaletune.search.pruners import audit, replay

    cfg = study_config(bench, "random", 0)
    rules = {"scaletune (warmup 25%, 4 start-up)": MedianPrunerConfig(name="median").build,
             "MedianPruner() defaults (warmup 0, 5 start-up)":
                 lambda cfg: optuna.pruners.MedianPruner()}
    rows = []
    for (strategy, seed), t in trials.groupby(["strategy", "seed"]):
        if strategy not in ("random", "scaletune_no_pruning"):
            continue
        done = t[(t["state"] == "COMPLETE") & (t["compute"] <= bench.budget + 1e-9)]
        curves = [optuna.trial.create_trial(
                      value=final, intermediate_values={int(k): v for k, v in
                                                        json.loads(curve).items()})
                  for curve, final in zip(done["curve"], done["value"], strict=True)]
        for rule, build in rules.items():
            result = audit(replay(build(cfg), curves), bench.tokens_per_trial)
            rows.append({"strategy": strategy, "seed": seed, "rule": rule, "trials": len(done),
                         "stopped": result["stopped"],
                         "compute_saved": result["compute_saved"] * result["trials"],
                         "stopped_within_1pct_of_best": result["false_prunes"]})
    return pd.DataFrame(rows)


def prior_quality(bench: Bench, trials: Any) -> Any:
    """How far each prior center lies from the best value found (scaletune studies).

    lr, tau, lambda and batch size in log10 (signed: log10(best / center)); dropout and warmup
    fraction in natural units (their centers may be 0).
    """
    import pandas as pd

    rows = []
    for (strategy, seed), t in trials.groupby(["strategy", "seed"]):
        if not strategy.startswith("scaletune"):
            continue
        centers = json.loads(t["prior_centers"].iloc[0])
        done = t[(t["state"] == "COMPLETE") & (t["compute"] <= bench.budget + 1e-9)]
        if done.empty or not centers:
            continue
        best = done.loc[done["value"].idxmin()]
        center_batch = centers["batch_size"]
        steps = bench.tokens_per_trial / (center_batch * bench.block_size)
        center_wd = 1.0 / (centers["lr"] * centers["tau"] * steps)
        values = {k: (best[f"param_{k}"], centers[k]) for k in centers}
        values["weight_decay"] = (best["weight_decay"], center_wd)
        for name, (found, center) in values.items():
            log = name in ("lr", "tau", "weight_decay", "batch_size")
            gap = math.log10(found / center) if log else found - center
            rows.append({"strategy": strategy, "seed": seed, "param": name, "center": center,
                         "best": found, "gap": gap, "unit": "log10" if log else "absolute"})
    return pd.DataFrame(rows)


def curves(bench: Bench, trials: Any, grid: Any) -> dict[str, Any]:
    """Best-so-far loss on ``grid`` (full-trial equivalents) per strategy: seeds x grid."""
    import numpy as np

    out = {}
    for strategy, s in trials.groupby("strategy"):
        rows = []
        for _, t in s.groupby("seed"):
            top = 1.0 if strategy == "defaults" else t["compute"].max()
            rows.append([best_at(t, x) if x <= top + 1e-9 or strategy == "defaults" else np.nan
                         for x in grid])
        out[strategy] = np.array(rows)
    return out


def plot(bench: Bench, trials: Any, best_known: float, path: Path) -> None:
    """Best loss vs compute, one line per strategy: the whole search (left), the end (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    top = max(bench.limit(s) for s in bench.strategies)
    grid = np.round(np.arange(1, top + 1e-9, 0.05), 4)
    colors = {"defaults": "#7f7f7f", "random": "#1f77b4", "tpe_median": "#ff7f0e",
              "scaletune": "#d62728", "scaletune_no_priors": "#9467bd",
              "scaletune_no_pruning": "#2ca02c", "scaletune_no_prior_weight": "#8c564b",
              "scaletune_predicted": "#e377c2", "scaletune_gp": "#17becf",
              "scaletune_gp_ignore": "#bcbd22"}
    all_curves = curves(bench, trials, grid)
    fig, axes = plt.subplots(1, 2, figsize=(14, 6), dpi=120)
    zoom = (best_known * 0.995, best_known * 1.06)
    for k, ax in enumerate(axes):
        for strategy in bench.strategies:
            c = all_curves.get(strategy)
            if c is None:
                continue
            full = ~np.isnan(c).any(axis=0)  # every seed has a complete trial by then
            if not full.any():
                continue
            x, mean = grid[full], c[:, full].mean(axis=0)
            lo, up = c[:, full].min(axis=0), c[:, full].max(axis=0)
            label = f"{LABELS[strategy]} ({c.shape[0]} seeds)"
            if strategy == "defaults":
                label += f": {mean[-1]:.3f}, above both panels"
            ax.plot(x, mean, "--" if strategy == "defaults" else "-", color=colors[strategy],
                    lw=2.2 if strategy == "scaletune" else 1.6, label=label,
                    drawstyle="steps-post")
            ax.fill_between(x, lo, up, color=colors[strategy], alpha=0.10, step="post", lw=0)
        ax.axhline(best_known * 1.01, color="black", lw=1, ls=":",
                   label=f"1% above the best loss found ({best_known:.3f} -> "
                         f"{1.01 * best_known:.3f})")
        ax.set_xscale("log", base=2)
        ticks = [b for b in (1, 2, 4, 8, 16, 32, 48, 64) if b <= top]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlim(1, top)  # no trial completes before one full trial of compute
        ax.set_ylim(*(zoom if k else (best_known * 0.99, best_known * 1.4)))
        ax.set_xlabel("compute: tokens trained over all trials, in full-trial equivalents")
        ax.grid(True, which="both", alpha=0.3)
    unit = "nats/byte" if bench.tokenizer == "byte" else "nats/token"
    axes[0].set_ylabel(f"best validation loss so far ({unit})")
    axes[0].set_title("whole search")
    axes[1].set_title("zoom near the best loss found")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle(f"Search efficiency: {bench.n_layer}L/{bench.n_embd}d GPT on {bench.corpus} "
                 f"({bench.tokenizer_label}), block {bench.block_size}, "
                 f"{bench.tokens_per_trial:,} tokens per trial. Line: mean over seeds; "
                 "band: min-max over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def target_lines(bench: Bench, summary: Any, reach: Any) -> list[str]:
    """The issue's target: at 8 trials scaletune beats TPE + median and random search on mean
    best loss, and needs at most a third of TPE + median's compute to get within 1%."""
    def mean_at(strategy: str, budget: int) -> float:
        r = summary[(summary["strategy"] == strategy) & (summary["budget"] == budget)]
        return float(r["mean"].iloc[0]) if len(r) else math.nan

    def needed(table: Any, strategy: str) -> tuple[float, bool]:
        r = table[table["strategy"] == strategy]
        return float(r["compute"].fillna(r["studied_up_to"]).mean()), bool(r["compute"].isna().any())

    if not {"scaletune", "tpe_median", "random"} <= set(summary["strategy"]) or 8 > bench.budget:
        return []
    st, tpe, rnd = (mean_at(s, 8) for s in ("scaletune", "tpe_median", "random"))
    lines = ["", "## Target", "",
             f"- At 8 trials: scaletune {st:.4f} vs TPE + median {tpe:.4f} and random {rnd:.4f}: "
             f"{'met' if st < tpe and st < rnd else 'not met'}."]
    (need_st, cens_st), (need_tpe, cens_tpe) = needed(reach, "scaletune"), needed(
        reach, "tpe_median")
    ratio = need_st / need_tpe
    if cens_st:
        verdict = "not shown (a scaletune seed never got within 1%)"
    elif ratio <= 1 / 3:
        verdict = "met" + (" (TPE + median's need is a lower bound)" if cens_tpe else "")
    else:
        verdict = "undecided (TPE + median's need is a lower bound)" if cens_tpe else "not met"
    lines.append(f"- Compute to within 1% of the best loss any strategy found: scaletune "
                 f"{'>= ' if cens_st else ''}{need_st:.2f} vs TPE + median "
                 f"{'>= ' if cens_tpe else ''}{need_tpe:.2f} full trials (ratio {ratio:.2f}; "
                 f"target <= 0.33): {verdict}.")
    return lines


def _fmt_cell(row: Any, seeds: int) -> str:
    if row is None or math.isnan(row["mean"]):
        return "-"
    spread = 0.0 if math.isnan(row["std"]) else row["std"]
    partial = "" if row["n_seeds"] == seeds else f" ({row['n_seeds']} of {seeds} seeds)"
    return f"{row['mean']:.3f} ± {spread:.3f}{partial}"


def analyze(bench: Bench, command: str, trials: Any = None) -> str:
    """Write the CSVs, the plot and a markdown summary; return the summary."""
    import pandas as pd

    if trials is None:
        trials = load_trials(bench)
    if trials.empty:
        raise SystemExit(f"no finished trials under {bench.out / 'studies'}")
    out = bench.out
    trials.to_csv(out / "search_efficiency_trials.csv", index=False)
    per_seed = budget_table(bench, trials)
    per_seed.to_csv(out / "search_efficiency_per_seed.csv", index=False)
    summary = summarize(per_seed)
    summary.to_csv(out / "search_efficiency.csv", index=False)

    best_known = float(completed_within_budget(bench, trials)["value"].min())
    target = 1.01 * best_known
    reach = compute_to_target(bench, trials, {seed: target for seed in range(bench.seeds)})
    reach.to_csv(out / "search_efficiency_to_1pct.csv", index=False)
    pruning = pruning_table(bench, trials)
    pruning.to_csv(out / "search_efficiency_pruning.csv", index=False)
    audit = pruner_audit(bench, trials)
    audit.to_csv(out / "search_efficiency_pruner_audit.csv", index=False)
    priors = prior_quality(bench, trials)
    priors.to_csv(out / "search_efficiency_priors.csv", index=False)
    plot(bench, trials, best_known, out / "search_efficiency.png")

    lines = [
        f"# Search efficiency: {bench.n_layer}L/{bench.n_embd}d GPT on {bench.corpus} "
        f"({bench.tokenizer_label})", "",
        f"Command: `{command}`", "",
        f"Task: {bench.n_layer}L/{bench.n_head}H/{bench.n_embd}d GPT (untied head), block "
        f"{bench.block_size}, {bench.corpus} ({bench.tokenizer_label}), "
        f"{bench.tokens_per_trial:,} tokens per trial, validation ({bench.val_windows} windows) "
        f"every {bench.eval_every:,} tokens.",
        f"Search space: lr {LR}, weight decay lambda {WEIGHT_DECAY} (scaletune: tau "
        f"[{bench.tau_range()[0]:.3g}, {bench.tau_range()[1]:.3g}]), dropout {DROPOUT}, "
        f"warmup fraction {WARMUP_FRAC}, batch size {bench.batch_sizes}.", "",
        "## Best validation loss at equal compute (mean ± std over seeds)", "",
        "| strategy | " + " | ".join(f"{b} trials" for b in bench.budgets) + " |",
        "| --- | " + " | ".join("---:" for _ in bench.budgets) + " |",
    ]
    for strategy in bench.strategies:
        cells = []
        for b in bench.budgets:
            r = summary[(summary["strategy"] == strategy) & (summary["budget"] == b)]
            cells.append(_fmt_cell(r.iloc[0], bench.seeds) if len(r) else "-")
        lines.append(f"| {LABELS[strategy]} | " + " | ".join(cells) + " |")
    lines += ["", "## Compute to reach within 1% of the best loss found", "",
              f"Best loss any strategy found (every seed trains with seed {bench.train_seed}, so "
              f"all studies search the same function): {best_known:.4f}, target {target:.4f}.",
              "Full-trial equivalents per seed (>x: not reached in the x it used); mean with "
              "not-reached counted as x (a lower bound, marked >=).", "",
              "| strategy | per seed | mean | reached |",
              "| --- | --- | ---: | ---: |"]
    for strategy in bench.strategies:
        r = reach[reach["strategy"] == strategy]
        if r.empty:
            lines.append(f"| {LABELS[strategy]} | - | - | - |")
            continue
        vals = [f"{v:.2f}" if not math.isnan(v) else f">{u:.2f}"
                for v, u in zip(r["compute"], r["studied_up_to"], strict=True)]
        censored = r["compute"].fillna(r["studied_up_to"]).mean()
        n_hit = int(r["compute"].notna().sum())
        mark = "" if n_hit == len(r) else ">= "
        lines.append(f"| {LABELS[strategy]} | {', '.join(vals)} | {mark}{censored:.2f} | "
                     f"{n_hit}/{len(r)} |")
    lines += target_lines(bench, summary, reach)
    if len(pruning):
        lines += ["", "## Pruning: scaletune against scaletune without pruning", "",
                  f"Within the {bench.budget}-trial budget: "
                  f"{pruning['trials'].mean():.1f} trials with pruning "
                  f"({pruning['trials_pruned'].mean():.1f} pruned, mean trial "
                  f"{pruning['mean_trial_fraction'].mean():.2f} of a full one) vs "
                  f"{pruning['trials_no_pruning'].mean():.1f} without.",
                  f"At an equal number of trials: compute saved "
                  f"{pruning['compute_saved_frac'].mean():.0%} (mean over seeds), loss given up "
                  f"{pruning['loss_given_up'].mean():+.4f} (best with pruning minus best without).",
                  f"At equal compute ({bench.budget}): best loss "
                  f"{pruning['best_pruned_at_budget'].mean():.4f} with pruning vs "
                  f"{pruning['best_no_pruning_at_budget'].mean():.4f} without."]
    if len(audit):
        lines += ["", "## Pruner audit: median pruning replayed on the unpruned studies' curves", "",
                  "| studies | rule | trials | stopped | compute saved (trials) | stopped but "
                  "within 1% of the study's best |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        for (strategy, rule), a in audit.groupby(["strategy", "rule"], sort=False):
            lines.append(f"| {LABELS[strategy]} | {rule} | {a['trials'].sum()} | "
                         f"{a['stopped'].sum()} | {a['compute_saved'].sum():.1f} | "
                         f"{a['stopped_within_1pct_of_best'].sum()} |")
    if len(priors):
        g = priors.groupby("param")
        lines += ["", "## Prior quality: prior center vs best value found (scaletune studies)", "",
                  "| hyperparameter | prior center | best found (mean) | gap (mean signed) | "
                  "abs gap (mean) | unit |", "| --- | ---: | ---: | ---: | ---: | --- |"]
        for name in ("lr", "tau", "weight_decay", "batch_size", "warmup_frac", "dropout"):
            if name not in g.groups:
                continue
            p = g.get_group(name)
            best = p["best"]
            found = (10 ** pd.Series(best).apply(math.log10).mean() if p["unit"].iloc[0] ==
                     "log10" else best.mean())
            lines.append(f"| {name} | {p['center'].iloc[0]:.4g} | {found:.4g} | "
                         f"{p['gap'].mean():+.2f} | {p['gap'].abs().mean():.2f} | "
                         f"{p['unit'].iloc[0]} |")
    lines += ["", "Files: search_efficiency.csv (summary), search_efficiency_per_seed.csv, "
              "search_efficiency_to_1pct.csv, search_efficiency_pruning.csv, "
              "search_efficiency_priors.csv, search_efficiency_pruner_audit.csv, "
              "search_efficiency_trials.csv, search_efficiency.png; "
              "studies/*.db (Optuna SQLite, one per strategy and seed).", ""]
    text = "\n".join(lines)
    (out / "search_efficiency.md").write_text(text)
    (out / "search_efficiency_command.txt").write_text(
        command + "\n" + json.dumps(provenance(bench), indent=1) + "\n")
    return text


def names_given(parser: argparse.ArgumentParser, flag: str, text: str,
                allowed: Sequence[str]) -> list[str]:
    """The comma-separated names of ``flag``, each one of ``allowed``, at least one: else the
    parser's error, naming the flag (an empty --tasks was a traceback or "no ladder has run")."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if unknown := [s for s in names if s not in allowed]:
        parser.error(f"{flag}: unknown {unknown}; choose from {list(allowed)}")
    if not names:
        parser.error(f"{flag}: give at least one of {list(allowed)}")
    return names


def command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> str:
    """The command that ran, as the results record it: the parser's ``prog`` and the arguments,
    each quoted so that the line pastes back into a shell (an empty one as '')."""
    return shlex.join([*parser.prog.split(), *(sys.argv[1:] if argv is None else argv)])


def provenance(bench: Bench) -> dict[str, Any]:
    from scaletune.trainer.record import git_revision, installed_version

    versions = {lib: installed_version(lib) for lib in ("torch", "optuna", "numpy", "pandas")}
    return {"git": git_revision(), "python": platform.python_version(), "versions": versions,
            "platform": platform.platform(), "cpus": usable_cores(),
            "bench": {k: str(v) for k, v in asdict(bench).items()},
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search_efficiency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=16,
                   help="largest compute budget, in full-trial equivalents (default 16)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default 3)")
    p.add_argument("--workers", type=int, default=usable_cores(),
                   help="studies run at once, one process each (default: cores)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                   help="results folder: tables, plot, studies/*.db (default %(default)s)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the task's text file (default %(default)s)")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma-separated subset of {','.join(STRATEGIES)} (default: all)")
    p.add_argument("--analyze-only", action="store_true",
                   help="write the tables and plot from the stored studies; train nothing")
    args = p.parse_args(argv)
    strategies = tuple(names_given(p, "--strategies", args.strategies, list(STRATEGIES)))
    # --budget 0 was a pydantic ValidationError of n_trials.
    refuse_below_one(p, {"--budget": args.budget, "--seeds": args.seeds,
                         "--workers": args.workers})
    if not args.data.is_file():
        p.error(f"--data: file not found: {args.data}")
    if args.out.exists() and not args.out.is_dir():  # a FileExistsError traceback
        p.error(f"--out: {args.out} is a file; give a folder (made if missing)")
    bench = replace(Bench(), data=args.data, out=args.out, budget=args.budget, seeds=args.seeds,
                    workers=args.workers, strategies=strategies)
    bench.out.mkdir(parents=True, exist_ok=True)
    command = command_line(p, argv)
    recorded = bench.out / "search_efficiency_command.txt"
    if args.analyze_only and recorded.is_file():
        command = recorded.read_text().splitlines()[0]  # the command that trained the studies
    if not args.analyze_only:
        run_all(bench)
    stored = with_stored(bench)
    if note := widened(bench, stored):
        print(note, flush=True)
    print(analyze(stored, command))


if __name__ == "__main__":
    run_main(main, "search_efficiency", "the same command resumes where it stopped")
