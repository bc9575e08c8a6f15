"""Configuration of one training run.

One schema, validated by pydantic (unknown keys are errors that name the key). The field
docstrings double as help text. ``TrainConfig`` is what ``scaletune train FILE.yaml`` reads and
what every trial of a study builds.
"""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

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


Tokens = Annotated[int, BeforeValidator(parse_number), Field(ge=1)]
"""A count of tokens >= 1, written as 2e6, 2_000_000 or 2000000."""
TokensOrZero = Annotated[int, BeforeValidator(parse_number), Field(ge=0)]
Number = Annotated[int | float, BeforeValidator(parse_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class ModelConfig(_Strict):
    """A GPT decoder (nanoGPT layout) with the switches the seeds discuss."""

    n_layer: int = Field(6, ge=1)
    """Number of transformer blocks."""
    n_head: int = Field(8, ge=1)
    """Attention heads per block; must divide n_embd."""
    n_embd: int = Field(256, ge=8)
    """Width of the residual stream (d_model)."""
    block_size: int = Field(128, ge=2)
    """Context length in tokens (sequence length of every training window)."""
    vocab_size: int | None = Field(None, ge=2)
    """Vocabulary size; None takes it from the tokenizer (rounded up to a multiple of 64 for BPE)."""
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
    """Default rate for the four dropout sites below (0 for single-epoch pretraining)."""
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

    def rate(self, site: Literal["embd", "attn", "resid", "mlp"]) -> float:
        """The dropout rate at one of the four sites."""
        value = getattr(self, f"{site}_dropout")
        return self.dropout if value is None else value


class OptimConfig(_Strict):
    """Optimizer, its parameter-group policy, and the learning-rate schedule."""

    name: Literal["adamw", "sgd", "muon"] = "adamw"
    """adamw (decoupled decay), sgd (momentum), or muon (Muon on 2-D hidden matrices, AdamW on the rest)."""
    lr: float = Field(3e-4, gt=0)
    """Peak learning rate (reached at the end of warmup)."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled weight decay lambda (PyTorch AdamW convention: each step subtracts lr*lambda*theta)."""
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
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing of the training cross-entropy (validation loss is always plain)."""
    schedule: Literal["cosine", "linear", "wsd", "constant"] = "cosine"
    """After warmup: cosine to min_lr_ratio*lr, linear to zero, warmup-stable-decay, or constant."""
    warmup_frac: float = Field(0.1, ge=0, lt=1)
    """Linear warmup length as a fraction of all optimizer steps."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Final LR of the cosine schedule as a fraction of the peak."""
    decay_frac: float = Field(0.2, gt=0, le=1)
    """Fraction of steps spent in the final linear decay to zero of the wsd schedule."""

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimConfig:
        if self.name == "sgd" and self.nesterov and self.beta1 == 0:
            raise ValueError("optim.nesterov needs momentum: set optim.beta1 (the SGD momentum) "
                             "above 0, or optim.nesterov to false")
        return self


LOCAL_BUILDERS = ("text", "json", "csv", "parquet", "arrow")
"""`datasets` builders that read local files named by data_files."""


class DataConfig(_Strict):
    """Where the text comes from and how it becomes tokens."""

    source: Literal["builtin", "text", "hf"] = "builtin"
    """builtin: real text shipped with Python (offline); text: local text file(s); hf: a `datasets` dataset."""
    builtin: Literal["pydoc_topics", "stdlib"] = "pydoc_topics"
    """Which built-in corpus (source == 'builtin'): the prose of Python's docs, or the stdlib's sources."""
    path: str | None = None
    """A text file or a glob of them (source == 'text'); relative paths resolve against the config file."""
    dataset: str | None = None
    """Hub id, or a `datasets` builder name such as 'text'/'json' with data_files (source == 'hf')."""
    data_files: str | list[str] | None = None
    """Files for the dataset (source == 'hf'): local files for the builders text/json/csv/parquet/
    arrow (relative paths resolve against the config file), or files in a hub dataset's repository."""
    name: str | None = None
    """Dataset configuration name (source == 'hf')."""
    split: str = "train"
    """Dataset split (source == 'hf')."""
    text_column: str = "text"
    """Column holding the text (source == 'hf')."""
    max_documents: int | None = Field(None, ge=1)
    """Use only the first N documents (source == 'hf')."""
    tokenizer: str = "byte"
    """'byte' (vocab 256, offline) or a tiktoken encoding name such as 'gpt2'."""
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    """Fraction of the token stream held out (its tail) for validation."""
    val_windows: int = Field(64, ge=1)
    """Number of fixed held-out windows every evaluation averages over (same for every run)."""
    cache_dir: str | None = None
    """Where tokenized memmaps are cached (a relative path is taken from the current folder); None
    means $SCALETUNE_CACHE or ~/.cache/scaletune."""

    def resolved(self, base: Path) -> DataConfig:
        """This config with its relative local paths made absolute against ``base``: ``path``, and
        ``data_files`` of the local-file builders (a hub dataset's data_files name files in its
        repository, and URLs are left as they are)."""

        def absolute(p: str) -> str:
            if "://" in p:
                return p
            p = os.path.expanduser(p)
            return p if Path(p).is_absolute() else str(base / p)

        update: dict[str, Any] = {}
        if self.path:
            update["path"] = absolute(self.path)
        if self.dataset in LOCAL_BUILDERS and self.data_files:
            files = self.data_files
            update["data_files"] = (absolute(files) if isinstance(files, str)
                                    else [absolute(f) for f in files])
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        if self.source == "text" and not self.path:
            raise ValueError("data.path is required when data.source is 'text'")
        if self.source == "hf" and not self.dataset:
            raise ValueError("data.dataset is required when data.source is 'hf'")
        return self


class TrainConfig(_Strict):
    """One training run: model, data, optimizer, token budget and run options."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    tokens: Tokens = 1_000_000
    """Training budget in tokens; steps = ceil(tokens / (batch_size * block_size))."""
    batch_size: int = Field(32, ge=1)
    """Sequences per optimizer step (global batch)."""
    micro_batch_size: int | None = Field(None, ge=1)
    """Sequences per forward/backward; batch_size must be a multiple. None means batch_size."""
    eval_every_tokens: Tokens | None = None
    """Evaluate validation loss every this many tokens; None means 10 evaluations per run."""
    seed: int = 0
    """Seed of init, data order and dropout: the same seed gives the same run."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """auto picks cuda when available, else cpu."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Autocast dtype: auto is bfloat16 on CUDA (when supported), float32 elsewhere. With
    bfloat16 on a CPU without AMX, attention runs in float32 (faster there, see
    trainer.kernels.float32_attention); the linear layers run in bfloat16."""
    compile: bool = False
    """Wrap the model in torch.compile."""
    cpu_matmul: Literal["auto", "onednn", "torch"] = "auto"
    """float32 CPU runs: onednn sends the forward and input-gradient matmuls of large linear
    layers through oneDNN, which reaches the CPU's peak where torch's default BLAS may not
    (measured 1.11x per training step of a 6L/256d model on an AMD EPYC; small layers stay with
    torch, see trainer.kernels); torch uses torch's default for all; auto is onednn on AMD x86
    CPUs and torch elsewhere. onednn falls back to torch where this build has no oneDNN.
    Results agree up to float32 summation order."""
    num_threads: int | None = Field(None, ge=1)
    """torch threads on CPU; None uses all cores this process may run on."""
    max_loss: float | None = Field(None, gt=0)
    """Stop as diverged when a training loss exceeds this; None means 1.5 x the initial loss ln(vocab)."""
    out_dir: str | None = None
    """Folder for checkpoints and the metrics log; None disables both."""
    checkpoint_every_tokens: Tokens | None = None
    """Write an atomic checkpoint this often (needs out_dir); None writes only the final one."""
    progress: bool = True
    """Show a progress bar with loss and tokens/s."""
    tensorboard: bool = False
    """Also write every evaluation as TensorBoard scalars into out_dir/tensorboard (needs out_dir
    and the tensorboard package)."""
    provenance: dict[str, Any] | None = None
    """Where this config came from (study, trial, transfer rules); not used by training."""

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        micro = self.micro_batch_size or self.batch_size
        if self.batch_size % micro:
            raise ValueError(
                f"batch_size must be a multiple of micro_batch_size, got batch_size={self.batch_size}, "
                f"micro_batch_size={micro}"
            )
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.block_size


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


def format_errors(err: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per error: the dotted key, the bad value and what is allowed."""
    lines = []
    for e in err.errors():
        key = clip(".".join(str(p) for p in e["loc"]))
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(root, e["loc"][:-1]) if root else None
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
            continue
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {shown_value(value)})"
        msg = e["msg"].removeprefix("Value error, ")  # a validator's own message names its keys
        if e["type"] == "value_error" and (not key or msg.startswith(f"{key}.")):
            lines.append(f"{msg}{shown}")
        else:
            lines.append(f"{key or '<top>'}: {msg}{shown}")
    return lines


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The field names of the (nested) model at ``loc``, following unions and tagged unions."""
    for part in loc:
        if isinstance(part, int):
            continue
        if part not in model.model_fields:
            # A tagged-union member: pydantic puts the tag in the location.
            continue
        found = _models_in(model.model_fields[part].annotation)
        if not found:
            return None
        model = found[0]
        if len(found) > 1:
            tagged = [m for m in found if _tag(m) in loc]
            if not tagged:
                return None
            model = tagged[0]
    return list(model.model_fields)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) + tuple(getattr(annotation, "__metadata__", ())):
        out += _models_in(arg)
    if hasattr(annotation, "__origin__") and not out:
        out += _models_in(annotation.__origin__)
    return out


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("name")
    args = getattr(field.annotation, "__args__", ()) if field else ()
    return args[0] if len(args) == 1 else None


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
        return str(index)
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


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a study or training file: one YAML mapping, within the bounds above. Anything else is
    a ConfigError whose lines say where and what is allowed (never a traceback)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded: a device such as /dev/zero never ends
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except OSError as e:
        raise ConfigError(str(path), [f"cannot read the file: {e.strerror}"]) from None
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


def load_train_config(path: str | Path) -> TrainConfig:
    """Read ``scaletune train`` YAML; relative data paths resolve against the file's folder."""
    raw = load_yaml(path)
    try:
        cfg = TrainConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(str(path), format_errors(e, TrainConfig)) from None
    return resolve_paths(cfg, Path(path).resolve().parent)


def resolve_paths(cfg: TrainConfig, base: Path) -> TrainConfig:
    """Make the local data paths and out_dir absolute, relative to ``base``."""
    updates: dict[str, Any] = {"data": cfg.data.resolved(base)}
    if cfg.out_dir:
        out_dir = Path(cfg.out_dir).expanduser()
        updates["out_dir"] = str(out_dir if out_dir.is_absolute() else base / out_dir)
    return cfg.model_copy(update=updates)
