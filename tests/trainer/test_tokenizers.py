"""Tokenizer names without their files: vocabulary sizes known offline, and what to do when an
encoding's files cannot be downloaded."""

from __future__ import annotations

import hashlib

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
import tiktoken_ext.openai_public

from scaletune.trainer.config import DataConfig
from scaletune.trainer.data import (
    TIKTOKEN_VOCAB_SIZES,
    known_vocab_size,
    tiktoken_download_note,
    vocab_size_of,
)
from scaletune.trainer.errors import DataError


@pytest.fixture
def no_tiktoken_files(tmp_path, monkeypatch):
    """An empty tiktoken cache and no network: the URLs tiktoken asks for, in order."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    for name in TIKTOKEN_VOCAB_SIZES:
        monkeypatch.delitem(tiktoken.registry.ENCODINGS, name, raising=False)
    asked: list[str] = []

    def no_network(url):
        asked.append(url)
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    return cache, asked


def test_known_vocab_sizes_match_the_installed_tiktoken(monkeypatch):
    # Each constructor is run without its merges (their files are what needs the network): its
    # explicit_n_vocab where it states one, else its highest special token + 1, is n_vocab.
    monkeypatch.setattr(tiktoken_ext.openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    monkeypatch.setattr(tiktoken_ext.openai_public, "data_gym_to_mergeable_bpe_ranks",
                        lambda *a, **k: {})
    tiktoken.list_encoding_names()  # makes sure the constructor table exists
    for name, size in TIKTOKEN_VOCAB_SIZES.items():
        spec = tiktoken.registry.ENCODING_CONSTRUCTORS[name]()
        expected = spec.get("explicit_n_vocab") or max(spec["special_tokens"].values()) + 1
        assert size == expected, name


def test_vocab_sizes_are_known_without_the_encoding_files(no_tiktoken_files):
    _, asked = no_tiktoken_files
    # The published encodings and 'byte' have a size offline; any other name must be loaded.
    assert known_vocab_size("byte") == 256
    assert known_vocab_size("gpt2") == known_vocab_size("r50k_base") == 50257
    assert known_vocab_size("cl100k_base") == 100277
    assert known_vocab_size("o200k_base") == 200019
    assert known_vocab_size("my_private_bpe") is None
    assert asked == []


def test_offline_message_names_the_cache_files_tiktoken_reads(no_tiktoken_files):
    cache, asked = no_tiktoken_files
    with pytest.raises(DataError) as err:
        vocab_size_of("gpt2")
    message = str(err.value)
    # One line, with both ways out: the byte tokenizer, and tiktoken's cache filled elsewhere.
    assert "\n" not in message
    assert "could not be loaded offline" in message and "'byte'" in message
    assert "TIKTOKEN_CACHE_DIR=tiktoken-cache" in message
    assert "tiktoken.get_encoding('gpt2')" in message
    # It names the file tiktoken looked for, for the URL it asked for, and both of gpt2's files.
    url = asked[0]
    cached_name = hashlib.sha1(url.encode()).hexdigest()
    assert f"{cached_name} for {url}" in message
    assert "vocab.bpe" in message and "encoder.json" in message
    # A file of that name in TIKTOKEN_CACHE_DIR is read instead of the URL.
    (cache / cached_name).write_bytes(b"copied from a machine with network access")
    assert tiktoken.load.read_file_cached(url) == b"copied from a machine with network access"
    assert asked == [url]


def test_an_encoding_built_from_another_still_gets_the_recipe(no_tiktoken_files):
    # o200k_harmony's constructor names no URL itself: the message still says what to run.
    with pytest.raises(DataError) as err:
        vocab_size_of("o200k_harmony")
    message = str(err.value)
    assert "tiktoken.get_encoding('o200k_harmony')" in message and "'byte'" in message


def test_a_study_that_would_download_its_encoding_is_told_so_beforehand(no_tiktoken_files,
                                                                         tmp_path):
    cache, asked = no_tiktoken_files
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 200)
    data = DataConfig(source="text", path=str(corpus), tokenizer="gpt2",
                      cache_dir=str(tmp_path / "tokens"))
    note = tiktoken_download_note(data)
    assert note is not None and "\n" not in note
    assert f"tokenizer 'gpt2': tiktoken's files for it (2) are not in its cache ({cache})" in note
    assert "'byte'" in note and "TIKTOKEN_CACHE_DIR" in note
    assert asked == []  # found out from file names: nothing was downloaded or tried
    # Once tiktoken's cache holds the files (by the names it reads), nothing will be downloaded.
    (cache / "6d1cbeee0f20b3d9449abfede4726ed8212e3aee").write_bytes(b"vocab.bpe")
    assert "(1)" in tiktoken_download_note(data)
    (cache / "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6").write_bytes(b"encoder.json")
    assert tiktoken_download_note(data) is None
    # The byte tokenizer needs no files.
    (cache / "6d1cbeee0f20b3d9449abfede4726ed8212e3aee").unlink()
    assert tiktoken_download_note(data) is not None
    assert tiktoken_download_note(data.model_copy(update={"tokenizer": "byte"})) is None


def test_with_the_cache_turned_off_every_run_downloads(no_tiktoken_files, monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    data = DataConfig(source="builtin", builtin="pydoc_topics", tokenizer="cl100k_base",
                      cache_dir=str(tmp_path / "tokens"))
    note = tiktoken_download_note(data)
    assert note is not None
    assert "(1) are downloaded by every run: its cache is turned off" in note
