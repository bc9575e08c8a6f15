"""Text -> tokens -> a cached memory-mapped token file -> training batches and validation windows.

Tokenizing happens once per (content, tokenizer): the tokens land in ``cache_dir`` as
``<fingerprint>.u16.bin`` (or ``.u32.bin``), where the fingerprint is the sha256 of the text plus
the tokenizer name (for a tokenizer file, the sha256 of the file). A small record keyed by the
source description (paths with sizes and mtimes, dataset names, the tokenizer) points at that
file, so a worker that finds the record opens the memmap without reading the text or loading the
tokenizer. Every file is written to a temporary name and renamed into place, so concurrent
workers never see half a file.

The token stream is split deterministically: its tail ``val_fraction`` is validation. Training
batches are random windows drawn with a seeded torch.Generator; validation is a fixed set of
windows at evenly spaced offsets, the same for every run with the same data config.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import hashlib
import io
import json
import lzma
import os
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaletune.trainer.config import (
    COMPRESSED,
    LOCAL_BUILDERS,
    TOKENIZERS_ALLOWED,
    DataConfig,
    file_builder,
    is_glob,
    is_tokenizer_file,
    text_files,
    tokenizer_file_error,
    uncompressed_name,
    usable_cores,
)
from scaletune.trainer.errors import DataError, first_line, naming

if TYPE_CHECKING:  # torch is imported where batches are drawn: the search driver never needs it
    import torch

BYTE_VOCAB = 256
# Documents are joined by this text for the byte tokenizer and for a tokenizer file without an
# end-of-text token; tiktoken encodings and files with one put that token between documents
# instead (as GPT-2 was trained).
DOC_SEPARATOR = "\n\n"
END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")
"""End-of-text tokens of tokenizer files, looked for in this order (GPT-2 and most byte-level
BPEs, Llama 3, Llama 2/Mistral/T5, Gemma)."""
JOINERS = ("[SEP]",)
"""Tokens that end a text in tokenizers without an end-of-text token (BERT's WordPiece), looked
for after END_OF_TEXT."""


@dataclass
class TokenData:
    """A tokenized corpus split into a training head and a validation tail (both memmaps)."""

    train: np.memmap
    val: np.memmap
    vocab_size: int
    """Size of the tokenizer's vocabulary (the model may pad it, see model.padded_vocab_size)."""
    fingerprint: str
    """'<first 16 hex digits of the text's sha256>-<tokenizer_key>': equal fingerprints, equal
    tokens."""
    path: Path
    """The cached token file."""
    from_cache: bool
    """True when the cache answered without reading the text or loading the tokenizer."""

    @property
    def n_train_tokens(self) -> int:
        return len(self.train)

    @property
    def n_val_tokens(self) -> int:
        return len(self.val)


def prepare_data(cfg: DataConfig, block_size: int) -> TokenData:
    """Tokenize (or find in the cache) the corpus of ``cfg`` and split it.

    The search driver calls this once before it launches workers, so that workers only open the
    cache. Raises DataError when the text is missing or either split is shorter than one window.
    """
    tokens, meta, path, from_cache = _tokens(cfg)
    held = validation_part(cfg)
    if held is None:
        return _split(tokens, meta, cfg, block_size, path, from_cache)
    if problem := _no_splits(cfg):
        raise DataError(problem)
    val, val_meta, _, val_from_cache = _tokens(held)
    if problem := size_problem(len(tokens), cfg, block_size, n_val=len(val)):
        raise DataError(problem)
    return TokenData(train=tokens[:_n_train(len(tokens), cfg)], val=val,
                     vocab_size=meta["vocab_size"],
                     fingerprint=joined_fingerprint(meta["fingerprint"], val_meta["fingerprint"]),
                     path=path, from_cache=from_cache and val_from_cache)


def validation_part(cfg: DataConfig) -> DataConfig | None:
    """The validation data where it is given apart from the training data (data.val_path,
    data.val_split), as data of its own (read, tokenized and cached as any, and held out
    whole); None where validation is the tail of the data (val_fraction). Its reader's errors
    name the key that gives it (``_key``)."""
    if not cfg.validation_apart:
        return None
    if cfg.source == "text":
        held = cfg.model_copy(update={"path": cfg.val_path, "val_path": None,
                                      "train_tokens": None})
    elif cfg.source == "hf" and cfg.val_path:  # a local builder's files
        held = cfg.model_copy(update={"data_files": cfg.val_path, "val_path": None,
                                      "train_tokens": None, "max_documents": None})
    else:
        held = cfg.model_copy(update={"split": cfg.val_split, "val_split": None,
                                      "train_tokens": None, "max_documents": None})
    held._validation_key = "data.val_path" if cfg.val_path else "data.val_split"
    return held


def _training_part(cfg: DataConfig) -> DataConfig:
    """The training data alone, where validation is given apart (validation_part): the data of
    ``cfg`` read as one stream, as its token cache keys it."""
    return cfg.model_copy(update={"val_path": None, "val_split": None})


def _key(cfg: DataConfig, key: str) -> str:
    """The key an error about ``key`` (data.path, data.data_files, data.split) names: the one
    that gives the validation part where ``cfg`` is one (validation_part)."""
    given = cfg._validation_key
    if given == "data.val_path" and key in ("data.path", "data.data_files"):
        return given
    return given if given == "data.val_split" and key == "data.split" else key


def _named(cfg: DataConfig) -> str:
    """The dataset as an error about its columns names it: the validation split or files where
    ``cfg`` is the validation part (validation_part)."""
    if cfg._validation_key == "data.val_split":
        return f"the split {cfg.split!r} of {cfg.dataset!r} (data.val_split)"
    if cfg._validation_key == "data.val_path":
        return f"{cfg.data_files!r} (data.val_path)"
    if cfg.data_files and cfg.dataset in LOCAL_BUILDERS:
        # Local files read by a builder ('json', 'csv'): the files, which 'json' did not name.
        return f"{cfg.data_files!r} (data.data_files, read as {cfg.dataset})"
    return repr(cfg.dataset)


def reads_otherwise(cfg: DataConfig, ran_on: str, now: str, who: str) -> str:
    """``data: WHO trained on data RAN_ON, and FILE now reads as NOW``: the data ``who`` trained
    on (its fingerprint ``ran_on``) as it reads now (``now``), for a note on a run of it."""
    return (f"data: {who} trained on data {ran_on}, and {where_changed(cfg, ran_on, now)} now "
            f"reads as {now}")


def another_python(cfg: DataConfig, ran_on: str, now: str, began: str | None, who: str,
                   ) -> str | None:
    """Why built-in data that ``who`` read as ``ran_on`` under Python ``began`` reads as ``now``
    here: the corpus is read from the Python that runs it, another text in each version
    (pydoc_data.topics: 458,917 characters in 3.10, 510,586 in 3.13). Said only where the
    text's half of the fingerprint changed and the tokenizer's did not; None otherwise."""
    this = sys.version.split()[0]
    (text_then, tokenizer_then), (text_now, tokenizer_now) = _parts(ran_on)[0], _parts(now)[0]
    if (cfg.source != "builtin" or not began or began == this or text_then == text_now
            or tokenizer_then != tokenizer_now):
        return None
    return (f"the built-in corpus is read from the Python that runs it, and {who} under Python "
            f"{began}, where this is Python {this}")


def _parts(fingerprint: str) -> list[tuple[str, str]]:
    """(text's hash, tokenizer) of each part of a data fingerprint ('<hash>-<tokenizer>'; the
    training and validation data given apart joined by '+', joined_fingerprint)."""
    return [(text, tokenizer) for text, _, tokenizer in
            (part.partition("-") for part in fingerprint.split("+"))]


def tokenizer_alone_changed(ran_on: str, now: str) -> bool:
    """Do fingerprints ``ran_on`` and ``now`` hold the same texts under another tokenizer?"""
    then, later = _parts(ran_on), _parts(now)
    return (len(then) == len(later) and then != later
            and all(a[0] == b[0] for a, b in zip(then, later, strict=True)))


def where_changed(cfg: DataConfig, ran_on: str, now: str) -> str:
    """The data as a message about a change names it (``where``): data.tokenizer where the same
    texts read under another tokenizer (the text's place says nothing of what changed); the
    validation data where it is given apart and only its half of the fingerprint
    (joined_fingerprint) changed."""
    if tokenizer_alone_changed(ran_on, now):
        return f"data.tokenizer {cfg.tokenizer}"
    train, _, val = ran_on.partition("+")
    if (held := validation_part(cfg)) and val and now.startswith(train + "+"):
        return where(held)
    return where(cfg)


def _no_splits(cfg: DataConfig) -> str | None:
    """The error of a val_split of a dataset saved as one (``Dataset.save_to_disk``), which has
    no splits: it would validate on the text it trains on."""
    if cfg.source != "hf" or not cfg.val_split or saved_dataset(cfg.dataset) != "dataset":
        return None
    return (f"data.val_split: {cfg.dataset!r} is one dataset saved with save_to_disk, without "
            "splits: save a DatasetDict with a validation split, or leave val_split out to hold "
            "out data.val_fraction of it")


def joined_fingerprint(train: str, val: str) -> str:
    """The fingerprint of training and validation data given apart: both, joined by '+'."""
    return f"{train}+{val}"


def _tokens(cfg: DataConfig) -> tuple[np.ndarray, dict[str, Any], Path, bool]:
    """The token stream of this data (its validation part given apart, validation_part, left
    out), its cache record, its token file, and whether the cache held it; tokenized into the
    cache if not."""
    cache = cache_dir(cfg)
    record_path = _record_path(cache, cfg)
    meta = _read_json(record_path)
    from_cache = meta is not None and _intact(cache, meta)
    if meta is not None and not from_cache:  # cut short: tokenized again below
        _token_path(cache, meta).unlink(missing_ok=True)
    if not from_cache:
        try:
            meta = _tokenize_into_cache(cfg, cache)
        except OSError as e:  # a read-only cache (a text it cannot read is named by the reader)
            if e.filename is None or Path(e.filename).parent != cache:
                raise
            raise DataError(unwritable_cache(cfg, cache, e.strerror or str(e))) from None
        # The record only spares the next run a read of the text: a read-only cache that holds
        # the tokens (a data file touched since it was filled) serves them all the same.
        with contextlib.suppress(OSError):
            _write_atomic(record_path, json.dumps(meta, indent=1).encode())
    path = _token_path(cache, meta)
    if path.stat().st_size == 0:  # no text (np.memmap refuses an empty file): size_problem
        return np.zeros(0, dtype=np.dtype(meta["dtype"])), meta, path, from_cache
    return np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r"), meta, path, from_cache


def where(cfg: DataConfig) -> str:
    """The data as a message names it: data.path, or the dataset or built-in corpus; the key
    that gives it where ``cfg`` is the validation part of a config (validation_part)."""
    if cfg._validation_key == "data.val_path":
        return f"data.val_path {cfg.path if cfg.source == 'text' else cfg.data_files}"
    if cfg._validation_key == "data.val_split":
        return f"data.val_split {cfg.split!r} of {cfg.dataset}"
    if cfg.source == "text":
        return f"data.path {cfg.path}"
    if cfg.source == "hf" and cfg.dataset in LOCAL_BUILDERS and cfg.data_files:
        return f"data.data_files {cfg.data_files}"  # 'data.dataset json' said nothing of them
    if cfg.source == "hf":
        return f"data.dataset {cfg.dataset}"
    return f"data.builtin {cfg.builtin}"


def prepared_sizes(cfg: DataConfig) -> tuple[int, int] | None:
    """(training tokens, vocabulary size) of this data when prepare_data has cached it already,
    else None (also for a cached corpus with no text).

    Reads the cache record and the token file's size only (and hashes a tokenizer file): no
    text, no tokenizing, no network.
    Raises DataError where a local path of the data is missing, as prepare_data does.
    """
    cached = _cached_tokens(cfg)
    if cached is None:
        return None
    n_train = _n_train(cached[0], cfg)
    return (n_train, cached[1]["vocab_size"]) if n_train > 0 else None


def _cached_tokens(cfg: DataConfig) -> tuple[int, dict[str, Any]] | None:
    """(tokens, cache record) of this data where prepare_data has cached it, else None."""
    cache = cache_dir(cfg)
    meta = _read_json(_record_path(cache, cfg))
    if meta is None or not _intact(cache, meta):
        return None
    return _token_path(cache, meta).stat().st_size // np.dtype(meta["dtype"]).itemsize, meta


def holds_tokens(cfg: DataConfig, fingerprint: str | None) -> bool:
    """Whether the token cache holds this data's tokens: by its record, or by ``fingerprint``
    (read_fingerprint's) where the record is of an earlier state of the files (touched since);
    of both parts where validation is given apart."""
    if held := validation_part(cfg):
        train, _, val = (fingerprint or "").partition("+")
        return holds_tokens(_training_part(cfg), train or None) and holds_tokens(held, val or None)
    if _cached_tokens(cfg) is not None:
        return True
    return fingerprint is not None and any(cache_dir(cfg).glob(f"{fingerprint}.u*.bin"))


def _byte_text_tokens(cfg: DataConfig) -> int | None:
    """Tokens of a ``source: text`` corpus under the byte tokenizer, from its files' sizes (a
    token per byte, plus the separator between files); None for any other data."""
    if cfg.source != "text" or cfg.tokenizer != "byte":
        return None
    sizes = [os.path.getsize(p) for p in _text_paths(cfg)]
    if not any(sizes):
        return 0  # what prepare_data finds: no text
    return sum(sizes) + len(DOC_SEPARATOR.encode()) * (len(sizes) - 1)


def split_sizes(cfg: DataConfig) -> tuple[int, int] | None:
    """(training, validation) tokens of this data where they are known without preparing it:
    counted in the token cache where prepare_data ran, from the files' sizes for byte-level text
    (as ``byte_text_train_tokens``); else None. Raises DataError or OSError where a local path of
    the data is missing."""
    n_tokens = known_tokens(cfg)
    if n_tokens is None:
        return None
    if held := validation_part(cfg):
        n_val = known_tokens(held)
        return None if n_val is None else (_n_train(n_tokens, cfg), n_val)
    return _n_train(n_tokens, cfg), _n_val(n_tokens, cfg)


def validation_note(cfg: DataConfig, block_size: int, n_val: int,
                    study: bool = True) -> str | None:
    """The note for a validation split too small for its windows, else None: with fewer tokens
    than ``val_windows`` windows of ``block_size`` + 1 would cover, the windows overlap and
    every evaluation (which ranks and prunes a study's trials; ``study`` False: of one run)
    rests on those few tokens."""
    cover = cfg.val_windows * (block_size + 1)
    if n_val >= cover:
        return None
    more = (" or raise data.val_fraction (below 0.5)" if cfg.val_fraction < 0.25
            and not validation_part(cfg) else "")
    held = ("data.val_path" if cfg.val_path else f"the split {cfg.val_split!r}"
            ) if validation_part(cfg) else f"val_fraction {cfg.val_fraction:g} of the data"
    return (f"data: the validation split holds {n_val:,} tokens ({held}), fewer than its {cfg.val_windows} windows of block_size + 1 = "
            f"{block_size + 1} tokens would cover ({cover:,}): they overlap, and the val loss "
            + (f"that ranks and prunes the trials rests on those {n_val:,} tokens alone, where "
               "small differences between trials are noise" if study else
               f"of each evaluation rests on those {n_val:,} tokens alone")
            + f"; use more text{more}")


def train_tokens_note(cfg: DataConfig, n_train: int) -> str | None:
    """The note for a ``train_tokens`` above the ``n_train`` training tokens the data holds (it
    caps, and the trials train on fewer tokens than it says), else None."""
    if cfg.train_tokens is None or cfg.train_tokens <= n_train:
        return None
    return (f"data.train_tokens: {cfg.train_tokens:,} is more than the data's {n_train:,} "
            f"training tokens: it caps them, and the trials train on those {n_train:,}")


def byte_text_train_tokens(cfg: DataConfig) -> int | None:
    """Training tokens of a ``source: text`` corpus under the byte tokenizer, from its files'
    sizes without reading them (a token per byte, plus the separator between files); None for
    any other data. Exact for UTF-8 files, which are the only ones prepare_data accepts."""
    n_tokens = _byte_text_tokens(cfg)
    return None if n_tokens is None else _n_train(n_tokens, cfg)


def vocab_size_of(tokenizer: str) -> int:
    """Vocabulary size of data.tokenizer: 256 for 'byte', a tokenizer file's highest id + 1, else
    the tiktoken encoding's n_vocab."""
    if tokenizer == "byte":
        return BYTE_VOCAB
    if is_tokenizer_file(tokenizer):
        # Ids index the embedding's rows: the highest id + 1, not get_vocab_size(), which counts
        # tokens and is smaller where the file's ids leave gaps.
        vocab = load_tokenizer_file(tokenizer).get_vocab(with_added_tokens=True)
        return max(vocab.values(), default=-1) + 1
    return load_tiktoken(tokenizer).n_vocab


# n_vocab of tiktoken's published encodings, so that a study can be planned without their files
# (tiktoken downloads them on first use). Each is read from its constructor in the installed
# tiktoken_ext/openai_public.py: its explicit_n_vocab where it states one, else its highest
# special token + 1 (the merges' ranks all lie below it). tests/trainer/test_tokenizers.py checks
# every entry against the installed tiktoken.
TIKTOKEN_VOCAB_SIZES = {
    "gpt2": 50257,  # explicit_n_vocab
    "r50k_base": 50257,  # explicit_n_vocab
    "p50k_base": 50281,  # explicit_n_vocab
    "p50k_edit": 50284,  # <|fim_suffix|> 50283
    "cl100k_base": 100277,  # <|endofprompt|> 100276
    "o200k_base": 200019,  # <|endofprompt|> 200018
    "o200k_harmony": 201088,  # <|reserved_201087|>
}


def known_vocab_size(tokenizer: str) -> int | None:
    """Vocabulary size of data.tokenizer without network: 256 for 'byte', a tokenizer file's (read
    from the file), the table above for tiktoken's published encodings, None for any other
    encoding (vocab_size_of loads it)."""
    if is_tokenizer_file(tokenizer):
        return vocab_size_of(tokenizer)
    return BYTE_VOCAB if tokenizer == "byte" else TIKTOKEN_VOCAB_SIZES.get(tokenizer)


def vocab_problem(vocab_size: int | None, tokens: int | None, tokenizer: str,
                  who: str = "run") -> str | None:
    """Why ``model.vocab_size`` cannot hold the ``tokens`` of ``tokenizer`` (None where it can,
    or either is unknown); ``who`` names what could not embed them (a run, a study's trial)."""
    if vocab_size is None or tokens is None or vocab_size >= tokens:
        return None
    return (f"model.vocab_size: {vocab_size:,} is smaller than the tokenizer's {tokens:,} tokens "
            f"({tokenizer}), so no {who} could embed them: leave model.vocab_size unset, or set "
            "it to at least that")


def tokenizer_key(tokenizer: str) -> str:
    """data.tokenizer as the token cache names it: 'byte' or the encoding's name, or for a file
    'file-' and the first 16 hex digits of its sha256. The content, not the path: an edited file
    makes new tokens, a moved project keeps its cache."""
    if not is_tokenizer_file(tokenizer):
        return tokenizer
    if problem := tokenizer_file_error(tokenizer):
        raise DataError(problem)
    return f"file-{hashlib.sha256(Path(tokenizer).read_bytes()).hexdigest()[:16]}"


_TOKENIZERS: dict[tuple[str, int, int], Any] = {}
"""Tokenizer files read in this process, by path, size and modification time."""


def load_tokenizer_file(path: str) -> Any:
    """A ``tokenizers.Tokenizer`` from a tokenizer.json, with errors that name data.tokenizer."""
    from tokenizers import Tokenizer

    if problem := tokenizer_file_error(path):
        raise DataError(problem)
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        if (tok := _TOKENIZERS.get(key)) is None:
            # One load per file and process: validate and train read it for its vocabulary, its
            # notes and its tokens (0.7 s each for a file of 200,000 tokens). Shared: what
            # changes it (encode_special_tokens, _encode_with_file) changes no caller's reading.
            tok = _TOKENIZERS[key] = Tokenizer.from_file(path)
        return tok
    except Exception as e:  # the library raises a bare Exception for unreadable or invalid files
        first = first_line(e)
        raise DataError(f"data.tokenizer: {path!r} is not a tokenizer file of the Hugging Face "
                        f"tokenizers library ({first}); data.tokenizer takes {TOKENIZERS_ALLOWED}"
                        ) from None


LOSSY_PROBE = "Two words,\n\tthen Mixed Case and 4 spaces    here."
"""A text whose variants (LOSSY_VARIANTS) a lossless tokenizer (byte-level BPE, tiktoken's,
bytes) encodes to other tokens: line ends, tabs, runs of spaces and capitals."""

LOSSY_VARIANTS = {
    "line ends and tabs": LOSSY_PROBE.replace("\n\t", " "),
    "runs of spaces": LOSSY_PROBE.replace("    ", " "),
    "case": LOSSY_PROBE.lower(),
}
"""What a lossy tokenizer may drop, and LOSSY_PROBE without it."""


def lossy_tokenizer_note(cfg: DataConfig) -> str | None:
    """A tokenizer file that encodes two texts alike that differ in line ends, runs of spaces or
    case: a BPE with the Whitespace pre-tokenizer of the Hugging Face tokenizers quick tour
    trains the model on text without its spaces and line ends, and said nothing. Judged on the
    tokens, not on the decoded text (a byte-level BPE that adds a prefix space, or has no
    decoder, decodes otherwise yet loses nothing). None for a lossless one, bytes and tiktoken's
    encodings, or a file that cannot be read (its own check says why)."""
    if not is_tokenizer_file(cfg.tokenizer):
        return None
    try:
        tok = load_tokenizer_file(cfg.tokenizer)
        texts = [LOSSY_PROBE, *LOSSY_VARIANTS.values()]
        ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    except Exception:  # an odd file: the run's own checks say what is wrong
        return None
    lost = [what for what, same in zip(LOSSY_VARIANTS, ids[1:], strict=True) if same == ids[0]]
    if not lost:
        return None
    return (f"data.tokenizer: {cfg.tokenizer} encodes text alike that differs in "
            f"{' or '.join(lost)} ({LOSSY_PROBE!r} and {LOSSY_VARIANTS[lost[0]]!r} are the same "
            "tokens): what it drops the model never sees; a byte-level BPE (pre-tokenizer and "
            "decoder ByteLevel) keeps every byte")


def cache_folder(cfg: DataConfig) -> Path:
    """data.cache_dir, else $SCALETUNE_CACHE, else ~/.cache/scaletune; not made (cache_dir)."""
    path = cfg.cache_dir or os.environ.get("SCALETUNE_CACHE") or Path.home() / ".cache" / "scaletune"
    return Path(path).expanduser()


def cache_dir(cfg: DataConfig) -> Path:
    """The token cache's folder (``cache_folder``), made where it is not there yet."""
    path = cache_folder(cfg)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file there, a folder that cannot be made or written
        raise DataError(f"{_cache_setting(cfg)} {str(path)!r}: cannot make the token cache's "
                        f"folder there ({e.strerror or e}): give a writable folder as "
                        "data.cache_dir or $SCALETUNE_CACHE") from None
    return path


def _cache_setting(cfg: DataConfig) -> str:
    """Which setting chose the token cache's folder, as a message names it."""
    return ("data.cache_dir" if cfg.cache_dir else
            "$SCALETUNE_CACHE" if os.environ.get("SCALETUNE_CACHE") else "the default cache")


def unwritable_cache(cfg: DataConfig, cache: Path, why: str) -> str:
    """The line for a token cache this data's tokens cannot be written to (``why``: the OS's
    reason), which a run that has to tokenize it refuses."""
    return (f"{_cache_setting(cfg)} {str(cache)!r}: cannot write this data's tokens there "
            f"({why}): give a writable folder as data.cache_dir or $SCALETUNE_CACHE, or fill "
            "this one once where it can be written (a read-only cache that holds the tokens "
            "serves them)")


def sample_batch(
    tokens: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows (nanoGPT style): inputs x and next-token targets y, each (B, T) int64.

    The offsets come from ``generator`` alone, so a seed fixes the batches, and restoring the
    generator's state on resume continues the same sequence.
    """
    import torch

    ix = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    rows = np.asarray(tokens[ix.numpy()[:, None] + np.arange(block_size + 1)], dtype=np.int64)
    windows = torch.from_numpy(rows)  # (B, T + 1)
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def val_windows(tokens: np.ndarray, block_size: int, n_windows: int) -> torch.Tensor:
    """The fixed validation set: n_windows windows of block_size + 1 tokens, evenly spaced.

    Depends only on the tokens and the two sizes, so every trial of a study is scored on the
    same held-out text.
    """
    import torch

    offsets = np.linspace(0, len(tokens) - (block_size + 1), n_windows).round().astype(np.int64)
    rows = np.asarray(tokens[offsets[:, None] + np.arange(block_size + 1)], dtype=np.int64)
    return torch.from_numpy(rows)  # (n_windows, T + 1)


UNIGRAM_SAMPLE = 1 << 24
"""Training tokens counted for ``unigram_loss`` at most (evenly spaced stretches of a longer
split): 16M tokens give each token's frequency to well under 1% where it matters to the loss."""


def unigram_loss(data: TokenData, block_size: int, n_windows: int) -> float:
    """The validation loss (nats per token) of a model that knows how often each token occurs
    in the training split and nothing else, on the windows every trial is scored on
    (``val_windows``): what a run that has learned only token frequencies scores. A study whose
    best loss is about this has learned little that its hyperparameters could matter to
    (``search.fit``). Counts start at 1/2, so a token the training split lacks costs a finite
    loss."""
    train = data.train
    if len(train) > UNIGRAM_SAMPLE:
        # Slices, not an index array of 16M int64 offsets: 0.09 s against 0.23 s on 190M
        # uint16 tokens, with 128 MiB less of the driver's memory.
        stretch = 4096
        starts = np.linspace(0, len(train) - stretch, UNIGRAM_SAMPLE // stretch).astype(np.int64)
        train = np.concatenate([train[s:s + stretch] for s in starts])
    offsets = np.linspace(0, len(data.val) - (block_size + 1), n_windows).round().astype(np.int64)
    targets = np.asarray(data.val[offsets[:, None] + np.arange(1, block_size + 1)], dtype=np.int64)
    size = max(data.vocab_size, int(targets.max()) + 1)
    counts = np.bincount(np.asarray(train), minlength=size)[:size] + 0.5
    return float(-np.log(counts[targets] / counts.sum()).mean())


def load_tiktoken(name: str) -> Any:
    """A tiktoken Encoding by name, with errors that say what to do when it cannot be loaded."""
    import tiktoken

    known = tiktoken.list_encoding_names()
    if name not in known:
        raise DataError(f"unknown tokenizer {name!r}: data.tokenizer takes {TOKENIZERS_ALLOWED} "
                        f"(tiktoken's encodings: {known})")
    try:
        return tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken fetches its files over HTTP; any failure there lands here
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        files = ", ".join(f"{hashlib.sha1(url.encode()).hexdigest()} for {url}"
                          for url in _tiktoken_urls(name))
        raise DataError(
            f"tokenizer {name!r}: the tiktoken encoding could not be loaded offline "
            f"({type(e).__name__}: {first}). tiktoken ships no encoding files: it downloads them "
            "once into its cache. Alternatives: use tokenizer 'byte' (needs no files) or a "
            "tokenizer.json of the Hugging Face tokenizers library (a local file), or on a "
            "machine with network access run  TIKTOKEN_CACHE_DIR=tiktoken-cache python -c "
            f"\"import tiktoken; tiktoken.get_encoding('{name}')\"  , copy the folder "
            "tiktoken-cache here and set TIKTOKEN_CACHE_DIR to its path"
            + (f" (tiktoken names each file by the sha1 of its URL: {files})" if files else "")
            + "."
        ) from e


def tiktoken_download_note(cfg: DataConfig) -> str | None:
    """A note when preparing this data would download a tiktoken encoding: the tokenizer is a
    tiktoken encoding, the data is not prepared (cached) yet, and a file the encoding is built
    from is not in tiktoken's cache. None otherwise, and for an encoding whose files cannot be
    named. Reads file names only: no network, no tokenizing.

    ``scaletune validate`` and ``run --dry-run`` print it, so that a study that passes them
    offline does not fail at its first step (load_tiktoken's error) without warning.
    """
    name = cfg.tokenizer
    if name == "byte" or is_tokenizer_file(name) or prepared_sizes(cfg) is not None:
        return None
    # Where tiktoken.load.read_file_cached looks (tiktoken 0.7-0.12): TIKTOKEN_CACHE_DIR, else
    # DATA_GYM_CACHE_DIR, else data-gym-cache in the temporary folder; "" turns the cache off.
    env = os.environ
    cache = env.get("TIKTOKEN_CACHE_DIR", env.get("DATA_GYM_CACHE_DIR",
                                                  os.path.join(tempfile.gettempdir(),
                                                               "data-gym-cache")))
    urls = _tiktoken_urls(name)
    missing = [u for u in urls if not cache
               or not os.path.exists(os.path.join(cache, hashlib.sha1(u.encode()).hexdigest()))]
    if not missing:
        return None
    where = (f"not in its cache ({cache}), so the first run downloads them" if cache else
             "downloaded by every run: its cache is turned off (TIKTOKEN_CACHE_DIR is empty)")
    return (f"tokenizer {name!r}: tiktoken's files for it ({len(missing)}) are {where}; "
            "without network the run stops there. Offline, use "
            "tokenizer 'byte', a local tokenizer.json, or a TIKTOKEN_CACHE_DIR filled on a "
            "machine with network (the run's error says how)")


def hub_download_note(cfg: DataConfig) -> str | None:
    """A note when preparing this data would download a dataset from the Hugging Face Hub: the
    source is a hub dataset (not a local-file builder, not a local folder), the data is not
    prepared (cached) yet, and neither the hub's cache nor the datasets cache holds anything of
    it. None otherwise. Reads folder names only: no network.

    Offline, ``datasets`` retries the Hub for about half a minute before the run's error says
    what to do; ``scaletune validate`` and ``run --dry-run`` say it before anything starts.
    """
    if (cfg.source != "hf" or not cfg.dataset or cfg.dataset in LOCAL_BUILDERS
            or os.path.exists(os.path.expanduser(cfg.dataset))
            or prepared_sizes(cfg) is not None):
        return None
    import datasets.config
    import huggingface_hub.constants

    repo = cfg.dataset.lower()
    seen = {  # the hub's download cache, and the datasets library's prepared one
        huggingface_hub.constants.HF_HUB_CACHE: "datasets--" + repo.replace("/", "--"),
        datasets.config.HF_DATASETS_CACHE: repo.replace("/", "___"),
    }
    for folder, name in seen.items():
        with contextlib.suppress(OSError):
            if any(entry.lower() == name for entry in os.listdir(folder)):
                return None
    return (f"data.dataset {cfg.dataset!r} is not in this machine's Hugging Face caches "
            f"({huggingface_hub.constants.HF_HUB_CACHE}, {datasets.config.HF_DATASETS_CACHE}), "
            "so the first run downloads it; without network the run stops there (after the "
            "library's retries; HF_HUB_OFFLINE=1 fails at once). Offline, copy the caches from a "
            "machine that loaded it, or save its text as local files and read them with dataset: "
            "text, json, csv or parquet and data_files")


def download_notes(cfg: DataConfig) -> list[str]:
    """What preparing this data would download (``tiktoken_download_note``,
    ``hub_download_note``), one note each; first, the fields its source ignores
    (``unread_note``) and the files of its folder it leaves out (``folder_note``)."""
    return [n for n in (unread_note(cfg), folder_note(cfg), tiktoken_download_note(cfg),
                        hub_download_note(cfg)) if n]


def unread_note(cfg: DataConfig) -> str | None:
    """The note for fields set that only another data.source reads (``source: text`` with
    ``dataset: json`` loads the text file), else None."""
    unread = cfg.unread_given()
    apart = (cfg.validation_apart
             and cfg.val_fraction != type(cfg).model_fields["val_fraction"].default)
    said = ("data.val_fraction: not used, as the validation data is given apart "
            f"({'data.val_path' if cfg.val_path else 'data.val_split'})") if apart else None
    if cfg.source == "hf" and (saved := saved_dataset(cfg.dataset)):
        # A save_to_disk folder is loaded as it was saved: a file named in data_files (missing,
        # even) and a config name went unread without a word.
        given = [f"data.{name}" for name in ("data_files", "name") if getattr(cfg, name)]
        if given:
            picks = " (data.split picks one of its splits)" if saved == "splits" else ""
            said = "; ".join(n for n in (
                f"{', '.join(given)}: not read, as {cfg.dataset} is a dataset saved with "
                f"save_to_disk, loaded as it was saved{picks}: "
                f"{'it is' if len(given) == 1 else 'they are'} ignored", said) if n)
    if not unread:
        return said
    readers = {repr(source) for source, names in cfg.SOURCE_FIELDS.items()
               for name in names if name in unread}
    return (f"{', '.join(f'data.{name}' for name in unread)}: read only when data.source is "
            f"{' or '.join(sorted(readers))}, and this data's source is {cfg.source!r}: "
            f"{'it is' if len(unread) == 1 else 'they are'} ignored"
            + (f"; {said}" if said else ""))


def _tiktoken_urls(name: str) -> list[str]:
    """The URLs an encoding's constructor downloads, read from its source where it spells them
    out (an encoding built from another one, such as o200k_harmony, names none itself)."""
    import inspect
    import re

    import tiktoken.registry

    try:
        source = inspect.getsource((tiktoken.registry.ENCODING_CONSTRUCTORS or {})[name])
    except (KeyError, OSError, TypeError):
        return []
    return re.findall(r"https?://[^\s\"']+", source)


# ---- reading the text ------------------------------------------------------------------------


def read_documents(cfg: DataConfig) -> list[str]:
    """The corpus as a list of documents, in a deterministic order."""
    if cfg.source == "builtin":
        return _builtin_documents(cfg.builtin)
    if cfg.source == "text":
        return [_read_text_file(cfg, p) for p in _text_paths(cfg)]
    return _hf_documents(cfg)


def _builtin_documents(which: str) -> list[str]:
    if which == "pydoc_topics":
        from pydoc_data.topics import topics

        return [topics[k] for k in sorted(topics)]
    return [Path(p).read_text(encoding="utf-8", errors="replace") for p in _stdlib_sources()]


def _stdlib_sources() -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    paths = glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
    rel = sorted(os.path.relpath(p, root) for p in paths)
    return [os.path.join(root, r) for r in rel if "site-packages" not in Path(r).parts]


def _text_paths(cfg: DataConfig) -> list[str]:
    try:
        return text_files(cfg.path)
    except ValueError as e:
        raise DataError(f"{_key(cfg, 'data.path')}: {e}") from None


def _read_text_file(cfg: DataConfig, path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": keep the bytes as they are
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{_key(cfg, 'data.path')}: file not found: {path!r}") from None
    except UnicodeDecodeError as e:
        kind = COMPRESSED.get(os.path.splitext(path)[1].lower())
        hint = (f": a {kind} file, which source: text reads as it is; `source: hf, dataset: "
                f"text, data_files: {path}` reads it through" if kind else "")
        raise DataError(f"{_key(cfg, 'data.path')}: {path!r} is not UTF-8 text ({e}){hint}") \
            from None


def _offline_advice() -> str:
    """What to do when a hub dataset cannot be loaded without the network."""
    why = ("offline mode is on (HF_HUB_OFFLINE)" if os.environ.get("HF_HUB_OFFLINE") else
           "the Hub cannot be reached from here")
    return (f". {why[0].upper()}{why[1:]} and the dataset is not in this machine's datasets "
            "cache: load it once where there is network (the same study, or "
            "datasets.load_dataset with these arguments) and copy ~/.cache/huggingface here, or "
            "save its text as local files and read them with dataset: text, json, csv or parquet "
            "and data_files (no network needed)"
            + ("" if os.environ.get("HF_HUB_OFFLINE") else
               "; HF_HUB_OFFLINE=1 fails at once instead of retrying the network"))


def _reason(error: BaseException) -> str:
    """Why datasets could not load: the error and the cause it wraps ("An error occurred while
    generating the dataset" says nothing of a file that is not UTF-8); a StopIteration, the
    reason of a file without rows, says so."""
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, StopIteration) and not str(error):
        text += " (no rows: is the file empty?)"
    cause = error.__cause__ or error.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f", caused by {type(cause).__name__}: {_lines(str(cause))}"
        if "column names don't match" in str(cause):  # its lines were cut at "Couldn't cast"
            details = getattr(cause, "details", None)
            said = f"{details()}; " if callable(details) else ""  # the columns, by name
            text += (f" ({said}the data files do not all have the same columns, and datasets "
                     "reads them as one table: give data_files files with the same columns)")
    return text


def _lines(said: str, most: int = 400) -> str:
    """An error's lines on one line (a CastError names the columns on the lines after its
    first); its first and last lines where that is longer than ``most`` characters."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    joined = " ".join(lines)
    return joined if len(joined) <= most or len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


def _unreachable(error: BaseException) -> bool:
    """Did loading fail because the Hub could not be reached (no network, no cached copy)?"""
    seen: BaseException | None = error
    for _ in range(10):  # the error and its causes
        if seen is None:
            return False
        name = type(seen).__name__
        if "Connection" in name or name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def _bars_on_terminal_only(datasets: Any) -> Iterator[None]:
    """datasets' progress bars ("Generating train split: ...") while it reads, on a terminal only:
    written to a file or a pipe, each bar is a run of carriage returns in the log."""
    hide = not sys.stderr.isatty() and not datasets.are_progress_bars_disabled()
    if hide:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            datasets.enable_progress_bars()


def _hf_documents(cfg: DataConfig) -> list[str]:
    """The documents of a `datasets` dataset. Local files (the local builders, or a folder of
    data files) are converted to Arrow in a folder of the token cache, removed once their text
    is read: `datasets` kept a copy of the corpus in its own cache (~/.cache/huggingface) for
    every state of the files, which the token cache makes needless."""
    if cfg.dataset not in LOCAL_BUILDERS and _files_folder(cfg) is None:
        return _read_hf(cfg)
    with tempfile.TemporaryDirectory(prefix="datasets-", dir=cache_dir(cfg)) as arrow:
        return _read_hf(cfg, arrow)


def _read_hf(cfg: DataConfig, arrow: str | None = None) -> list[str]:
    import datasets

    kwargs: dict[str, Any] = {} if arrow is None else {"cache_dir": arrow}
    if _text_builder(cfg):
        # The 'text' builder would make every line a row; a file is one document, as for source 'text'.
        kwargs["sample_by"] = "document"
    data_files = cfg.data_files
    if cfg.dataset in LOCAL_BUILDERS and data_files:
        entries = [data_files] if isinstance(data_files, str) else data_files
        for f in entries:
            if not is_glob(f) and not os.path.exists(f):
                raise DataError(f"{_key(cfg, 'data.data_files')}: file not found: {f!r}")
        # `datasets` reads every entry as a glob: a file named shake[v2].txt read shakev.txt.
        escaped = [f if is_glob(f) else glob.escape(f) for f in entries]
        data_files = escaped[0] if isinstance(data_files, str) else escaped
    # With max_documents the split is streamed: only its first rows are downloaded and read (a
    # 2M-document slice of a hub corpus does not fetch the whole corpus first).
    streaming = cfg.max_documents is not None
    if saved := saved_dataset(cfg.dataset):
        streaming = False  # memory-mapped: max_documents takes the first rows below
    if problem := folder_problem(cfg):  # load_dataset: 'Unknown split "train"', no more
        raise DataError(problem)
    try:
        with _bars_on_terminal_only(datasets):
            if saved:
                ds = _load_saved(cfg, saved)
            else:
                ds = datasets.load_dataset(cfg.dataset, cfg.name, data_files=data_files,
                                           split=cfg.split, streaming=streaming, **kwargs)
        if streaming:  # keep only the text of each row
            texts, columns = [], ds.column_names
            for row in ds.take(cfg.max_documents):
                if cfg.text_column not in row:
                    columns = list(row)
                    break
                texts.append(row[cfg.text_column])
    except DataError:
        raise
    except Exception as e:  # hub, network, builder and split errors all mean: cannot read it
        # Local files a builder could not read (not UTF-8, empty) are data_files' (or val_path's).
        what = (f"{_key(cfg, 'data.data_files')}: the {cfg.dataset} builder could not read "
                f"{cfg.data_files!r} (split={cfg.split!r})" if cfg.dataset in LOCAL_BUILDERS else
                f"data.dataset: could not load {cfg.dataset!r} (name={cfg.name!r}, "
                f"split={cfg.split!r}, data_files={cfg.data_files!r})")
        raise DataError(f"{what}: {_reason(e)}" + (_offline_advice() if _unreachable(e) else "")
                        ) from e
    if not streaming:
        columns = ds.column_names
    if columns is not None and cfg.text_column not in columns:
        raise DataError(_no_column(cfg, columns))
    if saved and cfg.max_documents is not None:
        ds = ds.select(range(min(cfg.max_documents, len(ds))))
    docs, odd = [], None  # odd: (row, value) of the first value that is no text
    try:
        for row, t in enumerate(texts if streaming else ds[cfg.text_column]):
            if isinstance(t, str):
                if t:
                    docs.append(t)
            elif t is not None and odd is None:  # a 0 or a False too: it was dropped unseen
                odd = (row, t)
    except UnicodeDecodeError as e:  # pyarrow's JSON reader takes any bytes as a string
        what = (f"{_key(cfg, 'data.data_files')} {cfg.data_files!r}" if cfg.dataset in LOCAL_BUILDERS
                else f"data.dataset {cfg.dataset!r}")
        raise DataError(f"{what}: its {cfg.text_column!r} column is not UTF-8 text ({e})") \
            from None
    if odd is not None:
        row, value = odd
        if docs:  # a column of text with a row that is not
            raise DataError(
                f"data.text_column: {cfg.text_column!r} of {_named(cfg)} holds text, but its row "
                f"{row + 1:,} holds the {type(value).__name__} {repr(value)[:40]}: every value "
                "must be text (or empty)")
        feature = ds.features.get(cfg.text_column) if getattr(ds, "features", None) else None
        kind = getattr(feature, "dtype", None) or type(value).__name__  # int64, dict, list
        raise DataError(_not_text(cfg, kind, value, columns))
    return docs


def _text_builder(cfg: DataConfig) -> bool:
    """Whether `datasets` reads this dataset with its 'text' builder, which makes each line a
    row unless told otherwise: named (``dataset: text``), or picked for a local folder of text
    files (it read every line of the folder's files as a document of its own, its blank lines
    dropped)."""
    if cfg.dataset == "text":
        return True
    read = _folder_read(cfg)
    return read is not None and read[0] == "text"


def _folder_read(cfg: DataConfig) -> tuple[str, dict[str, list[str]]] | None:
    """For a local folder of data files (``_files_folder``): the builder `datasets` picks for
    it (by its files' most common suffix) and the files it reads as each split (by their names:
    train*, test*, *-validation-* ...), nothing read; None for another dataset, or a folder
    whose files it cannot read (load_dataset says why)."""
    if (folder := _files_folder(cfg)) is None:
        return None
    from datasets.load import dataset_module_factory

    try:
        module = dataset_module_factory(folder)
        files = module.builder_configs_parameters.builder_configs[0].data_files or {}
    except Exception:  # noqa: BLE001 - load_dataset says why it cannot read the folder
        return None
    return (module.module_path.rsplit(".", 1)[-1],
            {str(split): [str(f) for f in paths] for split, paths in files.items()})


def folder_problem(cfg: DataConfig) -> str | None:
    """A local folder of data files whose file names make `datasets` read it as splits of which
    none is ``split`` (a file named test-notes.jsonl made the folder one 'test' split): the run
    failed with "Unknown split", after validate had said ok. None otherwise."""
    read = _folder_read(cfg)
    if read is None or cfg.split in read[1]:
        return None
    builder, splits = read
    named = "; ".join(f"{split}: {_few(paths)}" for split, paths in splits.items())
    example = next(iter(splits.values()))[0]
    return (f"{_key(cfg, 'data.split')}: {cfg.split!r} is not a split of the folder "
            f"{cfg.dataset!r} as `datasets` reads it: its files' names make the split(s) "
            f"{', '.join(map(repr, splits))} ({named}); give split: one of them, or read every "
            f"file as one: dataset: {builder}, data_files: {_glob_of(cfg, example)}")


def folder_note(cfg: DataConfig) -> str | None:
    """The note for data files of a local folder that the split read leaves out: of another
    kind than the folder's most common (a .jsonl among .txt files), or in no split where the
    file names name splits (more.jsonl beside train.jsonl). They were left out without a word.
    None where every data file of the folder is read, or is another split's."""
    read = _folder_read(cfg)
    if read is None or cfg.split not in read[1]:
        return None
    builder, splits = read
    taken = {os.path.realpath(f) for paths in splits.values() for f in paths}
    left = sorted(str(f) for f in Path(os.path.expanduser(cfg.dataset)).rglob("*")
                  if f.is_file() and not any(part.startswith(".") for part in f.parts)
                  and file_builder(f.name) and os.path.realpath(f) not in taken)
    if not left:
        return None
    other = [f for f in left if file_builder(f) != builder]
    unsplit = [f for f in left if file_builder(f) == builder]
    why = "; ".join(
        [f"{_few(other)}: it reads one kind of file, {builder}, the folder's most common"]
        * bool(other)
        + [f"{_few(unsplit)}: in none of the splits its files' names make"] * bool(unsplit))
    return (f"data.dataset: `datasets` reads split {cfg.split!r} of the folder {cfg.dataset!r} "
            f"from {_few(splits[cfg.split])}, and leaves out {len(left)} of its data files "
            f"({why}); to choose the files: dataset: {builder}, data_files: [FILE, ...] or a "
            f"glob such as {_glob_of(cfg, splits[cfg.split][0])}")


def _few(paths: list[str]) -> str:
    """Up to three file names of ``paths``, and how many more."""
    names = [os.path.basename(p) for p in paths]
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _glob_of(cfg: DataConfig, example: str) -> str:
    """A data_files glob for every file under the folder with the suffix of ``example``."""
    name = os.path.basename(example)
    plain = uncompressed_name(name)
    suffix = os.path.splitext(plain)[1] + name[len(plain):]
    return f"'{cfg.dataset.rstrip('/')}/**/*{suffix}'"


def _files_folder(cfg: DataConfig) -> str | None:
    """The local folder of data files that ``data.dataset`` names (a folder `datasets` reads by
    its files' suffixes), else None: a builder's name, a hub id, a folder saved with
    ``save_to_disk``."""
    folder = os.path.expanduser(cfg.dataset or "")
    if cfg.dataset in LOCAL_BUILDERS or not os.path.isdir(folder) or saved_dataset(folder):
        return None
    return folder


def saved_dataset(dataset: str | None) -> str | None:
    """What a local folder saved with `datasets`' ``save_to_disk`` holds: 'dataset' (one split,
    ``Dataset.save_to_disk``) or 'splits' (``DatasetDict.save_to_disk``); None for anything else
    (a hub id, a builder, a folder of data files), which ``load_dataset`` reads."""
    if not dataset:
        return None
    folder = Path(os.path.expanduser(dataset))
    if (folder / "dataset_dict.json").is_file():
        return "splits"
    if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
        return "dataset"
    return None


def _load_saved(cfg: DataConfig, saved: str) -> Any:
    """A ``save_to_disk`` folder, memory-mapped: its one dataset (which has no ``split`` to
    name), or the split ``split`` of its splits, that split alone (``load_dataset`` refuses the
    first kind, and `datasets` cannot load splits of which one is empty)."""
    import datasets

    folder = Path(os.path.expanduser(cfg.dataset))
    key = _key(cfg, "data.split")
    if saved == "dataset":
        if cfg.split != "train":
            raise DataError(f"{key}: {cfg.split!r} names a split, and {cfg.dataset!r} is one "
                            "dataset saved with save_to_disk, without splits: leave split out "
                            "(the whole dataset is read)")
        return datasets.load_from_disk(str(folder))
    splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    if cfg.split not in splits:
        raise DataError(f"{key}: {cfg.split!r} is not a split of the saved dataset "
                        f"{cfg.dataset!r}; its splits: {', '.join(splits)}")
    state = json.loads((folder / cfg.split / "state.json").read_text(encoding="utf-8"))
    if not state.get("_data_files"):
        raise DataError(f"{key}: the split {cfg.split!r} of the saved dataset {cfg.dataset!r} "
                        "holds no rows")
    return datasets.load_from_disk(str(folder / cfg.split))


def _describe_source(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the text without reading it: paths with size and mtime, dataset names.

    Hub datasets are identified by name only: a dataset updated in place on the hub keeps its
    cached tokens until the cache entry is deleted.
    """
    if cfg.source == "builtin":
        files = _stdlib_sources() if cfg.builtin == "stdlib" else [_pydoc_topics_file()]
        desc: dict[str, Any] = {"builtin": cfg.builtin, "python": sys.version, "files": _stats(files)}
    elif cfg.source == "text":
        desc = {"text": _stats(_text_paths(cfg))}
    else:
        files = [cfg.data_files] if isinstance(cfg.data_files, str) else list(cfg.data_files or [])
        local = cfg.dataset in LOCAL_BUILDERS
        desc = {
            "hf": [cfg.dataset, cfg.name, cfg.split, cfg.text_column, cfg.max_documents],
            "data_files": [entry for f in files for entry in (_local_stats(f) if local else [f])],
        }
        folder = os.path.expanduser(cfg.dataset)
        if not local and os.path.isdir(folder):  # a local folder: its files, as data_files'
            desc["folder"] = _local_stats(folder)
            if _text_builder(cfg):  # a new entry: the one before held each line as a document
                desc["documents"] = "files"
    if is_tokenizer_file(cfg.tokenizer):  # a new entry: the one before matched special tokens
        desc["special_tokens"] = "as text"  # written in the text (_encode_with_file)
    return {**desc, "tokenizer": tokenizer_key(cfg.tokenizer)}


def _pydoc_topics_file() -> str:
    import pydoc_data.topics

    return pydoc_data.topics.__file__


def _local_stats(pattern: str) -> list[Any]:
    """Path, size and mtime of each local file a data_files entry names (a file, a glob, or a
    folder), so that adding, removing or editing one of them makes a new cache entry; the entry
    itself where it names no local file (datasets reports that when it loads)."""
    if "://" in pattern:
        return [pattern]
    if is_glob(pattern):
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(pattern):
        paths = sorted(p for p in glob.glob(os.path.join(glob.escape(pattern), "**", "*"),
                                             recursive=True) if os.path.isfile(p))
    else:
        paths = [pattern] if os.path.isfile(pattern) else []
    return _stats(paths) if paths else [pattern]


def _stats(paths: list[str]) -> list[list[Any]]:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return out


# ---- tokenizing into the cache -----------------------------------------------------------------


def _tokenize_into_cache(cfg: DataConfig, cache: Path) -> dict[str, Any]:
    docs = read_documents(cfg)
    if not docs:
        if cfg.source == "hf" and _text_builder(cfg):  # files of text: no column to blame
            raise DataError(f"{_key(cfg, 'data.data_files')}: {_named(cfg)} holds no text")
        if cfg.source == "hf":  # it named neither the files nor the column
            raise DataError(f"data.text_column: every {cfg.text_column!r} value of {_named(cfg)} "
                            "is empty: it holds no text to train on")
        raise DataError(f"data: the {cfg.source} source yielded no text")
    if problem := _nothing_to_learn(docs, cfg):
        raise DataError(problem)
    fingerprint = _fingerprint(docs, cfg)
    vocab = vocab_size_of(cfg.tokenizer)
    dtype = "uint16" if vocab <= 2**16 else "uint32"
    meta = {"fingerprint": fingerprint, "dtype": dtype, "vocab_size": vocab, "tokenizer": cfg.tokenizer}
    path = _token_path(cache, meta)
    tokens = _encode(docs, cfg.tokenizer, dtype).astype(dtype, copy=False)
    # Another record's tokens of the same text may be there (the data touched or moved since):
    # kept where whole, written again where cut short, since this record trusts their size.
    if not (path.exists() and path.stat().st_size == tokens.nbytes):
        _write_atomic(path, tokens.tobytes())
    return {**meta, "bytes": tokens.nbytes}


def _one_character(docs: list[str]) -> str | None:
    """The one character other than whitespace that ``docs`` hold, repeated; None where they
    hold two or more (read until the second: at once in any real text)."""
    first = None
    for doc in docs:
        for ch in doc:
            if ch.isspace() or ch == first:
                continue
            if first is not None:
                return None
            first = ch
    return first


def _fingerprint(docs: list[str], cfg: DataConfig) -> str:
    return f"{content_hash(docs)[:16]}-{tokenizer_key(cfg.tokenizer)}"


CHECK_READ_LIMIT = 512 * 2**20
"""Bytes of local text files that ``read_fingerprint`` reads (about a second); a larger corpus
is left to the run, which reads it anyway."""


def read_fingerprint(cfg: DataConfig, local_datasets: bool = False) -> str | None:
    """The fingerprint this data will read as (``PreparedData.fingerprint``), found without
    tokenizing, for `scaletune validate`: the token cache's where prepare_data ran, else, for
    ``source: text`` of at most CHECK_READ_LIMIT bytes, from reading the files. None where it
    is not known so (a dataset, the built-in corpus, a larger corpus). ``local_datasets``: a
    local dataset of at most CHECK_READ_LIMIT bytes on disk is read too (through `datasets`,
    seconds where text files take one; for a study moved with its data, whose record names its
    old place). Raises DataError for what prepare_data refuses on reading the text (a file that
    is not UTF-8, whitespace only, one character repeated), OSError where a path is missing."""
    if held := validation_part(cfg):
        train = read_fingerprint(_training_part(cfg), local_datasets)
        val = read_fingerprint(held, local_datasets) if train else None
        return joined_fingerprint(train, val) if train and val else None
    cached = _cached_tokens(cfg)
    if cached:
        return cached[1]["fingerprint"]
    paths = _text_to_read(cfg)
    if paths is None:
        size = _local_dataset_bytes(cfg) if local_datasets else None
        if size is None or size > CHECK_READ_LIMIT:
            return None
        docs = read_documents(cfg)
    else:
        docs = [_read_text_file(cfg, p) for p in paths]
    if problem := _nothing_to_learn(docs, cfg):
        raise DataError(problem)
    return _fingerprint(docs, cfg) if any(docs) else None


def _local_dataset_bytes(cfg: DataConfig) -> int | None:
    """Bytes on disk of a local dataset (source hf: a folder, or the local builders' data_files);
    None for a hub dataset, or data_files of which one is remote. Raises DataError where a local
    dataset is not there (a study's record naming a folder moved since)."""
    if cfg.source != "hf" or not cfg.dataset:
        return None
    if cfg.dataset in LOCAL_BUILDERS and cfg.data_files:
        entries = [cfg.data_files] if isinstance(cfg.data_files, str) else cfg.data_files
        if any("://" in entry for entry in entries):
            return None
        missing = f"{_key(cfg, 'data.data_files')}: file not found:"
    elif Path(os.path.expanduser(cfg.dataset)).is_absolute():  # a folder (a hub id never is)
        entries, missing = [os.path.expanduser(cfg.dataset)], "data.dataset: no folder"
    else:
        return None
    total = 0
    for entry in entries:
        stats = _local_stats(entry)
        if not isinstance(stats[0], list):  # the entry itself: it names no file
            raise DataError(f"{missing} {entry!r}")
        total += sum(size for _, size, _ in stats)
    return total


def fingerprint_known(cfg: DataConfig) -> bool:
    """Whether ``read_fingerprint`` tells this data's fingerprint without preparing it (where it
    does not, a study that trained on other data is refused only once the run prepares it)."""
    if held := validation_part(cfg):
        return fingerprint_known(_training_part(cfg)) and fingerprint_known(held)
    try:
        return _cached_tokens(cfg) is not None or _text_to_read(cfg) is not None
    except (DataError, OSError):  # a file missing: the checks name it
        return False


def _text_to_read(cfg: DataConfig) -> list[str] | None:
    """The files ``read_fingerprint`` reads where the data is not in the token cache: those of
    ``source: text``, at most CHECK_READ_LIMIT bytes in all; None for other data, or more."""
    if cfg.source != "text":
        return None
    paths = _text_paths(cfg)
    return paths if sum(os.path.getsize(p) for p in paths) <= CHECK_READ_LIMIT else None


def _nothing_to_learn(docs: list[str], cfg: DataConfig) -> str | None:
    """Text a model learns to a loss near 0 (the study reported that as its best): whitespace
    only, or one character repeated."""
    if any(docs) and all(doc.isspace() or not doc for doc in docs):
        return (f"{where(cfg)}: the data holds only whitespace ({sum(map(len, docs)):,} "
                "characters of spaces, tabs and line ends): nothing to learn; point it at text")
    if (only := _one_character(docs)) is not None:
        return (f"{where(cfg)}: the data holds one character, {only!r}, repeated "
                f"({sum(map(len, docs)):,} characters, line ends and spaces apart): nothing to "
                "learn; point it at text")
    return None


def _no_column(cfg: DataConfig, columns: list[str]) -> str:
    return (f"data.text_column: {cfg.text_column!r} is not a column of {_named(cfg)}, "
            f"which has {columns}")


def _not_text(cfg: DataConfig, kind: str, odd: Any, columns: list[str] | None) -> str:
    return (f"data.text_column: {cfg.text_column!r} of {_named(cfg)} holds {kind} values "
            f"(such as {str(odd)[:40]!r}), not text: name a column of text"
            + (f" (the columns: {columns})" if columns else ""))


def column_problem(cfg: DataConfig) -> str | None:
    """For `scaletune validate`: a ``text_column`` that the first local file of a csv, json or
    parquet dataset does not have, or that holds numbers or records rather than text (what the
    run refuses once `datasets` has read every file), from that file alone; None where it has a
    column of text or its columns are not known so. A folder saved with ``save_to_disk`` is
    opened (memory-mapped, nothing read whole): its split, column and the column's type."""
    if held := validation_part(cfg):
        return _no_splits(cfg) or column_problem(_training_part(cfg)) or column_problem(held)
    if cfg.source == "hf" and (saved := saved_dataset(cfg.dataset)):
        return _saved_problem(cfg, saved)
    if cfg.source == "hf" and (problem := folder_problem(cfg)):
        return problem
    if (cfg.source != "hf" or cfg.dataset not in ("text", "csv", "json", "parquet")
            or not cfg.data_files):
        return None
    files = [cfg.data_files] if isinstance(cfg.data_files, str) else list(cfg.data_files)
    paths = [f for pattern in files if "://" not in pattern
             for f in (sorted(glob.glob(pattern)) if is_glob(pattern) else [pattern])
             if os.path.isfile(f)]
    if not paths:
        return None
    first = paths[0]
    if all(os.path.getsize(p) == 0 for p in paths):  # the run: StopIteration, or no rows
        return (f"{_key(cfg, 'data.data_files')}: {cfg.data_files!r}: "
                f"{'the file is' if len(paths) == 1 else f'its {len(paths)} files are'} empty "
                "(0 bytes): nothing to train on")
    if cfg.dataset == "text":  # the run: DatasetGenerationError, caused by UnicodeDecodeError
        try:
            with _open_data_file(first) as f:
                head = f.read(2**20)
        except (OSError, EOFError, lzma.LZMAError):  # not compressed as its suffix says
            return None  # the run says so
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 2**20)
        except UnicodeDecodeError as e:
            return f"{_key(cfg, 'data.data_files')}: {first!r} is not UTF-8 text ({e})"
        return None
    try:
        columns, odd = _head(cfg.dataset, first, cfg.text_column)
    except UnicodeDecodeError as e:  # the run's error: DatasetGenerationError, caused by this
        return f"{_key(cfg, 'data.data_files')}: {first!r} is not UTF-8 text ({e})"
    except _NotJsonLines as e:
        return (f"{_key(cfg, 'data.data_files')}: {first!r} line 1 is not JSON ({e}): a JSON Lines file holds "
                "one JSON object per line")
    except (OSError, ValueError, ImportError, EOFError, lzma.LZMAError):
        return None  # the run says what is wrong with the file (a compressed one cut short)
    if columns and cfg.text_column not in columns:
        return _no_column(cfg, columns)
    return _not_text(cfg, odd[0], odd[1], columns) if odd else None


def _saved_problem(cfg: DataConfig, saved: str) -> str | None:
    try:
        ds = _load_saved(cfg, saved)
    except DataError as e:
        return str(e)
    except Exception:  # noqa: BLE001 - a folder it cannot open: the run says why
        return None
    if cfg.text_column not in ds.column_names:
        return _no_column(cfg, ds.column_names)
    kind = getattr(ds.features[cfg.text_column], "dtype", None)
    if kind in ("string", "large_string") or len(ds) == 0:
        return None
    return _not_text(cfg, kind or type(ds.features[cfg.text_column]).__name__,
                     ds[0][cfg.text_column], ds.column_names)


class _NotJsonLines(ValueError):
    """A .jsonl file whose first line is not JSON (``_head``)."""


CHECK_CSV_LIMIT = 64 * 2**20  # the largest csv file whose whole column validate reads


def _head(builder: str, path: str, column: str) -> tuple[list[str] | None, tuple[str, Any] | None]:
    """What one read of a dataset's first file says: its columns (a csv file's header, a JSON
    Lines file's first record, a parquet file's schema; None for a JSON file that is not one
    object a line), and (kind, a value) where ``column`` is there and is not text as `datasets`
    reads it: a parquet column of another type; a first record whose value is a number, a list
    or a record; a csv column (files up to CHECK_CSV_LIMIT) whose every value is a number, which
    `datasets` reads as int64 or float64. None where it is text or cannot be told cheaply."""
    if builder == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        if column not in schema.names:
            return list(schema.names), None
        kind = schema.field(column).type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
            return list(schema.names), None
        values = pq.read_table(path, columns=[column]).column(0).to_pylist()
        return list(schema.names), (str(kind), next(iter(values), None))
    with io.TextIOWrapper(_open_data_file(path), encoding="utf-8-sig",  # a BOM, as `datasets`
                          newline="") as f:  # reads it
        if builder == "json":
            line = f.readline(2**20).strip()
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                # A .json file may be one document over many lines; a .jsonl file may not.
                if uncompressed_name(path).lower().endswith(".jsonl") and line:
                    raise _NotJsonLines(e.msg) from None
                return None, None
            if not isinstance(record, dict):
                return None, None
            value = record.get(column)
            if value is None or isinstance(value, str):
                return list(record), None
            kinds = {bool: "bool", int: "int64", float: "float64"}  # as `datasets` names them
            return list(record), (kinds.get(type(value), type(value).__name__), value)
        import csv

        rows = csv.DictReader(f)
        columns = rows.fieldnames
        if not columns or column not in columns or os.path.getsize(path) > CHECK_CSV_LIMIT:
            return columns, None
        values = [row[column] for row in rows if row.get(column)]
    try:
        for v in values:
            float(v)
    except ValueError:
        return columns, None
    if not values:
        return columns, None
    whole = all(v.strip().lstrip("+-").isdigit() for v in values)
    return columns, (("int64" if whole else "float64"), values[0])


def _open_data_file(path: str) -> Any:
    """A data file opened for reading bytes, decompressed where its suffix says it is
    compressed (COMPRESSED): validate read a .jsonl.gz raw, and refused as not UTF-8 text a
    file that the run trained on."""
    import importlib

    module = COMPRESSED.get(os.path.splitext(path)[1].lower())
    return importlib.import_module(module).open(path, "rb") if module else open(path, "rb")


def _intact(cache: Path, meta: dict[str, Any]) -> bool:
    """Is the token file of this cache record there, whole? Its size is kept in the record
    (records written before it was are trusted): a file cut short (a full disk, a copy stopped
    halfway, a hand) is tokenized again, not trained on."""
    try:  # once: another process rebuilding the same cache may remove it between two looks
        size = _token_path(cache, meta).stat().st_size
    except FileNotFoundError:
        return False
    return meta.get("bytes", size) == size


def content_hash(docs: list[str]) -> str:
    """sha256 of the documents joined by the record separator 0x1e (one file: its sha256sum).

    Where a document holds that byte itself, the join would not show where documents end (one
    file "A<0x1e>B" and two files "A" and "B" would hash alike), so such a corpus is hashed as
    its documents' own hashes in order instead.
    """
    if any("\x1e" in doc for doc in docs):
        digests = b"".join(hashlib.sha256(doc.encode("utf-8")).digest() for doc in docs)
        return hashlib.sha256(b"documents\0" + digests).hexdigest()
    content = hashlib.sha256()
    for i, doc in enumerate(docs):
        content.update(b"\x1e" if i else b"")
        content.update(doc.encode("utf-8"))
    return content.hexdigest()


def _encode(docs: list[str], tokenizer: str, dtype: Any = np.int64) -> np.ndarray:
    """The tokens of ``docs``, documents joined by the tokenizer's end of text (``dtype``: that
    of the ids, big enough for the vocabulary)."""
    if not any(docs):  # empty files: no text, not the separators between them
        return np.zeros(0, dtype=np.uint8)
    if tokenizer == "byte":
        return np.frombuffer(DOC_SEPARATOR.join(docs).encode("utf-8"), dtype=np.uint8)
    if is_tokenizer_file(tokenizer):
        return _encode_with_file(docs, load_tokenizer_file(tokenizer), dtype)
    enc = load_tiktoken(tokenizer)

    def encode(texts: list[str]) -> list[list[int]]:
        return enc.encode_ordinary_batch(texts, num_threads=usable_cores())

    return _encode_in_pieces(docs, encode, [enc.eot_token], dtype)


PIECE_CHARS = 1 << 20
"""Characters of a document encoded at a time, and about the most in one call of a tokenizer. A
tokenizer file's Encoding holds offsets and token strings beside each id: a text file of 32 MB,
one document, took 5.3 GB to encode whole, where its pieces take a few hundred MB; tiktoken's
ids are Python ints (36 bytes each) until they are an array."""

CUT_CONTEXT = 256
"""Characters each side of a cut that are encoded whole and apart to check it (``_cut``)."""


def _cut(doc: str, at: int, encode: Any, splits: Any = None, tries: int = 16) -> int | None:
    """A place at or after ``at`` where ``doc`` can be cut without changing its tokens: at a
    line end (\\n or \\r\\n) between two characters other than white space, just after it,
    else just before it (GPT-2's pattern reads a \\r\\n that ends a text as one piece, and as
    two before a line), where the text around it encodes as its two sides do, and where
    ``splits(left, right)`` (if given) says the tokenizer's pre-tokenizer ends a piece (merges
    never cross it: without one, text far before the cut can change the tokens at it). White
    space on either side is not cut beside: a run of it longer than the text checked around the
    cut (CUT_CONTEXT) could merge otherwise. None where no such place is found at ``tries`` line
    ends, or none is left: the document is then encoded whole from its last cut on."""
    pos = at
    for _ in range(tries):
        i = doc.find("\n", pos)
        while i != -1:
            start = i - 1 if i and doc[i - 1] == "\r" else i
            if (0 < start and i + 1 < len(doc) and not doc[start - 1].isspace()
                    and not doc[i + 1].isspace()):
                break
            i = doc.find("\n", i + 1)
        if i == -1:
            return None
        pos = i + 1
        for cut in (i + 1, start):
            left, right = doc[max(0, cut - CUT_CONTEXT):cut], doc[cut:cut + CUT_CONTEXT]
            if splits is None or splits(left, right):
                both, alone, after = encode([left + right, left, right])
                if list(both) == list(alone) + list(after):
                    return cut
        # Neither side of this line end: the next one (a tokenizer that reads a text's start
        # apart, SentencePiece's leading space, fails at every one)
    return None


def _pieces(doc: str, encode: Any, splits: Any = None) -> list[str]:
    """``doc`` in pieces of about PIECE_CHARS characters whose tokens, one after the other, are
    the document's (``_cut``)."""
    pieces, start = [], 0
    while len(doc) - start > PIECE_CHARS:
        cut = _cut(doc, start + PIECE_CHARS, encode, splits)
        if cut is None:
            break
        pieces.append(doc[start:cut])
        start = cut
    pieces.append(doc[start:])
    return pieces


def _encode_in_pieces(docs: list[str], encode: Any, sep: list[int], dtype: Any,
                      splits: Any = None) -> np.ndarray:
    """``docs`` through ``encode`` (texts to lists of ids), joined by ``sep``: long documents cut
    into pieces (``_pieces``), and the pieces encoded some at a time (up to 256, or about
    4 x PIECE_CHARS characters), each piece's ids an array of ``dtype`` at once."""
    arrays: list[np.ndarray] = []
    batch: list[str] = []
    joined: list[bool] = []  # whether the separator goes before the batch's piece
    joiner = np.asarray(sep, dtype=dtype)

    def flush() -> None:
        for ids, after_sep in zip(encode(batch), joined, strict=True):
            if after_sep and len(joiner):
                arrays.append(joiner)
            arrays.append(np.asarray(ids, dtype=dtype))
        batch.clear()
        joined.clear()

    size = 0
    for i, doc in enumerate(docs):
        for j, piece in enumerate(_pieces(doc, encode, splits)):
            batch.append(piece)
            joined.append(i > 0 and j == 0)
            size += len(piece)
            if len(batch) >= 256 or size >= 4 * PIECE_CHARS:
                flush()
                size = 0
    flush()
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)


NO_SEPARATOR = (f"data.tokenizer: nothing marks where one document ends: the file has none of "
                f"the tokens {', '.join(END_OF_TEXT + JOINERS)} and encodes a blank line as no "
                "token: add an end-of-text token to it")
"""The error of a tokenizer file that marks no document's end, on data of several documents."""


def _separator(tok: Any) -> list[int]:
    """What joins two documents under a tokenizer file: its end-of-text token, else the tokens of
    DOC_SEPARATOR (none where it drops whitespace)."""
    eot = next((i for i in map(tok.token_to_id, END_OF_TEXT + JOINERS) if i is not None), None)
    return [eot] if eot is not None else tok.encode(DOC_SEPARATOR, add_special_tokens=False).ids


def separator_problem(cfg: DataConfig) -> str | None:
    """For `scaletune validate`: NO_SEPARATOR where the data's tokenizer file marks no document's
    end and the data may hold several documents (any but one text file), which the run refuses
    once it has read the data; None otherwise, or where the file cannot be read (its own check
    says why)."""
    if not is_tokenizer_file(cfg.tokenizer):
        return None
    try:
        if cfg.source == "text" and len(_text_paths(cfg)) < 2:
            return None
        return None if _separator(load_tokenizer_file(cfg.tokenizer)) else NO_SEPARATOR
    except (DataError, OSError, ValueError):
        return None


def _encode_with_file(docs: list[str], tok: Any, dtype: Any = np.int64) -> np.ndarray:
    """Documents through a tokenizer file, joined by its end-of-text token, else by the tokens of
    DOC_SEPARATOR. add_special_tokens=False leaves out the file's post-processor (a BOS/EOS
    template per text): the join alone marks where documents end, as for tiktoken. A special
    token's text written in a document (`</s>` in web HTML, a literal `<|endoftext|>`) is text,
    as tiktoken's encode_ordinary reads it: the library matched it to the special token, a
    document's end where none was."""
    sep = _separator(tok)
    if not sep and len(docs) > 1:  # a tokenizer that drops whitespace: documents would run on
        raise DataError(NO_SEPARATOR)
    tok.encode_special_tokens = True

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]

    def splits(left: str, right: str) -> bool:
        """Whether the file's pre-tokenizer ends a piece between ``left`` and ``right``; a file
        without one (merges over the whole text) is never cut."""
        if tok.pre_tokenizer is None:
            return False
        return any(start == len(left)
                   for _, (start, _end) in tok.pre_tokenizer.pre_tokenize_str(left + right))

    return _encode_in_pieces(docs, encode, sep, dtype, splits)


TOKEN_FILE_SUFFIXES = {"uint16": "u16", "uint32": "u32"}
"""A token file's suffix by its dtype: the dtypes a cache record may name."""


def _token_path(cache: Path, meta: dict[str, Any]) -> Path:
    return cache / f"{meta['fingerprint']}.{TOKEN_FILE_SUFFIXES[meta['dtype']]}.bin"


def _split(tokens: np.ndarray, meta: dict[str, Any], cfg: DataConfig, block_size: int,
           path: Path, from_cache: bool) -> TokenData:
    if problem := size_problem(len(tokens), cfg, block_size):
        raise DataError(problem)
    n_val = _n_val(len(tokens), cfg)
    n_train = _n_train(len(tokens), cfg)
    return TokenData(
        train=tokens[:n_train],
        val=tokens[len(tokens) - n_val:],
        vocab_size=meta["vocab_size"],
        fingerprint=meta["fingerprint"],
        path=path,
        from_cache=from_cache,
    )


def size_problem(n_tokens: int, cfg: DataConfig, block_size: int,
                 n_val: int | None = None) -> str | None:
    """Why ``n_tokens`` of this data cannot train a model of ``block_size`` (no text, or a split
    shorter than one window), else None: what prepare_data refuses, and what ``scaletune
    validate`` finds where the data's size is known without preparing it (``split_sizes``).
    ``n_val``: the tokens of the validation data where it is given apart (validation_part)."""
    if n_tokens == 0:
        return (f"{where(cfg)}: the data holds no text (0 tokens): point data.path at a file with "
                "text in it" if cfg.source == "text" else
                f"{where(cfg)}: the data holds no text (0 tokens)")
    if n_val == 0:
        return (f"{where(validation_part(cfg))}: the validation "
                f"{'text' if cfg.val_path else 'split'} holds no text (0 tokens)")
    n_train = _n_train(n_tokens, cfg)
    n_val = _n_val(n_tokens, cfg) if n_val is None else n_val
    need = block_size + 1
    if n_val >= need and n_train >= need:
        return None
    if n_train == cfg.train_tokens and n_val >= need:  # the cap alone is short: more text won't do
        return (f"data.train_tokens: {cfg.train_tokens} training tokens are fewer than one "
                f"window, block_size + 1 = {need}: give {need} or more, or leave it out to train "
                "on all the data")
    cap = (f", train_tokens={cfg.train_tokens}" if cfg.train_tokens is not None else "")
    if validation_part(cfg):
        return (f"data: {n_train} training and {n_val} validation tokens; each needs at least "
                f"block_size + 1 = {need}: use more text or a shorter block_size{cap and ' (got' + cap[1:] + ')'}")
    # Below two windows no val_fraction gives both splits one: it was suggested all the same.
    fraction = (" or another val_fraction" if n_tokens >= 2 * need else "")
    return (f"data: {n_tokens} tokens give {n_train} training and {n_val} validation tokens; "
            f"each split needs at least block_size + 1 = {need}: use more text or a shorter "
            f"block_size{fraction} (got val_fraction={cfg.val_fraction}{cap})")


def known_tokens(cfg: DataConfig) -> int | None:
    """Tokens of this data where they are known without preparing it: counted in the token cache
    where prepare_data ran, from the files' sizes for byte-level text; else None. Raises
    DataError or OSError where a local path of the data is missing."""
    cached = _cached_tokens(cfg)
    return cached[0] if cached else _byte_text_tokens(cfg)


def _n_val(n_tokens: int, cfg: DataConfig) -> int:
    """Tokens of the validation tail of a stream of ``n_tokens``: none where the validation data
    is given apart (validation_part)."""
    return 0 if validation_part(cfg) else int(n_tokens * cfg.val_fraction)


def _n_train(n_tokens: int, cfg: DataConfig) -> int:
    """Tokens trained on of a stream of ``n_tokens``: all before the validation tail, or the first
    ``train_tokens`` of them."""
    n_train = n_tokens - _n_val(n_tokens, cfg)
    return n_train if cfg.train_tokens is None else min(n_train, cfg.train_tokens)


def _record_path(cache: Path, cfg: DataConfig) -> Path:
    """The cache record of this data, keyed by what identifies it without reading it."""
    return cache / f"source-{_digest(_describe_source(cfg))[:16]}.json"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    """The cache record at ``path``, or None where there is none to trust (missing, not JSON,
    not UTF-8, not a record): the data is then read and tokenized again."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    keys = ("fingerprint", "dtype")
    if not (isinstance(record, dict) and all(isinstance(record.get(k), str) for k in keys)
            and record["dtype"] in TOKEN_FILE_SUFFIXES):
        return None
    return record


STALE_WRITE_S = 3600
"""Age past which a temporary file of a cache write is taken for one a killed process left
(another process writing the same file now has just made its own)."""


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers see all or nothing.
    Temporary files of this path that processes killed mid-write left (kill -9 runs no clean-up:
    each was the token file's whole size) are removed once they are STALE_WRITE_S old."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; workers of other users read the cache too
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise naming(e, path) from e  # a write a full disk refused names no file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    now = time.time()
    for left in path.parent.glob(f"{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if now - left.stat().st_mtime > STALE_WRITE_S:
                left.unlink()
