"""Configuration of one training run.

One schema, validated by pydantic (unknown keys are errors that name the key). The field
docstrings double as help text. ``TrainConfig`` is what ``scaletune train FILE.yaml`` reads and
what every trial of a study builds.
"""

from __future__ import annotations

import decimal
import difflib
import glob
import importlib.util
import math
import os
import re
import reprlib
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from scaletune.trainer.errors import ConfigError


def parse_number(value: Any) -> Any:
    """A number written as text, the one parser of every config file and command line:
    '2e6', '2_000_000' and '2000000' give 2000000 (an int when whole and written without a
    decimal point), '0.5' gives 0.5. PyYAML reads 2e6 as a string, so YAML needs this too.
    Anything else is returned unchanged, for the schema to reject with its own message."""
    if isinstance(value, str):
        try:
            as_float = float(value.replace("_", ""))
        except ValueError:
            return value
        is_int = as_float.is_integer() and "." not in value
        return int(as_float) if is_int else as_float
    return value


COUNT_SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
"""The suffixes of a count of tokens, either case: 200k, 20M, 2B (or 2G, as in GB), 1.5T."""


def parse_count(value: Any) -> Any:
    """``parse_number``, and a count written with a suffix of COUNT_SUFFIXES: '20M' and '2.5k'
    give 20000000 and 2500, exactly (a count that is not whole, '1.0005k', stays a float, for
    the schema to reject as one)."""
    if isinstance(value, str) and value.strip()[-1:].lower() in COUNT_SUFFIXES:
        text = value.strip().replace("_", "")
        try:
            count = decimal.Decimal(text[:-1]) * COUNT_SUFFIXES[text[-1].lower()]
        except decimal.InvalidOperation:
            return value
        if not count.is_finite():
            return value
        return int(count) if count == count.to_integral_value() else float(count)
    return parse_number(value)


def whole_count(value: Any) -> int | None:
    """A count of at least 1 given as a number or as text (2e9, 2_000_000_000, 2B, 3e6 as a
    float): the int, or None when it is none (a fraction, below 1, not a number)."""
    value = parse_count(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) and value >= 1 and float(value).is_integer() else None


def not_a_bool(value: Any) -> Any:
    """A YAML true or false where a field holds numbers is an error: pydantic's lax mode read it
    as 1 or 0 (``n_layer: true`` trained one layer, ``grad_clip: true`` clipped at 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


def holds_numbers_only(annotation: Any) -> bool:
    """Whether a field of this type holds numbers and nothing else (int, float, either or None):
    where ``not_a_bool`` applies."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    kinds = set(get_args(annotation) or (annotation,)) - {type(None)}
    return bool(kinds) and kinds <= {int, float}


Tokens = Annotated[int, BeforeValidator(parse_count), BeforeValidator(not_a_bool), Field(ge=1)]
"""A count of tokens >= 1, written as 2e6, 2_000_000, 2000000 or 2M."""
TokensOrZero = Annotated[int, BeforeValidator(parse_count), BeforeValidator(not_a_bool),
                         Field(ge=0)]
Number = Annotated[int | float, BeforeValidator(parse_number), BeforeValidator(not_a_bool)]
Whole = Annotated[int, BeforeValidator(parse_number), BeforeValidator(not_a_bool)]
"""A whole number, written as 1e3, 1_000 or 1000 (n_trials, n_layer), as a count of tokens is."""


_NOT_A_BOOL = BeforeValidator(not_a_bool)


class NumbersNotBools(BaseModel):
    """A schema whose fields of numbers refuse a YAML true or false (``not_a_bool``), each under
    its own key: a check of the whole section stopped at the first, and hid the section's other
    errors behind it."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        added = False
        for field in cls.model_fields.values():
            if holds_numbers_only(field.annotation) and _NOT_A_BOOL not in field.metadata:
                field.metadata.append(_NOT_A_BOOL)  # the last one added runs first
                added = True
        if added:  # a model of names not defined yet is built once they are, with the checks
            cls.model_rebuild(force=True, raise_errors=False)


class _Strict(NumbersNotBools):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class _SomeFieldsRead(_Strict):
    """A section some of whose fields are read only under some values of another (an
    optimizer's, a schedule's, a position encoding's): ``unread_note`` names those given where
    they are not read, ``unread_defaults`` those a written config may leave out."""

    READ_ONLY_BY: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}
    """field -> (the key that decides, the values of it that read the field)."""

    def unread_note(self, prefix: str, searched: Sequence[str] = ()) -> str | None:
        """The note for fields given that this section does not read as it is set (``muon_lr``
        under adamw, ``decay_frac`` under cosine), else None. ``prefix``: the section as the
        file names it; ``searched``: the keys (name, schedule) a study searches, each of whose
        values may read them."""
        unread = [f"{prefix}.{field} is read only when {prefix}.{key} is {' or '.join(readers)}"
                  f" (here {getattr(self, key)})"
                  for field, key, readers in self.unread(searched)
                  if field in self.model_fields_set
                  # At its default, which an earlier `export` wrote of every field: no note
                  # (a final.yaml of it noted four such fields at every train and resume).
                  and getattr(self, field) != type(self).model_fields[field].default]
        return f"{'; '.join(unread)}: not used" if unread else None

    def unread_defaults(self) -> list[str]:
        """The fields that this section does not read as it is set and that hold their
        defaults: what a written config may leave out without changing what it loads as."""
        return [field for field, _, _ in self.unread()
                if getattr(self, field) == type(self).model_fields[field].default]

    def unread(self, searched: Sequence[str] = ()) -> list[tuple[str, str, tuple[str, ...]]]:
        """(field, the key that decides whether it is read, the values that read it) of each
        field this section does not read as it is set, ``searched`` keys aside."""
        return [(field, key, readers) for field, (key, readers) in self.READ_ONLY_BY.items()
                if key not in searched and getattr(self, key) not in readers]


DropoutSite = Literal["embd", "attn", "resid", "mlp"]
DROPOUT_SITES: tuple[str, ...] = get_args(DropoutSite)
"""The model's dropout sites; each reads ``model.dropout`` where its own rate is unset."""


class ModelConfig(_SomeFieldsRead):
    """A GPT decoder (nanoGPT layout) with the switches the seeds discuss."""

    READ_ONLY_BY = {"rope_theta": ("positions", ("rope",))}

    n_layer: Whole = Field(6, ge=1)
    """Number of transformer blocks."""
    n_head: Whole = Field(8, ge=1)
    """Attention heads per block; must divide n_embd."""
    n_embd: Whole = Field(256, ge=8)
    """Width of the residual stream (d_model)."""
    block_size: Whole = Field(128, ge=2)
    """Context length in tokens (sequence length of every training window)."""
    vocab_size: Whole | None = Field(None, ge=2)
    """Vocabulary size; None takes it from the tokenizer, rounded up to a multiple of 64."""
    positions: Literal["learned", "rope"] = "learned"
    """Position information: learned absolute embeddings (GPT-2) or rotary embeddings (RoPE)."""
    rope_theta: float = Field(10000.0, gt=0)
    """RoPE base frequency (used when positions == 'rope')."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """Normalization layer of every block and of the final norm."""
    qkv_bias: bool = False
    """Bias on the fused Q/K/V projection."""
    bias: bool = False
    """Bias in the other linear layers and in LayerNorm."""
    tie_weights: bool = True
    """Share the token embedding matrix with the output head."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Default rate for the four dropout sites below (0 for single-epoch pretraining). On CPU
    every rate is rounded to a multiple of 1/65,536 (trainer.kernels.dropout)."""
    embd_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout on the sum of token and position embeddings; None means `dropout`."""
    attn_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout on the attention probabilities; None means `dropout`."""
    resid_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout on each residual branch output before the add; None means `dropout`."""
    mlp_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout on the MLP hidden activations; None means `dropout`."""
    init_std: float = Field(0.02, gt=0)
    """Std of the normal init (GPT-2); residual projections get init_std / sqrt(2 * n_layer)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head must divide n_embd, got n_embd={self.n_embd}, n_head={self.n_head}")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got head size {self.n_embd // self.n_head}")
        return self

    def rate(self, site: DropoutSite) -> float:
        """The dropout rate at one of the four sites."""
        value = getattr(self, f"{site}_dropout")
        return self.dropout if value is None else value


class OptimConfig(_SomeFieldsRead):
    """Optimizer, its parameter-group policy, and the learning-rate schedule."""

    name: Literal["adamw", "sgd", "muon"] = "adamw"
    """adamw (decoupled decay), sgd (momentum), or muon (Muon on 2-D hidden matrices, AdamW on the rest)."""
    lr: float = Field(3e-4, gt=0)
    """Peak learning rate (reached at the end of warmup)."""
    weight_decay: float = Field(0.1, ge=0)
    """Weight decay lambda: decoupled under adamw and muon (PyTorch AdamW convention: each step
    subtracts lr*lambda*theta); under sgd, torch's L2 penalty (lambda*theta added to the gradient
    before momentum)."""
    beta1: float = Field(0.9, ge=0, lt=1)
    """AdamW beta1; also the SGD momentum."""
    beta2: float = Field(0.95, ge=0, lt=1)
    """AdamW beta2."""
    eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""
    nesterov: bool = False
    """Nesterov momentum for sgd (needs beta1, the momentum, above 0)."""
    muon_lr: float = Field(0.02, gt=0)
    """Learning rate of the Muon group (2-D hidden matrices) when name == 'muon'."""
    muon_momentum: float = Field(0.95, ge=0, lt=1)
    """Muon momentum."""
    qkv_lr_mult: float = Field(1.0, gt=0)
    """Learning-rate multiplier for the attention Q/K/V projection (seed 003 uses 2.0)."""
    decay_embeddings: bool = False
    """Apply weight decay to the embeddings too (biases and norm gains never decay)."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value; None disables clipping."""

    @field_validator("grad_clip", mode="before")
    @classmethod
    def _clip_above_zero(cls, value: Any) -> Any:
        number = parse_number(value)
        if isinstance(number, (int, float)) and not isinstance(number, bool) and number <= 0:
            raise ValueError(f"must be > 0 (got {value!r}); null turns clipping off")
        return value
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing of the training cross-entropy (validation loss is always plain)."""
    schedule: Literal["cosine", "linear", "wsd", "constant"] = "cosine"
    """After warmup: cosine to min_lr_ratio*lr, linear to zero, warmup-stable-decay, or constant."""
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    """Linear warmup length as a fraction of all optimizer steps."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Final LR of the cosine schedule as a fraction of the peak."""
    decay_frac: float = Field(0.2, gt=0, le=1)
    """Fraction of steps spent in the final linear decay to zero of the wsd schedule (two steps
    at least)."""

    READ_ONLY_BY = {
        "muon_lr": ("name", ("muon",)), "muon_momentum": ("name", ("muon",)),
        "nesterov": ("name", ("sgd",)), "beta2": ("name", ("adamw", "muon")),
        "eps": ("name", ("adamw", "muon")), "min_lr_ratio": ("schedule", ("cosine",)),
        "decay_frac": ("schedule", ("wsd",))}

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimConfig:
        if self.name == "sgd" and self.nesterov and self.beta1 == 0:
            raise ValueError("optim.nesterov needs momentum: set optim.beta1 (the SGD momentum) "
                             "above 0, or optim.nesterov to false")
        return self


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's CPU set; on macOS and
    Windows, which cannot say, the machine's): what the Ray a study starts here shares out
    among its trials (counted by the machine's cores, two trials trained at once on the one core
    a ``taskset -c 0`` left them), and the threads a run trains and tokenizes with
    (``os.sched_getaffinity`` alone ended every trial on a Mac)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


LOCAL_BUILDERS = ("text", "json", "csv", "parquet", "arrow")
"""`datasets` builders that read local files named by data_files."""
FILE_BUILDERS = {"txt": "text", "json": "json", "jsonl": "json", "csv": "csv", "tsv": "csv",
                 "parquet": "parquet", "arrow": "arrow"}
"""The builder of LOCAL_BUILDERS that reads files of each extension."""

COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
"""The compressions of a data file that `datasets` reads through (by the file's suffix), with
the standard module that reads each, for validate's look at a file's first lines."""


def uncompressed_name(path: str) -> str:
    """``path`` without a suffix of COMPRESSED: c.jsonl.gz -> c.jsonl."""
    root, suffix = os.path.splitext(path)
    return root if suffix.lower() in COMPRESSED else path


def file_builder(name: str) -> str | None:
    """The local builder that reads a file of this name (c.jsonl.gz: json), else None."""
    return FILE_BUILDERS.get(os.path.splitext(uncompressed_name(name))[1].lower().lstrip("."))


def is_glob(pattern: str) -> bool:
    """Whether a local path is read as a glob: it has glob characters and names no file as
    written (a file named shake[v2].txt is that file, not the files shakev.txt and shake2.txt)."""
    return glob.has_magic(pattern) and not os.path.isfile(pattern)


def text_files(pattern: str, suffix: str = "txt") -> list[str]:
    """The files a local path names: a glob's matches (sorted), or the one file. Raises
    ValueError saying why there are none: no match, a folder (with a glob of files ending in
    ``suffix`` as the advice), no such file."""
    if is_glob(pattern):
        matches = glob.glob(pattern, recursive=True)
        paths = sorted(p for p in matches if os.path.isfile(p))  # `**` matches folders too
        if not paths:
            raise ValueError(f"no file matches {pattern!r}"
                             + (" (only folders do)" if matches else ""))
        return paths
    if os.path.isdir(pattern):
        raise ValueError(f"{pattern!r} is a folder; give a file or a glob such as "
                         f"{pattern}/*.{suffix}")
    if not os.path.exists(pattern):
        raise ValueError(f"file not found: {pattern!r}")
    return [pattern]


TOKENIZERS_ALLOWED = ("'byte', a tiktoken encoding name such as 'gpt2', or the path of a "
                      "tokenizer.json file of the Hugging Face tokenizers library")
"""What data.tokenizer takes, as its errors say it."""


def is_tokenizer_file(tokenizer: str) -> bool:
    """Whether data.tokenizer names a file rather than 'byte' or a tiktoken encoding: a value
    ending in .json or holding a path separator (no encoding name does either)."""
    return tokenizer.lower().endswith(".json") or "/" in tokenizer or os.sep in tokenizer


def tiktoken_name_error(name: str) -> str | None:
    """Why data.tokenizer ``name`` (not 'byte', not a file) names no tiktoken encoding, or None.
    tiktoken lists its encodings without their files, so this needs no network."""
    import tiktoken

    known = tiktoken.list_encoding_names()
    if name in known:
        return None
    # A folder or file of that name, written without ./ (tokenizer: tok), is read as a name.
    path = (f"; {name!r} is here as a {'folder' if os.path.isdir(name) else 'file'}: a tokenizer "
            f"file is given by a path with a / or ending in .json, such as "
            f"./{name}{'/tokenizer.json' if os.path.isdir(name) else ''}"
            if os.path.exists(name) else "")
    return (f"data.tokenizer: unknown tokenizer {name!r}: it takes {TOKENIZERS_ALLOWED} "
            f"(tiktoken's encodings: {', '.join(known)}){path}")


def tokenizer_file_error(path: str) -> str | None:
    """Why data.tokenizer's file cannot be opened (missing, a folder), or None; nothing is read."""
    if os.path.isdir(path):
        return f"data.tokenizer: {path!r} is a folder; give the tokenizer.json file in it"
    if not os.path.isfile(path):
        return f"data.tokenizer: file not found: {path!r}"
    return None


class DataConfig(_Strict):
    """Where the text comes from and how it becomes tokens."""

    source: Literal["builtin", "text", "hf"] = "builtin"
    """builtin: real text shipped with Python (offline); text: local text file(s); hf: a `datasets` dataset."""
    builtin: Literal["pydoc_topics", "stdlib"] = "pydoc_topics"
    """Which built-in corpus (source == 'builtin'): the prose of Python's docs, or the stdlib's sources."""
    path: str | None = None
    """A text file or a glob of them (source == 'text'); relative paths resolve against the config file."""
    dataset: str | None = None
    """Hub id, a `datasets` builder name such as 'text'/'json' with data_files, or a local folder:
    a dataset saved with `save_to_disk`, or data files `datasets` reads (source == 'hf'). A folder
    is taken from the config file's folder when it is there (or written ./name, ../name)."""
    data_files: str | list[str] | None = None
    """Files for the dataset (source == 'hf'): local files for the builders text/json/csv/parquet/
    arrow (relative paths resolve against the config file), or files in a hub dataset's repository."""

    @field_validator("data_files", mode="before")
    @classmethod
    def _files_not_by_split(cls, value: Any) -> Any:
        # `datasets` takes {train: ..., validation: ...}; here it met "expected text or a list".
        if isinstance(value, dict):
            raise ValueError(
                f"a mapping of splits ({', '.join(map(str, value))}) is what `datasets` takes; "
                "here data_files names the training files (a file, a glob or a list) and "
                "data.val_path the validation files, if they are given apart")
        return value
    name: str | None = None
    """Dataset configuration name (source == 'hf')."""
    split: str = "train"
    """Dataset split (source == 'hf')."""
    text_column: str = "text"
    """Column holding the text (source == 'hf')."""
    max_documents: Whole | None = Field(None, ge=1)
    """Use only the first N documents (source == 'hf')."""
    tokenizer: str = "byte"
    """'byte' (vocab 256, offline), a tiktoken encoding name such as 'gpt2', or the path of a
    tokenizer.json of the Hugging Face tokenizers library (offline; a value ending in .json or
    holding a / is a path, relative to the config file). With a file, documents are joined by its
    end-of-text token (<|endoftext|>, <|end_of_text|>, </s> or <eos>, the first it has), else by
    the tokens of a blank line, as for 'byte'."""
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    """Fraction of the token stream held out (its tail) for validation, where the validation text
    is not given apart (val_path, val_split)."""
    val_path: str | None = None
    """Validation data of its own, held out whole: a file or a glob, read as ``path`` is (source
    'text') or as ``data_files`` are (source 'hf' with a local builder: dataset json, csv,
    parquet, text or arrow), relative to the config file. The training data is then trained on
    whole (val_fraction is not used)."""
    val_split: str | None = None
    """A split of the dataset held out whole for validation (source 'hf', a hub dataset or a
    saved one), such as 'validation'; ``split`` is then trained on whole (val_fraction is not
    used). Read whole: max_documents is the training split's."""
    train_tokens: Whole | None = Field(None, ge=1)
    """Train on the first N tokens of the training split only (the validation tail stays the
    same): a smaller corpus over the same text, as a ladder's rungs that hold the target's epochs
    (``hold_epochs``). None: the whole split."""
    val_windows: Whole = Field(64, ge=1)
    """Number of fixed held-out windows every evaluation averages over (same for every run)."""
    cache_dir: str | None = None
    """Where tokenized memmaps are cached (a relative path is taken from the config file's folder);
    None means $SCALETUNE_CACHE or ~/.cache/scaletune."""
    _validation_key: str | None = PrivateAttr(None)
    """Where this is the validation part of another config (``trainer.data.validation_part``):
    the key that gives it, data.val_path or data.val_split, which its reader's errors name in
    place of data.path, data.data_files or data.split."""

    def resolved(self, base: Path) -> DataConfig:
        """This config with its relative local paths made absolute against ``base``: ``path``, a
        tokenizer file, ``data_files`` of the local-file builders (a hub dataset's data_files
        name files in its repository, and URLs are left as they are), ``cache_dir``, and a
        ``dataset`` that is a folder there or is written as a path (./name, ../name: a hub id
        such as org/name is left as it is)."""

        def absolute(p: str) -> str:
            if "://" in p:
                return p
            p = os.path.expanduser(p)
            if Path(p).is_absolute():
                return p
            if glob.has_magic(p) and not (base / p).is_file():
                # A glob of the file's folder: the folder's own name (runs [v2]) is not one.
                return os.path.join(glob.escape(str(base)), p)
            return str(base / p)

        update: dict[str, Any] = {}
        if self.path:
            update["path"] = absolute(self.path)
        if self.val_path:
            update["val_path"] = absolute(self.val_path)
        if is_tokenizer_file(self.tokenizer):
            update["tokenizer"] = absolute(self.tokenizer)
        if self.dataset in LOCAL_BUILDERS and self.data_files:
            files = self.data_files
            update["data_files"] = (absolute(files) if isinstance(files, str)
                                    else [absolute(f) for f in files])
        elif self.dataset and (self.dataset.startswith(("./", "../", "~"))
                               or (base / self.dataset).is_dir()):
            update["dataset"] = absolute(self.dataset)
        if self.cache_dir:
            update["cache_dir"] = absolute(self.cache_dir)
        return self.model_copy(update=update)

    def held_out_note(self) -> str | None:
        """A training run's note of validation files among its training files (a study refuses
        them, ``file_errors``): its validation loss is measured on text it trains on."""
        overlap = self._among_training(self._named_files()[1])
        return (f"{overlap}: the run's validation loss is measured on text it trains on, and "
                "says little of how it does on text it has not seen; give training files that "
                "leave the validation files out") if overlap else None

    @staticmethod
    def _among_training(files: dict[str, set[str]]) -> str | None:
        """``data.val_path: FILE is also among the training files (KEY matches it)``, where the
        validation files in ``files`` (the real paths of each key's, ``_named_files``) are."""
        files = dict(files)
        held = files.pop("data.val_path", set())
        if both := sorted(held & set().union(*files.values())):
            more = f" (and {len(both) - 1} more)" if len(both) > 1 else ""
            return (f"data.val_path: {both[0]}{more} is also among the training files "
                    f"({', '.join(files)} matches it)")
        return None

    def missing_files(self) -> list[str]:
        """The local files this config names that are not there (what a run refuses as it sets
        up), one error each: ``path`` of a text source, ``data_files`` of a local-file builder,
        ``val_path``. Nothing is read."""
        return self._named_files()[0]

    def _named_files(self) -> tuple[list[str], dict[str, set[str]]]:
        """The errors of the local files this config names that are not there, and the real
        paths of the files each key names."""
        if self.source == "text" and self.path:
            keyed = [("data.path", self.path)] + ([("data.val_path", self.val_path)]
                                                  if self.val_path else [])
        elif self.source == "hf" and self.dataset in LOCAL_BUILDERS and self.data_files:
            files = [self.data_files] if isinstance(self.data_files, str) else self.data_files
            keyed = [("data.data_files", f) for f in files if "://" not in f]
            keyed += [("data.val_path", self.val_path)] if self.val_path else []
        else:
            keyed = []
        errors = []
        files: dict[str, set[str]] = {}  # the real paths of each key's files
        # The files a folder's advice names: the builder's (a json folder's are not *.txt).
        suffix = next((s for s, b in FILE_BUILDERS.items() if b == self.dataset), "txt") \
            if self.source == "hf" else "txt"
        for key, pattern in keyed:
            try:
                files.setdefault(key, set()).update(map(os.path.realpath,
                                                        text_files(pattern, suffix)))
            except ValueError as e:
                errors.append(f"{key}: {e}")
        return errors, files

    def file_errors(self, study: bool = True) -> list[str]:
        """The local files this config names that are not there, one error each (``path`` of a
        text source, ``data_files`` of a local-file builder, ``val_path``), validation files
        among the training files (of a ``study``'s trials, whose validation loss ranks them; a
        training run's config notes it, ``held_out_note``), and a dataset folder that is not
        where it is looked for. Nothing is read (no tokenizing, no download), so a file is
        checked before any run needs it."""
        errors, files = self._named_files()
        if study and (overlap := self._among_training(files)):
            errors.append(f"{overlap}, so the val loss that ranks the trials would be measured on "
                          "text they trained on: give training files that leave the validation "
                          "files out")
        if (self.source == "hf" and self.dataset and Path(self.dataset).is_absolute()
                and not os.path.exists(self.dataset)):  # a path, not a hub id (resolved)
            errors.append(f"data.dataset: no folder {self.dataset!r} (a local dataset: a folder "
                          "saved with save_to_disk, or of data files)")
        elif (self.source == "hf" and self.dataset and self.dataset not in LOCAL_BUILDERS
              and not Path(self.dataset).is_absolute() and os.path.isdir(self.dataset)):
            # Not beside the config file (resolved made that one absolute), but a folder of the
            # current one, which `datasets` would read: the data would follow the folder a
            # command runs in.
            errors.append(f"data.dataset: {self.dataset!r} is a folder of the folder this command "
                          f"runs in ({os.getcwd()}), not of the config file's, where a dataset "
                          "folder is looked for: give its path from the config file's folder, or "
                          "an absolute one (a hub dataset of that name: run from another folder)")
        if is_tokenizer_file(self.tokenizer):
            if problem := tokenizer_file_error(self.tokenizer):
                errors.append(problem)
        elif self.tokenizer != "byte" and (problem := tiktoken_name_error(self.tokenizer)):
            errors.append(problem)
        return errors

    SOURCE_FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "builtin": ("builtin",), "text": ("path", "val_path"),
        "hf": ("dataset", "data_files", "name", "split", "text_column", "max_documents",
               "val_split", "val_path")}
    """The fields that only one source reads."""

    def unread_given(self) -> list[str]:
        """The fields that this config's source does not read and that a file set to other than
        their defaults: ignored (``trainer.data.unread_note`` says so)."""
        return self._unread(at_default=False)

    @property
    def validation_apart(self) -> bool:
        """Whether the validation data is given apart from the training data (val_path of a
        text or local-builder source, val_split of a dataset), which makes val_fraction unread."""
        return bool((self.source in ("text", "hf") and self.val_path)
                    or (self.source == "hf" and self.val_split))

    def unread_defaults(self) -> list[str]:
        """The fields that this config does not read and that hold their defaults: what a
        written config may leave out without changing what it loads as (those of other sources,
        and val_fraction where validation is given apart)."""
        apart = (self.validation_apart
                 and self.val_fraction == type(self).model_fields["val_fraction"].default)
        return self._unread(at_default=True) + (["val_fraction"] if apart else [])

    def _unread(self, at_default: bool) -> list[str]:
        mine = self.SOURCE_FIELDS[self.source]
        return list(dict.fromkeys(
            name for source, names in self.SOURCE_FIELDS.items() if source != self.source
            for name in names if name not in mine
            and (getattr(self, name) == type(self).model_fields[name].default) == at_default))

    @model_validator(mode="before")
    @classmethod
    def _source_of_fields(cls, raw: Any) -> Any:
        """A config that names no source reads the one its fields name: ``path`` alone is a
        text file (where the builtin text, the default source, would ignore it and train on
        Python's documentation), ``dataset`` alone a `datasets` dataset."""
        if not isinstance(raw, dict) or "source" in raw:
            return raw
        text, hf = cls.SOURCE_FIELDS["text"], cls.SOURCE_FIELDS["hf"]
        own = {"text": set(text) - set(hf), "hf": set(hf) - set(text)}  # val_path is both's
        named = [source for source in ("text", "hf") if any(raw.get(f) is not None
                                                            for f in own[source])]
        if len(named) > 1:
            raise ValueError("data.source: give text (data.path) or hf (data.dataset): this data "
                             "names both, and no source")
        return {**raw, "source": named[0]} if named else raw

    def _other_kind(self) -> str | None:
        """The error of a file in data_files or val_path whose name says it is read by another
        builder than ``dataset`` (a .csv file under dataset: json failed at the run, "JSON parse
        error"). A builder reads files of any name, so only a name of another table's kind is
        refused (a .txt file of comma-separated rows is csv's)."""
        if self.dataset == "text":
            return None
        for key, given in (("data_files", self.data_files), ("val_path", self.val_path)):
            for name in [given] if isinstance(given, str) else given or []:
                builder = file_builder(name)  # c.jsonl.gz: json
                if builder not in (None, "text", self.dataset):
                    return (f"data.{key}: {name} is a {builder} file by its name, and dataset: "
                            f"{self.dataset} reads data_files and val_path with the "
                            f"{self.dataset} builder: give {self.dataset} files, or "
                            f"dataset: {builder} for {builder} files")
        return None

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        if self.source == "text" and not self.path:
            raise ValueError("data.path is required when data.source is 'text'")
        if self.source == "hf" and not self.dataset:
            raise ValueError("data.dataset is required when data.source is 'hf'")
        if self.source == "hf":
            given = self.dataset.lower()
            if given in FILE_BUILDERS and given not in LOCAL_BUILDERS:  # dataset: jsonl
                builder = FILE_BUILDERS[given]
                raise ValueError(f"data.dataset: {self.dataset!r} is not a builder of `datasets`; "
                                 f"{builder} reads {self.dataset} files: dataset: {builder}, "
                                 "data_files: FILE")
            builder = FILE_BUILDERS.get(given.rpartition(".")[2]) if "." in given else None
            if builder is not None:
                raise ValueError(f"data.dataset: {self.dataset!r} names a file, where dataset "
                                 "names a Hub dataset or a builder of `datasets`: give "
                                 f"dataset: {builder}, data_files: {self.dataset}")
            if self.dataset in LOCAL_BUILDERS and not self.data_files:
                raise ValueError(f"data.data_files is required with dataset: {self.dataset}, which "
                                 "reads the files it names (without them `datasets` reads every "
                                 f"{self.dataset} file of the folder the run starts in)")
            if self.dataset in LOCAL_BUILDERS and re.split(r"[\[+]", self.split)[0].strip() \
                    != "train":  # a slice of it (train[:50%]) is datasets' to read
                # `datasets` said: Unknown split "test". Should be one of ['train'], at the run.
                raise ValueError(f"data.split: dataset: {self.dataset} reads its data_files as "
                                 f"one split, train, which has no split {self.split!r}: leave "
                                 "split out, and name the files to train on in data_files")
            if self.dataset in LOCAL_BUILDERS and (other := self._other_kind()):
                raise ValueError(other)
            if self.val_split and self.dataset in LOCAL_BUILDERS:
                raise ValueError(f"data.val_split: dataset: {self.dataset} reads its data_files as "
                                 "one split (train), which has no other: give the validation "
                                 "files as data.val_path")
            if self.val_path and self.dataset not in LOCAL_BUILDERS:
                raise ValueError("data.val_path: files are read with a local builder (dataset: "
                                 f"text, json, csv, parquet or arrow); {self.dataset!r} is not "
                                 "one: give its validation split as data.val_split")
        if self.val_path and self.val_split:
            raise ValueError("data.val_path and data.val_split: give one validation data")
        same = ((self.source == "text" and self.val_path and self.val_path == self.path)
                or (self.source == "hf" and self.val_split and self.val_split == self.split)
                or (self.source == "hf" and self.val_path and self.val_path == self.data_files))
        if same:
            key = "data.val_split" if self.val_split else "data.val_path"
            raise ValueError(f"{key}: the validation data is the training data, so the val loss "
                             "(which ranks a study's trials) would be measured on text trained "
                             "on: give data held out from training")
        return self


class TrainConfig(_Strict):
    """One training run: model, data, optimizer, token budget and run options."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    tokens: Tokens = 1_000_000
    """Training budget in tokens; steps = ceil(tokens / (batch_size * block_size))."""
    batch_size: Whole = Field(32, ge=1)
    """Sequences per optimizer step (global batch)."""
    micro_batch_size: Whole | None = Field(None, ge=1)
    """Sequences per forward/backward; batch_size must be a multiple. None means batch_size."""
    eval_every_tokens: Tokens | None = None
    """Evaluate validation loss every this many tokens; None means 10 evaluations per run."""
    seed: Whole = Field(0, ge=0, lt=2**63)
    """Seed of init, data order and dropout: the same seed gives the same run."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """auto picks cuda when available, else cpu."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Autocast dtype: auto is bfloat16 on a GPU that computes in it (Ampere and later; one
    that only emulates it, V100 or T4, gets float32), float32 elsewhere. With
    bfloat16 on a CPU, attention runs in float32 (faster there, see
    trainer.kernels.float32_attention); the linear layers run in bfloat16. On CUDA, float32
    matmuls run on TF32 tensor cores (trainer.loop's set-up)."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """How a run on several processes (torchrun, ``--nproc-per-node``/``--nnodes``) splits the
    work. ddp: every process holds the whole model and optimizer state, and gradients are
    averaged (DistributedDataParallel). fsdp: weights, gradients and optimizer state are sharded
    over the processes (PyTorch FSDP2, fully_shard per block), for a model whose weights and
    optimizer state do not fit one device. Both take the same step on the same global batch; a
    single process trains as one whatever it says (fsdp still refuses optim.name: muon, so that
    a file refused on several processes is refused on one)."""
    cpu_matmul: Literal["auto", "onednn", "torch"] = "auto"
    """float32 CPU runs: onednn sends the forward and input-gradient matmuls of large linear
    layers through oneDNN, which reaches the CPU's peak where torch's default BLAS may not
    (measured 1.11x per training step of a 6L/256d model on an AMD EPYC; small layers stay with
    torch, see trainer.kernels); torch uses torch's default for all; auto is onednn on AMD x86
    CPUs and torch elsewhere. onednn falls back to torch where this build has no oneDNN.
    Results agree up to float32 summation order."""
    num_threads: Whole | None = Field(None, ge=1)
    """torch threads on CPU; None uses all cores this process may run on."""
    max_loss: float | None = Field(None, gt=0)
    """Stop as diverged when a training loss exceeds this; None means 1.5 x the initial loss ln(vocab)."""
    out_dir: str | None = None
    """Folder for checkpoints and the metrics log; None disables both."""
    checkpoint_every_tokens: Tokens | None = None
    """Write an atomic checkpoint this often (needs out_dir); None writes only the final one."""
    progress: bool = True
    """Show progress: on a terminal a bar with loss and tokens/s; written to a file or a pipe,
    one line per evaluation."""
    tensorboard: bool = False
    """Also write every evaluation as TensorBoard scalars into out_dir/tensorboard (needs out_dir
    and the tensorboard package)."""
    provenance: dict[str, Any] | None = None
    """Where this config came from (study, trial, transfer rules); not used by training."""

    def notes(self) -> list[str]:
        """What validate and `scaletune train` say of a valid config before it trains: a run
        without an out_dir keeps nothing it trained (a study's trials are such runs), a
        budget far from whole steps trains noticeably more than it says, bfloat16 on a CPU
        without bfloat16 arithmetic (trainer.kernels.cpu_bf16_note), validation files among
        the training files (DataConfig.held_out_note), and model and optimizer fields given that
        it does not read (_SomeFieldsRead.unread_note)."""
        notes = []
        if not self.out_dir:
            ignored = [k for k in ("checkpoint_every_tokens", "tensorboard") if getattr(self, k)]
            notes.append(
                "out_dir is not set: the run saves nothing, no checkpoint and no metrics log "
                + (f"({', '.join(ignored)} ignored) " if ignored else "")
                + "and `--resume` has nothing to continue; set out_dir to keep the trained model")
        steps = self.steps
        trained = steps * self.tokens_per_step
        if trained > self.tokens * (1 + ROUNDED_UP_NOTED):
            notes.append(
                f"tokens: {self.tokens:,} is {self.tokens / self.tokens_per_step:.2f} steps of "
                f"{self.tokens_per_step:,} tokens (batch_size {self.batch_size} x block_size "
                f"{self.model.block_size}): the run trains whole steps, {steps:,}, which is "
                f"{trained:,} tokens ({trained / self.tokens - 1:.0%} more); give tokens: "
                f"{trained:,}, or {trained - self.tokens_per_step:,}, to train what it says")
        if self.eval_every_tokens is not None and self.eval_every_tokens >= trained:
            # train said "a line at each evaluation, every 7,812,500 steps" of a 40-step run
            notes.append(
                f"eval_every_tokens: {self.eval_every_tokens:,} is the whole run or more "
                f"({trained:,} tokens): it is evaluated once, at its end")
        if self.dtype == "bfloat16":  # torch is imported for a bfloat16 run alone
            from scaletune.trainer.kernels import cpu_bf16_note

            notes += [note] if (note := cpu_bf16_note("dtype", self.device)) else []
        from scaletune.trainer.data import lossy_tokenizer_note

        return notes + [note for note in (lossy_tokenizer_note(self.data),
                                          self.data.held_out_note(),
                                          self.model.unread_note("model"),
                                          self.optim.unread_note("optim")) if note]

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        errors = []  # every one at once
        micro = self.micro_batch_size or self.batch_size
        if self.batch_size % micro:
            errors.append(
                f"batch_size must be a multiple of micro_batch_size, got batch_size={self.batch_size}, "
                f"micro_batch_size={micro}"
            )
        if self.tokens < self.tokens_per_step:
            errors.append(
                f"tokens: {self.tokens:,} is less than one optimizer step (batch_size "
                f"{self.batch_size} x block_size {self.model.block_size} = "
                f"{self.tokens_per_step:,} tokens): a run trains whole steps, so it would train "
                f"more than it says; give tokens of at least {self.tokens_per_step:,}, or a "
                "smaller batch_size")
        if self.parallel == "fsdp" and self.optim.name == "muon":
            # Muon orthogonalizes each whole weight matrix; under fsdp a process holds a slice.
            errors.append("parallel: fsdp shards every weight matrix over the processes, and "
                          "Muon needs whole matrices; use parallel: ddp with optim.name: muon, "
                          "or optim.name adamw or sgd with fsdp")
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.block_size

    @property
    def steps(self) -> int:
        """Optimizer steps the run trains: whole steps, the last of which may go past tokens."""
        return -(-self.tokens // self.tokens_per_step)


ROUNDED_UP_NOTED = 0.05
"""A budget that whole steps exceed by more than this fraction is noted (an exported run's
rounding, a fraction of a percent, is not)."""

SHOWN_CHARS = 80
"""The most characters of a value or key that an error shows, so that every error is one line."""
_short = reprlib.Repr()
_short.maxstring = _short.maxother = SHOWN_CHARS
_short.maxlevel = 3


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ending in '...' where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown_value(value: Any) -> str:
    """The repr of a value as an error shows it: one line of at most SHOWN_CHARS characters.
    reprlib looks at a few items per level only, so a huge value costs no more than a small one."""
    return clip(_short.repr(value))


def unknown_key(parent: str, name: Any, allowed: Sequence[str]) -> str:
    """The error of a key the schema does not have under ``parent``: the keys allowed there, and
    after them (where "unknown key; allowed:" stays as readers know it) the closest one."""
    key = clip(f"{parent}.{name}" if parent else str(name))
    if not allowed:
        return f"{key}: unknown key"
    close = closest(str(name), allowed)
    hint = f"; did you mean {close}?" if close else ""
    return f"{key}: unknown key; allowed: {', '.join(allowed)}{hint}"


def closest(given: str, allowed: Sequence[Any]) -> Any | None:
    """The allowed word a misspelt one most likely meant (case aside), or None if none is close:
    'nlayer' -> 'n_layer', 'medain' -> 'median', but not 'bayes' -> 'cmaes'; or the one allowed
    word that it begins, as a whole word: 'tokens' -> 'tokens_per_trial', 'batch' ->
    'batch_size' (not where two words begin so); or else the one single word it shortens: 'hi'
    -> 'high'."""
    by_lower = {a.lower(): a for a in allowed if isinstance(a, str)}
    word = given[:SHOWN_CHARS].lower()
    close = difflib.get_close_matches(word, list(by_lower), n=1, cutoff=0.7)
    if close:
        return by_lower[close[0]]
    longer = [a for lower, a in by_lower.items() if word and lower.startswith(word + "_")]
    if len(longer) == 1:
        return longer[0]
    # Or the one single word that it shortens: 'hi' -> 'high' (not 'lo', which low and log
    # begin, nor 'bat' -> 'batch_size').
    shortened = [a for lower, a in by_lower.items()
                 if len(word) >= 2 and "_" not in lower and lower.startswith(word)]
    return shortened[0] if len(shortened) == 1 and not longer else None


def format_errors(err: ValidationError, root: type[BaseModel] | None = None,
                  prefix: str = "") -> list[str]:
    """One line per problem, as advice: the dotted key as the file spells it, what is wrong and
    what is allowed, then the bad value (cut to a line).

    root: the model validated; it knows the keys, tags, bounds and help of every field, so that a
    key carries no tag or type name that pydantic puts in its locations (``pruner.median.x`` is
    ``pruner.x`` in the file). prefix: the dotted key of the value validated, when it is one part
    of a file (``search.lr``)."""
    return [line for p in _merge_unions([_Problem.of(e, root, prefix) for e in err.errors()])
            for line in p.lines()]


def every_error(err: ValidationError, model: type[BaseModel], raw: Any,
                explain: Callable[[ValidationError], list[str]],
                context: dict[str, Any] | None = None,
                stand_ins: dict[str, Any] | None = None) -> list[str]:
    """``explain(err)``, and what the checks across fields would have said: pydantic runs a
    model's after-validators (eval_every_tokens <= tokens_per_trial) only once every field is
    valid, so a file with one bad field and a bad pair of fields said the first alone, and the
    second only once it was fixed.

    ``raw`` is validated once more without the keys that failed; the problems that pass finds
    are added, except those that name a key left out (a check that read its default in its
    place). A required key of the top level that failed is given its value in ``stand_ins``
    for that pass (one no check across fields reads), else there is no such pass."""
    lines = explain(err)
    dropped: set[str] = set()
    rest = _without(raw, [e["loc"] for e in err.errors()], dropped)
    if rest is None:
        return lines
    for name, field in model.model_fields.items():
        if field.is_required() and (field.alias or name) not in rest:
            if (field.alias or name) not in (stand_ins or {}):
                return lines  # missing from the file: said already, and no check could run
            rest[field.alias or name] = stand_ins[field.alias or name]
    try:
        model.model_validate(rest, context=context)
    except ValidationError as again:
        for line in explain(again):
            if line not in lines and not any(re.search(rf"\b{re.escape(key)}\b", line)
                                             for key in dropped):
                lines.append(line)
    return lines


def _without(raw: Any, locs: list[tuple], dropped: set[str]) -> dict[str, Any] | None:
    """A copy of the mapping ``raw`` without the deepest key each location reaches (pydantic's
    tags and type names in a location reach no key), their names added to ``dropped``; None
    where a location reaches no key of a mapping (the file's top level, a list's item)."""
    if not isinstance(raw, dict):
        return None
    rest = _copy_mappings(raw)
    for loc in locs:
        parent, key, node = None, None, rest
        for part in loc:
            if not (isinstance(node, dict) and part in node):
                break
            parent, key, node = node, part, node[part]
        if parent is None:
            return None
        parent.pop(key, None)
        dropped.add(str(key))
    return rest


def _copy_mappings(value: Any) -> Any:
    """``value`` with every mapping in it copied (lists and values shared)."""
    return {k: _copy_mappings(v) for k, v in value.items()} if isinstance(value, dict) else value


@dataclass
class _Place:
    """Where an error is: pydantic's location walked down the root model."""

    key: str
    """The dotted key as the file spells it (aliases; no tags, no union member types)."""
    annotation: Any
    """The type expected there, without Annotated and None; None where unknown."""
    field: FieldInfo | None
    """The field the key names: its help. None inside a dict or list."""
    constraints: list[Any]
    """Its bounds and validators (Ge, Lt, BeforeValidator(parse_number), ...)."""
    union: str | None
    """The key of a union of plain types (int | float) whose member pydantic named, if any."""

    @classmethod
    def of(cls, root: type[BaseModel] | None, loc: tuple, prefix: str) -> _Place:
        parts = [prefix] if prefix else []
        ann: Any = root
        field: FieldInfo | None = None
        meta: list[Any] = []
        union = None
        for part in loc:
            ann, more = _unwrap(ann)
            meta += more
            if _is_model(ann):
                name = next((n for n, f in ann.model_fields.items() if part in (n, f.alias)), None)
                field = ann.model_fields[name] if name else None
                parts.append((field.alias or name) if field else str(part))
                ann, meta = (field.annotation, list(field.metadata)) if field else (None, [])
            elif get_origin(ann) in (Union, UnionType):
                # pydantic names the member it tried: a model's tag, or a type ('int', 'list[str]')
                members = get_args(ann)
                if not any(_tag(m) for m in members):
                    union = ".".join(parts)
                ann = next((m for m in members if part in (_tag(m), _type_name(m))), None)
            else:
                if isinstance(part, int) and parts:  # an item of a list: rungs[1].model
                    parts[-1] += f"[{part}]"
                else:
                    parts.append(str(part))
                inner = get_origin(ann) in (dict, list)
                ann, field, meta = (get_args(ann)[-1] if inner else None), None, []
        ann, more = _unwrap(ann)
        return cls(".".join(parts), ann, field, meta + more, union)

    @property
    def tags(self) -> list[str]:
        """The tags of a tagged union of models here (the values of their ``name``)."""
        members = get_args(self.annotation) if get_origin(self.annotation) in (Union, UnionType) else ()
        return [t for t in map(_tag, members) if t]

    @property
    def help(self) -> str:
        """The first sentence of the field's help (its docstring), on one line."""
        text = " ".join((self.field.description or "").split()) if self.field else ""
        return re.split(r"\.\s+(?=[A-Z])|;\s", text)[0].rstrip(".")

    @property
    def bounds(self) -> str:
        """The field's bounds as ">= 1", "> 0" or "in [0, 1)"; "" where it has none."""
        got = {k: getattr(m, k) for m in self.constraints for k in ("ge", "gt", "le", "lt")
               if getattr(m, k, None) is not None}
        low = next(((s, got[k]) for k, s in (("ge", "["), ("gt", "(")) if k in got), None)
        high = next(((s, got[k]) for k, s in (("le", "]"), ("lt", ")")) if k in got), None)
        def shown(bound: float) -> str:  # a whole number to the digit (4294967295, not 4.29e+09)
            return str(bound) if isinstance(bound, int) else f"{bound:g}"

        if low and high:
            return f"in {low[0]}{shown(low[1])}, {shown(high[1])}{high[0]}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {shown(low[1])}"
        return f"{'<=' if high[0] == ']' else '<'} {shown(high[1])}" if high else ""

    @property
    def reads_numbers(self) -> bool:
        """True where 2e6 and 2_000_000 are numbers (the field goes through parse_number)."""
        return any(getattr(m, "func", None) in (parse_number, parse_count)
                   for m in self.constraints)

    @property
    def reads_counts(self) -> bool:
        """True where 2M and 200k are numbers too (the field goes through parse_count)."""
        return any(getattr(m, "func", None) is parse_count for m in self.constraints)


def _unwrap(ann: Any) -> tuple[Any, list[Any]]:
    """``ann`` without Annotated and Optional, and the constraints Annotated carried."""
    meta: list[Any] = []
    while True:
        if get_origin(ann) is Annotated:
            for m in ann.__metadata__:
                meta += m.metadata if isinstance(m, FieldInfo) else [m]
            ann = get_args(ann)[0]
        elif get_origin(ann) in (Union, UnionType) and type(None) in get_args(ann):
            rest = [a for a in get_args(ann) if a is not type(None)]
            if len(rest) > 1:
                return Union[tuple(rest)], meta  # noqa: UP007 - built from a list
            ann = rest[0]
        else:
            return ann, meta


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _type_name(ann: Any) -> str:
    return ann.__name__ if isinstance(ann, type) else str(ann)


def _tag(model: Any) -> str | None:
    """The tag of a model in a tagged union: the one value its ``name`` may take."""
    field = model.model_fields.get("name") if _is_model(model) else None
    args = get_args(field.annotation) if field and get_origin(field.annotation) is Literal else ()
    return args[0] if len(args) == 1 else None


def _one_of(values: Sequence[Any]) -> str:
    """'a', 'b' or 'c', as pydantic lists the values of a Literal."""
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _did_you_mean(given: Any, allowed: Sequence[Any]) -> str:
    close = closest(given, allowed) if isinstance(given, str) else None
    return f"; did you mean {close!r}?" if close else ""


def _mapping(e: dict[str, Any], at: _Place) -> str:
    if at.tags:
        return f"expected a mapping with name: one of {_one_of(at.tags)}"
    if _is_model(at.annotation):
        keys = [f.alias or n for n, f in at.annotation.model_fields.items()]
        return f"expected a mapping with keys among: {', '.join(keys)}"
    return "expected a mapping of keys to values"


def _bounded(e: dict[str, Any], at: _Place) -> str:
    # Both bounds where the field has two, though pydantic names the one crossed.
    return f"must be {at.bounds or e['msg'].removeprefix('Input should be ')}"


def _integer(e: dict[str, Any], at: _Place) -> str:
    # "Input should be a valid integer" is pydantic's, kept: tests and users search for it.
    tokens = (", a whole number such as 2e6, 2_000_000, 2000000 or 2M" if at.reads_counts else
              ", a whole number such as 2e6, 2_000_000 or 2000000" if at.reads_numbers else "")
    whole = ", a whole number" if e["type"] == "int_from_float" else ""
    return f"Input should be a valid integer{tokens or whole}"


_SAYS: dict[str, Callable[[dict[str, Any], _Place], str]] = {
    "missing": lambda e, at: "Field required" + (f"; add it: {at.help}" if at.help else ""),
    "int_type": _integer,
    "int_parsing": _integer,
    "int_from_float": _integer,
    "float_type": lambda e, at: "expected a number, such as 0.5 or 3e-4",
    "float_parsing": lambda e, at: "expected a number, such as 0.5 or 3e-4",
    "finite_number": lambda e, at: "expected a finite number",
    "bool_type": lambda e, at: "expected true or false",
    "bool_parsing": lambda e, at: "expected true or false",
    "string_type": lambda e, at: "expected text" + (
        "; put it in quotes" if isinstance(e["input"], int | float) else ""),
    "string_too_short": lambda e, at: ("must not be empty" if e["ctx"]["min_length"] == 1 else
                                       f"needs at least {e['ctx']['min_length']} characters"),
    "string_pattern_mismatch": lambda e, at: "not a name this takes" + (
        f": {at.help}" if at.help else f" ({e['msg']})"),
    "list_type": lambda e, at: "expected a list, such as [a, b]",
    "dict_type": _mapping,
    "model_type": _mapping,
    "model_attributes_type": _mapping,
    "greater_than": _bounded,
    "greater_than_equal": _bounded,
    "less_than": _bounded,
    "less_than_equal": _bounded,
    "union_tag_invalid": lambda e, at: f"Input should be {_one_of(at.tags)}",
    "union_tag_not_found": lambda e, at: f"Field required; one of {_one_of(at.tags)}",
}
"""What each pydantic error a config file can meet says, as advice (pydantic's own words where
tests and users know them: 'Input should be ...', 'Field required', 'String should match ...')."""

_NOUNS = {"int": "a whole number", "float": "a number", "string": "text", "list": "a list",
          "bool": "true or false", "dict": "a mapping", "model": "a mapping"}
"""What a member of a union of plain types takes, by the first word of its error type."""


@dataclass
class _Problem:
    """One error, ready to print: ``key: message (got value)after``."""

    key: str
    message: str
    value: str | None
    after: str = ""
    kind: str = ""
    union: str | None = None

    @classmethod
    def of(cls, e: dict[str, Any], root: type[BaseModel] | None, prefix: str) -> _Problem:
        kind, loc = e["type"], e["loc"]
        if kind == "extra_forbidden":
            at = _Place.of(root, loc[:-1], prefix)
            allowed = ([f.alias or n for n, f in at.annotation.model_fields.items()]
                       if _is_model(at.annotation) else [])
            line = unknown_key(at.key, loc[-1], allowed)
            return cls("", line, None, kind=kind)
        at = _Place.of(root, loc, prefix)
        if kind == "value_error":  # a validator's own message names its keys and values
            return cls(at.key, e["msg"].removeprefix("Value error, "), None, kind=kind)
        say = _SAYS.get(kind)
        message = say(e, at) if say else e["msg"]
        value = e.get("input")
        shown = None if isinstance(value, dict | BaseModel) else shown_value(value)
        after = ""
        if kind.startswith("union_tag"):
            at.key = f"{at.key}.{e['ctx']['discriminator'].strip(chr(39))}"
            shown = shown_value(e["ctx"]["tag"]) if kind == "union_tag_invalid" else None
            after = _did_you_mean(e["ctx"].get("tag"), at.tags)
        elif kind == "literal_error":
            after = _did_you_mean(value, get_args(at.annotation))
        elif kind == "missing":
            shown = None
        return cls(at.key, message, shown, after, kind, at.union)

    def lines(self) -> list[str]:
        if self.kind == "extra_forbidden":
            return [self.message]
        key = clip(self.key)
        if self.kind == "value_error":  # a validator may join several lines; each names its key
            return [f"{key}: {part}" if key and not part.startswith((f"{key}.", f"{key}:"))
                    else part for part in self.message.split("\n")]
        got = f" (got {self.value})" if self.value is not None else ""
        return [f"{key or '<top>'}: {self.message}{got}{self.after}"]


def _merge_unions(problems: list[_Problem]) -> list[_Problem]:
    """pydantic reports a value that fits no member of a union (int | float, str | list[str]) once
    per member; here it is one line that names every shape allowed. Where the value has the shape
    of one member (a list, of which an item is wrong), that member's errors alone are kept."""
    unions: dict[str, list[_Problem]] = {}
    for p in problems:
        if p.union is not None:
            unions.setdefault(p.union, []).append(p)
    out = []
    for p in problems:
        siblings = unions.get(p.union, []) if p.union is not None else []
        if not siblings:
            out.append(p)
        elif any(q.key != p.union for q in siblings):
            if p.key != p.union:
                out.append(p)
        elif any(q.kind.split("_")[0] not in _NOUNS for q in siblings):
            out.append(p)
        elif p is siblings[0]:
            nouns = list(dict.fromkeys(_NOUNS[q.kind.split("_")[0]] for q in siblings))
            if "a number" in nouns and "a whole number" in nouns:
                nouns.remove("a whole number")
            out.append(_Problem(p.key, f"expected {' or '.join(nouns)}", p.value))
    return out


MAX_FILE_BYTES = 256 * 1024
"""The largest config file read. The largest shipped study is under 2 KB; PyYAML's pure-Python
parser, which the checks below need, takes about 3 s for 256 KB of dense YAML on one core."""
MAX_DEPTH = 32
"""The deepest a config file may nest lists and mappings (a study nests about 5 deep)."""
MAX_VALUES = 10_000
"""The most nodes (keys, values, lists, mappings) a config file may hold with every alias expanded;
the shipped studies hold 50 to 130."""
_MERGE = "tag:yaml.org,2002:merge"


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a config file may not be: it names the line and what is allowed."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem=problem, problem_mark=mark)


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with the checks of a config file, made while the file is composed into
    nodes, before any Python value is built.

    safe_load follows an alias by sharing its anchor's value, so a "billion laughs" file (9
    aliases of 9 aliases of ... of 9 values) loads small and explodes in whatever walks it later:
    validation, or an error message that prints the value. Here every node knows how many nodes
    and levels it stands for with its aliases expanded, so the file is refused at the alias that
    takes it past MAX_VALUES or MAX_DEPTH. The depth bound also keeps the composer, which
    recurses, far from Python's recursion limit. A key given twice in one mapping (PyYAML keeps
    the last) is collected in ``duplicates`` with its dotted path and both lines.
    """

    def __init__(self, text: str):
        super().__init__(text)
        self.key_path: list[str | None] = []
        """The dotted key of the node being composed (None for a mapping key or the top)."""
        self.expanded: dict[int, tuple[int, int]] = {}
        """id(node) -> (nodes, levels) that node stands for with its aliases expanded."""
        self.n_nodes = 0
        """Nodes composed so far, aliases expanded."""
        self.open_anchors: set[str] = set()
        """Anchors of the lists and mappings being composed: an alias of one would never end."""
        self.duplicates: list[tuple[int, str]] = []
        """(line, error) of every key given a second time in its mapping."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            name = clip(event.anchor)
            if event.anchor in self.open_anchors:
                raise _Refused(f"alias *{name} is inside its own anchor &{name}, a value without "
                               "end; an alias may only repeat a value that ends before it",
                               event.start_mark)
            node = super().compose_node(parent, index)  # the anchor's node
            nodes, levels = self.expanded[id(node)]
            self._count(nodes, len(self.key_path) + levels, event, f"alias *{name} takes the file")
            return node
        if event.anchor and isinstance(event, yaml.CollectionStartEvent):
            self.open_anchors.add(event.anchor)
        self.key_path.append(_key_segment(parent, index))
        self._count(1, len(self.key_path), event, "the file goes")
        node = super().compose_node(parent, index)
        self.key_path.pop()
        self.open_anchors.discard(event.anchor)
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else [])
        shapes = [self.expanded[id(child)] for child in children]
        self.expanded[id(node)] = (1 + sum(n for n, _ in shapes),
                                   1 + max((levels for _, levels in shapes), default=0))
        return node

    def _count(self, nodes: int, depth: int, event: yaml.Event, what: str) -> None:
        """Add ``nodes`` to the file's count, refusing it past MAX_VALUES or MAX_DEPTH."""
        self.n_nodes += nodes
        if self.n_nodes > MAX_VALUES:
            raise _Refused(f"{what} past {MAX_VALUES:,} values (every alias counted as the values "
                           f"it repeats); a config file may hold at most {MAX_VALUES:,}",
                           event.start_mark)
        if depth > MAX_DEPTH:
            raise _Refused(f"{what} deeper than {MAX_DEPTH} levels of lists and mappings; a config "
                           f"file may nest at most {MAX_DEPTH}", event.start_mark)

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _Refused("a key must be text or a number, not a list or a mapping",
                               key.start_mark)
            if key.tag == _MERGE:  # `<<: *defaults` keys are meant to be overridden
                continue
            seen = first.setdefault((key.tag, key.value), key)
            if seen is not key:
                dotted = ".".join(k for k in [*self.key_path, key.value] if k is not None)
                dotted = dotted.replace(".[", "[")  # an item of a list: other[0].a
                a, b = seen.start_mark, key.start_mark
                where = (f"line {a.line + 1} and line {b.line + 1}" if a.line != b.line else
                         f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}")
                self.duplicates.append((b.line, f"{clip(dotted)}: key given twice, on {where}; a "
                                                "key may appear once in a mapping"))
        return node

    def construct_undefined(self, node: yaml.Node) -> Any:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise yaml.constructor.ConstructorError(
            problem=f"the tag {clip(tag)} is not allowed: a config file holds plain values "
                    "(numbers, text, true/false, lists and mappings)", problem_mark=node.start_mark)


_ConfigLoader.add_constructor(None, _ConfigLoader.construct_undefined)


def _key_segment(parent: yaml.Node | None, index: Any) -> str | None:
    """The part of the dotted key that the node at ``index`` of ``parent`` adds."""
    if isinstance(parent, yaml.SequenceNode):
        return f"[{index}]"
    if isinstance(parent, yaml.MappingNode) and isinstance(index, yaml.ScalarNode):
        return index.value
    return None  # the top, or a mapping's key


def _yaml_error(e: yaml.YAMLError, text: str) -> str:
    """A PyYAML error as one line: where, and what."""
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, e.position) + 1
        return f"line {line}: the character #x{e.character:04x} may not appear in a YAML file"
    if not isinstance(e, yaml.MarkedYAMLError):
        return clip(f"not valid YAML: {e}".splitlines()[0], 2 * SHOWN_CHARS)
    mark = e.problem_mark or e.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = e.problem or e.context or ""
    if e.problem and e.context:  # PyYAML's pairs read "while ...", or "expected ...", "but ..."
        what = (f"{e.context}, {e.problem}" if e.problem.startswith("but ") else
                f"{e.problem} ({e.context}" + (f" on line {e.context_mark.line + 1})"
                                              if e.context_mark else ")"))
    # PyYAML quotes what it found (an alias's name, a tag): a line at most, as for values.
    prefix = "" if isinstance(e, _Refused) else "not valid YAML at "
    return prefix + where + clip(what, 2 * SHOWN_CHARS)


def as_written(value: Any) -> str:
    """A config value in a diff as its file writes it: null, true, 3.0, 'adamw' (Python's
    None and True read as nothing a YAML file holds)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def changes_said(old: dict[str, Any], new: dict[str, Any], keys: list[str]) -> str:
    """``optim.lr: 0.0003 -> 0.001, max_loss: null -> 3.0`` for ``keys`` of two flat configs
    (flat_keys), each value as its file writes it."""
    return ", ".join(f"{k}: {as_written(old.get(k))} -> {as_written(new.get(k))}" for k in keys)


def flat_keys(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A dumped config by dotted key: {'optim': {'lr': 3e-4}} -> {'optim.lr': 3e-4}. Config diffs
    (a checkpoint's resume check, a study's resume refusal) compare these."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_keys(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file: a study storage given as a config file."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (an optional dependency), without importing it."""
    if sys.modules.get(module) is not None:  # imported: optuna_integration's has no spec
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return False


def tensorboard_missing(config: TrainConfig) -> str | None:
    """Why a run that asks for TensorBoard scalars cannot write them (the package, an optional
    extra, is not installed), else None: said before the run starts, where it was a traceback
    after --overwrite had cleared the run before it."""
    if not (config.tensorboard and config.out_dir) or installed("tensorboard"):
        return None
    return ('tensorboard: true needs the tensorboard package, which is not installed: pip '
            'install "scaletune[tensorboard]", or set tensorboard: false')


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file ``path``. A URL decodes %XX and ends its path at a
    '?', so a folder named ``proj?a`` or ``p%41b`` put the database elsewhere (in ``proj``, in
    ``pAb``); the two are escaped, and the rest (spaces, accents, '#') left as written."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a study or training file: one YAML mapping, within the bounds above. Anything else is
    a ConfigError whose lines say where and what is allowed (never a traceback)."""
    if not isinstance(path, (str, os.PathLike)):  # load_study(d): "expected str, bytes or ..."
        raise TypeError(f"a file's path is expected, not a {type(path).__name__}"
                        + (" (a dict: validate_study(d) for a study, validate_train_config(d) "
                           "for a training config)" if isinstance(path, dict) else ""))
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: a device such as /dev/zero never ends
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the file: {e.strerror}"]) from None
    if data.startswith(SQLITE_HEADER):
        raise ConfigError(str(path), [
            "this is an SQLite database (a study storage), not a study or training file: the "
            f"study commands take the study's YAML file (with --storage "
            f"{shlex.quote(sqlite_url(path.resolve()))} where the study file names another "
            "storage), `scaletune train` a training file (`scaletune export` writes one); "
            f"`scaletune studies --storage {shlex.quote(sqlite_url(path.resolve()))}` lists the "
            "studies it holds"])
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(str(path), [f"the file is larger than {MAX_FILE_BYTES // 1024} KB; a "
                                      "config file is a few KB (is it the right file?)"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(str(path), [f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset "
                                      f"{e.start} (line {line}); save the file as UTF-8"]) from None
    try:
        loader = _ConfigLoader(text)
        node = loader.get_single_node()
        raw = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(str(path), [_yaml_error(e, text)]) from None
    if loader.duplicates:  # found as each mapping ends, the innermost first: put in file order
        raise ConfigError(str(path), [error for _, error in sorted(loader.duplicates)])
    if node is None or node.value == "":  # no document at all, or a lone `---`
        raise ConfigError(str(path), ["the file is empty (nothing but comments or blank lines); it "
                                      "must hold a mapping of settings, one `key: value` a line"])
    if not isinstance(raw, dict):
        got = "null" if raw is None else type(raw).__name__
        raise ConfigError(str(path), [f"top level must be a mapping, got {got}"])
    return raw


TRAINING_ONLY = frozenset(TrainConfig.model_fields) - {"model", "data", "seed", "eval_every_tokens"}
"""The top-level keys of a training file that a study file has under ``trainer:`` or not at all
(optim, tokens, batch_size, out_dir, ...)."""


def file_kind(raw: Any) -> str | None:
    """What a config file is, by its top-level keys: "ladder" (target and rungs: ``scaletune
    ladder``), "training" (a token budget and no trials: ``scaletune train``), "study" (trials
    and a search: ``scaletune run``), "laws" (fitted laws: what ``scaletune fit`` and a ladder
    write, a study's ``priors.fitted_file``), or None when the keys say neither."""
    if not isinstance(raw, dict):
        return None
    keys = raw.keys()
    study = {"name", "n_trials", "tokens_per_trial", "search"} & keys  # no training config's
    if {"target", "rungs"} <= keys:
        return "ladder"
    if {"format_version", "laws"} <= keys and not study:
        return "laws"
    if "tokens" in keys:
        return None if study else "training"  # a study file with a misnamed key: its errors
    if not study and keys & TRAINING_ONLY:
        return "training"  # `tokens` misspelt: its one error, not a study's wall of keys
    return "study" if study else None


def laws_file_error(path: str | Path) -> str:
    """What a fitted-laws file given as a study or training file is, in one line (not the wall of
    keys it lacks)."""
    return (f"a fitted-laws file (written by `scaletune fit` or a ladder), not a study or "
            f"training file: a study starts from it with `priors: {{laws: fitted, fitted_file: "
            f"{path}}}`")


def load_train_config(path: str | Path) -> TrainConfig:
    """Read ``scaletune train`` YAML; relative data paths resolve against the file's folder."""
    raw = load_yaml(path)
    kind = file_kind(raw)
    if kind == "laws":
        raise ConfigError(str(path), [laws_file_error(path)])
    if kind in ("study", "ladder"):
        # One line that says what the file is, not the wall of its keys a training run lacks.
        what = ("a study file (n_trials, tokens_per_trial, search)" if kind == "study"
                else "a ladder file (target, rungs)")
        run = "run" if kind == "study" else "ladder"
        best = "its best trial" if kind == "study" else "its target study's best trial"
        raise ConfigError(str(path), [
            f"{what}, not a training config: search with `scaletune {run} {path}`; then "
            f"`scaletune export {path} -o final.yaml` writes the training config of {best}, "
            "which `scaletune train` takes"])
    return validate_train_config(raw, str(path), Path(path).resolve().parent)


def validate_train_config(raw: dict[str, Any], source: str = "<training config>",
                          base: str | Path | None = None) -> TrainConfig:
    """``raw`` as a TrainConfig, or a ConfigError naming every bad key with what is allowed
    (``TrainConfig(**raw)`` raises pydantic's ValidationError); its relative data paths and
    out_dir resolved against ``base``, by default the current folder, now."""
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(source, every_error(
            e, TrainConfig, raw, lambda err: format_errors(err, TrainConfig))) from None
    return resolve_paths(cfg, Path(base if base is not None else Path.cwd()).resolve())


def revalidated(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` validated again: a config changed by ``model_copy(update=...)`` or in place, which
    pydantic does not validate (``tokens: 0`` trained nothing and said a resume had finished,
    ``batch_size: 0`` was a ZeroDivisionError), is checked as a file's is, a ConfigError naming
    every bad key. The fields it was given stay the given ones (notes of fields a run does not
    read go by them); its paths stay as they are."""
    import warnings

    def unknown_keys_into(dumped: dict[str, Any], model: BaseModel) -> None:
        for key, value in model.__dict__.items():  # a dump leaves out keys that are no field
            if key not in type(model).model_fields:
                dumped[key] = value
            elif isinstance(value, BaseModel) and isinstance(dumped.get(key), dict):
                unknown_keys_into(dumped[key], value)

    with warnings.catch_warnings():  # a section model_copy set to a dict: validated below
        warnings.simplefilter("ignore")
        raw = cfg.model_dump(exclude_unset=True)
    unknown_keys_into(raw, cfg)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError("the training config", every_error(
            e, TrainConfig, raw, lambda err: format_errors(err, TrainConfig))) from None


def resolve_paths(cfg: TrainConfig, base: Path) -> TrainConfig:
    """Make the local data paths and out_dir absolute, relative to ``base``."""
    updates: dict[str, Any] = {"data": cfg.data.resolved(base)}
    if cfg.out_dir:
        out_dir = Path(cfg.out_dir).expanduser()
        updates["out_dir"] = str(out_dir if out_dir.is_absolute() else base / out_dir)
    return cfg.model_copy(update=updates)
