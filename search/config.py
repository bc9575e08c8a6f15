"""The study file: one validated schema for a whole hyperparameter search.

``load_study(path)`` reads YAML safely, validates every section and reports every problem at
once (``ConfigError.errors``), naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from scaletune.trainer.config import (
    DataConfig,
    ModelConfig,
    Number,
    OptimConfig,
    Tokens,
    TokensOrZero,
    TrainConfig,
    format_errors,
    load_yaml,
)
from scaletune.trainer.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, populate_by_name=True)


# --------------------------------------------------------------------------- search space


class Param(_Strict):
    """How one hyperparameter is searched: a prior, a range, a list of choices, or a fixed value."""

    prior: Literal["auto"] | None = None
    """'auto': the center and range come from the scaling-law priors (low/high may narrow it)."""
    low: Number | None = None
    """Lower end of the range (inclusive)."""
    high: Number | None = None
    """Upper end of the range (inclusive)."""
    log: bool | None = None
    """Sample the range on a log scale (default: true for lr, weight decay and tau)."""
    choices: list[Any] | None = None
    """A categorical search over these values."""
    value: Any | None = None
    """A fixed value: not searched."""

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        kinds = [
            self.prior is not None,
            self.choices is not None,
            self.value is not None,
            self.low is not None or self.high is not None,
        ]
        if sum(kinds) == 0:
            raise ValueError("give one of: prior: auto, low/high, choices, value")
        if self.choices is not None and (self.prior or self.value is not None or kinds[3]):
            raise ValueError("choices cannot be combined with prior, low/high or value")
        if self.value is not None and sum(kinds) > 1:
            raise ValueError("value (fixed) cannot be combined with prior, low/high or choices")
        if self.choices is not None and len(self.choices) == 0:
            raise ValueError("choices must not be empty")
        if self.prior is None and self.choices is None and self.value is None:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError(f"a log range must have low > 0, got low={self.low}")
        return self

    @property
    def searched(self) -> bool:
        return self.value is None


class WeightDecayParam(Param):
    as_: Literal["lambda", "tau"] = Field("tau", alias="as")
    """Search lambda directly, or the AdamW timescale tau = B/(lr*lambda*D) with lambda derived."""


def _auto() -> Param:
    return Param(prior="auto")


class SearchSpace(_Strict):
    """The five hyperparameters of every study, plus any other trainer field by dotted key."""

    lr: Param = Field(default_factory=_auto)
    """Peak learning rate."""
    weight_decay: WeightDecayParam = Field(default_factory=lambda: WeightDecayParam(prior="auto"))
    """Decoupled weight decay, searched as lambda or as the AdamW timescale tau (default)."""
    dropout: Param = Field(default_factory=_auto)
    """Dropout rate at all four sites (model.dropout)."""
    warmup_frac: Param = Field(default_factory=_auto)
    """Linear warmup as a fraction of the optimizer steps."""
    batch_size: Param = Field(default_factory=_auto)
    """Sequences per optimizer step; prior: auto searches powers of two around the laws' optimum."""
    other: dict[str, Param] = Field(default_factory=dict)
    """Any other trainer field, by dotted key: {'model.norm': {choices: [layernorm, rmsnorm]}}."""


# --------------------------------------------------------------------------- sampler and pruner


class SamplerConfig(_Strict):
    name: Literal["tpe", "random", "gp", "cmaes"] = "tpe"
    """tpe (multivariate, constant liar), random, gp (Gaussian process) or cmaes."""
    n_startup_trials: int = Field(8, ge=0)
    """Trials drawn before the model-based sampler takes over (from the priors when seeding: prior)."""
    multivariate: bool = True
    """TPE: model the joint distribution of parameters."""
    constant_liar: bool = True
    """TPE: avoid sampling the same point for trials running in parallel."""


class _PrunerBase(_Strict):
    n_startup_trials: int = Field(4, ge=0)
    """Trials that finish before any pruning happens."""
    n_warmup_steps: TokensOrZero | None = None
    """Tokens a trial trains before it may be pruned (steps are tokens here); default 25% of a trial."""
    interval_steps: int = Field(1, ge=1)
    """Consider pruning at every n-th evaluation (after the first one past the warmup)."""


class MedianPrunerConfig(_PrunerBase):
    name: Literal["median"]


class PercentilePrunerConfig(_PrunerBase):
    name: Literal["percentile"]
    percentile: float = Field(25.0, ge=0, le=100)
    """Prune when below this percentile of the other trials at the same tokens."""


class SuccessiveHalvingPrunerConfig(_Strict):
    name: Literal["successive_halving"]
    min_resource: Tokens | None = None
    """Tokens of the first rung; default one evaluation interval."""
    reduction_factor: int = Field(3, ge=2)
    min_early_stopping_rate: int = Field(0, ge=0)


class HyperbandPrunerConfig(_Strict):
    name: Literal["hyperband"]
    min_resource: Tokens | None = None
    """Tokens of the first rung; default one evaluation interval."""
    reduction_factor: int = Field(3, ge=2)


class WilcoxonPrunerConfig(_Strict):
    name: Literal["wilcoxon"]
    p_threshold: float = Field(0.1, gt=0, lt=1)
    n_startup_steps: int = Field(2, ge=0)


class NonePrunerConfig(_Strict):
    name: Literal["none"]


_Inner = Annotated[
    MedianPrunerConfig | PercentilePrunerConfig | SuccessiveHalvingPrunerConfig | HyperbandPrunerConfig | WilcoxonPrunerConfig,
    Field(discriminator="name"),
]


class PatientPrunerConfig(_Strict):
    name: Literal["patient"]
    patience: int = Field(2, ge=0)
    """Evaluations without improvement before the wrapped pruner is asked."""
    min_delta: float = Field(0.0, ge=0)
    wrapped: _Inner | None = None
    """The pruner to consult once patience runs out (none: prune on patience alone)."""


PrunerConfig = Annotated[
    MedianPrunerConfig | PercentilePrunerConfig | SuccessiveHalvingPrunerConfig | HyperbandPrunerConfig | WilcoxonPrunerConfig | PatientPrunerConfig | NonePrunerConfig,
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- the rest


class TrainerOptions(_Strict):
    """Trainer fields that are the same in every trial (searched ones are overwritten)."""

    optim: OptimConfig = Field(default_factory=OptimConfig)
    micro_batch_size: int | None = Field(None, ge=1)
    """Sequences per forward/backward; every batch size searched must be a multiple."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    compile: bool = False
    max_loss: float | None = Field(None, gt=0)
    """Stop a trial as diverged above this training loss (default 1.5 x ln(vocab))."""


class WorkersConfig(_Strict):
    address: str | None = None
    """None or 'local' starts Ray on this machine; 'auto' or 'ray://host:port' joins a cluster."""
    gpus_per_trial: float = Field(0.0, ge=0)
    """GPUs each trial asks Ray for (fractions allowed: 0.5 puts two trials on one GPU)."""
    cpus_per_trial: float = Field(1.0, gt=0)
    """CPU cores each trial asks Ray for; torch uses that many threads."""
    max_concurrent: int | None = Field(None, ge=1)
    """Cap on trials running at once; default what the cluster can hold."""

    @model_validator(mode="after")
    def _fractions(self) -> WorkersConfig:
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial above 1 must be whole, got {self.gpus_per_trial}")
        return self


class PriorsConfig(_Strict):
    laws: Literal["published", "fitted"] = "published"
    """published: the laws of the formula sheet; fitted: laws fitted to your own studies."""
    fitted_file: str | None = None
    """JSON written by `scaletune fit` (required when laws: fitted)."""

    @model_validator(mode="after")
    def _file(self) -> PriorsConfig:
        if self.laws == "fitted" and not self.fitted_file:
            raise ValueError("priors.fitted_file is required when priors.laws is 'fitted'")
        return self


class StudyConfig(_Strict):
    """A hyperparameter search: model, data, per-trial budget, search space, sampler, pruner."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Study name (letters, digits, _ . -); also the default study folder name."""
    description: str = ""
    study_dir: str | None = None
    """Folder for the default storage and reports; default runs/<name> under the current folder."""
    storage: str | None = None
    """Optuna storage URL: default sqlite:///<study_dir>/study.db; postgresql://... on a cluster."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: TrainerOptions = Field(default_factory=TrainerOptions)
    tokens_per_trial: Tokens
    """Training tokens of every trial."""
    eval_every_tokens: Tokens | None = None
    """Validation cadence in tokens; pruning compares trials at these token counts. Default 1/10."""
    search: SearchSpace = Field(default_factory=SearchSpace)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=lambda: MedianPrunerConfig(name="median"))
    seeding: Literal["prior", "none"] = "prior"
    """prior: enqueue the priors' center, draw start-up trials from the priors. none: plain Optuna.
    A random sampler draws uniformly either way: it is the baseline the priors are measured
    against."""
    priors: PriorsConfig = Field(default_factory=PriorsConfig)
    n_trials: int = Field(ge=1)
    """Finished trials (complete or pruned) the study should have."""
    max_retries: int = Field(2, ge=0)
    """Times a trial whose worker died is re-run with the same parameters."""
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    seed: int = 0
    """Seed of the sampler and of every trial's training run."""

    @model_validator(mode="after")
    def _cross_checks(self) -> StudyConfig:
        errors = []
        every = self.eval_interval
        if every > self.tokens_per_trial:
            errors.append(
                f"eval_every_tokens must be <= tokens_per_trial, got {self.eval_every_tokens} > "
                f"{self.tokens_per_trial}"
            )
        micro = self.trainer.micro_batch_size
        batch = self.search.batch_size
        if micro is not None:
            sizes = batch.choices or ([batch.value] if batch.value is not None else [])
            bad = [b for b in sizes if not isinstance(b, int) or b % micro]
            if bad:
                errors.append(
                    f"search.batch_size: every batch size must be a multiple of "
                    f"trainer.micro_batch_size={micro}, got {bad}"
                )
        for key in ("lr", "weight_decay", "dropout", "warmup_frac", "batch_size"):
            errors += _range_errors(f"search.{key}", key, getattr(self.search, key))
        wd = self.search.weight_decay
        taus = [v for v in (wd.low, wd.high, wd.value, *(wd.choices or [])) if v is not None]
        if wd.as_ == "tau" and any(isinstance(v, (int, float)) and v <= 0 for v in taus):
            errors.append("search.weight_decay: with as: tau (the default) its values are the "
                          "AdamW timescale tau, which must be > 0 (for no weight decay write "
                          "{value: 0, as: lambda})")
        if batch.low is not None and batch.high is not None:
            if not batch_sizes_in(batch.low, batch.high, micro):
                errors.append(no_batch_sizes(batch.low, batch.high, micro))
        for dotted, param in self.search.other.items():
            problem = _check_dotted(dotted)
            if problem is None and param.prior == "auto":
                problem = ("prior: auto exists for lr, weight_decay, dropout, warmup_frac and "
                           "batch_size only: give low/high, choices or value")
            if problem:
                errors.append(f"search.other.{dotted}: {problem}")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def eval_interval(self) -> int:
        return self.eval_every_tokens or max(1, self.tokens_per_trial // 10)

    @property
    def folder(self) -> Path:
        return Path(self.study_dir or Path("runs") / self.name)

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return f"sqlite:///{(self.folder / 'study.db').resolve()}"

    def fingerprint(self) -> str:
        """Hash of what decides trial results; a resumed study must match it."""
        keep = self.model_dump(
            mode="json",
            include={"model", "data", "trainer", "tokens_per_trial", "eval_every_tokens", "search",
                     "seed", "seeding"},
        )
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


_BOUNDS = {
    "lr": (0.0, 10.0, "a learning rate in (0, 10]"),
    "weight_decay": (0.0, math.inf, "a weight decay (lambda or tau) >= 0"),
    "dropout": (0.0, 0.95, "a dropout rate in [0, 0.95]"),
    "warmup_frac": (0.0, 0.99, "a warmup fraction in [0, 0.99]"),
    "batch_size": (1, math.inf, "a whole number of sequences >= 1"),
}


def _range_errors(key: str, kind: str, p: Param) -> list[str]:
    lo, hi, allowed = _BOUNDS[kind]
    values = [v for v in (p.low, p.high, p.value) if v is not None] + list(p.choices or [])
    errors = []
    for v in values:
        if kind == "batch_size" and (not isinstance(v, (int, float)) or float(v) != int(v)):
            errors.append(f"{key}: {v!r} is not allowed, expected {allowed}")
        elif not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            errors.append(f"{key}: {v!r} is not allowed, expected {allowed}")
        elif kind == "lr" and v <= 0:
            errors.append(f"{key}: {v!r} is not allowed, expected {allowed}")
    log = p.log if p.log is not None else kind in ("lr", "weight_decay")
    if p.low is not None and log and p.low <= 0:
        errors.append(f"{key}.low: a log range must start above 0, got {p.low}")
    return errors


TARGETS = {
    "lr": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "dropout": "model.dropout",
    "warmup_frac": "optim.warmup_frac",
    "batch_size": "batch_size",
}
"""The trainer field each of the five named hyperparameters sets."""


def batch_sizes_in(low: float, high: float, micro: int | None) -> list[int]:
    """The batch sizes a range searches: the powers of two in [low, high] that micro divides."""
    return [2**k for k in range(20) if low <= 2**k <= high and 2**k % (micro or 1) == 0]


def no_batch_sizes(low: float, high: float, micro: int | None) -> str:
    """The error for a batch-size range that batch_sizes_in finds empty."""
    of_micro = f" that is a multiple of trainer.micro_batch_size={micro}" if (micro or 1) > 1 else ""
    return (f"search.batch_size: no power of two{of_micro} in [{low:g}, {high:g}], and batch sizes "
            "are searched as powers of two: widen the range, or list the sizes as choices")


def _check_dotted(dotted: str) -> str | None:
    """None if ``dotted`` names a TrainConfig field that a study may search, else the problem."""
    parts = dotted.split(".")
    node: type[BaseModel] = TrainConfig
    for i, part in enumerate(parts):
        fields = node.model_fields
        if part not in fields:
            return f"unknown trainer field {part!r}; allowed here: {sorted(fields)}"
        ann = fields[part].annotation
        if i < len(parts) - 1:
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                return f"{part!r} has no sub-fields"
            node = ann
    if parts[0] in ("data", "tokens", "seed", "provenance") or dotted in (
        "model.block_size", "model.vocab_size"
    ):
        return "this field is set by the study itself and cannot be searched"
    named = next((name for name, target in TARGETS.items() if target == dotted), None)
    if named:
        return f"this is search.{named}: set it there (a value fixes it)"
    return None


def validate_study(raw: dict[str, Any], source: str = "<study>") -> StudyConfig:
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(source, study_errors(e)) from None


def study_errors(err: ValidationError) -> list[str]:
    """One line per problem; cross-field checks that were joined by '; ' are split again."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] != "value_error":
            lines += format_errors(ValidationError.from_exception_data(err.title, [e]), StudyConfig)
            continue
        for part in msg.removeprefix("Value error, ").split("; "):
            lines.append(f"{key}: {part}" if key and not part.startswith(("search.", key)) else part)
    return lines


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file; relative paths resolve against the file's folder."""
    path = Path(path)
    raw = load_yaml(path)
    cfg = validate_study(raw, str(path))
    base = path.resolve().parent
    updates: dict[str, Any] = {"data": cfg.data.resolved(base)}
    if cfg.priors.fitted_file and not Path(cfg.priors.fitted_file).is_absolute():
        updates["priors"] = cfg.priors.model_copy(
            update={"fitted_file": str(base / cfg.priors.fitted_file)}
        )
    return cfg.model_copy(update=updates)
