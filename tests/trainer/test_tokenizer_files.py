"""data.tokenizer as a tokenizer.json of the Hugging Face tokenizers library: BPEs trained here on
Tiny Shakespeare, through the same data path as 'byte' and tiktoken's encodings."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import scaletune.trainer.data as data_module
from scaletune.trainer.checkpoint import CHECKPOINT
from scaletune.trainer.cli import train_main
from scaletune.trainer.config import DataConfig, load_train_config
from scaletune.trainer.data import NO_SEPARATOR, known_vocab_size, prepare_data, vocab_size_of
from scaletune.trainer.errors import DataError
from scaletune.trainer.loop import train


def byte_level_bpe(path: Path, text: str, vocab_size: int = 300, eot: bool = True) -> Tokenizer:
    """Train a lossless byte-level BPE (GPT-2's layout) on ``text`` and save it at ``path``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"] if eot else [])
    tok.train_from_iterator([text], trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return tok


def text_cfg(path, tmp_path, tokenizer) -> DataConfig:
    return DataConfig(source="text", path=str(path), cache_dir=str(tmp_path / "cache"),
                      tokenizer=str(tokenizer))


def all_tokens(data) -> np.ndarray:
    return np.concatenate([data.train, data.val])


@pytest.fixture
def play(shakespeare) -> str:
    """The first 100 KB of Tiny Shakespeare: enough text to train and split, quick to tokenize."""
    return shakespeare.read_text()[:100_000]


def test_vocab_size_comes_from_the_file(tmp_path, play):
    path = tmp_path / "tok" / "tokenizer.json"
    byte_level_bpe(path, play, vocab_size=300)
    (tmp_path / "play.txt").write_text(play)
    # The rule: every way of asking, the planning one included, reads the file's 300 tokens.
    assert vocab_size_of(str(path)) == known_vocab_size(str(path)) == 300
    data = prepare_data(text_cfg(tmp_path / "play.txt", tmp_path, path), block_size=32)
    assert data.vocab_size == 300 and data.train.dtype == np.uint16
    assert all_tokens(data).max() < 300


def test_cached_tokens_decode_to_the_text(tmp_path, shakespeare, play):
    path = tmp_path / "tokenizer.json"
    tok = byte_level_bpe(path, play)
    data = prepare_data(text_cfg(shakespeare, tmp_path, path), block_size=64)
    tokens = all_tokens(data)
    # One document, a lossless BPE: the cached tokens are the text, in fewer tokens than bytes.
    assert tok.decode(tokens.tolist()) == shakespeare.read_text()
    assert len(tokens) < 0.8 * shakespeare.stat().st_size


def test_documents_are_joined_by_end_of_text_else_by_a_blank_line(tmp_path, play):
    (tmp_path / "a.txt").write_text(play[:3000])
    (tmp_path / "b.txt").write_text(play[3000:6000])
    with_eot = byte_level_bpe(tmp_path / "eot.json", play)
    data = prepare_data(text_cfg(tmp_path / "*.txt", tmp_path, tmp_path / "eot.json"), block_size=16)
    eot = with_eot.token_to_id("<|endoftext|>")
    expected = (with_eot.encode(play[:3000]).ids + [eot] + with_eot.encode(play[3000:6000]).ids)
    assert all_tokens(data).tolist() == expected
    # A file without an end-of-text token joins documents as the byte tokenizer does.
    plain = byte_level_bpe(tmp_path / "plain.json", play, eot=False)
    data = prepare_data(text_cfg(tmp_path / "*.txt", tmp_path, tmp_path / "plain.json"), block_size=16)
    assert plain.decode(all_tokens(data).tolist()) == play[:3000] + "\n\n" + play[3000:6000]


def test_a_special_tokens_text_in_a_document_is_text_not_a_documents_end(tmp_path, play):
    # Web text holds "</s>" and "<|endoftext|>" as text: the library matched them to the special
    # token, and one document read as two (the same text under tiktoken is ordinary text).
    literal = " a literal <|endoftext|> in the text "
    (tmp_path / "a.txt").write_text(play[:3000] + literal)
    (tmp_path / "b.txt").write_text(play[3000:6000])
    tok = byte_level_bpe(tmp_path / "eot.json", play)
    eot = tok.token_to_id("<|endoftext|>")
    data = prepare_data(text_cfg(tmp_path / "*.txt", tmp_path, tmp_path / "eot.json"), block_size=16)
    tokens = all_tokens(data).tolist()
    assert tokens.count(eot) == 1  # the one between the two files
    assert tok.decode(tokens[:tokens.index(eot)]) == play[:3000] + literal


def test_a_tokenizer_that_cannot_mark_where_a_document_ends_is_refused(tmp_path):
    # A tokenizer without an end-of-text token whose pre-tokenizer drops whitespace encodes the
    # blank line that joins documents as nothing: every document ran into the next.
    tok = Tokenizer(models.WordLevel({"start": 0, "end": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "words.json"))
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("start end " * 100)
    cfg = text_cfg(tmp_path / "*.txt", tmp_path, tmp_path / "words.json")
    with pytest.raises(DataError, match="nothing marks where one document ends"):
        prepare_data(cfg, block_size=8)
    # `scaletune validate` says so before a run reads the data (it said ok); of one file, one
    # document, nothing is joined.
    from scaletune.search.manage import readable_data_problems

    assert readable_data_problems(cfg, 8)[0] == [NO_SEPARATOR]
    one = cfg.model_copy(update={"path": str(tmp_path / "a.txt")})
    assert readable_data_problems(one, 8)[0] == []
    # With BERT's [SEP] it joins them by that.
    tok = Tokenizer(models.WordLevel({"start": 0, "end": 1, "[UNK]": 2, "[SEP]": 3},
                                     unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "sep.json"))
    data = prepare_data(text_cfg(tmp_path / "*.txt", tmp_path, tmp_path / "sep.json"), block_size=8)
    assert all_tokens(data).tolist() == [0, 1] * 100 + [3] + [0, 1] * 100


def test_ids_past_65535_are_stored_as_uint32(tmp_path):
    # Ids with gaps: three tokens, the highest id 70000, so the vocabulary is 70001.
    tok = Tokenizer(models.WordLevel({"small": 0, "[UNK]": 1, "big": 70_000}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "words.json"))
    (tmp_path / "t.txt").write_text("small big other " * 200)
    data = prepare_data(text_cfg(tmp_path / "t.txt", tmp_path, tmp_path / "words.json"), block_size=8)
    assert data.vocab_size == 70_001 and data.train.dtype == np.uint32
    assert all_tokens(data)[:3].tolist() == [0, 70_000, 1]


def test_an_edited_tokenizer_makes_new_tokens_and_a_moved_one_keeps_them(tmp_path, play):
    (tmp_path / "play.txt").write_text(play)
    path = tmp_path / "tokenizer.json"
    byte_level_bpe(path, play, vocab_size=300)
    first = prepare_data(text_cfg(tmp_path / "play.txt", tmp_path, path), block_size=32)
    # The fingerprint names the file by its content, never by its path.
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert first.fingerprint.endswith(f"-file-{sha}") and str(tmp_path) not in first.fingerprint
    byte_level_bpe(path, play, vocab_size=400)  # the same path, another tokenizer
    edited = prepare_data(text_cfg(tmp_path / "play.txt", tmp_path, path), block_size=32)
    assert not edited.from_cache and edited.vocab_size == 400
    assert edited.fingerprint != first.fingerprint and edited.path != first.path
    moved = tmp_path / "elsewhere" / "bpe.json"
    moved.parent.mkdir()
    shutil.move(path, moved)
    again = prepare_data(text_cfg(tmp_path / "play.txt", tmp_path, moved), block_size=32)
    assert again.from_cache and again.fingerprint == edited.fingerprint


def test_a_relative_tokenizer_path_resolves_against_the_config_file(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "run.yaml"
    data = {"source": "text", "path": "t.txt", "tokenizer": "tok/tokenizer.json"}
    path.write_text(yaml.safe_dump({"tokens": 4096, "data": data}))
    assert load_train_config(path).data.tokenizer == str(folder / "tok" / "tokenizer.json")
    # A name is no path: 'gpt2' and 'byte' stay as written.
    path.write_text(yaml.safe_dump({"tokens": 4096, "data": {**data, "tokenizer": "gpt2"}}))
    assert load_train_config(path).data.tokenizer == "gpt2"


def test_a_missing_tokenizer_file_is_found_before_any_run(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("some text " * 100)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"tokens": 4096, "data": {
        "source": "text", "path": "t.txt", "tokenizer": "nope/tokenizer.json",
        "cache_dir": str(tmp_path / "cache")}}))
    missing = str(tmp_path / "nope" / "tokenizer.json")
    errors = load_train_config(path).data.file_errors()
    assert len(errors) == 1 and errors[0].startswith(f"data.tokenizer: file not found: {missing!r}")
    assert train_main(str(path)) == 2
    assert f"data.tokenizer: file not found: {missing!r}" in capsys.readouterr().err
    folder = DataConfig(source="text", path=str(tmp_path / "t.txt"), tokenizer=str(tmp_path))
    assert folder.file_errors() == [f"data.tokenizer: {str(tmp_path)!r} is a folder; give the "
                                    "tokenizer.json file in it"]


def test_an_invalid_tokenizer_file_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "t.txt").write_text("some text " * 100)
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": "not a tokenizer"}')
    with pytest.raises(DataError) as err:
        prepare_data(text_cfg(tmp_path / "t.txt", tmp_path, bad), block_size=8)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"data.tokenizer: {str(bad)!r} is not a ")
    assert "'byte'" in message and "'gpt2'" in message and "tokenizers library" in message
    with pytest.raises(DataError, match=r"^data\.tokenizer: .* is not a tokenizer file"):
        vocab_size_of(str(bad))


def test_a_tiny_run_trains_on_a_tokenizer_file_and_resumes_where_it_moved(tiny, tmp_path, play):
    path = tmp_path / "tok" / "tokenizer.json"
    byte_level_bpe(path, play, vocab_size=300)
    cfg = tiny(steps=8, eval_every_tokens=4 * 8 * 32, out_dir=str(tmp_path / "run"),
               data={"tokenizer": str(path)})
    first = train(cfg, lambda t, v, m: "stop")  # stopped at the first of 2 evaluations
    assert first.steps == 4 and all(np.isfinite(h["val_loss"]) for h in first.history)
    # The model's vocabulary is the file's 300 rounded up to a multiple of 64.
    weights = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["model"]
    assert weights["wte.weight"].shape[0] == 320
    moved = tmp_path / "moved.json"
    shutil.move(path, moved)
    at_new_place = cfg.model_copy(update={"data": cfg.data.model_copy(update={"tokenizer": str(moved)})})
    assert train(at_new_place, resume=True).steps == 8
    # Another tokenizer at that place is other data: refused, as other text is.
    byte_level_bpe(moved, play, vocab_size=400)
    with pytest.raises(ValueError, match="trained on data"):
        train(at_new_place, resume=True)


def test_a_long_document_is_encoded_in_pieces_to_the_same_tokens(tmp_path, play, monkeypatch):
    # One text file is one document, and encoded whole a 32 MB file took 5.3 GB (an Encoding
    # holds offsets and token strings beside each id). Now it is cut into pieces at line ends,
    # here of 2,000 characters: the tokens are the whole text's.
    monkeypatch.setattr(data_module, "PIECE_CHARS", 2_000)
    tok = byte_level_bpe(tmp_path / "eot.json", play)
    (tmp_path / "a.txt").write_text(play[:40_000])
    (tmp_path / "b.txt").write_text(play[40_000:70_000])
    data = prepare_data(text_cfg(tmp_path / "a.txt", tmp_path, tmp_path / "eot.json"),
                        block_size=16)
    assert all_tokens(data).tolist() == tok.encode(play[:40_000]).ids
    assert len(data_module._pieces(play[:40_000], lambda texts: [
        e.ids for e in tok.encode_batch(texts)])) == 20
    # Two documents, each in pieces, joined by the end of text between them alone.
    data = prepare_data(text_cfg(tmp_path / "*.txt", tmp_path, tmp_path / "eot.json"),
                        block_size=16)
    eot = tok.token_to_id("<|endoftext|>")
    assert all_tokens(data).tolist() == (tok.encode(play[:40_000]).ids + [eot]
                                         + tok.encode(play[40_000:70_000]).ids)


def test_a_tokenizer_whose_pieces_would_read_otherwise_is_not_cut(tmp_path, play, monkeypatch):
    # SentencePiece's layout reads a line end and the word after it as one piece, and a text's
    # start with a leading space: no place cuts it to the same tokens, and it is encoded whole.
    monkeypatch.setattr(data_module, "PIECE_CHARS", 2_000)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tok.decoder = decoders.Metaspace(prepend_scheme="first")
    tok.train_from_iterator([play], trainers.BpeTrainer(
        vocab_size=400, show_progress=False, special_tokens=["<unk>", "</s>"]))
    tok.save(str(tmp_path / "sp.json"))
    (tmp_path / "a.txt").write_text(play[:20_000])
    data = prepare_data(text_cfg(tmp_path / "a.txt", tmp_path, tmp_path / "sp.json"),
                        block_size=16)
    assert all_tokens(data).tolist() == tok.encode(play[:20_000]).ids


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
def test_tiktoken_ids_are_encoded_in_pieces_to_the_same_tokens(monkeypatch, play, name):
    # The encoding's own pattern (its merges cannot be downloaded here: a few of our own), through
    # the same pieces: its ids were a list of Python ints, 36 bytes each, before an array.
    import tiktoken
    from tiktoken_ext import openai_public

    ranks = {bytes([i]): i for i in range(256)}
    for pair in (b"\n\n", b"th", b"e ", b"the", b"\nK", b"  ", b".\n", b":\n"):
        ranks[pair] = len(ranks)
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: ranks)
    monkeypatch.setattr(openai_public, "data_gym_to_mergeable_bpe_ranks", lambda *a, **k: ranks)
    pattern = getattr(openai_public, name)()["pat_str"]
    enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": len(ranks)})
    monkeypatch.setattr(data_module, "load_tiktoken", lambda _: enc)
    monkeypatch.setattr(data_module, "PIECE_CHARS", 1_500)
    docs = [play[:30_000], play[30_000:45_000]]
    tokens = data_module._encode(docs, name, np.uint16)
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == (enc.encode_ordinary(docs[0]) + [enc.eot_token]
                               + enc.encode_ordinary(docs[1]))
    assert len(data_module._pieces(docs[0], enc.encode_ordinary_batch)) == 20


def test_a_tokenizer_that_drops_spaces_and_line_ends_is_noted(tmp_path, play, capsys):
    # The tokenizers quick tour's BPE: the Whitespace pre-tokenizer, no decoder. A run trained on
    # the text without its spaces and line ends, and validate said ok without a word.
    from scaletune.search.cli import main
    from scaletune.trainer.data import LOSSY_PROBE, LOSSY_VARIANTS, lossy_tokenizer_note

    quick = Tokenizer(models.BPE(unk_token="[UNK]"))
    quick.pre_tokenizer = pre_tokenizers.Whitespace()
    quick.train_from_iterator([play], trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                          special_tokens=["[UNK]"]))
    quick.save(str(tmp_path / "quick.json"))
    byte_level_bpe(tmp_path / "bytes.json", play)
    (tmp_path / "play.txt").write_text(play)
    cfg = text_cfg(tmp_path / "play.txt", tmp_path, tmp_path / "quick.json")
    note = lossy_tokenizer_note(cfg)
    assert note == (f"data.tokenizer: {tmp_path / 'quick.json'} encodes text alike that differs "
                    f"in line ends and tabs or runs of spaces ({LOSSY_PROBE!r} and "
                    f"{LOSSY_VARIANTS['line ends and tabs']!r} are the same tokens): what it "
                    "drops the model never sees; a byte-level BPE (pre-tokenizer and decoder "
                    "ByteLevel) keeps every byte")
    # A lossless one says nothing: byte-level, with a prefix space or no decoder too (they
    # decode otherwise, and lose nothing).
    assert lossy_tokenizer_note(cfg.model_copy(update={"tokenizer": str(tmp_path / "bytes.json")}))\
        is None
    odd = byte_level_bpe(tmp_path / "odd.json", play)
    odd.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    odd.decoder = None
    odd.save(str(tmp_path / "odd.json"))
    assert lossy_tokenizer_note(cfg.model_copy(update={"tokenizer": str(tmp_path / "odd.json")}))\
        is None
    assert lossy_tokenizer_note(cfg.model_copy(update={"tokenizer": "byte"})) is None
    # validate of a training file says it, as a note: the file is valid.
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump({
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "data": {"source": "text", "path": "play.txt", "tokenizer": "quick.json",
                 "cache_dir": str(tmp_path / "cache")},
        "tokens": 8_192, "batch_size": 8}))
    assert main(["validate", str(run)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "encodes text alike that differs in line ends and tabs" in out, out
    # And of a study file, among the plan's notes.
    from tests.search.helpers import tiny_study, write_study

    study = tiny_study(tmp_path, tmp_path / "play.txt")
    study["data"]["tokenizer"] = str(tmp_path / "quick.json")
    assert main(["validate", str(write_study(tmp_path, study))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "encodes text alike that differs in line ends and tabs" in out, out


def test_a_tokenizer_without_a_pre_tokenizer_is_not_cut(tmp_path, monkeypatch):
    # Merges over the whole text: the parity of a run of 300 'a's decides whether "\nB" merges,
    # which 256 characters each side of a cut do not show (a review's case): cut, the tokens
    # differed from the whole document's.
    vocab = {"a": 0, "\n": 1, "B": 2, "c": 3, "aa": 4, "a\n": 5, "\nB": 6, "<|endoftext|>": 7}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "a"), ("a", "\n"), ("\n", "B")]))
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(tmp_path / "whole.json"))
    monkeypatch.setattr(data_module, "PIECE_CHARS", 100)
    doc = "c" * 50 + "a" * 300 + "\nB" + "c" * 200
    tokens = data_module._encode([doc], str(tmp_path / "whole.json"), np.uint16)
    assert tokens.tolist() == tok.encode(doc, add_special_tokens=False).ids


def test_padded_lines_and_windows_line_ends_are_cut_to_the_same_tokens(tmp_path, play,
                                                                       monkeypatch):
    # A review's cases, under a byte-level BPE that learned merges of spaces with the line end
    # (lines ending in spaces, as Markdown's hard breaks): a line padded with more spaces than
    # the text checked around a cut was cut to other tokens; text with \r\n line ends was never
    # cut (GPT-2's pattern reads a \r\n that ends a text as one piece), so encoded whole.
    monkeypatch.setattr(data_module, "PIECE_CHARS", 3_000)
    lines = play.split("\n")
    padded = "\n".join(line + " " * (i % 5) for i, line in enumerate(lines))
    tok = byte_level_bpe(tmp_path / "md.json", padded, vocab_size=400)
    assert any("Ġ" in t and "Ċ" in t for t in tok.get_vocab())  # spaces merged with "\n"
    tok.encode_special_tokens = True

    def encode(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]

    wide = "\n".join(line.ljust(300) for line in lines[:400])
    crlf = "\r\n".join(lines[:2_000])
    for doc in (wide, crlf):
        tokens = data_module._encode([doc], str(tmp_path / "md.json"), np.uint16)
        assert tokens.tolist() == tok.encode(doc, add_special_tokens=False).ids
    assert len(data_module._pieces(crlf, encode)) >= len(crlf) // 3_000
