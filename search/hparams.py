"""The searched hyperparameters: one table that every part of scaletune reads.

Each entry says what a key under ``search:`` in a study file means: the trainer field it sets,
its unit, the scale a range is searched on by default, the values that make sense, which prior
seeds it under ``prior: auto`` and how it is shown. The study schema (search.config), the search
space and trial configs (search.space), export, report, fit and the benchmarks take names,
bounds, scales and labels from here; none of them spells out a hyperparameter of its own.

A hyperparameter can have other *forms*: weight decay is searched as the AdamW timescale
tau = B/(lr*lambda*D) by default (``as: tau``), or as lambda itself (``as: lambda``). A form is
an entry of its own (its own Optuna parameter name, prior, bounds and label) whose value is
turned into the trainer field once the trial's other values are known (``to_target``).

Adding a hyperparameter is one ``register(HParam(...))``: the study file accepts it under
``search:``, the space searches it, trials set it, reports label it. For example beta2::

    register(HParam("beta2", target="optim.beta2", label="Adam beta2", unit="",
                    low=0.5, high=0.9999, allowed="a beta2 in [0.5, 0.9999]", default=None))

``default=None`` means a study searches it only when its file names it; the five of the
request default to ``{prior: auto}``. Bounds here are what a study may ask for; the ranges the
scaling laws suggest (heuristics.priors) are narrower and clipped on their own terms.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Literal

from scaletune.heuristics import laws

if TYPE_CHECKING:
    from scaletune.heuristics.priors import Prior, Priors
    from scaletune.trainer.config import TrainConfig


@dataclass(frozen=True)
class HParam:
    """One searched hyperparameter (or one form of one)."""

    name: str
    """Key under ``search:`` in the study file, and the Optuna parameter name."""
    target: str
    """The TrainConfig field it sets, dotted: ``optim.lr``."""
    label: str
    """How plots and tables name it."""
    unit: str
    """Unit of its values (empty for pure numbers)."""
    low: float
    """Smallest value a study may give (inclusive, unless ``open_low``)."""
    high: float
    """Largest value a study may give (inclusive)."""
    allowed: str
    """The bounds in words, for error messages: 'a learning rate in (0, 10]'."""
    open_low: bool = False
    """``low`` itself is not allowed (a learning rate of 0)."""
    log: bool = False
    """A range is searched on a log scale unless the study says ``log:``."""
    whole: bool = False
    """Only whole numbers make sense (sequences per batch)."""
    powers_of_two: bool = False
    """A range searches the powers of two inside it (batch sizes), as a categorical."""
    prior: Callable[[Priors], Prior] | None = None
    """The prior that ``prior: auto`` uses; None: ``prior: auto`` is an error for it."""
    default: Literal["auto"] | None = "auto"
    """What a study that leaves it out does: 'auto' searches it with its prior, None leaves it to
    the trainer's value."""
    fmt: str = ".3g"
    """Format of its values in tables and progress lines."""
    forms: tuple[tuple[str, str], ...] = ()
    """Other ways to search it, as (the word after ``as:``, registered form name); the first is
    the default. Empty: searched as itself only."""
    to_target: Callable[[float, TrainConfig], float] | None = None
    """For a form: the trainer value from this form's value and the trial's config with every
    other searched value already set."""
    of_run: Callable[[TrainConfig], float | None] | None = None
    """For a form: its value in a run (recorded beside the trial when another form is
    searched)."""

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"HParam {self.name!r}: low must be < high, got {self.low=}, "
                             f"{self.high=}")
        if self.log and self.low < 0:
            raise ValueError(f"HParam {self.name!r}: a log scale needs low >= 0, got {self.low=}")

    @property
    def is_form(self) -> bool:
        return self.to_target is not None

    def accepts(self, value: object) -> bool:
        """True when ``value`` is a number within the bounds (and whole where it must be)."""
        if not is_number(value):
            return False
        if not math.isfinite(value):  # nan; and inf, which no range can be sampled up to
            return False
        if self.whole and not float(value).is_integer():
            return False
        if self.open_low and value <= self.low:
            return False
        return self.low <= value <= self.high

    def show(self, value: object) -> str:
        """``value`` as tables and progress lines print it."""
        if isinstance(value, float):
            return format(value, self.fmt)
        return str(value)


def is_number(value: object) -> bool:
    """True for an int or float (a bool is not a number here): a value or choice that stands for
    a quantity, as priors, snapping and plots need."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lambda_from_tau(tau: float, run: TrainConfig) -> float:
    # B and D both in tokens.
    return laws.lambda_from_tau(tau, run.tokens_per_step, run.optim.lr, run.tokens)


def _tau_of(run: TrainConfig) -> float | None:
    if run.optim.weight_decay <= 0:
        return None
    return laws.tau_from_lambda(run.tokens_per_step, run.optim.lr, run.optim.weight_decay,
                                run.tokens)


HPARAMS: dict[str, HParam] = {}
"""Every registered hyperparameter and form by name, in the order studies search them."""


def register(hp: HParam) -> HParam:
    """Add ``hp`` to the table. Its target must be a TrainConfig field; its name and its forms
    must not clash with an entry already there."""
    if hp.name in HPARAMS:
        raise ValueError(f"a hyperparameter named {hp.name!r} is already registered")
    if hp.name in ("other",) or "." in hp.name:
        raise ValueError(f"{hp.name!r} cannot name a hyperparameter: 'other' and dotted names "
                         "belong to search.other")
    if not hp.name.isidentifier():  # "" registered, then named in the next entry's clash
        raise ValueError(f"{hp.name!r} cannot name a hyperparameter: a name is a key of a study "
                         "file's search section, letters, digits and _ (beta2, my_beta1)")
    problem = field_problem(hp.target)
    if problem:
        raise ValueError(f"HParam {hp.name!r}: target {hp.target!r}: {problem}")
    # An entry is searched over numbers in [low, high]: on a field of names each trial drew a
    # number and failed; on a field of whole numbers (n_layer), 1.55.
    numbers = field_numbers(hp.target)
    if numbers is None:
        raise ValueError(f"HParam {hp.name!r}: target {hp.target!r} holds no numbers, and an "
                         "entry is searched over numbers in [low, high]: search the field under "
                         "search.other with choices")
    if numbers is int and not hp.whole:
        raise ValueError(f"HParam {hp.name!r}: target {hp.target!r} holds whole numbers: give "
                         "whole=True")
    # Two entries that set one field: both drawn, one trained, the other recorded as if it had.
    forms = {form for _, form in hp.forms}
    if clash := [h.name for h in HPARAMS.values() if h.target == hp.target and h.name not in forms]:
        raise ValueError(f"HParam {hp.name!r}: target {hp.target!r} is already set by "
                         f"{', '.join(map(repr, clash))}")
    if hp.default == "auto" and hp.prior is None:  # every study would search it with no prior
        raise ValueError(f"HParam {hp.name!r}: default 'auto' searches it with its prior, and it "
                         "has none: give prior=..., or default=None")
    for _, form in hp.forms:
        if form != hp.name and form not in HPARAMS:
            raise ValueError(f"HParam {hp.name!r}: form {form!r} is not registered; register "
                             "the form first")
    HPARAMS[hp.name] = hp
    return hp


def field_problem(dotted: str) -> str | None:
    """None if ``dotted`` names a TrainConfig field that a trial may set, else the problem."""
    from pydantic import BaseModel

    from scaletune.trainer.config import TrainConfig, closest

    parts = dotted.split(".")
    if parts[0] == "trainer" and len(parts) > 1:  # as the study file nests them, under trainer:
        return (f"the keys under search.other are trainer fields as they are named in a training "
                f"file, without 'trainer.': write {'.'.join(parts[1:])!r}")
    node: type[BaseModel] = TrainConfig
    for i, part in enumerate(parts):
        fields = node.model_fields
        if part not in fields:
            # Those search.other may set: the study sets data, tokens, seed and a run's own
            # fields, and the registered hyperparameters (lr, batch_size) are searched by name.
            own = set(targets().values())
            allowed = [f for f in sorted(fields) if (dotted_f := ".".join([*parts[:i], f]))
                       not in own and not _set_by_the_study(dotted_f)]
            near = closest(part, sorted(fields))
            named = ".".join([*parts[:i], near]) if near else ""
            guess = ("" if not near else f" (did you mean {named!r}?)" if near in allowed else
                     f" ({named!r}, the field nearest to it, is not one search.other sets)")
            return f"unknown trainer field {part!r}{guess}; allowed here: {allowed}"
        ann = fields[part].annotation
        section = isinstance(ann, type) and issubclass(ann, BaseModel)
        if i < len(parts) - 1:
            if not section:
                return f"{part!r} has no sub-fields"
            node = ann
        elif section:  # a whole section replaced the trial's lr, warmup and the file's settings
            own = set(targets().values())  # the registered hyperparameters' (lr...): not these
            fields = [f"{dotted}.{f}" for f in ann.model_fields if f"{dotted}.{f}" not in own
                      and not _set_by_the_study(f"{dotted}.{f}")]
            if not fields:  # data: every field of it is the study's
                return (f"{part!r} is a section the study sets for every trial: none of its "
                        "fields can be searched")
            return (f"{part!r} is a section, not a field: search its fields one by one, such as "
                    f"{', '.join(fields[:4])}")
    if dotted in RUN_FIELDS:  # a trial's own: a shared out_dir failed every trial after the first
        return (f"this field is set for each trial by the study ({RUN_FIELDS[dotted]}) and "
                "cannot be searched")
    if dotted in STUDY_WIDE:
        return STUDY_WIDE[dotted]
    if _set_by_the_study(dotted):
        return "this field is set by the study itself and cannot be searched"
    return None


STUDY_WIDE = {
    "model.block_size": "every trial trains and is judged on the same windows of the data, cut "
                        "at model.block_size: set it under model: (a study per block size)",
    "model.vocab_size": "the embedding's rows follow the tokenizer (data.tokenizer), the same "
                        "for every trial: set a padded size under model:",
}
"""Why a model field that the study's data fixes for all its trials cannot be searched."""


def _set_by_the_study(dotted: str) -> bool:
    """Whether the study sets the trainer field ``dotted`` for every trial (not searchable)."""
    return (dotted.split(".")[0] in ("data", "tokens", "seed", "provenance")
            or dotted in ("model.block_size", "model.vocab_size") or dotted in RUN_FIELDS)


def field_numbers(dotted: str) -> type | None:
    """What numbers the TrainConfig field ``dotted`` (one field_problem accepts) holds: ``int``
    (n_layer, and ``int | None``), ``float`` (``float``, ``int | float``, each or None), or None
    where it holds none (true or false, text, a choice of names)."""
    from scaletune.trainer.config import TrainConfig

    parts = dotted.split(".")
    model = TrainConfig
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    ann = model.model_fields[parts[-1]].annotation

    def bare(t: typing.Any) -> typing.Any:  # Whole (Annotated) alone or in Whole | None
        return typing.get_args(t)[0] if typing.get_origin(t) is typing.Annotated else t

    ann = bare(ann)
    kinds = {bare(t) for t in (typing.get_args(ann) or (ann,))} - {type(None)}
    if kinds == {int}:
        return int
    return float if kinds and kinds <= {int, float} else None


RUN_FIELDS = {
    "out_dir": "trials keep no run folder; the storage holds their results",
    "num_threads": "from workers.cpus_per_trial",
    "eval_every_tokens": "the study's eval_every_tokens, on which pruning compares trials",
    "checkpoint_every_tokens": "trials keep no checkpoint",
    "tensorboard": "tracking.tensorboard",
    "progress": "the driver shows the study's progress",
    "parallel": "a trial is one process",
    "device": "trainer.device, with workers.gpus_per_trial",
}
"""Training-config fields a study sets for each trial itself, with what sets them."""


def searchable() -> Iterator[HParam]:
    """The entries a study file names under ``search:`` (forms are reached through ``as:``)."""
    return (hp for hp in HPARAMS.values() if not hp.is_form)


def get(name: str) -> HParam | None:
    return HPARAMS.get(name)


def form_for(hp: HParam, as_: str | None) -> HParam:
    """The entry that is searched when ``hp`` is given with ``as: as_`` (None: the default)."""
    if not hp.forms:
        return hp
    word = as_ if as_ is not None else hp.forms[0][0]
    return HPARAMS[dict(hp.forms)[word]]


def owner(form: HParam) -> HParam:
    """The entry that ``form`` is a form of (weight_decay for tau); an entry owns itself."""
    return next((hp for hp in searchable() if form.name in (n for _, n in hp.forms)), form)


def label(name: str) -> str:
    """How plots name parameter ``name``: the registered label, else the name itself."""
    hp = HPARAMS.get(name)
    return hp.label if hp else name


def targets() -> dict[str, str]:
    """The trainer field of each entry that a study names under ``search:``."""
    return {hp.name: hp.target for hp in searchable()}


# The five hyperparameters of every study, in the order they are searched (the order fixes the
# sampler's draws, so a study resumed on a newer version draws the same trials).
register(HParam(
    "lr", target="optim.lr", label="peak learning rate", unit="",
    low=0.0, high=10.0, open_low=True, allowed="a learning rate in (0, 10]", log=True,
    prior=attrgetter("lr"),
))
register(HParam(
    "tau", target="optim.weight_decay", label="AdamW timescale tau = B/(lr*lambda*D)", unit="",
    low=0.0, high=math.inf, open_low=True, allowed="an AdamW timescale tau > 0", log=True,
    prior=attrgetter("tau"), to_target=_lambda_from_tau, of_run=_tau_of,
))
register(HParam(
    "weight_decay", target="optim.weight_decay", label="AdamW weight decay lambda", unit="",
    low=0.0, high=math.inf, allowed="a weight decay (lambda or tau) >= 0", log=True,
    prior=attrgetter("weight_decay"), forms=(("tau", "tau"), ("lambda", "weight_decay")),
))
register(HParam(
    "dropout", target="model.dropout", label="dropout rate", unit="",
    low=0.0, high=0.95, allowed="a dropout rate in [0, 0.95]", prior=attrgetter("dropout"),
))
register(HParam(
    "warmup_frac", target="optim.warmup_frac", label="warmup (fraction of steps)", unit="",
    low=0.0, high=0.99, allowed="a warmup fraction in [0, 0.99]",
    prior=attrgetter("warmup_frac"),
))
register(HParam(
    "batch_size", target="batch_size", label="batch size in sequences", unit="sequences",
    low=1, high=math.inf, allowed="a whole number of sequences >= 1", whole=True,
    powers_of_two=True, prior=attrgetter("batch_size"), fmt="g",
))
BUILT_IN = frozenset(HPARAMS)
"""The names registered above, the five of every study and their forms; others are a user's."""
