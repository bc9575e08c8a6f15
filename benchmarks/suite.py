"""Search efficiency on a suite of tasks: is the priors' head start real beyond the task they were
first adjusted on? The default run takes about 1.5 hours on 2 cores with --tpe-budget 16, and
about 2.5 hours more at the default 48.

Each task is one small GPT pretraining problem, defined once in ``TASKS``: a corpus, a tokenizer,
a model shape and a token budget per trial. The tasks differ in all four:

    corpus      Tiny Shakespeare (../shared/data), Python's own documentation (the pydoc topics
                that ship with every Python), the docstrings of Python's standard library, and
                the standard library's source code
    tokenizer   bytes, or a byte-level BPE of 1024 or 2048 tokens trained on the task's corpus
                with Hugging Face ``tokenizers`` (deterministic: same corpus, same file)
    model       64 to 128 wide, 2 to 4 layers, block 64 to 256
    horizon     1x to 4x the 163,840 tokens per trial of the first benchmark (issue 6)

Every (task, strategy, seed) is a study run by ``benchmarks.search_efficiency.run_study``: a study
file of the product run through its own search plan and trial runner. The search space is the
same for every task except the batch sizes, which follow the token budget by one rule
(``batch_choices``: four powers of two giving 320 down to 40 optimizer steps). Each task's
results land in ``<out>/<task>/`` (the single-task benchmark's tables, CSVs and plot), and the
suite's own tables in ``<out>/suite.md``: the best loss per strategy and task at 8 and 16
full-trial equivalents (and at the run's own --budget), the compute each needs to get within 1%
of the best loss any strategy found, and the calibration of the priors (where the best values
found lie in the priors' 1- and 2-sigma ranges). The tables read every study the folder holds.

The suite is resumable: re-running the same command finishes the studies that are not done and
skips the others, so it can be spread over several sessions.

    python -m benchmarks.suite [--tasks a,b] [--seeds 3] [--budget 16] [--tpe-budget 48]
                               [--workers 2] [--out benchmarks/results/suite]
    python -m benchmarks.suite --analyze-only
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import re
import statistics
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import refuse_below_one, run_main
from benchmarks import search_efficiency as se
from scaletune.trainer.config import usable_cores

BASE_TOKENS = 163_840
"""Tokens per trial of the first benchmark's task; every horizon is a multiple of it."""
STEPS_RANGE = (40, 320)
"""Optimizer steps per trial the batch-size choices span (fewest at the largest batch)."""


@dataclass(frozen=True)
class Corpus:
    name: str
    label: str
    """What the text is, for the results."""
    description: str


CORPORA = {
    "shakespeare": Corpus("shakespeare", "Tiny Shakespeare",
                          "../shared/data/tinyshakespeare.txt: 1.1 MB of plays"),
    "pydoc": Corpus("pydoc", "Python documentation (pydoc topics)",
                    "pydoc_data.topics of this Python: the language reference's prose, 0.46 MB"),
    "docstrings": Corpus("docstrings", "Python standard library docstrings",
                         "every module, class and function docstring of over 80 characters in "
                         "the standard library (tests, idlelib and lib2to3 left out), 1.5 MB"),
    "stdlib_code": Corpus("stdlib_code", "Python standard library source code",
                          "the standard library's top-level modules, in name order, up to 1.5 MB"),
}


@dataclass(frozen=True)
class Task:
    """One search problem of the suite."""

    name: str
    corpus: str
    """Key of CORPORA, or the path of a text file of your own (read in place, as UTF-8)."""
    bpe_vocab: int
    """0: bytes; else a byte-level BPE of this many tokens trained on the corpus."""
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    horizon: float
    """Tokens per trial, in multiples of BASE_TOKENS."""
    why: str
    """What this task adds to the suite."""

    @property
    def tokens_per_trial(self) -> int:
        return round(BASE_TOKENS * self.horizon)

    @property
    def corpus_label(self) -> str:
        return CORPORA[self.corpus].label if self.corpus in CORPORA else Path(self.corpus).name

    @property
    def tokenizer_label(self) -> str:
        return f"byte-level BPE, {self.bpe_vocab} tokens" if self.bpe_vocab else "bytes"

    @property
    def model_label(self) -> str:
        return f"{self.n_layer}L/{self.n_head}H/{self.n_embd}d, block {self.block_size}"


TASKS = (
    Task("shakespeare-byte", "shakespeare", 0, 2, 4, 64, 64, 1,
         "the first benchmark's task, on which the priors were first adjusted"),
    Task("pydoc-byte", "pydoc", 0, 2, 4, 128, 128, 1,
         "technical prose, twice the width and block"),
    Task("shakespeare-bpe", "shakespeare", 1024, 2, 4, 64, 128, 2,
         "a BPE vocabulary (a larger embedding and head), twice the tokens"),
    Task("docstrings-byte", "docstrings", 0, 4, 4, 64, 64, 1,
         "twice the depth, reST-formatted technical prose"),
    Task("code-bpe", "stdlib_code", 2048, 3, 4, 96, 256, 1,
         "source code, the largest vocabulary and block"),
    Task("pydoc-long", "pydoc", 0, 2, 4, 64, 64, 4,
         "4x the tokens: 1.6 epochs of a small corpus (dropout and weight decay matter)"),
)
TASK_NAMES = tuple(t.name for t in TASKS)
MIN_BPE = 257
"""The smallest byte-level BPE: its 256 bytes and the end-of-text token."""
SUITE_STRATEGIES = ("defaults", "random", "tpe_median", "scaletune")


# --------------------------------------------------------------------------- corpora


def _shakespeare() -> str:
    return se.DEFAULT_DATA.read_text(encoding="utf-8")


def _pydoc() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics))


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _docstrings() -> str:
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages"}
    docs = []
    lib = _stdlib()
    for path in sorted(lib.rglob("*.py")):
        if any(part in skip or part.startswith("test") for part in path.relative_to(lib).parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    docs.append(doc)
    return "\n\n".join(docs)


def _stdlib_code(limit: int = 1_500_000) -> str:
    parts, size = [], 0
    for path in sorted(_stdlib().glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    return "\n".join(parts)[:limit]


BUILDERS = {"shakespeare": _shakespeare, "pydoc": _pydoc, "docstrings": _docstrings,
            "stdlib_code": _stdlib_code}


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``path`` only when its content would change: the data cache keys on mtimes."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _read_in_place(corpus: str) -> Path | None:
    """The file a corpus is read from where it lies: Tiny Shakespeare's, or the one a corpus
    given as a path names; None for a corpus built from Python's own text."""
    if corpus == "shakespeare":
        return se.DEFAULT_DATA
    return None if corpus in CORPORA else Path(corpus).expanduser().resolve()


def corpus_file(corpus: str, root: Path) -> Path:
    """The corpus as one text file under ``root/corpora`` (Tiny Shakespeare, and a corpus given
    as a file's path, are used in place)."""
    if (in_place := _read_in_place(corpus)) is not None:
        return in_place
    path = root / "corpora" / f"{corpus}.txt"
    _write_if_changed(path, BUILDERS[corpus]())
    return path


def _place_hash(corpus: str) -> str:
    """8 hex digits of where a corpus given as a path lies (resolved)."""
    return hashlib.sha256(str(_read_in_place(corpus)).encode()).hexdigest()[:8]


def bpe_file(corpus: str, vocab: int, root: Path) -> Path:
    """A byte-level BPE of ``vocab`` tokens trained on the corpus, saved as tokenizer.json.

    Byte-level: every byte is in the alphabet, so any text round-trips. The end-of-text token
    separates documents. Trained on the whole corpus, validation tail included: the tokenizer
    sees the text, the model never trains on it.
    """
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    # A path: the file's name and a hash of its place (two corpora named alike, in two folders,
    # had one tokenizer file, trained on whichever was built last, without a word).
    key = corpus if corpus in CORPORA else f"{Path(corpus).stem}-{_place_hash(corpus)}"
    path = root / "corpora" / f"{key}-bpe{vocab}.json"
    text = corpus_file(corpus, root).read_text(encoding="utf-8")
    # What it was trained from, beside it: the same text, vocabulary and library train the same
    # file, so a second run (--analyze-only, seed_noise, ladder_suite) reads it instead of
    # training it again (14-23 s on a 32 MB corpus, every time).
    source = json.dumps({"corpus_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                         "vocab": vocab, "tokenizers": tokenizers.__version__}, indent=1)
    record = path.with_name(path.name + ".source")
    if path.is_file() and record.is_file() and record.read_text() == source:
        return path
    record.unlink(missing_ok=True)  # until the file it stands for is written
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    if (learned := tok.get_vocab_size()) < vocab:  # ran at that size, its tables saying vocab
        raise SystemExit(f"bpe_vocab {vocab} of corpus {corpus}: a BPE trained on it learns "
                         f"{learned:,} tokens, its text too short for more merges: give a "
                         f"bpe_vocab of {learned:,} or less, or more text")
    _write_if_changed(path, tok.to_str(pretty=True))
    _write_if_changed(record, source)
    return path


def missing_data(tasks: list[Task]) -> str | None:
    """What the tasks read that is not there (Tiny Shakespeare beside the checkout, a corpus
    given as a path), said before anything runs: else each study fails with a traceback."""
    gone = [t for t in tasks
            if (path := _read_in_place(t.corpus)) is not None and not path.is_file()]
    if not gone:
        return None
    hint = (" (Tiny Shakespeare is ../shared/data/tinyshakespeare.txt beside the checkout)"
            if any(t.corpus == "shakespeare" for t in gone) else "")
    # A word that is no file, such as a misspelt key of CORPORA: the keys are what it meant.
    keys = (f" (a corpus is a file's path or one of {', '.join(CORPORA)})"
            if any("/" not in t.corpus and "." not in t.corpus and t.corpus not in CORPORA
                   for t in gone) else "")
    return (f"{'; '.join(f'{t.name} reads {_read_in_place(t.corpus)}' for t in gone)}: file not "
            f"found{hint}{keys}; leave such tasks out with --tasks")


def task_problems(tasks: list[Task]) -> str | None:
    """What is wrong with the tasks' lines in TASKS (a task of your own) and the files they read,
    said before anything runs: a BPE vocabulary below its byte alphabet ran under another size
    than its tables said, a horizon of 0 was a traceback, heads that do not divide the width a
    traceback from every study."""
    from pydantic import ValidationError

    from scaletune.trainer.config import TrainConfig

    said = []
    for t in tasks:
        problems = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", t.name):
            problems.append(f"name {t.name!r}: a folder's name of ASCII letters, digits, _ . -")
        if TASK_NAMES.count(t.name) > 1:
            problems.append("another task in TASKS has this name: give each its own")
        if not (isinstance(t.bpe_vocab, int) and (t.bpe_vocab == 0 or t.bpe_vocab >= MIN_BPE)):
            problems.append(f"bpe_vocab {t.bpe_vocab!r}: 0 (bytes) or a BPE vocabulary of at "
                            f"least {MIN_BPE} (its 256 bytes and the end-of-text token)")
        if not (isinstance(t.horizon, (int, float)) and t.horizon > 0):
            problems.append(f"horizon {t.horizon!r}: tokens per trial in multiples of "
                            f"{BASE_TOKENS:,}, more than 0")
        elif isinstance(t.block_size, int) and t.tokens_per_trial < t.block_size:
            problems.append(f"horizon {t.horizon!r}: {t.tokens_per_trial:,} tokens per trial, "
                            f"less than one window of block_size {t.block_size}")
        model = {"n_layer": t.n_layer, "n_head": t.n_head, "n_embd": t.n_embd,
                 "block_size": t.block_size}
        try:
            TrainConfig.model_validate({"model": model})
        except ValidationError as e:
            problems += [f"{'.'.join(map(str, err['loc'][1:])) or 'model'}: "
                         f"{err['msg'].removeprefix('Value error, ')}" for err in e.errors()]
        said += [f"{t.name}: {p}" for p in problems]
    if said:
        return ("a task's line in TASKS (benchmarks/suite.py): " + "; ".join(said)
                + (f"; and {missing}" if (missing := missing_data(tasks)) else ""))
    return missing_data(tasks)


def batch_choices(tokens: int, block_size: int) -> tuple[int, ...]:
    """Four powers of two from the batch giving at most STEPS_RANGE[1] optimizer steps up to
    the one giving STEPS_RANGE[0]: the same span of steps for every task; from 1 for a task of
    too few tokens for that (batch 1 takes fewer steps)."""
    low = 2 ** max(0, math.ceil(math.log2(tokens / (block_size * STEPS_RANGE[1]))))
    return tuple(low * 2**k for k in range(4))


def bench_of(task: Task, root: Path, **kw: Any) -> se.Bench:
    """The single-task benchmark of ``task``, its studies and tables under ``root/<task>``."""
    data = corpus_file(task.corpus, root)
    tokenizer = str(bpe_file(task.corpus, task.bpe_vocab, root)) if task.bpe_vocab else "byte"
    return se.Bench(
        data=data, corpus=task.corpus_label, tokenizer=tokenizer,
        tokenizer_label=task.tokenizer_label, out=root / task.name,
        n_layer=task.n_layer, n_head=task.n_head, n_embd=task.n_embd,
        block_size=task.block_size, tokens_per_trial=task.tokens_per_trial,
        batch_sizes=batch_choices(task.tokens_per_trial, task.block_size), val_windows=64, **kw)


# --------------------------------------------------------------------------- running


def _run_one(args: tuple[se.Bench, str, int]) -> dict[str, Any]:
    return se.run_study(*args)


def run_suite(benches: list[se.Bench], workers: int, first_seed: int = 0) -> None:
    """Every (task, strategy, seed) study, ``workers`` at a time: the first seed of every task
    first, so that an interrupted suite has every task's first results. Seeds below
    ``first_seed`` are left out (they ran elsewhere)."""
    order = {s: i for i, s in enumerate(("random", "tpe_median", "scaletune", "defaults"))}
    jobs = [(b, s, seed) for seed in range(first_seed, max(b.seeds for b in benches))
            for b in benches for s in sorted(b.strategies, key=lambda s: order.get(s, 9))
            if seed < b.seeds]
    start = time.perf_counter()
    done = se.map_jobs(_run_one, jobs, workers)
    print(f"{len(done)} studies done in {time.perf_counter() - start:.0f} s", flush=True)


# --------------------------------------------------------------------------- analysis

CALIBRATED = ("lr", "tau", "batch_size", "warmup_frac", "dropout")
"""The hyperparameters whose priors are checked against the best values found (weight decay as
tau, the form scaletune searches)."""


def best_trial(bench: se.Bench, trials: Any) -> Any:
    """The best complete trial any strategy found on the task, within each strategy's budget."""
    done = se.completed_within_budget(bench, trials)
    return done.loc[done["value"].idxmin()]


BASELINES = ("random", "tpe_median")
"""The searches the priors do not steer: where they find the optimum is the evidence a prior is
judged and corrected by (scaletune's own trials crowd around its prior's center)."""
CORRECTION = "short-run correction"
"""The law name of a prior's source that moves the published center (heuristics.priors)."""


def published_center(prior: Any) -> float:
    """The prior's center as the laws give it, before heuristics.priors' short-run correction:
    the geometric mean of the laws for lr, Power Lines' value for tau, the center otherwise."""
    corrected = [s for s in prior.sources if s.law == CORRECTION]
    if not corrected:
        return prior.center
    laws_ = [s.value for s in prior.sources if s.law != CORRECTION]
    if prior.name == "lr":
        return 10 ** (sum(math.log10(v) for v in laws_) / len(laws_))
    return laws_[0]


def calibration(task: Task, bench: se.Bench, trials: Any) -> list[dict[str, Any]]:
    """Where the best values found lie relative to the task's priors, one row per hyperparameter.

    The priors are the product's own for the scaletune study file of the task (SearchPlan); z is
    the signed distance of the best value any strategy found from the prior's center, in sigmas
    (log10 units for log priors). A best value at the edge of the benchmark's range is marked:
    the optimum may lie beyond it.

    The bias estimate is kept apart from that: ``gap_published`` is where the unsteered searches
    (BASELINES) found the optimum, as the median over their trials within 1% of their best (where
    the loss is flat in a hyperparameter, tau in short runs, the single best is one draw from a
    plateau), minus the laws' center as published. That is what a correction is fitted on.
    """
    from scaletune.search.plan import SearchPlan

    plan = SearchPlan.build(se.study_config(bench, "scaletune", 0))
    priors = plan.priors.as_dict()
    best = best_trial(bench, trials)
    found = _values(bench, best)
    base = trials[trials["strategy"].isin(BASELINES)]
    near = []
    if len(base):
        done = se.completed_within_budget(bench, base)
        within = done[done["value"] <= 1.01 * done["value"].min()]
        near = [_values(bench, r) for _, r in within.iterrows()]
    tau_low, tau_high = bench.tau_range()
    ranges = {"lr": se.LR, "tau": (tau_low, tau_high),
              "batch_size": (bench.batch_sizes[0], bench.batch_sizes[-1]),
              "warmup_frac": se.WARMUP_FRAC, "dropout": se.DROPOUT}
    rows = []
    for name in CALIBRATED:
        p, value = priors[name], found[name]
        to = math.log10 if p.log else float
        z = (to(value) - to(p.center)) / p.sigma
        low, high = ranges[name]
        edge = name not in ("warmup_frac", "dropout") and (
            to(value) <= to(low) + 0.05 or to(value) >= to(high) - 0.05)
        published = published_center(p)
        near_values = sorted(to(v[name]) for v in near)
        rows.append({"task": task.name, "param": name, "center": p.center, "sigma": p.sigma,
                     "log": p.log, "best": value, "z": z, "in_1sigma": abs(z) <= 1,
                     "in_2sigma": abs(z) <= 2, "at_range_edge": bool(edge),
                     "gap": to(value) - to(p.center), "published_center": published,
                     "baseline_near_best_n": len(near),
                     "gap_published": (statistics.median(near_values) - to(published)
                                       if near_values else math.nan),
                     "correction": to(p.center) - to(published),
                     "best_loss": float(best["value"]), "best_strategy": best["strategy"]})
    return rows


def _values(bench: se.Bench, trial: Any) -> dict[str, float]:
    """A trial's hyperparameters as the priors state them (weight decay as tau)."""
    batch, lam, lr = (float(trial[k]) for k in ("param_batch_size", "weight_decay", "param_lr"))
    steps = bench.tokens_per_trial / (batch * bench.block_size)
    return {"lr": lr, "tau": 1.0 / (lr * lam * steps), "batch_size": batch,
            "warmup_frac": float(trial["param_warmup_frac"]),
            "dropout": float(trial["param_dropout"])}


def loto_shift(calib: Any) -> Any:
    """Leave-one-task-out check of correcting the published center by a constant shift: what
    heuristics.priors' short-run corrections were fitted and checked with.

    For each hyperparameter and task, the shift is the mean ``gap_published`` (where the unsteered
    searches found the optimum, minus the published center) on the OTHER tasks. The held-out
    task's gap is given before and after that shift, and whether it lies inside 2 sigma of the
    prior's sigma before and after. A shift that only helps the tasks it was fitted on shows up
    as no gain on the held-out ones. ``applied`` is the correction heuristics.priors makes.
    """
    import pandas as pd

    rows = []
    for param, c in calib.groupby("param", sort=False):
        c = c.dropna(subset=["gap_published"])
        if c["task"].nunique() < 3:
            continue
        for _, r in c.iterrows():
            shift = float(c[c["task"] != r["task"]]["gap_published"].mean())
            after = r["gap_published"] - shift
            rows.append({"param": param, "task": r["task"], "shift": shift,
                         "applied": r["correction"], "abs_gap": abs(r["gap_published"]),
                         "abs_gap_after": abs(after),
                         "in_2sigma": abs(r["gap_published"]) <= 2 * r["sigma"],
                         "in_2sigma_after": abs(after) <= 2 * r["sigma"]})
    return pd.DataFrame(rows)


HEADLINE_BUDGETS = (8, 16)
"""The budgets (full-trial equivalents) the suite's tables always show."""


def table_budgets(bench: se.Bench) -> list[int]:
    """The budgets of the suite's best-loss tables: 8 and 16, and the run's own where it is
    another (a run to 4 has a table at 4; above 16, one at its budget too)."""
    return sorted(set(HEADLINE_BUDGETS) | {bench.budget})


def _mean_best(per_seed: Any, strategy: str, budget: int) -> tuple[float, int]:
    r = per_seed[(per_seed["strategy"] == strategy) & (per_seed["budget"] == budget)]
    r = r.dropna(subset=["best_loss"])
    return (float(r["best_loss"].mean()) if len(r) else math.nan), len(r)


def _need(reach: Any, strategy: str) -> tuple[float, bool, int]:
    """Mean compute to within 1% (not reached counted as the compute used: a lower bound)."""
    r = reach[reach["strategy"] == strategy]
    if r.empty:
        return math.nan, False, 0
    return (float(r["compute"].fillna(r["studied_up_to"]).mean()),
            bool(r["compute"].isna().any()), len(r))


def analyze_suite(tasks: list[Task], benches: list[se.Bench], root: Path, command: str) -> str:
    """Each task's own tables (via the single-task analysis), then the suite's summary."""
    import pandas as pd

    summary_rows, calib_rows, sections = [], [], []
    stored = [se.with_stored(b) for b in benches]
    sections += [f"- {note}" for b, w in zip(benches, stored, strict=True)
                 if (note := se.widened(b, w))]
    benches = stored
    for task, bench in zip(tasks, benches, strict=True):
        trials = se.load_trials(bench)
        if trials.empty:
            sections.append(f"- {task.name}: no finished trials yet")
            continue
        se.analyze(bench, command, trials)
        per_seed = pd.read_csv(bench.out / "search_efficiency_per_seed.csv")
        reach = pd.read_csv(bench.out / "search_efficiency_to_1pct.csv")
        calib_rows += calibration(task, bench, trials)
        for strategy in bench.strategies:
            row: dict[str, Any] = {"task": task.name, "strategy": strategy}
            for b in table_budgets(bench):
                row[f"best_at_{b}"], row[f"seeds_at_{b}"] = _mean_best(per_seed, strategy, b)
            need, censored, n = _need(reach, strategy)
            summary_rows.append({**row, "compute_to_1pct": need, "censored": censored,
                                 "seeds": n})
    if not summary_rows:
        # The studies are not in a checkout (*.db is ignored): an analysis of none replaced the
        # committed tables with empty files.
        raise SystemExit(f"no task has finished trials under {root} ({'; '.join(sections)}): "
                         "nothing to analyze, and the tables there are left as they are")
    summary = pd.DataFrame(summary_rows)
    calib = pd.DataFrame(calib_rows)
    summary.to_csv(root / "suite_summary.csv", index=False)
    calib.to_csv(root / "suite_calibration.csv", index=False)
    loto = loto_shift(calib) if len(calib) else pd.DataFrame()
    loto.to_csv(root / "suite_loto.csv", index=False)
    text = suite_markdown(tasks, benches, summary, calib, command, sections, loto)
    (root / "suite.md").write_text(text)
    return text


def _cell(value: float, n: int, seeds: int) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" + ("" if n == seeds else f" ({n}/{seeds})")


def suite_markdown(tasks: list[Task], benches: list[se.Bench], summary: Any, calib: Any,
                   command: str, notes: list[str], loto: Any = None) -> str:
    seeds = benches[0].seeds
    lines = ["# Search efficiency on the task suite", "", f"Command: `{command}`", "",
             "| task | corpus | tokenizer | model | tokens per trial | batch choices | why |",
             "| --- | --- | --- | --- | ---: | --- | --- |"]
    for t, b in zip(tasks, benches, strict=True):
        lines.append(f"| {t.name} | {t.corpus_label} | {t.tokenizer_label} | "
                     f"{t.model_label} | {t.tokens_per_trial:,} | {b.batch_sizes} | {t.why} |")
    lines += notes
    if summary.empty:
        return "\n".join(lines + ["", "No results yet.", ""])
    names = [t.name for t in tasks if t.name in set(summary["task"])]
    for budget in table_budgets(benches[0]):
        if summary[f"best_at_{budget}"].isna().all():  # a table of dashes
            lines += ["", f"## Best validation loss at {budget} full-trial equivalents: none "
                      f"yet (the studies run to {benches[0].budget}, --budget)"]
            continue
        lines += ["", f"## Best validation loss at {budget} full-trial "
                  f"equivalent{'s' if budget != 1 else ''} (mean of "
                  f"{seeds} seed{'s' if seeds != 1 else ''}; (k/{seeds}): seeds that have used "
                  "that budget so far)", "",
                  "| strategy | " + " | ".join(names) + " |",
                  "| --- | " + " | ".join("---:" for _ in names) + " |"]
        shown = [s for s in se.STRATEGIES if s in set(summary["strategy"])]
        for strategy in shown:
            cells = []
            for name in names:
                r = summary[(summary["task"] == name) & (summary["strategy"] == strategy)]
                cells.append(_cell(float(r[f"best_at_{budget}"].iloc[0]),
                                   int(r[f"seeds_at_{budget}"].iloc[0]), seeds)
                             if len(r) else "-")
            lines.append(f"| {se.LABELS[strategy]} | " + " | ".join(cells) + " |")
    lines += ["", "## Compute to within 1% of the best loss any strategy found (full-trial "
              "equivalents, mean of seeds; >=: some seed never got there, a lower bound)", "",
              "| task | scaletune | TPE + median | random | ratio scaletune / TPE + median | "
              "target <= 0.33 |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name in names:
        row = {}
        for strategy in ("scaletune", "tpe_median", "random"):
            r = summary[(summary["task"] == name) & (summary["strategy"] == strategy)]
            row[strategy] = (float(r["compute_to_1pct"].iloc[0]), bool(r["censored"].iloc[0])) \
                if len(r) else (math.nan, False)
        (st, st_c), (tpe, tpe_c) = row["scaletune"], row["tpe_median"]
        ratio = st / tpe if tpe and not math.isnan(st) and not math.isnan(tpe) else math.nan
        if math.isnan(ratio):
            verdict = "-"
        elif st_c:
            verdict = "not shown"
        elif ratio <= 1 / 3:
            verdict = "met"
        else:
            verdict = "undecided" if tpe_c else "missed"
        fmt = {k: "-" if math.isnan(v) else f"{'>= ' if c else ''}{v:.2f}"
               for k, (v, c) in row.items()}
        lines.append(f"| {name} | {fmt['scaletune']} | {fmt['tpe_median']} | {fmt['random']} | "
                     f"{'-' if math.isnan(ratio) else f'{ratio:.2f}'} | {verdict} |")
    if not calib.empty:
        lines += ["", "## Prior calibration: the best value found against the task's prior", "",
                  "z: signed distance of the best value from the prior's center, in sigmas (log10 "
                  "for lr, tau and batch size). edge: the best value lies at the end of the "
                  "benchmark's range, so the optimum may lie beyond it. center: the best trial "
                  "is scaletune's at the prior's center, so its z are 0 by construction and say "
                  "only that no search found better; where the unsteered searches found their "
                  "best is the leave-one-task-out table's evidence.", "",
                  "| task | " + " | ".join(CALIBRATED) + " |",
                  "| --- | " + " | ".join("---:" for _ in CALIBRATED) + " |"]
        for name, c in calib.groupby("task", sort=False):
            cells = []
            for p in CALIBRATED:
                r = c[c["param"] == p].iloc[0]
                cells.append(f"{r['z']:+.1f}{' edge' if r['at_range_edge'] else ''}")
            centered = (c["best_strategy"].iloc[0] == "scaletune"
                        and bool((c["z"].abs() < 1e-9).all()))
            lines.append(f"| {name}{' (center)' if centered else ''} | " + " | ".join(cells)
                         + " |")
        g = calib.groupby("param")
        lines += ["", "| hyperparameter | inside 1 sigma | inside 2 sigma | mean z | mean gap |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for p in CALIBRATED:
            if p not in g.groups:
                continue
            c = g.get_group(p)
            lines.append(f"| {p} | {c['in_1sigma'].mean():.0%} | {c['in_2sigma'].mean():.0%} | "
                         f"{c['z'].mean():+.2f} | {c['gap'].mean():+.2f} |")
        lines.append(f"| all | {calib['in_1sigma'].mean():.0%} | {calib['in_2sigma'].mean():.0%} "
                     "| | |")
    if loto is not None and len(loto):
        lines += ["", "## Leave-one-task-out: a constant shift of the published center", "",
                  "Where random search and TPE + median (which no prior steers) found the optimum "
                  "(the median of their trials within 1% of their best), against the laws' center "
                  "as published. The shift is fitted on the other tasks and applied to the "
                  "held-out one; inside 2 sigma uses the prior's sigma. applied: the correction "
                  "heuristics/priors.py makes (0: none).", "",
                  f"| hyperparameter | shift fitted on {loto['task'].nunique() - 1} tasks (range) "
                  "| applied | held-out mean "
                  "abs gap before -> after | held-out inside 2 sigma before -> after |",
                  "| --- | --- | ---: | --- | --- |"]
        for param, c in loto.groupby("param", sort=False):
            lines.append(f"| {param} | {c['shift'].mean():+.2f} ({c['shift'].min():+.2f} to "
                         f"{c['shift'].max():+.2f}) | {c['applied'].mean():+.2f} | "
                         f"{c['abs_gap'].mean():.2f} -> {c['abs_gap_after'].mean():.2f} | "
                         f"{c['in_2sigma'].mean():.0%} -> {c['in_2sigma_after'].mean():.0%} |")
    lines += ["", "Files: suite_summary.csv, suite_calibration.csv, suite_loto.csv; each task's tables, CSVs and "
              "plot in its folder (search_efficiency.md, search_efficiency.png).", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.suite",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASK_NAMES),
                   help=f"comma-separated subset of {','.join(TASK_NAMES)} (default: all)")
    p.add_argument("--strategies", default=",".join(SUITE_STRATEGIES),
                   help=f"comma-separated subset of {','.join(se.STRATEGIES)} (default "
                        "%(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per strategy (default 3)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="run seeds from this one to --seeds - 1 only (the others ran elsewhere; "
                        "default 0)")
    p.add_argument("--budget", type=int, default=16,
                   help="compute budget in full-trial equivalents (default 16)")
    p.add_argument("--tpe-budget", type=int, default=48,
                   help="TPE + median's longer budget (default 48)")
    p.add_argument("--workers", type=int, default=usable_cores(),
                   help="studies at once, one process each (default: cores)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/suite"),
                   help="results folder: <task>/ per task, corpora/, the suite's tables "
                        "(default %(default)s)")
    p.add_argument("--analyze-only", action="store_true",
                   help="write the tables from the stored studies; train nothing")
    args = p.parse_args(argv)
    picked = se.names_given(p, "--tasks", args.tasks, list(TASK_NAMES))
    strategies = tuple(se.names_given(p, "--strategies", args.strategies, list(se.STRATEGIES)))
    # A ValidationError from the study config, or nothing run.
    refuse_below_one(p, {"--budget": args.budget, "--tpe-budget": args.tpe_budget,
                         "--seeds": args.seeds, "--workers": args.workers})
    if not 0 <= args.first_seed < args.seeds:
        p.error(f"--first-seed: must be in [0, --seeds) = [0, {args.seeds}), got {args.first_seed}")
    tasks = [t for t in TASKS if t.name in picked]
    if problem := task_problems(tasks):
        p.error(problem)
    benches = [bench_of(t, args.out, budget=args.budget, tpe_budget=args.tpe_budget,
                        seeds=args.seeds, workers=args.workers, strategies=strategies)
               for t in tasks]
    for b in benches:
        b.out.mkdir(parents=True, exist_ok=True)
    command = se.command_line(p, argv)
    recorded = args.out / "suite_command.txt"
    if args.analyze_only and recorded.is_file():
        command = recorded.read_text().splitlines()[0]
    if not args.analyze_only:
        if set(strategies) >= set(SUITE_STRATEGIES):  # a run of some strategies adds to it
            recorded.write_text(command + "\n")
        run_suite(benches, args.workers, args.first_seed)
    print(analyze_suite(tasks, benches, args.out, command))


if __name__ == "__main__":
    run_main(main, "suite", "the same command resumes where it stopped")
